"""Cost and clean accuracy of bandguard's defenses, and transfer versus adaptive robustness.

Three parts, each printed as Markdown (``--write`` puts them into ``benchmarks/RESULTS.md`` under
``## Defense cost`` and ``## Defenses: transfer vs adaptive``, replacing only those sections):

1. **Speed** (CPU, and CUDA when present): wall time of each defense's forward relative to the bare
   model on the same batch. Post-averaging (K=15) is compared with ``1 + 6K = 91`` plain forwards of
   the same batch (goal <= 1.15x), over several ``max_batch`` chunk sizes, so its default can be
   checked; the low-pass is timed in front of ``cifar_resnet18`` (goal <= 10 % extra). Methods are
   interleaved over ``--repeats`` rounds; medians are reported (the machine is shared: ratios
   measured in one run are what to read).
2. **Clean accuracy** of the undefended reference nets, the low-pass and post-averaging at their
   :data:`bandguard.defenses.RECOMMENDED` radii, and kernel smoothing for each rho of Wang et al.
   (0.1, 0.25, 0.5, 1.0; first conv layer), on the first ``--n`` test images (post-averaging on
   ``--n-pa``).
3. ``--table``: clean, transfer and adaptive (EOT) robust accuracy of every defense on MNIST under
   Linf PGD (:func:`bandguard.bench.evaluate_robustness`, the benchmark harness on tensors).

Weights: the shared test cache (``~/.cache/bandguard/test-models``, written by the test fixtures)
for accuracy; speed uses whatever is there or a random init (speed does not depend on weights).
Data: ``$BANDGUARD_DATA``.

    BANDGUARD_DATA=/work/shared/data python benchmarks/defense_cost.py --table --write
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import cpu_name, sync, write_section
from torch import nn

from bandguard.defenses import (
    RECOMMENDED,
    LowPass,
    PostAveraging,
    build_defense,
    smooth_kernels,
)
from bandguard.defenses.post_averaging import default_max_batch
from bandguard.models import accuracy, create_model, load_checkpoint

ROOT = Path(__file__).resolve().parent
RHOS = (0.1, 0.25, 0.5, 1.0)
DATASETS = {"mnist_cnn": "mnist", "cifar_small": "cifar10"}


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def load_model(arch: str, device: torch.device) -> tuple[nn.Module, bool]:
    cache = Path(os.environ.get("BANDGUARD_TEST_CACHE", Path.home() / ".cache/bandguard/test-models"))
    found = sorted(cache.glob(f"{arch}-*.pt"), key=lambda p: p.stat().st_mtime)
    if found:
        return load_checkpoint(found[-1]).build().to(device).eval(), True
    torch.manual_seed(0)
    return create_model(arch).to(device).eval(), False


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each function, run in turn ``repeats`` times after one warm-up round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        for rep in range(repeats + 1):
            for name, fn in fns.items():
                sync(device)
                t = time.perf_counter()
                fn()
                sync(device)
                if rep:
                    times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def speed_one(arch: str, shape: tuple[int, ...], device: torch.device, batch: int, repeats: int) -> list[str]:
    model, _ = load_model(arch, device)
    x = torch.rand(batch, *shape, device=device)
    K = 15
    plain = 1 + 6 * K
    chunk_default = default_max_batch(x[0].numel())
    chunks = sorted({batch, 4 * batch, chunk_default, batch * plain})
    lowpass = nn.Sequential(LowPass(8), model)
    fns: dict[str, Callable[[], object]] = {
        "bare": lambda: model(x),
        "plain": lambda: [model(x) for _ in range(plain)],
        "lowpass": lambda: lowpass(x),
        "filter": lambda: lowpass[0](x),
    }
    for c in chunks:
        pa = PostAveraging(model, radius_l2=1.0, K=K, max_batch=c, generator=torch.Generator().manual_seed(0))
        fns[f"pa{c}"] = lambda p=pa: p(x)
    t = interleaved(fns, repeats, device)
    rows = [lowpass_row(device, arch, batch, t)]
    for c in chunks:
        mark = " (default)" if c == chunk_default else (" (one batch of all)" if c == batch * plain else "")
        rows.append(f"| {device.type} | {arch} | {batch} | post_average K=15, max_batch={c}{mark} | "
                    f"{1e3 * t['bare']:.1f} | {1e3 * t[f'pa{c}']:.1f} | "
                    f"{t[f'pa{c}'] / t['plain']:.2f}x {plain} plain forwards |")
    return rows


def speed(device: torch.device, batch: int, repeats: int) -> list[str]:
    rows = []
    for arch, shape in {"mnist_cnn": (1, 28, 28), "cifar_small": (3, 32, 32)}.items():
        rows += speed_one(arch, shape, device, batch, repeats)
    # Low-pass in front of the CIFAR ResNet-18.
    model, _ = load_model("cifar_resnet18", device)
    xb = torch.rand(batch, 3, 32, 32, device=device)
    lp = nn.Sequential(LowPass(8), model)
    t = interleaved({"bare": lambda: model(xb), "lowpass": lambda: lp(xb), "filter": lambda: lp[0](xb)},
                    repeats, device)
    rows.append(lowpass_row(device, "cifar_resnet18", batch, t))
    return rows


def lowpass_row(device: torch.device, arch: str, batch: int, t: dict[str, float]) -> str:
    # The filter alone, as a share of the bare forward, is the robust figure on a noisy machine:
    # the defended/bare ratio divides two noisy times of nearly equal size.
    return (f"| {device.type} | {arch} | {batch} | lowpass (r=8) | {1e3 * t['bare']:.1f} | "
            f"{1e3 * t['lowpass']:.1f} | {t['lowpass'] / t['bare']:.2f}x bare; the filter alone "
            f"{1e3 * t['filter']:.2f} ms = +{100 * t['filter'] / t['bare']:.1f} % |")


def accuracy_one(arch: str, dataset: str, n: int, n_pa: int) -> list[str]:
    from bandguard.data import load_dataset

    model, trained = load_model(arch, torch.device("cpu"))
    if not trained:
        return [f"| {dataset} | (no trained {arch} in the test cache) | | | |"]
    x, y = load_dataset(dataset, "test", download=False).tensors(n)
    base = accuracy(model, x, y)
    rec = RECOMMENDED[dataset]
    rows = [f"| {dataset} | none | {n} | {100 * base:.1f} | +0.0 |"]

    def row(name: str, m: nn.Module, k: int, ref: float, *, batch: int = 1024) -> None:
        acc = accuracy(m, x[:k], y[:k], batch_size=batch)
        rows.append(f"| {dataset} | {name} | {k} | {100 * acc:.1f} | {100 * (acc - ref):+.1f} |")

    row(f"lowpass:{rec['lowpass']:g} (recommended)", nn.Sequential(LowPass(rec["lowpass"]), model), n, base)
    for r in (rec["lowpass"] - 4, rec["lowpass"] - 2, rec["lowpass"] + 2):
        row(f"lowpass:{r:g}", nn.Sequential(LowPass(r), model), n, base)
    base_pa = accuracy(model, x[:n_pa], y[:n_pa])
    pa = PostAveraging(model, radius_l2=rec["post_average"], generator=torch.Generator().manual_seed(0))
    row(f"post_average:{rec['post_average']:g},K=15 (recommended)", pa, n_pa, base_pa, batch=64)
    for rho in RHOS:
        row(f"smooth:{rho:g} (first conv)", smooth_kernels(model, rho), n, base)
    return rows


def clean_accuracy(n: int, n_pa: int) -> list[str]:
    rows = []
    for arch, dataset in DATASETS.items():
        rows += accuracy_one(arch, dataset, n, n_pa)
    return rows


def transfer_table(n: int, eps: tuple[float, ...], steps: int, eot: int) -> tuple[str, float]:
    from bandguard.attacks import PGD
    from bandguard.bench import evaluate_robustness
    from bandguard.data import load_dataset

    model, trained = load_model("mnist_cnn", torch.device("cpu"))
    if not trained:
        raise SystemExit("no trained mnist_cnn in the test cache: run the MNIST tests first")
    x, y = load_dataset("mnist", "test", download=False).tensors(n)
    rec = RECOMMENDED["mnist"]
    specs = [f"lowpass:{rec['lowpass']:g}", "lowpass:6", f"post_average:{rec['post_average']:g},K=15,seed=0",
             "smooth:0.25", "smooth:1.0"]
    defenses = {s: build_defense(s, model) for s in specs}
    start = time.perf_counter()
    result = evaluate_robustness(model, x, y, {"pgd": PGD(eps=eps, steps=steps)}, defenses=defenses, eot=eot)
    return result.to_markdown(), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--devices", default="auto", help="cpu, cuda or auto (cpu plus cuda if present)")
    p.add_argument("--n", type=int, default=1000, help="test images for clean accuracy")
    p.add_argument("--n-pa", type=int, default=300, help="test images for post-averaging's accuracy")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--table", action="store_true", help="transfer vs adaptive table on MNIST")
    p.add_argument("--table-n", type=int, default=100)
    p.add_argument("--eps", default="0.1,0.2,0.3")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eot", type=int, default=2)
    p.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    devices = ["cpu", "cuda"] if args.devices == "auto" else args.devices.split(",")
    devices = [torch.device(d) for d in devices if d != "cuda" or torch.cuda.is_available()]

    parts = ["## Defense cost", "",
             "Measured by `benchmarks/defense_cost.py`; " + "; ".join(
                 f"{d.type}: {machine(d)}" for d in devices) + ". Times are medians of interleaved "
             "rounds on a shared machine: read the ratios.", ""]
    if not args.skip_speed:
        parts += [f"Forward wall time, batch {args.batch} (ms):", "",
                  "| device | model | batch | defense | bare | defended | ratio |",
                  "|---|---|---|---|---|---|---|"]
        for d in devices:
            parts += speed(d, args.batch, args.repeats)
            print("\n".join(parts), flush=True)
        parts.append("")
    if not args.skip_accuracy:
        parts += ["Clean accuracy (%) of the reference nets of the test fixtures, first N test images "
                  "(difference to the undefended net on the same images):", "",
                  "| data | defense | N | clean | difference |", "|---|---|---|---|---|"]
        parts += clean_accuracy(args.n, args.n_pa)
        parts.append("")
    text = "\n".join(parts)
    print(text, flush=True)
    if args.write and (not args.skip_speed or not args.skip_accuracy):
        write_section("Defense cost", text, ROOT / "RESULTS.md")
    if args.table:
        eps = tuple(float(e) for e in args.eps.split(","))
        md, seconds = transfer_table(args.table_n, eps, args.steps, args.eot)
        table = "\n".join([
            "## Defenses: transfer vs adaptive", "",
            f"MNIST, `mnist_cnn` of the test fixtures, first {args.table_n} test images, Linf PGD-{args.steps} "
            f"(step 2.5 eps / steps, random start), CPU: {machine(torch.device('cpu'))}; {seconds:.0f} s. "
            "Transfer: adversarial examples crafted on the undefended net, then classified by the defense "
            "(how Lin et al. and Wang et al. report). Adaptive: the same attack through the defense, with "
            f"EOT over {args.eot} gradient samples per step for randomized defenses. Accuracies in %.",
            "", md, ""])
        print(table, flush=True)
        if args.write:
            write_section("Defenses: transfer vs adaptive", table, ROOT / "RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
