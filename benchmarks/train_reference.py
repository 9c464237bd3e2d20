"""Training time, speed and accuracy of each reference net on this machine; publishes the weights.

Usage::

    BANDGUARD_DATA=../shared/data python benchmarks/train_reference.py \
        --nets cifar_fast,cifar_fast_adversarial [--publish examples/models] [--retrain] [--seed N]

For each recipe of :data:`bandguard.bench.zoo.RECIPES` it prints one Markdown row: clean test
accuracy on the 10,000 test images (and with airbench's test-time augmentation for the
``cifar_fast`` family), PGD-20 accuracy at Linf 8/255 on the first 1,000 test images for CIFAR-10
nets (eps 0.3 for MNIST), training wall time, training images per second, and the speed of one
training step in float32 against bf16 autocast + channels_last (interleaved, 3 repeats, median).
A net found in the cache (or published weights) is not trained again unless ``--retrain``; its
time is the one recorded when it was trained. ``--publish DIR`` writes each net as a float16
checkpoint with its manifest entry (:func:`bandguard.bench.zoo.publish_weights`). ``--seed N``
trains each recipe with seed N instead of its own (published as ``<net>-seed<N>``), for the spread
of a finding over training seeds.

The machine and its load average are printed first: figures taken beside other work are not
comparable.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name

from bandguard.attacks import PGD
from bandguard.bench.zoo import RECIPES, publish_weights, published_name, reference_model
from bandguard.data import load_dataset
from bandguard.models import create_model
from bandguard.training import evaluate, train


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, CPU only"


def step_speed(name: str, images: torch.Tensor, labels: torch.Tensor, amp: str, device: torch.device) -> float:
    """Training images per second of one short run (2 batches) of recipe ``name`` with ``amp``."""
    config = dataclasses.replace(RECIPES[name].config, epochs=1, amp=amp, checkpoint=None, resume=False)
    n = min(len(labels), 2 * config.batch_size)
    model = create_model(RECIPES[name].arch).to(device)
    start = time.perf_counter()
    train(model, (images[:n], labels[:n]), config, device=device, progress=False)
    return n / (time.perf_counter() - start)


def pgd_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    attack = PGD(eps=eps, norm="linf", steps=20, step_size=2.5 * eps / 20, seed=0)
    return float(attack(model, x, y).robust_accuracy[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="cifar_fast")
    parser.add_argument("--publish", default=None, help="folder to publish float16 weights and manifest.json in")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--no-speed", action="store_true", help="skip the float32 vs bf16 step timing")
    parser.add_argument("--seed", type=int, default=None,
                        help="train with this seed instead of each recipe's own (published as <net>-seed<N>)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start\n")
    print("| net | clean | with TTA | PGD-20 | train time | img/s | step fp32 | step bf16 | bf16 / fp32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.nets.split(","):
        recipe = RECIPES[name]
        model, meta = reference_model(name, retrain=args.retrain, device=device, progress=True, seed=args.seed)
        test = load_dataset(recipe.dataset, "test")
        images_per_second = meta["train_images"] * recipe.config.epochs / meta["train_seconds"]
        tta = meta.get("tta_accuracy")
        if tta is None and recipe.arch == "cifar_fast":
            tta = evaluate(model, test.images, test.labels, device=device, tta=True)
        eps = 0.3 if recipe.dataset == "mnist" else 8 / 255
        x, y = test.tensors(1000)
        pgd = pgd_accuracy(model, x.to(device), y.to(device), eps)
        speeds = {"off": [], "bf16": []}
        if not args.no_speed:
            train_set = load_dataset(recipe.dataset, "train")
            for _ in range(3):  # interleaved, so a load change hits both
                for amp in speeds:
                    speeds[amp].append(step_speed(name, train_set.images, train_set.labels, amp, device))
        fp32 = statistics.median(speeds["off"]) if speeds["off"] else float("nan")
        bf16 = statistics.median(speeds["bf16"]) if speeds["bf16"] else float("nan")
        tta_text = f"{tta:.2%}" if tta is not None else "-"
        label = name if args.seed is None else published_name(name, args.seed)
        print(f"| {label} | {meta['test_accuracy']:.2%} | {tta_text} | {pgd:.1%} | "
              f"{meta['train_seconds'] / 60:.1f} min | {images_per_second:.0f} | {fp32:.0f} | {bf16:.0f} | "
              f"{bf16 / fp32:.2f}x |", flush=True)
        if args.publish:
            publish_weights(
                name, model, {**meta, "tta_accuracy": tta}, args.publish,
                pgd_accuracy={"eps": eps, "steps": 20, "images": 1000, "accuracy": pgd},
                train_images_per_second=round(images_per_second, 1), machine=machine(),
                bandguard_torch=torch.__version__,
            )
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
