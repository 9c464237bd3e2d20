"""Training time and test accuracy of each reference net, on this machine.

Usage::

    BANDGUARD_DATA=../shared/data python benchmarks/train_reference.py [--nets mnist_cnn,cifar_small]

Recipes come from :data:`bandguard.bench.zoo.RECIPES`. ``cifar_resnet18`` runs only where CUDA
is available (its recipe targets >= 93 % CIFAR-10 test accuracy in <= 5 minutes on one H100:
18 epochs, one-cycle, batch 512, bf16 autocast, channels_last, crop + flip, label smoothing 0.1).
Prints a Markdown table to paste into ``benchmarks/RESULTS.md``; the machine is named in its first
line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name

from bandguard.bench.zoo import RECIPES, train_reference
from bandguard.data import load_dataset


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, CPU only"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "mnist_cnn,cifar_small" + (",cifar_resnet18" if torch.cuda.is_available() else "")
    parser.add_argument("--nets", default=default)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"Machine: {machine()}\n")
    print("| net | data | recipe | train time | test accuracy |")
    print("| --- | --- | --- | ---: | ---: |")
    for name in args.nets.split(","):
        recipe = RECIPES[name]
        train_set, test_set = load_dataset(recipe.dataset, "train"), load_dataset(recipe.dataset, "test")
        _, meta = train_reference(recipe, train_set, test_set, device=device)
        c = recipe.config
        text = f"{c.epochs} ep, batch {c.batch_size}, lr {c.lr}, {c.schedule}, {c.mode}"
        if c.adversary is not None:
            text += f", adversary {type(c.adversary).__name__} eps {c.adversary.epsilons[0]:.4g}"
        print(f"| {name} | {recipe.dataset} | {text} | {meta['train_seconds']:.0f} s | "
              f"{meta['test_accuracy']:.2%} |", flush=True)


if __name__ == "__main__":
    main()
