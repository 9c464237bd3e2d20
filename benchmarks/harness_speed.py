"""Harness speed: a PGD + Fourier grid over 3 eps, the harness against separate calls.

On the MNIST CNN (bare) and ``-n`` test images this times

- the harness (:func:`bandguard.bench.run`, no sanity checks, fresh store): cascade over attacks,
  each attack run once for all its eps on still-robust samples, per-sample worst case;
- the same grid as separate calls, as a user would write it with the peers: torchattacks
  ``PGDL2`` once per eps on every image, and bandguard's Fourier attack (no peer has one) once
  per eps on every image, worst case per sample from the predictions;
- the attacks alone: the same cascade as the harness through direct bandguard calls, so
  ``harness / attacks - 1`` is the harness's own overhead (data, seeding, store, reports).

Prints a Markdown table; ``--write`` puts it in ``benchmarks/RESULTS.md``.

    python benchmarks/harness_speed.py -n 200 --write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, write_section

from bandguard.attacks import PGD, FourierAttack
from bandguard.bench import parse_spec, run
from bandguard.bench.harness import load_samples
from bandguard.bench.zoo import reference_model

EPS = (1.0, 2.0, 3.0)
STEPS = 10
QUERIES = 64


def _spec(out: Path, n: int) -> object:
    return parse_spec({
        "dataset": "mnist", "n": n, "batch_size": 256, "device": "cpu", "seed": 0, "out": str(out),
        "sanity": False, "models": [{"name": "cnn", "reference": "mnist_cnn"}],
        "attacks": [{"attack": "pgd", "norm": "l2", "eps": list(EPS), "steps": STEPS},
                    {"attack": "fourier", "eps": list(EPS), "max_queries": QUERIES}],
    })


def _separate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[float]]:
    import torchattacks

    start = time.perf_counter()
    robust = []
    for eps in EPS:
        pgd = torchattacks.PGDL2(model, eps=eps, alpha=2.5 * eps / STEPS, steps=STEPS, random_start=True)
        x_adv = pgd(x, y)
        with torch.no_grad():
            ok = model(x_adv).argmax(1) == y
        res = FourierAttack(eps=eps, max_queries=QUERIES)(model, x, y)
        robust.append(float((ok & ~res.success).float().mean()))
    return time.perf_counter() - start, robust


def _attacks_alone(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        alive = model(x).argmax(1) == y
    for attack in (PGD(eps=EPS, norm="l2", steps=STEPS), FourierAttack(eps=EPS, max_queries=QUERIES)):
        idx = alive.nonzero().squeeze(1)
        results = attack(model, x[idx], y[idx])
        alive[idx] = ~results[0].success
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, _ = reference_model("mnist_cnn", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        spec = _spec(Path(tmp) / "out", args.n)
        x, y, _ = load_samples(spec)
        start = time.perf_counter()
        result = run(spec)
        harness = time.perf_counter() - start
    alone = _attacks_alone(model, x, y)
    separate, sep_robust = _separate(model, x, y)
    worst = [result.row(model="cnn", defense="none", mode="white-box", attack="worst case", eps=e).robust_accuracy
             for e in EPS]
    text = "\n".join([
        "## Harness speed", "",
        f"MNIST CNN, {args.n} test images, PGD-{STEPS} (L2) + Fourier ({QUERIES} queries) at L2 eps "
        f"{', '.join(map(str, EPS))}; CPU: {cpu_name()}, {torch.get_num_threads()} threads "
        "(shared machine: absolute times are noisy, ratios less so).", "",
        "| run | seconds | worst-case robust accuracy per eps |", "|---|---|---|",
        f"| harness (cascade, store, reports) | {harness:.1f} | {', '.join(f'{a:.1%}' for a in worst)} |",
        f"| separate calls (torchattacks PGDL2 + Fourier per eps) | {separate:.1f} | "
        f"{', '.join(f'{a:.1%}' for a in sep_robust)} |",
        f"| the harness's attacks called directly | {alone:.1f} | - |", "",
        f"harness / separate = {harness / separate:.2f}; harness overhead over its attacks = "
        f"{100 * (harness / alone - 1):.1f} %", "",
    ])
    print(text)
    if args.write:
        write_section("Harness speed", text, Path(__file__).with_name("RESULTS.md"))


if __name__ == "__main__":
    main()
