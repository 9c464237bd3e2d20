"""How close is ``fourier_heatmap`` to the cost of its forwards, and how much faster than a naive loop?

For each data set (MNIST 28 x 28, CIFAR-10 32 x 32) and N images it measures, in one run:

- **heat map**: ``bandguard.spectral.fourier_heatmap`` (all frequencies, K distinct ones evaluated);
- **limit**: K x the time of one plain forward of the same N images (same ``max_batch``), the
  least any method that runs the model on every perturbed image can spend;
- **throughput limit**: K x N x the per-image time of a plain forward of one full ``max_batch``
  batch: the tighter bound when N is small (a forward of few images runs below the model's best
  throughput, which the heat map reaches by batching frequencies together);
- **naive**: Yin et al.'s loop (``freq_heatmap.py``): for every one of the H x W positions, build
  its basis image, perturb the N images, forward them, count errors.

Goals (issue 5): heat map <= 1.10 x limit and >= 1.8 x faster than naive; on one H100, a full
32 x 32 map of ``cifar_resnet18`` on 1,000 images in <= 30 s.

Timing only: the weights are the random initialisation (cost does not depend on them); the images
are real when ``$BANDGUARD_DATA`` holds the data sets, else uniform noise.

    python benchmarks/heatmap_speed.py                        # CPU defaults (small N)
    python benchmarks/heatmap_speed.py --device cuda -n 1000 --arch-cifar cifar_resnet18 --amp bf16
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from _common import sync

from bandguard import fourier
from bandguard.models import create_model
from bandguard.spectral import fourier_heatmap, heatmap_signs
from bandguard.spectral.heatmap import DEFAULT_MAX_BATCH, perturb_with_basis

SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def images(dataset: str, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    root = os.environ.get("BANDGUARD_DATA")
    if root and os.path.isdir(root):
        from bandguard.data import load_dataset

        return load_dataset(dataset, "test", root=root, download=False).tensors(n, device=device)
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, *SHAPES[dataset], generator=g).to(device), torch.randint(0, 10, (n,), generator=g).to(device)


def plain_forward(model: torch.nn.Module, x: torch.Tensor, max_batch: int) -> None:
    with torch.inference_mode():
        for chunk in x.split(max_batch):
            model(chunk).argmax(1)


def naive_heatmap(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                  max_batch: int) -> torch.Tensor:
    """Every H x W position separately, one basis image and N perturbed images at a time."""
    n, c, h, w = x.shape
    _, orbit = fourier.frequency_orbits(h, w, device=x.device)
    signs = heatmap_signs(int(orbit.max()) + 1, n, c, generator=torch.Generator().manual_seed(0),
                          device=x.device, dtype=x.dtype)
    out = torch.zeros(h, w)
    with torch.inference_mode():
        for i in range(h):
            for j in range(w):
                u = fourier.fourier_basis(h, w, torch.tensor([[i, j]], device=x.device),
                                          device=x.device, dtype=x.dtype)[0]
                batch = perturb_with_basis(x, u, signs[orbit[i, j]], eps)
                wrong = sum(int((model(xb).argmax(1) != yb).sum())
                            for xb, yb in zip(batch.split(max_batch), y.split(max_batch)))
                out[i, j] = wrong / n
    return out


def bench(dataset: str, arch: str, n: int, device: torch.device, max_batch: int, amp: bool,
          naive: bool, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(arch).to(device).eval()
    x, y = images(dataset, n, device)
    k = fourier.distinct_frequencies(*x.shape[-2:]).shape[0]
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext)

    def ours() -> object:
        with autocast() if amp else contextlib.nullcontext():
            return fourier_heatmap(model, x, y, eps=4.0, max_batch=max_batch,
                                   generator=torch.Generator().manual_seed(0))

    def forward() -> None:
        with autocast() if amp else contextlib.nullcontext():
            plain_forward(model, x, max_batch)

    def loop() -> object:
        with autocast() if amp else contextlib.nullcontext():
            return naive_heatmap(model, x, y, 4.0, max_batch)

    full = x.repeat(-(-max_batch // n), 1, 1, 1)[:max_batch]

    def full_batch() -> None:
        with autocast() if amp else contextlib.nullcontext():
            plain_forward(model, full, max_batch)

    forward()  # warm-up (allocator, cuDNN autotuning)
    full_batch()
    # The forward time is measured before and after the heat map and averaged, so drifting load on a
    # shared machine hits both sides of the ratio.
    before = [timed(forward, device) for _ in range(repeats)]
    batch_before = [timed(full_batch, device) for _ in range(repeats)]
    t_ours = timed(ours, device)
    after = [timed(forward, device) for _ in range(repeats)]
    batch_after = [timed(full_batch, device) for _ in range(repeats)]
    t_forward = statistics.median(before + after)
    t_image = statistics.median(batch_before + batch_after) / full.shape[0]
    row = {"K": k, "n": n, "heatmap_s": t_ours, "limit_s": k * t_forward, "tput_limit_s": k * n * t_image}
    row["vs_limit"] = t_ours / row["limit_s"]
    row["vs_tput_limit"] = t_ours / row["tput_limit_s"]
    if naive:
        row["naive_s"] = timed(loop, device)
        row["speedup_vs_naive"] = row["naive_s"] / t_ours
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="mnist,cifar10")
    parser.add_argument("-n", type=int, default=None, help="images (default 64 on CPU, 1000 on CUDA)")
    parser.add_argument("--arch-mnist", default="mnist_cnn")
    parser.add_argument("--arch-cifar", default="cifar_small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--amp", default="off", choices=["off", "bf16"])
    parser.add_argument("--no-naive", action="store_true", help="skip the naive loop (it takes ~2x)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    n = args.n or (1000 if device.type == "cuda" else 64)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"machine: {machine}; torch {torch.__version__}; max_batch {args.max_batch}; amp {args.amp}")
    print("| data | model | N | K | heat map (s) | limit K x fwd(N) (s) | heat map / limit "
          "| throughput limit (s) | heat map / throughput limit | naive (s) | naive / heat map |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for dataset in args.datasets.split(","):
        arch = args.arch_mnist if dataset == "mnist" else args.arch_cifar
        r = bench(dataset, arch, n, device, args.max_batch, args.amp == "bf16", not args.no_naive,
                  args.repeats)
        naive = (f"{r['naive_s']:.1f} | {r['speedup_vs_naive']:.2f}x" if "naive_s" in r else "- | -")
        print(f"| {dataset} | {arch} | {r['n']} | {r['K']} | {r['heatmap_s']:.1f} | {r['limit_s']:.1f} "
              f"| {r['vs_limit']:.2f}x | {r['tput_limit_s']:.1f} | {r['vs_tput_limit']:.2f}x | {naive} |",
              flush=True)


if __name__ == "__main__":
    main()
