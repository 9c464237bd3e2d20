"""Corruption spectra and how much clean accuracy natural, Gaussian-augmented and adversarially trained nets keep.

Reproduces Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision" (arXiv
1906.08988, Sec. 1, an observation they credit to Ford et al. 2019, and Sec. 4): Gaussian data
augmentation and adversarial training improve robustness to noise and blurring corruptions while
they degrade it on fog and contrast; Yin et al.'s hypothesis is that the corruptions' frequency
content explains these trade-offs. Corruptions differ in where their energy ``E|F(C(X) - X)|`` lies.

Models: the zoo's ``cifar_fast`` (natural), ``cifar_fast_gaussian`` (N(0, 0.1^2) noise) and
``cifar_fast_adversarial`` (PGD-2 at 8/255), one net and schedule trained on the full training set
(weights in ``examples/models/``). Corruptions: the fourteen CIFAR-10-C families built into
``bandguard.spectral.corrupt`` (Hendrycks & Dietterich 1903.12261's parameters; no optional package
needed, so motion blur, snow, frost, spatter and elastic, which need ``imagecorruptions-imaug``,
are left out) at severity 3, the same random draws and test images for every model. The
high-frequency fraction is the share of a corruption's energy outside the centred disc of radius 8.
Forwards run under bf16 autocast (``bandguard.BF16Forward``) where the device computes bf16
natively.

The measure, fixed before the run and used for every corruption row: the share of clean accuracy a
model keeps (corrupted accuracy / clean accuracy, on the same images), so a model's lower clean
accuracy is not counted as a loss of robustness; the gain of an augmented model is its share minus
the natural model's, with a paired 95 % percentile-bootstrap interval over the images.

    BANDGUARD_DATA=/path/to/data python examples/corruption_spectra.py --quick   # 1,000 images, 2 CPU cores
    BANDGUARD_DATA=/path/to/data python examples/corruption_spectra.py           # 10,000 images (GPU)
"""

from __future__ import annotations

import torch
from _common import FAMILY, Summary, reference, setup, test_images

from bandguard import BF16Forward, native_bf16
from bandguard.bench.stats import bootstrap
from bandguard.spectral import CorruptionSpectra, corruption_spectrum, plots

SEVERITY = 3
RADIUS = 8.0
LABELS = ("natural", "gaussian", "adversarial")
AUGMENTED = {"gaussian": "Gaussian data augmentation", "adversarial": "Adversarial training"}
GROUPS = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("gaussian_blur", "glass_blur", "defocus_blur", "zoom_blur"),
    "fog and contrast": ("fog", "contrast"),
}
"""The corruptions the quote names: noise and blurring (improved), fog and contrast (degraded)."""
DIRECTION = {"noise": +1, "blur": +1, "fog and contrast": -1}

# Criteria, written before the run (the verdicts below only read them).
CRITERION_UP = ("the paired 95 % interval of (augmented - natural) share of clean accuracy kept, averaged over the "
                "group's corruptions, lies above 0")
CRITERION_DOWN = ("the paired 95 % interval of (augmented - natural) share of clean accuracy kept, averaged over "
                  "the group's corruptions, lies below 0")
CRITERION_RANK = ("the 95 % bootstrap interval (over images) of the Spearman correlation, across the 14 "
                  "corruptions, between the high-frequency fraction and the gain in share of clean accuracy kept "
                  "lies above 0")
QUOTE_TRADEOFF = ("As an example, in [Ford et al. 2019] it was observed that Gaussian data augmentation and "
                  "adversarial training improve robustness to noise and blurring corruptions on the CIFAR-10-C and "
                  "ImageNet-C common corruption benchmarks [Hendrycks and Dietterich 2019], while significantly "
                  "degrading performance on the fog and contrast corruptions.")
QUOTE_HYPOTHESIS = ("Our operating hypothesis is that the frequency information of these different corruptions offers "
                    "an explanation of many of these observed trade-offs.")
SOURCE = "Yin et al. 1906.08988, Sec. 1 (after Ford et al. 2019)"


def per_image(run: CorruptionSpectra, names: list[str]) -> torch.Tensor:
    """``[N, K + 1]`` float64 correctness on each corruption, the clean images last."""
    return torch.stack([*(run[m].correct for m in names), run.clean_correct], dim=1).double()


def kept_gain(index: torch.Tensor, augmented: torch.Tensor, natural: torch.Tensor) -> torch.Tensor:
    """Gain in share of clean accuracy kept per corruption on resampled images -> ``[B, K]``.

    Args:
        index: ``[B, N]`` resampled image indices (the column ``arange(N)`` as :func:`bootstrap`
            resamples it), turned into per-image counts so no ``[B, N, K]`` gather is built.
        augmented, natural: ``[N, K + 1]`` correctness from :func:`per_image`.
    """
    index = index.long()
    counts = torch.zeros(index.shape, dtype=torch.float64).scatter_add_(1, index, torch.ones_like(index).double())
    a, b = counts @ augmented, counts @ natural  # [B, K + 1] hits per corruption, clean last
    return a[:, :-1] / a[:, -1:].clamp(min=1) - b[:, :-1] / b[:, -1:].clamp(min=1)


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks along the last dim (ties broken by order; the gains are continuous)."""
    return values.argsort(dim=-1).argsort(dim=-1).double()


def spearman(values: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of each row of ``values`` ``[B, K]`` with ``fixed`` ``[K]`` -> ``[B]``."""
    a, b = ranks(values), ranks(fixed)[None]
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=1e-12)


def main() -> None:
    settings = setup(__file__, __doc__)
    n = settings.pick(1000, 10_000)  # forwards only: 15 per image and model, plus the corruptions themselves
    summary = Summary(
        settings, "Corruption spectra: natural, Gaussian-augmented and adversarially trained nets",
        f"Accuracy of the zoo's {', '.join(FAMILY[k] for k in LABELS)} on the fourteen built-in CIFAR-10-C "
        f"corruptions at severity {SEVERITY} (the same {n} test images and corrupted draws for every model), against "
        f"each corruption's high-frequency energy fraction (energy of C(x) - x outside the centred disc of radius "
        f"{RADIUS:g}, frequency index). One measure for every corruption row: the share of clean accuracy kept "
        "(corrupted / clean accuracy); gain: an augmented model's share minus the natural model's, with a paired "
        "95 % bootstrap interval over the images. Groups as Yin et al.'s sentence names them: "
        + "; ".join(f"{g}: {', '.join(c)}" for g, c in GROUPS.items())
        + ". Forwards in bf16 autocast where the device computes bf16 natively.",
    )
    x, y = test_images("cifar10", n, seed=settings.seed)
    x, y = x.to(settings.device), y.to(settings.device)
    summary.number("n_images", n)
    bf16 = native_bf16(settings.device)
    summary.number("bf16_forwards", bf16)
    runs = {}
    for label in LABELS:
        model, meta = reference(FAMILY[label], settings)
        net = BF16Forward(model) if bf16 else model
        generator = torch.Generator(settings.device).manual_seed(settings.seed)  # the same draws for every model
        runs[label] = corruption_spectrum(net, x, y, severity=SEVERITY, generator=generator, radius=RADIUS,
                                          per_image=True)
        summary.number(f"{label}_clean", runs[label].clean_accuracy)
        summary.model(label, meta, **{"clean on these images": runs[label].clean_accuracy})
    natural = runs["natural"]
    names = [r.name for r in natural.results]
    fractions = torch.tensor([natural[m].high_fraction for m in names], dtype=torch.float64)
    table = {label: per_image(runs[label], names) for label in LABELS}
    images = torch.arange(n)  # resampled by bootstrap; kept_gain turns it into counts per image

    gains = {}  # label -> {corruption: Interval}
    for label in AUGMENTED:
        gains[label] = {}
        for i, name in enumerate(names):
            gains[label][name] = bootstrap(
                lambda idx, i=i, label=label: kept_gain(idx, table[label], table["natural"])[:, i], images)
            summary.number(f"{name}_{label}_kept_gain", gains[label][name].estimate)
    for name in names:
        summary.number(f"{name}_hf", natural[name].high_fraction)
        for label in LABELS:
            summary.number(f"{name}_{label}", runs[label][name].accuracy)
            summary.number(f"{name}_{label}_kept", runs[label][name].accuracy / max(runs[label].clean_accuracy, 1e-12))

    order = sorted(names, key=lambda m: -summary.numbers[f"{m}_hf"])
    summary.table(
        f"Per corruption (severity {SEVERITY}), by high-frequency fraction: accuracy, share of clean accuracy kept, "
        "and the gain in share kept over the natural model (95 % paired bootstrap interval)",
        ["corruption", "high-freq fraction", *[f"{label} accuracy" for label in LABELS],
         *[f"{label} kept" for label in LABELS], *[f"{label} gain in kept" for label in AUGMENTED]],
        [[m, summary.numbers[f"{m}_hf"], *[summary.numbers[f"{m}_{label}"] for label in LABELS],
          *[summary.numbers[f"{m}_{label}_kept"] for label in LABELS],
          *[gains[label][m].format("+.1%") for label in AUGMENTED]] for m in order],
    )

    path = settings.out / "corruption_spectra.png"
    fig = plots.plot_corruption_spectra(natural, log=True)  # fog, contrast, brightness: DC-dominated
    fig.suptitle(f"E|F(C(X) - X)| per corruption, severity {SEVERITY}, n = {n}; accuracy of natural "
                 f"({FAMILY['natural']}, clean {natural.clean_accuracy:.0%})", fontsize=10)
    plots.save_figure(fig, path, dpi=80)  # 14 panels: keep the PNG small
    summary.figure(path, f"E|F(C(X) - X)| per corruption at severity {SEVERITY} on {n} test images (low frequencies "
                         "at the centre, frequency index on the axes, log colour scale, one per panel: the "
                         "corruptions' sizes differ by orders of magnitude), "
                         "with the natural model's accuracy and the high-frequency energy fraction")
    for label in AUGMENTED:
        path = settings.out / f"gain_vs_high_fraction_{label}.png"
        plots.plot_corruption_gain(
            natural, runs[label], path, labels=("natural", label), relative=True,
            intervals={m: (ci.low, ci.high) for m, ci in gains[label].items()},
            title=f"{label} ({FAMILY[label]}) vs natural,\nn = {n} test images, severity {SEVERITY}", write_data=False)
        summary.figure(path, f"Gain in share of clean accuracy kept, {label} minus natural, per corruption against "
                             "the corruption's high-frequency energy fraction (bars: paired 95 % bootstrap intervals)")

    for label, what in AUGMENTED.items():
        def gain(idx: torch.Tensor, label: str = label) -> torch.Tensor:
            return kept_gain(idx, table[label], table["natural"])  # [B, K]

        for group, members in GROUPS.items():
            cols = [names.index(m) for m in members]
            ci = bootstrap(lambda idx, cols=cols: gain(idx)[:, cols].mean(1), images)
            slug = group.replace(" and ", "_").replace(" ", "_")
            summary.number(f"group_{slug}_{label}", ci.estimate)
            up = DIRECTION[group] > 0
            agree = ci.low > 0 if up else ci.high < 0
            summary.finding(
                f"{what} {'improves' if up else 'degrades'} robustness to {group} corruptions",
                SOURCE,
                f"gain in share of clean accuracy kept, {label} minus natural, mean over {', '.join(members)}: "
                f"{{group_{slug}_{label}:+.1%}}",
                agree,
                (f"the {label} model keeps {'more' if up else 'less'} of its clean accuracy under {group}" if agree
                 else f"the paired interval does not lie {'above' if up else 'below'} 0"),
                quote=QUOTE_TRADEOFF, criterion=CRITERION_UP if up else CRITERION_DOWN, interval=ci,
                models=(label, "natural"),
            )
        ci = bootstrap(lambda idx: spearman(gain(idx), fractions), images)
        summary.number(f"spearman_{label}", ci.estimate)
        summary.finding(
            f"{what}: the gain follows the corruption's high-frequency energy fraction",
            "Yin et al. 1906.08988, Sec. 1 (hypothesis) and Sec. 4",
            f"Spearman rho over the 14 corruptions, gain in share kept ({label} - natural) against the high-frequency "
            f"fraction: {{spearman_{label}:+.2f}}",
            ci.low > 0,
            "corruptions with more high-frequency energy gain more" if ci.low > 0
            else "the rank correlation's interval does not lie above 0",
            quote=QUOTE_HYPOTHESIS, criterion=CRITERION_RANK, interval=ci, models=(label, "natural"),
            interval_format="+.2f",
        )
    summary.write()


if __name__ == "__main__":
    main()
