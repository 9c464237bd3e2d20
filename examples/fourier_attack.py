"""The black-box Fourier-basis attack on natural, Gaussian-augmented and adversarially trained CIFAR-10 nets.

Reproduces the observation of Yin et al., "A Fourier Perspective on Model Robustness in Computer
Vision" (arXiv 1906.08988, Sec. 4): adversarially trained models are most vulnerable to
low-frequency perturbations, and an attacker who sees only the predicted class finds them by
trying single Fourier basis images ``clip(x + s * eps * U_ij)`` (``s = +-1`` per channel, eps the
per-channel L2 norm, pixels in [0, 1]).

The attack is bandguard's ``"fourier"`` (``create_attack`` by registry name). It tries the 514
distinct frequencies of a 32 x 32 image until the model errs, in a random order drawn for each
image, so the first frequency that breaks an image is a fair draw from those that break it (one
order shared by all images would make its first few frequencies break most of them). Per model
and eps the script records the success rate on the images the model classifies correctly, the
queries spent on each success (clean forward included), and where in frequency the successful
basis images lie: each success's frequency is read off its perturbation's amplitude spectrum (the
peak), and the share of low frequencies (distance from the centre < H/4) among them is compared
with that band's share of all frequencies (the share a frequency-blind model would show).

The three nets are the zoo's ``cifar_fast`` (natural), ``cifar_fast_gaussian`` (N(0, 0.1^2) noise)
and ``cifar_fast_adversarial`` (PGD-2 at 8/255): one architecture and schedule, trained on the full
training set (weights in ``examples/models/``), attacked on the same test images. The attack only
reads predictions, so the forwards run under bf16 autocast (``bandguard.BF16Forward``) where the
device computes bf16 natively. Intervals: 95 % percentile bootstrap over the images (ratios of
sums over the resampled images: correct, broken, queries, low-frequency successes).

    BANDGUARD_DATA=/path/to/data python examples/fourier_attack.py --quick   # 2 CPU cores, 500 images
    BANDGUARD_DATA=/path/to/data python examples/fourier_attack.py           # GPU, 1,000 images
"""

from __future__ import annotations

import dataclasses

import torch
from _common import FAMILY, Summary, reference, setup, test_images
from einops import reduce
from matplotlib.figure import Figure

from bandguard import BF16Forward, native_bf16
from bandguard.attacks import AttackResult, create_attack
from bandguard.bench.stats import Interval, bootstrap
from bandguard.fourier import amplitude_spectrum, distinct_frequencies, radial_distance
from bandguard.spectral.plots import save_figure

LABELS = ("natural", "gaussian", "adversarial")
TARGET = "adversarial"  # the model the findings are about
FINDING_EPS = 4.0  # the budget the verdicts read (Yin et al.'s heat-map eps on CIFAR-10)

# Criteria, written before the run (the verdicts below only read them).
CRITERION_LOW = (f"at eps {FINDING_EPS:g}, the 95 % bootstrap interval of (the adversarially trained model's "
                 "low-frequency share of successes - the low band's share of all frequencies tried) lies above 0")
CRITERION_SUCCESS = (f"at eps {FINDING_EPS:g}, the 95 % bootstrap interval of the success rate on the adversarially "
                     "trained model's correctly classified images lies above 0")
QUOTE_LOW = ("(paraphrase of Sec. 4; the body text could not be read here) adversarially trained models remain "
             "vulnerable to perturbations built from low-frequency Fourier basis vectors")
QUOTE_SUCCESS = ("(paraphrase of Sec. 4; the body text could not be read here) these low-frequency perturbations are "
                 "found by a simple black-box search over Fourier basis vectors")
SOURCE = "Yin et al. 1906.08988, Sec. 4"


def success_frequencies(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Distance from the centre of each perturbation's dominant frequency: ``[N]``.

    A successful example is ``clip(x + s * eps * U_ij)``: its perturbation's channel-summed
    amplitude spectrum peaks at ``(i, j)`` (and its mirror, at the same distance); clipping
    only adds a weaker spread of other frequencies.
    """
    amplitude = reduce(amplitude_spectrum(x_adv - x), "n c h w -> n (h w)", "sum")
    dist = radial_distance(*x.shape[-2:], device=x.device).flatten()
    return dist[amplitude.argmax(1)]


def attack_each(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int) -> AttackResult:
    """The ``"fourier"`` attack at ``eps`` with its own random frequency order for every image.

    One call shares one order among its images, so the first frequencies of that order would break
    most images alike; an order per image makes each image's breaking frequency a fair draw from
    the frequencies that break it. Results are joined into one :class:`AttackResult`.
    """
    parts = []
    for i in range(x.shape[0]):
        attack = create_attack("fourier", eps=eps, order="random", seed=seed * 1_000_003 + i, batch_size=64)
        parts.append(attack(model, x[i : i + 1], y[i : i + 1])[0])
    joined = {f.name: torch.cat([getattr(p, f.name) for p in parts])
              for f in dataclasses.fields(AttackResult) if isinstance(getattr(parts[0], f.name), torch.Tensor)}
    return dataclasses.replace(parts[0], **joined)


def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``sum(num) / sum(den)`` over the images of resampled ``[B, N]`` columns -> ``[B]`` (0 when none count)."""
    return num.sum(1) / den.sum(1).clamp(min=1)


@dataclasses.dataclass(frozen=True)
class AttackStats:
    """One model at one eps: the attack's success rate, queries per success and low-frequency share."""

    success: Interval  # broken / correctly classified
    queries: Interval  # mean forwards per broken image
    low_vs_chance: Interval  # low-frequency share of the broken images minus the band's share of all frequencies
    low_share: float
    correct: int
    broken: int
    median_queries: float
    distances: torch.Tensor  # [broken] distance of each breaking frequency


def measure(result: AttackResult, x: torch.Tensor, low_radius: float, chance: float) -> AttackStats:
    """Bootstrap intervals over all images (each image contributes its counts) for one attack run."""
    correct = (result.clean_pred == result.labels).cpu()
    broken = result.success.cpu() & correct
    dist = torch.zeros(len(correct))
    dist[broken] = success_frequencies(x[broken.to(x.device)], result.x_adv[broken.to(x.device)]).float().cpu()
    low = broken & (dist < low_radius)
    queries = torch.where(broken, result.forwards.cpu(), 0).double()
    c, b, lo = correct.double(), broken.double(), low.double()
    return AttackStats(
        success=bootstrap(ratio, b, c),
        queries=bootstrap(ratio, queries, b),
        low_vs_chance=bootstrap(lambda lw, bk: ratio(lw, bk) - chance, lo, b),
        low_share=float(ratio(lo[None], b[None])),
        correct=int(correct.sum()),
        broken=int(broken.sum()),
        median_queries=float(queries[broken].median()) if broken.any() else 0.0,
        distances=dist[broken],
    )


def main() -> None:
    settings = setup(__file__, __doc__)
    n = settings.pick(500, 1000)
    epsilons = settings.pick((2.0, FINDING_EPS), (1.0, 2.0, FINDING_EPS))
    summary = Summary(
        settings, "The Fourier-basis black-box attack on natural, Gaussian-augmented and adversarially "
        "trained CIFAR-10 nets",
        f"Yin et al. (arXiv 1906.08988) Fourier-basis attack (bandguard's 'fourier', a random frequency order "
        f"per image, all 514 distinct frequencies) at per-channel L2 eps {', '.join(f'{e:g}' for e in epsilons)} "
        f"against the zoo's {', '.join(FAMILY[k] for k in LABELS)} on the same {n} CIFAR-10 test images; success "
        "rates and queries are over the images each model classifies correctly. Low frequencies: distance from "
        "the centre < H/4 (frequency index). Forwards in bf16 autocast where the device computes bf16 natively. "
        "Intervals: 95 % percentile bootstrap over the images.",
    )
    x, y = test_images("cifar10", n, settings.seed)
    x, y = x.to(settings.device), y.to(settings.device)
    h, w = x.shape[-2:]
    low_radius = h / 4
    tried = distinct_frequencies(h, w)
    tried_dist = radial_distance(h, w)[tried[:, 0], tried[:, 1]]
    chance = summary.number("chance_low", (tried_dist < low_radius).float().mean())
    summary.number("n_images", n)
    bf16 = native_bf16(settings.device)
    summary.number("bf16_forwards", bf16)

    stats: dict[tuple[str, float], AttackStats] = {}
    rows = []
    for label in LABELS:
        model, meta = reference(FAMILY[label], settings)
        net = BF16Forward(model) if bf16 else model
        for eps in epsilons:
            s = stats[label, eps] = measure(attack_each(net, x, y, eps, settings.seed), x, low_radius, chance)
            k = f"{label}_eps{eps:g}"
            summary.number(f"success_{k}", s.success.estimate)
            summary.number(f"mean_queries_{k}", s.queries.estimate)
            summary.number(f"median_queries_{k}", s.median_queries)
            summary.number(f"low_share_{k}", s.low_share)
            summary.number(f"low_vs_chance_{k}", s.low_vs_chance.estimate)
            summary.number(f"n_broken_{k}", s.broken)
            rows.append([label, f"{eps:g}", f"{s.correct}", s.success.format(".1%"), s.queries.format(".0f"),
                         f"{s.median_queries:.0f}", f"{s.low_share:.1%}", s.low_vs_chance.format("+.1%")])
        correct = stats[label, epsilons[0]].correct
        summary.model(label, meta, **{"clean on these images": correct / n})

    summary.table("Fourier-basis attack per model and eps (95 % bootstrap intervals in brackets; queries include "
                  f"the clean forward; chance low share {chance:.1%})",
                  ["model", "eps", "correct images", "success rate", "mean queries", "median queries",
                   "low-frequency share of successes", "low share - chance"], rows)

    # Figure: where the breaking frequencies lie, one panel per model on one y scale.
    fig = Figure(figsize=(3.0 * len(LABELS), 3.2), layout="constrained")
    axes = fig.subplots(1, len(LABELS), sharey=True)
    bins = torch.arange(0, 24, 2.0).numpy()
    for ax, label in zip(axes, LABELS):
        s = stats[label, FINDING_EPS]
        ax.hist(s.distances.numpy(), bins=bins, color="tab:blue", label="breaking frequencies")
        # What a frequency-blind model would give: the frequencies' own distances, same total.
        scale = torch.full_like(tried_dist, s.broken / len(tried_dist))
        ax.hist(tried_dist.numpy(), bins=bins, weights=scale.numpy(), histtype="step", color="black",
                label="all frequencies (scaled)")
        ax.axvline(low_radius, color="tab:red", lw=1, ls="--", label=f"low band edge ({low_radius:g})")
        ax.set_title(f"{label} ({FAMILY[label]})\n{s.broken} of {s.correct} broken, eps {FINDING_EPS:g}, n = {n}",
                     fontsize=8)
        ax.set_xlabel("distance from the centre\n(frequency index)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("broken images", fontsize=8)
    axes[0].legend(fontsize=6, loc="upper left")
    path = save_figure(fig, settings.out / "success_frequencies.png", dpi=90)
    summary.figure(path, f"Where the successful basis images lie at eps {FINDING_EPS:g} on {n} test images "
                         f"(dashed: the low band's edge, distance {low_radius:g}; black: the spread of all "
                         "frequencies tried, scaled to the same count)")

    e = f"eps{FINDING_EPS:g}"
    target = stats[TARGET, FINDING_EPS]
    # Finding 1: the adversarially trained model's breaking frequencies lie at low frequencies more often than chance.
    ci = target.low_vs_chance
    summary.finding(
        "Adversarially trained models are most vulnerable to low-frequency perturbations",
        SOURCE,
        f"low-frequency share of successes at eps {FINDING_EPS:g} (chance {{chance_low:.1%}}): natural "
        f"{{low_share_natural_{e}:.1%}}, gaussian {{low_share_gaussian_{e}:.1%}}; {TARGET} "
        f"{{low_share_{TARGET}_{e}:.1%}}, {{low_vs_chance_{TARGET}_{e}:+.1%}} against chance",
        ci.low > 0,
        "the frequencies that break the adversarially trained model lie in the low band more often than a "
        "frequency-blind draw would" if ci.low > 0 else
        "the breaking frequencies lie in the low band no more often than a frequency-blind draw",
        quote=QUOTE_LOW, criterion=CRITERION_LOW, interval=ci, models=(TARGET,),
    )
    # Finding 2: the black-box search finds the adversarially trained model's errors.
    ci = target.success
    summary.finding(
        "A black-box search over Fourier basis images finds errors of the adversarially trained model",
        SOURCE,
        f"at eps {FINDING_EPS:g}: natural {{success_natural_{e}:.1%}} broken, mean {{mean_queries_natural_{e}:.0f}} "
        f"queries; {TARGET}: mean {{mean_queries_{TARGET}_{e}:.0f}} queries (median "
        f"{{median_queries_{TARGET}_{e}:.0f}}), {{success_{TARGET}_{e}:.1%}} of its correct images broken",
        ci.low > 0,
        "the search, reading only predicted classes, breaks part of the correctly classified images"
        if ci.low > 0 else "the search breaks none of the correctly classified images",
        quote=QUOTE_SUCCESS, criterion=CRITERION_SUCCESS, interval=ci, models=(TARGET,),
    )
    summary.write()


if __name__ == "__main__":
    main()
