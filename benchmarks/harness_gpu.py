"""Harness throughput on a GPU: images per second and the ratio to the forward+backward limit.

Runs a PGD grid (``--steps`` steps, 3 Linf eps, no cascade so every eps attacks every image)
through :func:`bandguard.bench.run` on ``--device`` (default ``cuda``), optionally with bf16
autocast for the forwards (``--amp bf16``; gradients stay float32), and times the model's own
limit: ``steps x 3`` forward+backward passes over the same images in the same batches. Prints
images/s of the harness and ``limit / harness`` (1.0 = the harness adds nothing).

    python benchmarks/harness_gpu.py --arch cifar_resnet18 --dataset cifar10 -n 10000 --write

Not measured on this project's CPU-only machine; the command above is the one for an H100.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import sync, write_section

from bandguard.bench import parse_spec, run
from bandguard.bench.loading import load_samples
from bandguard.models import create_model, save_checkpoint

EPS = (2 / 255, 4 / 255, 8 / 255)


def _limit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, passes: int, batch: int,
           device: torch.device, amp: bool) -> float:
    model = model.to(device).eval()
    sync(device)
    start = time.perf_counter()
    for xb, yb in zip(x.split(batch), y.split(batch)):
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        for _ in range(passes):
            xr = xb.detach().requires_grad_(True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(model(xr).float(), yb)
            torch.autograd.grad(loss, xr)
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="mnist_cnn")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cuda")
    p.add_argument("--amp", default="off", choices=["off", "bf16"])
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_model(args.arch).eval()  # speed does not depend on the weights
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "m.pt"
        save_checkpoint(ckpt, model, arch=args.arch, dataset=args.dataset)
        spec = parse_spec({
            "dataset": args.dataset, "n": args.n, "batch_size": args.batch_size, "device": args.device,
            "amp": args.amp, "out": str(Path(tmp) / "out"), "sanity": False, "cascade": False,
            "scale_invariant": False,  # the PGD grid alone, against its own forward+backward limit
            "models": [{"name": args.arch, "checkpoint": str(ckpt)}],
            "attacks": [{"attack": "pgd", "eps": list(EPS), "steps": args.steps, "random_start": False}],
        })
        x, y, _ = load_samples(spec)
        run(spec)  # warm-up (cuDNN autotune, allocator)
        sync(device)
        start = time.perf_counter()
        run(spec, force=True)
        sync(device)
        harness = time.perf_counter() - start
    limit = _limit(model, x, y, args.steps * len(EPS), args.batch_size, device, args.amp == "bf16")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    text = "\n".join([
        "## Harness on the GPU", "",
        f"{args.arch} on {args.n} {args.dataset} images, PGD-{args.steps} at 3 Linf eps, batch "
        f"{args.batch_size}, amp {args.amp}, {name}:", "",
        f"- harness: {harness:.2f} s, {args.n * len(EPS) / harness:.0f} images x eps per second",
        f"- forward+backward limit: {limit:.2f} s; limit / harness = {limit / harness:.2f}", "",
    ])
    print(text)
    if args.write:
        write_section("Harness on the GPU", text, Path(__file__).with_name("RESULTS.md"))


if __name__ == "__main__":
    main()
