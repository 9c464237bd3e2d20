"""APGD, APGD-T, Square and the standard ensemble against their torchattacks counterparts.

On the shared trained fixtures (``mnist_cnn`` one epoch, ``cifar_small`` short run; the test
cache under ``~/.cache/bandguard/test-models``, trained by ``tests/conftest.py`` when missing) and
the first ``--n`` test images (class-balanced), for each eps this measures robust accuracy and wall time of

- ``APGD(loss="ce"|"dlr")`` vs ``torchattacks.APGD`` and ``APGD(loss="dlr", target_classes=9)`` vs
  ``torchattacks.APGDT``, same steps, one restart;
- ``Square`` vs ``torchattacks.Square`` at the same query budget;
- ``standard_ensemble`` vs ``torchattacks.AutoAttack(version="standard")`` with the same APGD
  steps (torchattacks' AutoAttack runs APGD/APGD-T/FAB with 10 steps) and Square budget (ours
  replaces FAB-T by the Fourier-basis attack).

Writes one Markdown section (``--out``, default ``benchmarks/RESULTS.md``).

    python benchmarks/new_attacks_agreement.py --part apgd --n 1000 --steps 10
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
import torchattacks

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from _common import cpu_name, write_section  # noqa: E402
from conftest import _dataset, trained_model  # noqa: E402

from bandguard.attacks.apgd import APGD  # noqa: E402
from bandguard.attacks.ensemble import standard_ensemble  # noqa: E402
from bandguard.attacks.square import Square  # noqa: E402

EPSILONS = {"mnist": (0.05, 0.1, 0.15), "cifar10": (2 / 255, 4 / 255, 8 / 255)}
EPS_L2 = {"mnist": (1.0, 1.5, 2.0), "cifar10": (0.25, 0.5, 1.0)}


def load(name: str, n: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    model, _ = trained_model("mnist_cnn" if name == "mnist" else "cifar_small", name)
    x, y = _dataset(name, "test").tensors(n)  # class-balanced: folder data sets interleave classes
    return model.eval(), x, y


def robust(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def timed(attack: object, *args: object) -> tuple[object, float]:
    start = time.perf_counter()
    out = attack(*args)  # type: ignore[operator]
    return out, time.perf_counter() - start


def fmt_eps(name: str, eps: float, norm: str = "linf") -> str:
    return f"{eps * 255:.0f}/255" if name == "cifar10" and norm == "linf" else f"{eps:g}"


def part_apgd(names: list[str], n: int, steps: int, kinds: list[str], norm: str) -> list[str]:
    ta_norm = "Linf" if norm == "linf" else "L2"
    rows = ["| data | eps | attack | ours robust acc | torchattacks | diff (pt) | ours s | torchattacks s |",
            "|---|---|---|---|---|---|---|---|"]
    for name in names:
        model, x, y = load(name, n)
        for eps in (EPSILONS if norm == "linf" else EPS_L2)[name]:
            for kind in kinds:
                if kind == "apgd-t":
                    ours, t1 = timed(APGD(eps=eps, norm=norm, steps=steps, loss="dlr", target_classes=9), model, x, y)
                    ref, t2 = timed(torchattacks.APGDT(model, norm=ta_norm, eps=eps, steps=steps, n_classes=10, seed=0),
                                    x, y)
                    label = "APGD-T (DLR, 9 targets)"
                else:
                    ours, t1 = timed(APGD(eps=eps, norm=norm, steps=steps, loss=kind), model, x, y)
                    ref, t2 = timed(torchattacks.APGD(model, norm=ta_norm, eps=eps, steps=steps, loss=kind, seed=0),
                                    x, y)
                    label = f"APGD-{kind.upper()}"
                a, b = ours[0].robust_accuracy, robust(model, ref, y)
                rows.append(f"| {name} | {fmt_eps(name, eps, norm)} | {label} | {100 * a:.1f} | {100 * b:.1f} | "
                            f"{100 * (a - b):+.1f} | {t1:.1f} | {t2:.1f} |")
                print(rows[-1], flush=True)
    return rows


def part_square(names: list[str], n: int, queries: int, norms: list[str], seeds: int, ref_seeds: int) -> list[str]:
    """Square against torchattacks' Square: ours with seeds ``0 .. seeds - 1``, theirs ``0 .. ref_seeds - 1``.

    torchattacks' port (like AutoAttack's) draws one window and one set of signs per iteration for
    the whole batch, so its robust accuracy moves with the seed as one block (sd about 2 points on
    1,000 MNIST images); ours draws them per image (sd about 0.5). With several seeds the table
    gives each side's mean and range.
    """
    rows = ["| data | norm | eps | ours robust acc | torchattacks | diff of means (pt) | ours s | torchattacks s |",
            "|---|---|---|---|---|---|---|---|"]

    def cell(accs: list[float]) -> str:
        mean = 100 * sum(accs) / len(accs)
        return f"{mean:.1f}" if len(accs) == 1 else f"{mean:.1f} ({100 * min(accs):.1f}-{100 * max(accs):.1f})"

    for name in names:
        model, x, y = load(name, n)
        for norm in norms:
            for eps in (EPSILONS if norm == "linf" else EPS_L2)[name]:
                ours_acc, ref_acc, t1, t2 = [], [], 0.0, 0.0
                for seed in range(max(seeds, ref_seeds)):
                    if seed < seeds:
                        ours, t = timed(Square(eps=eps, norm=norm, queries=queries + 1, seed=seed), model, x, y)
                        ours_acc.append(ours[0].robust_accuracy)
                        t1 += t / seeds
                    if seed < ref_seeds:
                        ta = torchattacks.Square(model, eps=eps, norm="Linf" if norm == "linf" else "L2",
                                                 n_queries=queries, seed=seed)
                        ref, t = timed(ta, x, y)
                        ref_acc.append(robust(model, ref, y))
                        t2 += t / ref_seeds
                diff = 100 * (sum(ours_acc) / seeds - sum(ref_acc) / ref_seeds)
                rows.append(f"| {name} | {norm} | {fmt_eps(name, eps, norm)} | {cell(ours_acc)} | {cell(ref_acc)} | "
                            f"{diff:+.1f} | {t1:.1f} | {t2:.1f} |")
                print(rows[-1], flush=True)
    return rows


def part_ensemble(names: list[str], n: int, steps: int, queries: int) -> list[str]:
    """The ensemble against AutoAttack, and the share of AutoAttack's time no equal-budget ensemble can cut.

    Both cascades end with Square at the same budget on the samples the cheaper attacks left
    robust, and a Square query costs one forward in both implementations. ``floor`` times
    torchattacks' own ``Square`` on the samples our first three members left robust: AutoAttack
    spends about that much in its last stage, so ``floor / AutoAttack s`` bounds from below the time
    ratio any ensemble with this Square budget and per-query cost can reach.
    """
    rows = ["| data | eps | ours robust acc | AutoAttack | diff (pt) | ours s | AutoAttack s | time ratio | "
            "samples reaching Square | floor s | floor / AutoAttack |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        model, x, y = load(name, n)
        for eps in EPSILONS[name]:
            ensemble = standard_ensemble(eps, steps=steps, square_queries=queries + 1)
            ours, t1 = timed(ensemble, model, x, y)
            aa = torchattacks.AutoAttack(model, eps=eps, version="standard", n_classes=10, seed=0)
            for attack in aa._autoattack.attacks:  # the same budgets as ours
                if hasattr(attack, "n_queries"):
                    attack.n_queries = queries
                elif hasattr(attack, "steps"):
                    attack.steps = steps
            ref, t2 = timed(aa, x, y)
            before_square = dataclasses.replace(ensemble, attacks=ensemble.attacks[:-1])(model, x, y)[0]
            left = before_square.robust
            square = torchattacks.Square(model, eps=eps, norm="Linf", n_queries=queries, seed=0)
            _, floor = timed(square, x[left], y[left])
            a, b = ours[0].robust_accuracy, robust(model, ref, y)
            rows.append(f"| {name} | {fmt_eps(name, eps)} | {100 * a:.1f} | {100 * b:.1f} | {100 * (a - b):+.1f} | "
                        f"{t1:.1f} | {t2:.1f} | {t1 / t2:.2f} | {int(left.sum())} | {floor:.1f} | {floor / t2:.2f} |")
            print(rows[-1], flush=True)
    return rows


def part_band(names: list[str], n: int, steps: int) -> list[str]:
    """A low-pass defense judged by full-band APGD-CE and by APGD-CE confined to its pass band."""
    from torch import nn

    from bandguard.attacks.band import Band
    from bandguard.defenses.lowpass import LowPass

    setups = {"mnist": (6.0, (0.1, 0.2)), "cifar10": (8.0, (4 / 255, 8 / 255))}
    rows = ["| data | defense | eps | clean acc | full-band APGD-CE | in-band APGD-CE (slack 0.02) | "
            "in-band, exact (slack 0) |", "|---|---|---|---|---|---|---|"]
    for name in names:
        model, x, y = load(name, n)
        radius, epsilons = setups[name]
        defended = nn.Sequential(LowPass(radius), model).eval()
        for eps in epsilons:
            full = APGD(eps=eps, steps=steps)(defended, x, y)
            inband = APGD(eps=eps, steps=steps, band=Band(high=radius))(defended, x, y)
            exact = APGD(eps=eps, steps=steps, band=Band(high=radius, slack=0.0))(defended, x, y)
            rows.append(f"| {name} | LowPass({radius:g}) | {fmt_eps(name, eps)} | {100 * full.clean_accuracy:.1f} | "
                        f"{100 * full[0].robust_accuracy:.1f} | {100 * inband[0].robust_accuracy:.1f} | "
                        f"{100 * exact[0].robust_accuracy:.1f} |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["apgd", "square", "ensemble", "band"], required=True)
    parser.add_argument("--data", nargs="+", default=["mnist", "cifar10"])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--norm", choices=["linf", "l2"], default="linf", help="threat model (--part apgd)")
    parser.add_argument("--norms", nargs="+", choices=["linf", "l2"], default=["linf", "l2"],
                        help="threat models (--part square)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per cell, mean and range reported (--part square)")
    parser.add_argument("--ref-seeds", type=int, default=None,
                        help="seeds for torchattacks' Square (default: --seeds; --part square)")
    parser.add_argument("--kinds", nargs="+", default=["ce", "dlr", "apgd-t"], help="APGD losses (--part apgd)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.part == "apgd":
        rows = part_apgd(args.data, args.n, args.steps, args.kinds, args.norm)
        title = (f"APGD agreement with torchattacks ({args.norm}, {args.n} images, {args.steps} steps, "
                 f"{' '.join(args.kinds)})")
    elif args.part == "square":
        ref_seeds = args.ref_seeds or args.seeds
        rows = part_square(args.data, args.n, args.queries, args.norms, args.seeds, ref_seeds)
        title = (f"Square agreement with torchattacks ({' '.join(args.norms)}, {args.n} images, "
                 f"{args.queries} queries, {args.seeds} / {ref_seeds} seed(s))")
    elif args.part == "band":
        rows = part_band(args.data, args.n, args.steps)
        title = f"Low-pass defense: full-band vs in-band APGD ({args.n} images, {args.steps} steps)"
    else:
        rows = part_ensemble(args.data, args.n, args.steps, args.queries)
        title = (f"Standard ensemble vs AutoAttack ({args.n} images, APGD {args.steps} steps, "
                 f"Square {args.queries} queries)")
    options = {"apgd": f"--steps {args.steps} --kinds {' '.join(args.kinds)} --norm {args.norm}",
               "square": f"--queries {args.queries} --norms {' '.join(args.norms)} --seeds {args.seeds} "
                         f"--ref-seeds {args.ref_seeds or args.seeds}",
               "band": f"--steps {args.steps}",
               "ensemble": f"--steps {args.steps} --queries {args.queries}"}[args.part]
    text = (f"## {title}\n\nMachine: {cpu_name()}, {args.threads} thread(s), CPU, torch {torch.__version__}, "
            f"torchattacks {torchattacks.__version__}. Command: `python benchmarks/new_attacks_agreement.py "
            f"--part {args.part} --data {' '.join(args.data)} --n {args.n} {options} --threads {args.threads}`."
            + (" Times are means per seed." if args.part == "square" else "") + "\n\n"
            + "\n".join(rows) + "\n")
    write_section(title, text, args.out)
    print(text)


if __name__ == "__main__":
    main()
