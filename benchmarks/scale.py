"""Memory and time against ``n`` and the image size, for the heat map, PGD, post-averaging and the harness.

Each point runs in its own child process, so its peak memory is its own: on the CPU the peak
resident memory (``VmHWM`` of ``/proc/self/status``; not ``ru_maxrss``, which Linux carries over
fork + exec) above what the process held with the model loaded and warmed up; on CUDA
``torch.cuda.max_memory_allocated`` above the memory allocated before (the model and the batch
excluded, a one-image warm-up included). Time is the wall clock of
the call; the **limit** is what the call cannot beat on the same model and batch, from forwards
and forward+backward passes timed in the same process after it:

- ``heatmap`` (``fourier_heatmap(max_frequency=m)``): (distinct frequencies + 1) x ``n`` image
  forwards;
- ``pgd`` (``PGD(steps=s)``, no early stop): ``s`` forward+backward passes of the batch and the
  forward that tells which examples succeed;
- ``post_averaging`` (one input gradient through ``PostAveraging(K)``): one forward+backward of
  ``n * (1 + 6K)`` model inputs;
- ``harness`` (``evaluate_robustness`` with that PGD, no scale-invariant attack): the clean
  forward plus PGD's limit.

``ratio`` = time / limit: 1.0 is the model's own speed, anything above is bandguard's overhead.
The model is a torchvision classifier (random weights, ImageNet normalization inside; speed and
memory do not depend on the weights).

    python benchmarks/scale.py                      # n in 2, 4, 8 at 32 x 32; sizes 32 ... 224 at n = 2
    python benchmarks/scale.py --ns 8 32 128 --sizes 32 64 128 224 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

TASKS = ("heatmap", "pgd", "post_averaging", "harness")


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(task: str, size: int, n: int, args: argparse.Namespace) -> dict:
    """One point, in this process: the task's time and peak memory, and its limit."""
    from bandguard._modes import model_mode
    from bandguard.fourier import frequency_orbits
    from bandguard.models import torchvision_model

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision_model(args.arch, num_classes=10).to(device)
    x = torch.rand(n, 3, size, size, device=device)
    with torch.no_grad():
        y = model(x).argmax(1)  # its own labels: every image is attacked

    def forward(inputs: torch.Tensor) -> None:
        with torch.no_grad():
            model(inputs)

    def forward_backward(inputs: torch.Tensor) -> None:
        with model_mode(model, requires_grad=False):
            xg = inputs.clone().requires_grad_(True)
            torch.autograd.grad(model(xg).logsumexp(1).sum(), xg)

    # The base before the warm-up: freed memory stays in the process (allocator caches), so a base
    # taken after a full-size warm-up would hide the task's own peak. One image warms the kernels.
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _status_bytes("VmRSS")
    forward_backward(x[:1])
    start = time.perf_counter()
    if task == "heatmap":
        from bandguard.spectral import fourier_heatmap

        fourier_heatmap(model, x, y, eps=4.0, max_frequency=args.max_frequency,
                        generator=torch.Generator().manual_seed(0))
    elif task in ("pgd", "harness"):
        from bandguard.attacks import PGD

        attack = PGD(eps=(1 / 255,), steps=args.steps, random_start=False, early_stop=False)
        if task == "pgd":
            attack(model, x, y)
        else:
            from bandguard.bench import evaluate_robustness

            evaluate_robustness(model, x, y, {"pgd": attack}, scale_invariant=False, eot=1, device=device)
    else:
        from bandguard.defenses import PostAveraging

        pa = PostAveraging(model, K=args.K, radius_l2=0.5, generator=torch.Generator(device).manual_seed(0))
        forward_backward_pa = pa(x.clone().requires_grad_(True)).logsumexp(1).sum()
        forward_backward_pa.backward()
    _sync(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _status_bytes("VmHWM")) - base

    t_f = _median_time(lambda: forward(x), device, args.repeats)
    t_fb = _median_time(lambda: forward_backward(x), device, args.repeats)
    if task == "heatmap":
        freqs = len(frequency_orbits(size, size, max_frequency=args.max_frequency)[0])
        limit = (freqs + 1) * t_f
    elif task == "pgd":
        limit = args.steps * t_fb + t_f
    elif task == "harness":
        limit = 2 * t_f + args.steps * t_fb
    else:
        inputs = x.repeat_interleave(1 + 6 * args.K, dim=0)
        limit = _median_time(lambda: forward_backward(inputs), device, 1)
    return {"task": task, "size": size, "n": n, "seconds": seconds, "limit": limit, "ratio": seconds / limit,
            "peak_mib": peak / 2**20}


def _child(task: str, size: int, n: int, argv: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--one", task, str(size), str(n), *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        return {"task": task, "size": size, "n": n, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(r: dict) -> str:
    if "error" in r:
        return f"| {r['task']} | {r['size']} | {r['n']} | failed: {' '.join(r['error'])} | | | |"
    return (f"| {r['task']} | {r['size']} | {r['n']} | {r['seconds']:.2f} | {r['limit']:.2f} | {r['ratio']:.2f} | "
            f"{r['peak_mib']:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--ns", nargs="+", type=int, default=[2, 4, 8], help="n values (at the smallest size)")
    p.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 128, 224], help="image sizes (at the smallest n)")
    p.add_argument("--arch", default="resnet18", help="a torchvision classifier")
    p.add_argument("--steps", type=int, default=2, help="PGD steps (pgd, harness)")
    p.add_argument("--K", type=int, default=2, help="post-averaging directions (1 + 6K inputs per image)")
    p.add_argument("--max-frequency", type=int, default=2, help="heat map: |u|, |v| <= this")
    p.add_argument("--repeats", type=int, default=3, help="timings of the limit (median)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--one", nargs=3, metavar=("TASK", "SIZE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        task, size, n = args.one
        print(json.dumps(measure(task, int(size), int(n), args)))
        return
    passed = sys.argv[1:]
    points = [(s, n) for n in args.ns for s in args.sizes[:1]]
    points += [(s, args.ns[0]) for s in args.sizes[1:]]
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else \
        f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    print(f"{args.arch} (torchvision, random weights) on {where}; PGD steps {args.steps}, post-averaging K {args.K} "
          f"({1 + 6 * args.K} inputs per image), heat map max_frequency {args.max_frequency}")
    print("| task | size | n | seconds | limit (s) | ratio | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for task in args.tasks:
        for size, n in points:
            print(_row(_child(task, size, n, passed)), flush=True)


if __name__ == "__main__":
    main()
