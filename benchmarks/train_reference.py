"""Training time and test accuracy of each reference net, on this machine.

Usage::

    BANDGUARD_DATA=../shared/data python benchmarks/train_reference.py [--nets mnist_cnn,cifar_small]

``cifar_resnet18`` runs only where CUDA is available (its recipe targets >= 93 % CIFAR-10 test
accuracy in <= 5 minutes on one H100: 18 epochs, one-cycle, batch 512, bf16 autocast,
channels_last, crop + flip, label smoothing 0.1). Prints a Markdown table to paste into
``benchmarks/RESULTS.md``; the machine is named in its first line.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from bandguard.data import load_dataset
from bandguard.models import create_model
from bandguard.training import TrainConfig, evaluate, train

RECIPES = {
    "mnist_cnn": ("mnist", TrainConfig(epochs=1, batch_size=128, lr=0.05, arch="mnist_cnn", dataset="mnist")),
    "cifar_small": ("cifar10", TrainConfig(epochs=3, batch_size=128, lr=0.1, augment=True,
                                           arch="cifar_small", dataset="cifar10")),
    "cifar_resnet18": ("cifar10", TrainConfig(epochs=18, batch_size=512, lr=0.4, weight_decay=5e-4, augment=True,
                                              label_smoothing=0.1, arch="cifar_resnet18", dataset="cifar10")),
}


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, CPU only"


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
        dataset, config = RECIPES[name]
        train_set, test_set = load_dataset(dataset, "train"), load_dataset(dataset, "test")
        torch.manual_seed(0)
        model = create_model(name)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = train(model, train_set, config, device=device, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        acc = evaluate(model, test_set.images, test_set.labels, device=device)
        recipe = f"{config.epochs} ep, batch {config.batch_size}, lr {config.lr}, {config.schedule}"
        print(f"| {name} | {dataset} | {recipe} | {seconds:.0f} s | {acc:.2%} |", flush=True)
        del result


if __name__ == "__main__":
    main()
