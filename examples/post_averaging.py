"""Post-averaging under transfer and adaptive attacks (Lin et al., arXiv 1905.12797).

Lin et al. ("Bandlimiting Neural Networks Against Adversarial Attacks") classify an image by the
mean softmax of the model over K random directions, both signs, at radii R/3, 2R/3 and R around it
(1 + 3 * 2K forwards: 91 for K = 15). They report that the averaged model keeps its clean accuracy
and resists adversarial examples crafted on the undefended model (a transfer evaluation). An
adaptive attack, which differentiates through the averaging and averages its gradients over the
random draws (EOT, Athalye et al. 1802.00420), is the honest test of that robustness.

The grid is ``examples/specs/post_averaging.toml`` run by ``bandguard.bench.run``: the natural
``cifar_small`` net, bare and post-averaged (``post_average:R,K=15``) at several outer radii R in
[0, 1] pixel L2 units (Lin et al.'s CIFAR-10 R = 6 in normalized units is about 1.35 here), under
PGD then APGD (Linf, eps 2/255 and 8/255) as one cascade. *Transfer*: PGD/APGD examples crafted on
the bare model, classified by the averaged one; *adaptive*: EOT-PGD then EOT-APGD through the
averaged model (its per-sample worst case). The cost of the defense is counted in forwards of the
underlying net.

The verdicts read Lin et al.'s radius (R = 1.35) at both budgets: an Linf 2/255 perturbation has L2
norm at most 0.43, inside the averaging radii (0.45 ... 1.35), the scale the defense is built for;
at 8/255 (L2 up to 1.74) it reaches past them.

Run (quick: 128 test images, radii 1.35 and 4.05, 5-step PGD and 10-step APGD with 1 EOT sample,
model trained on 10,000 images; full: 1,000 images, four radii, 20-step PGD and 50-step APGD with
8 EOT samples, model trained on the whole training split, for a GPU):

    PYTHONPATH=. BANDGUARD_DATA=/path/to/data python examples/post_averaging.py --quick
    PYTHONPATH=. python examples/post_averaging.py
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from _common import QUICK_TRAIN_IMAGES, Summary, setup
from matplotlib.figure import Figure

from bandguard import bench
from bandguard.defenses.spec import parse_spec as parse_defense
from bandguard.spectral.plots import save_figure

SPEC = Path(__file__).resolve().parent / "specs" / "post_averaging.toml"
PAPER_RADIUS = 1.35
"""Lin et al.'s CIFAR-10 radius (R = 6 in normalized units) in [0, 1] pixel L2 units."""
QUICK = {"n": 128, "radii": (1.35, 4.05), "steps": {"pgd": 5, "apgd": 10}, "eot": 1}
"""The quick scale: every post-averaged forward costs 91 forwards of the net, so few images and steps."""

TITLE = "Post-averaging under transfer and adaptive attacks (Lin et al. 1905.12797)"


def quick_spec(spec: bench.BenchSpec) -> bench.BenchSpec:
    """The spec at laptop scale (:data:`QUICK`); the gradient-masking probes are left to full runs
    (their eps-1 PGD through 91 forwards per input would cost more than the whole table)."""
    models = tuple(dataclasses.replace(m, limit=QUICK_TRAIN_IMAGES) for m in spec.models)
    defenses = ("none", *(d for d in spec.defenses[1:] if _radius(d) in QUICK["radii"]))
    attacks = tuple(
        dataclasses.replace(a, settings=tuple(sorted({**a.options, "steps": QUICK["steps"][a.attack]}.items())))
        for a in spec.attacks)
    return dataclasses.replace(spec, n=QUICK["n"], models=models, defenses=defenses, attacks=attacks,
                               eot=QUICK["eot"], sanity=False)


def _radius(defense: str) -> float:
    return float(parse_defense(defense).args[0])


def paired_gain(better: bench.Cell, base: bench.Cell, e: int) -> tuple[float, float]:
    """Accuracy of ``better`` minus ``base`` at eps index ``e`` (``0`` for a clean cell) over the
    same samples, and the paired standard error ``sqrt(discordant pairs) / n`` of that difference."""
    a, b = better.robust[min(e, len(better.robust) - 1)], base.robust[min(e, len(base.robust) - 1)]
    n = a.numel()
    return float(a.float().mean() - b.float().mean()), math.sqrt(int((a != b).sum())) / n


def main() -> None:
    settings = setup(__file__, __doc__)
    spec = bench.load_spec(SPEC)
    spec = dataclasses.replace(spec, out=str(settings.out / "bench"), device=str(settings.device),
                               seed=settings.seed)
    if settings.quick:
        spec = quick_spec(spec)
    # Started before the run, so its recorded time covers training and attacks.
    summary = Summary(settings, TITLE, "")
    result = bench.run(spec)
    model = spec.models[0].name
    eps_list = spec.attacks[0].eps
    steps = {a.attack: a.options.get("steps") for a in spec.attacks}

    def cell(defense: str, mode: str, attack: str = "") -> bench.Cell:
        for c in result.cells:
            if (c.model, c.defense, c.mode) == (model, defense, mode) and (mode == "clean" or c.attack == attack):
                return c
        raise LookupError(f"no cell {model}/{defense}/{mode}/{attack}")

    def last_adaptive(defense: str) -> bench.Cell:
        """The last adaptive cell of the cascade: its per-sample outcome is the worst case."""
        return [c for c in result.cells if (c.model, c.defense, c.mode) == (model, defense, "adaptive")][-1]

    summary.intro = (
        "The natural CIFAR-10 net, bare and post-averaged over K = 15 random directions (91 forwards per "
        "input) at outer radius R (L2, [0, 1] pixels; Lin et al.'s CIFAR R is about 1.35), under Linf PGD then "
        "APGD at eps 2/255 and 8/255. *Transfer*: crafted on the bare model (Lin et al.'s evaluation); "
        f"*adaptive*: through the averaged model with {spec.eot} EOT sample(s) per step. Scale: {spec.n} test "
        f"images, PGD {steps.get('pgd')} steps, APGD {steps.get('apgd')} steps, model trained on "
        f"{'a 10,000-image subset' if settings.quick else 'the whole training split'}. The verdicts read "
        "R = 1.35 at both budgets and call a difference real when it exceeds twice its paired standard error "
        "(sqrt(discordant samples) / n).")

    def etag(eps: float) -> str:
        return f"e{round(eps * 255)}"

    rows, cost_rows = [], []
    radii = {}
    curves: dict[str, list[list[float]]] = {"clean": [], "transfer PGD": [], "adaptive worst case": []}
    for d in spec.defenses:
        r = 0.0 if d == "none" else _radius(d)
        radii[d] = r
        tag = "bare" if d == "none" else f"R{round(100 * r):03d}"
        attacked = "white-box" if d == "none" else "adaptive"
        clean = summary.number(f"clean_{tag}", cell(d, "clean").robust_accuracy[0])
        row: list[str | float] = ["none" if d == "none" else f"{r:g}", clean]
        cost: list[str | float] = [f"{r:g}", cell(d, "clean").forward_cost]
        curves["clean"].append([clean] * len(eps_list))
        curves["transfer PGD"].append([])
        curves["adaptive worst case"].append([])
        for e, eps in enumerate(eps_list):
            tr = cell(d, "white-box" if d == "none" else "transfer", "pgd").robust_accuracy[e]
            ad_pgd = cell(d, attacked, "pgd").robust_accuracy[e]
            worst = result.row(model=model, defense=d, mode=attacked, attack="worst case", eps=eps)
            row += [tr, ad_pgd, worst.robust_accuracy]
            curves["transfer PGD"][-1].append(tr)
            curves["adaptive worst case"][-1].append(worst.robust_accuracy)
            summary.number(f"transfer_{tag}_{etag(eps)}", tr)
            summary.number(f"adaptive_pgd_{tag}_{etag(eps)}", ad_pgd)
            summary.number(f"adaptive_worst_{tag}_{etag(eps)}", worst.robust_accuracy)
            # Forwards of the underlying net per image: model calls x the defense's forward cost.
            cost.append(summary.number(f"forwards_attack_{tag}_{etag(eps)}",
                                       worst.forwards_per_sample * worst.forward_cost))
        summary.number(f"forwards_clean_{tag}", cell(d, "clean").forward_cost)
        rows.append(row)
        cost_rows.append(cost)
    header = ["R", "clean"] + [f"{eps * 255:.0f}/255 {what}" for eps in eps_list
                               for what in ("transfer PGD", "adaptive EOT-PGD", "adaptive worst (PGD+APGD)")]
    summary.table("Accuracy of the bare (R = none; its attacks are white-box) and post-averaged net, Linf",
                  header, rows)
    summary.table("Cost in forwards of the net per image: one classification, and the (adaptive) PGD + APGD "
                  "attacks per budget (mean over the images; 0: the bare net)",
                  ["R", "classify"] + [f"attacks {eps * 255:.0f}/255" for eps in eps_list], cost_rows,
                  fmt="{:,.0f}")
    _plot(list(radii.values()), curves, eps_list, settings.out / "accuracy_vs_radius.png")
    summary.figure(settings.out / "accuracy_vs_radius.png",
                   "Clean, transfer and adaptive (worst case) accuracy against the averaging radius R (0: bare)")

    paper = min(spec.defenses[1:], key=lambda d: abs(radii[d] - PAPER_RADIUS))
    tag = f"R{round(100 * radii[paper]):03d}"
    summary.number("paper_radius", radii[paper])
    drop, se_drop = paired_gain(cell("none", "clean"), cell(paper, "clean"), 0)
    keeps = drop <= max(0.02, 2 * se_drop)
    summary.finding(
        "Post-averaging keeps clean accuracy",
        "Lin et al. 1905.12797 (CIFAR-10, K = 15, R = 6 normalized)",
        f"clean {{clean_{tag}:.1%}} averaged (R = {{paper_radius:g}}, {{forwards_clean_{tag}:.0f}} forwards per "
        "input) vs {clean_bare:.1%} bare",
        keeps,
        "random neighbours this close to the image are classified like the image itself" if keeps else
        "the averaging moves the prediction of more images than noise explains")
    for e, eps in enumerate(eps_list):
        t, budget = f"{tag}_{etag(eps)}", f"{eps * 255:.0f}/255"
        gain, se_gain = paired_gain(cell(paper, "transfer", "pgd"), cell("none", "white-box", "pgd"), e)
        robust = gain > 2 * se_gain and summary.numbers[f"transfer_{t}"] >= 0.5 * summary.numbers[f"clean_{tag}"]
        summary.finding(
            f"Post-averaging resists PGD examples crafted on the undefended model (transfer, {budget})",
            "Lin et al. 1905.12797 (their attacks ran on the undefended model)",
            f"{budget}, R = {{paper_radius:g}}: {{transfer_{t}:.1%}} vs {{transfer_bare_{etag(eps)}:.1%}} on the "
            f"bare net, clean {{clean_{tag}:.1%}} (agree: gain > 2 SE and at least half the clean accuracy)",
            robust,
            "part of the bare model's examples lie just past its decision boundary and the averaging pulls them back"
            if robust else "most of the bare model's examples stay adversarial after averaging, so even the "
            "transfer evaluation shows little robustness")
        lost, se_lost = paired_gain(cell(paper, "transfer", "pgd"), last_adaptive(paper), e)
        lower = lost > 2 * se_lost
        summary.finding(
            f"An adaptive EOT attack through the averaging gets below the transfer accuracy ({budget})",
            "Athalye et al. 1802.00420 (EOT), applied to Lin et al. 1905.12797",
            f"{budget}, R = {{paper_radius:g}}: adaptive worst case {{adaptive_worst_{t}:.1%}} (EOT-PGD alone "
            f"{{adaptive_pgd_{t}:.1%}}) vs transfer {{transfer_{t}:.1%}}, at {{forwards_attack_{t}:,.0f}} forwards "
            "of the net per image",
            lower,
            "the average over 91 neighbours is a smooth function whose gradient the attack can follow" if lower
            else "the adaptive attack does not get below the transfer accuracy by more than twice the paired "
            "standard error at this scale")
    summary.write()


def _plot(radii: list[float], curves: dict[str, list[list[float]]], eps_list: tuple[float, ...],
          path: Path) -> None:
    """Accuracy against R per eps; ``curves[label][radius index][eps index]``."""
    fig = Figure(figsize=(4.2 * len(eps_list), 3.2))
    styles = {"clean": "k-", "transfer PGD": "C0--", "adaptive worst case": "C3-"}
    for e, eps in enumerate(eps_list):
        ax = fig.add_subplot(1, len(eps_list), e + 1)
        for label, values in curves.items():
            ax.plot(radii, [100 * v[e] for v in values], styles[label], marker="o", label=label)
        ax.set_title(f"Linf eps {eps * 255:.0f}/255", fontsize=9)
        ax.set_xlabel("R (L2, [0, 1] pixels; 0: bare)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


if __name__ == "__main__":
    main()
