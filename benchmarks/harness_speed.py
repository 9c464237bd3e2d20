"""Harness speed: a PGD + Fourier grid over 3 eps, the harness against separate calls.

On a reference net (bare) and ``-n`` test images this times

The grid is PGD, the Fourier attack and APGD-DLR (the scale-invariant attack the harness appends by
default to a cascade of cross-entropy attacks; 25 steps, one restart), in every run:

- the harness (:func:`bandguard.bench.run`, no sanity checks, fresh store): cascade over attacks,
  each attack run once for all its eps on still-robust samples, PGD stopping per sample at its
  first adversarial iterate (``early_stop``), per-sample worst case, SQLite store and reports;
- the same grid as separate calls, as a user would write it with the peers: torchattacks
  ``PGDL2`` and ``APGD(loss="dlr")`` once per eps on every image, and bandguard's Fourier attack
  (no peer has one) once per eps on every image, worst case per sample from the predictions;
- the attacks alone: the same cascade as the harness through direct bandguard calls, so
  ``harness / attacks - 1`` is the harness's own overhead (data, seeding, store, reports).

PGD starts at the clean image in all three (no random start), so the runs attack identically and
their robust accuracies can be compared exactly (the harness counts a sample broken if any PGD
iterate was adversarial, torchattacks only its last: the harness can only be lower). The three
runs are interleaved ``--repeats`` times and each time is the median over repeats, so slow drifts
in the machine's load hit all three alike. Also printed: model calls (forward + gradient) per
image, which do not depend on the machine.

Prints a Markdown table; ``--write`` puts it in ``benchmarks/RESULTS.md`` (one section per data set).

    python benchmarks/harness_speed.py --data mnist -n 200 --write
    python benchmarks/harness_speed.py --data cifar10 -n 200 --write
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, write_section

from bandguard.attacks import APGD, PGD, FourierAttack
from bandguard.bench import parse_spec, run
from bandguard.bench.loading import load_samples
from bandguard.bench.zoo import reference_model

# Per data set: the reference net and the L2 grid (eps, PGD steps, Fourier queries).
GRIDS = {
    "mnist": ("mnist_cnn", (1.0, 2.0, 3.0), 10, 64),
    "cifar10": ("cifar_small", (0.25, 0.5, 1.0), 20, 64),
}


DLR_STEPS = 25  # the harness's appended APGD-DLR: max(the group's steps, 25)


def _spec(out: Path, data: str, n: int) -> object:
    net, eps, steps, queries = GRIDS[data]
    return parse_spec({
        "dataset": data, "n": n, "batch_size": 256, "device": "cpu", "seed": 0, "out": str(out),
        "sanity": False, "models": [{"name": "net", "reference": net}],
        "attacks": [{"attack": "pgd", "norm": "l2", "eps": list(eps), "steps": steps, "random_start": False,
                     "early_stop": True},
                    {"attack": "fourier", "eps": list(eps), "max_queries": queries}],
    })


def _separate(data: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], int]:
    """Robust accuracy per eps and model calls of the grid as separate peer calls."""
    import torchattacks

    _, epsilons, steps, queries = GRIDS[data]
    robust, calls = [], 0
    for eps in epsilons:
        pgd = torchattacks.PGDL2(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=False)
        x_adv = pgd(x, y)
        with torch.no_grad():
            ok = model(x_adv).argmax(1) == y
        res = FourierAttack(eps=eps, max_queries=queries)(model, x, y)[0]
        robust.append(float((ok & ~res.success).float().mean()))
        apgd = torchattacks.APGD(model, norm="L2", eps=eps, steps=DLR_STEPS, n_restarts=1, loss="dlr", seed=0)
        with torch.no_grad():
            ok &= model(apgd(x, y)).argmax(1) == y
        robust[-1] = float((ok & ~res.success).float().mean())
        calls += 2 * steps * len(y) + len(y) + int(res.forwards.sum()) + 2 * DLR_STEPS * len(y)
    return robust, calls


def _attacks_alone(data: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """The harness's cascade through direct bandguard calls (nothing stored, nothing drawn)."""
    _, epsilons, steps, queries = GRIDS[data]
    with torch.no_grad():
        alive = (model(x).argmax(1) == y).expand(len(epsilons), -1).clone()  # [E, N]
    for attack in (PGD(eps=epsilons[0], norm="l2", steps=steps, random_start=False, early_stop=True),
                   FourierAttack(eps=epsilons[0], max_queries=queries),
                   APGD(eps=epsilons[0], norm="l2", steps=DLR_STEPS, loss="dlr", seed=0)):
        for i, eps in enumerate(epsilons):
            if i:
                alive[i] &= alive[i - 1]  # broken at a smaller eps: broken here too
            idx = alive[i].nonzero().squeeze(1)
            if idx.numel():
                result = dataclasses.replace(attack, eps=eps)(model, x[idx], y[idx])[0]
                alive[i, idx] = ~result.success


def _timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(GRIDS), default="mnist")
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for all three runs")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net, epsilons, steps, queries = GRIDS[args.data]
    model, _ = reference_model(net, device="cpu")
    times: dict[str, list[float]] = {"harness": [], "separate": [], "alone": []}
    with tempfile.TemporaryDirectory() as tmp:
        x, y, _ = load_samples(_spec(Path(tmp) / "probe", args.data, args.n))
        for r in range(args.repeats):
            t, result = _timed(run, _spec(Path(tmp) / f"out{r}", args.data, args.n))
            times["harness"].append(t)
            t, (sep_robust, sep_calls) = _timed(_separate, args.data, model, x, y)
            times["separate"].append(t)
            t, _ = _timed(_attacks_alone, args.data, model, x, y)
            times["alone"].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    worst = [result.row(model="net", defense="none", mode="white-box", attack="worst case", eps=e).robust_accuracy
             for e in epsilons]
    harness_calls = sum(int(c.forwards.sum() + c.gradients.sum()) for c in result.cells)
    title = f"Harness speed ({args.data})"
    text = "\n".join([
        f"## {title}", "",
        f"`{net}`, {args.n} test images, PGD-{steps} (L2, no random start) + Fourier ({queries} queries) "
        f"+ APGD-DLR-{DLR_STEPS} (appended by the harness by default) at "
        f"L2 eps {', '.join(map(str, epsilons))}; CPU: {cpu_name()}, {torch.get_num_threads()} threads; "
        f"median of {args.repeats} interleaved repeats (shared machine: absolute times are noisy, ratios "
        f"less so); load average {os.getloadavg()[0]:.2f} at the end. Command: "
        f"`python benchmarks/harness_speed.py --data {args.data} -n {args.n} "
        f"--repeats {args.repeats} --threads {args.threads} --write`.", "",
        "| run | seconds (median) | all repeats | model calls / image | worst-case robust accuracy per eps |",
        "|---|---|---|---|---|",
        f"| harness (cascade, early stop, store, reports) | {med['harness']:.1f} | "
        f"{', '.join(f'{t:.1f}' for t in times['harness'])} | {harness_calls / args.n:.0f} | "
        f"{', '.join(f'{a:.1%}' for a in worst)} |",
        f"| separate calls (torchattacks PGDL2 + APGD-DLR + Fourier per eps) | {med['separate']:.1f} | "
        f"{', '.join(f'{t:.1f}' for t in times['separate'])} | {sep_calls / args.n:.0f} | "
        f"{', '.join(f'{a:.1%}' for a in sep_robust)} |",
        f"| the harness's attacks called directly | {med['alone']:.1f} | "
        f"{', '.join(f'{t:.1f}' for t in times['alone'])} | - | - |", "",
        f"harness / separate = {med['harness'] / med['separate']:.2f} (goal <= 0.5); harness overhead over "
        f"its attacks = {100 * (med['harness'] / med['alone'] - 1):.1f} % (goal <= 5 %)", "",
    ])
    print(text)
    if args.write:
        write_section(title, text, Path(__file__).with_name("RESULTS.md"))


if __name__ == "__main__":
    main()
