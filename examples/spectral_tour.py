"""A tour of bandguard.spectral on real MNIST: every plot kind, the README's figures, and a summary.

Reproduces, at MNIST scale, the observations of Yin et al. (arXiv 1906.08988), Wang et al.
(arXiv 1905.13545) and Xu et al. (arXiv 1901.06523) with a naturally trained and an adversarially
trained ``mnist_cnn`` (the zoo's ``mnist_cnn`` and ``mnist_cnn_adversarial``: FGSM with random
start at eps 0.3, Wong et al. 2001.03994):

1. Fourier heat maps: adversarial training lowers the sensitivity to high-frequency perturbations;
2. PGD perturbation spectra and their radial profiles: the robust model's are less high-frequency;
3. accuracy on low- and high-pass filtered test images: the robust model uses less of the
   high-frequency content;
4. corruption spectra E|F(C(X) - X)| with the natural model's accuracy under each corruption;
5. the spectra of the first conv layers' kernels: the robust model's are smoother;
6. the frequency principle while training (e_low falls before e_high).

Its default output folder is ``docs/images`` (the README embeds these figures); ``--quick`` trains
the reference models on a random 10,000 of the training images and uses fewer test images.

    BANDGUARD_DATA=/path/to/data python examples/spectral_tour.py --quick
    BANDGUARD_DATA=/path/to/data python examples/spectral_tour.py --device cuda
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from _common import Summary, reference, setup, test_images
from scipy.stats import spearmanr

from bandguard.attacks import create_attack
from bandguard.data import load_dataset
from bandguard.fourier import radial_distance
from bandguard.models import create_model
from bandguard.spectral import (
    FPrincipleMonitor,
    compare_attack_spectra,
    corruption_spectrum,
    filtered_accuracy,
    fourier_heatmap,
    kernel_spectrum,
    plots,
)
from bandguard.training import TrainConfig, subset, train

DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
HEATMAP_EPS = 8.0  # L2 norm of a heat map's Fourier basis perturbation (Yin et al. use 4 on CIFAR-10)
PGD_EPS = 0.1
RADII = [1, 2, 4, 6, 8, 10, 14, 20]
HIGH_RING = 10  # heat map radius from which a frequency counts as high (MNIST's Nyquist is 14)


def main() -> None:
    # The README embeds the figures from docs/images: that is the default folder, not examples/results.
    s = setup(__file__, __doc__, ["--out", str(DOCS_IMAGES), *sys.argv[1:]])
    summary = Summary(
        s, "Spectral tour (MNIST, examples/spectral_tour.py)",
        "A naturally and an adversarially trained mnist_cnn (the zoo's mnist_cnn and mnist_cnn_adversarial, "
        "FGSM-RS at eps 0.3) seen through every analysis of bandguard.spectral.",
    )
    clock = Clock()
    natural, meta_nat = reference("mnist_cnn", s)
    adversarial, meta_adv = reference("mnist_cnn_adversarial", s)
    clock("reference models")
    x, y = test_images("mnist", s.pick(1000, 10000), seed=s.seed)
    x, y = x.to(s.device), y.to(s.device)
    models = {"natural": natural, "adversarial": adversarial}
    summary.number("natural_test_acc", meta_nat["test_accuracy"])
    summary.number("adversarial_test_acc", meta_adv["test_accuracy"])
    pgd = create_attack("pgd", eps=PGD_EPS, steps=10)
    n_attack = s.pick(200, 1000)
    for name, model in models.items():
        result = pgd(model, x[:n_attack], y[:n_attack])
        summary.number(f"{name}_pgd_acc", result.robust_accuracy[0])
    clock("robust accuracy")

    heatmaps(s, summary, models, x, y)
    clock("heat maps")
    perturbation_spectra(s, summary, models, x[:n_attack], y[:n_attack], pgd)
    clock("perturbation spectra")
    filtered(s, summary, models, x, y)
    clock("filtered accuracy")
    corruptions(s, summary, natural, x[: s.pick(500, 2000)], y[: s.pick(500, 2000)])
    clock("corruptions")
    kernels(s, summary, models)
    frequency_principle(s, summary)
    clock("frequency principle")
    summary.write()


def heatmaps(s, summary: Summary, models: dict, x: torch.Tensor, y: torch.Tensor) -> None:
    n = s.pick(50, 500)
    high = {}
    for name, model in models.items():
        r = fourier_heatmap(model, x[:n], y[:n], eps=HEATMAP_EPS, generator=torch.Generator().manual_seed(s.seed))
        plots.plot_heatmap(r, s.out / f"heatmap_{name}.png", title=f"{name} MNIST CNN", write_data=False)
        summary.figure(s.out / f"heatmap_{name}.png",
                       f"Fourier heat map (error rate), {name} model, eps {HEATMAP_EPS:g}")
        d = radial_distance(*r.heatmap.shape)
        summary.number(f"heat_{name}_low", r.heatmap[d < 4].mean())
        high[name] = summary.number(f"heat_{name}_high", r.heatmap[d >= HIGH_RING].mean())
        summary.number(f"heat_{name}_clean", r.clean)
    summary.number("heat_images", n)
    agree = high["adversarial"] < high["natural"]
    summary.finding(
        "Adversarial training makes a model less sensitive to high-frequency Fourier-basis perturbations",
        "Yin et al. 1906.08988, Fig. 2",
        f"mean error at radius >= {HIGH_RING}: natural {{heat_natural_high:.1%}}, adversarial "
        "{heat_adversarial_high:.1%} (radius < 4: {heat_natural_low:.1%} vs {heat_adversarial_low:.1%})",
        agree,
        "criterion: the adversarial model's high-frequency error is below the natural one's; "
        + ("it is." if agree else "it is not."),
    )


def perturbation_spectra(s, summary: Summary, models: dict, x: torch.Tensor, y: torch.Tensor, pgd) -> None:
    comparison = compare_attack_spectra(list(models.values()), pgd, x, y, names=list(models))
    plots.plot_spectra(comparison, s.out / "spectra_pgd.png", title=f"E|F(x_adv - x)|, PGD {PGD_EPS:g}",
                       write_data=False)
    plots.plot_radial_profiles(comparison, s.out / "radial_pgd.png", write_data=False)
    summary.figure(s.out / "spectra_pgd.png", "PGD perturbation spectra, natural and adversarial")
    summary.figure(s.out / "radial_pgd.png", "Their radial profiles")
    share = {name: summary.number(f"pgd_{name}_high_share", comparison[name].high_fraction) for name in models}
    summary.number("pgd_radius", comparison["natural"].radius)
    agree = share["adversarial"] < share["natural"]
    summary.finding(
        "PGD perturbations of an adversarially trained model concentrate at lower frequencies than a natural model's",
        "Yin et al. 1906.08988, Fig. 3",
        "high-frequency energy share (radius >= {pgd_radius:g}): natural {pgd_natural_high_share:.1%}, "
        "adversarial {pgd_adversarial_high_share:.1%}",
        agree,
        "criterion: the adversarial model's share is below the natural one's; " + ("it is." if agree else "it is not."),
    )


def filtered(s, summary: Summary, models: dict, x: torch.Tensor, y: torch.Tensor) -> None:
    results = {f"{name} {kind}-pass": filtered_accuracy(model, x, y, RADII, kind=kind)
               for name, model in models.items() for kind in ("low", "high")}
    plots.plot_filtered_accuracy(results, s.out / "filtered_accuracy.png", write_data=False)
    summary.figure(s.out / "filtered_accuracy.png", "Accuracy on low- and high-pass filtered test images")
    summary.table("Accuracy on filtered test images, per radius", ["model, filter"] + [f"r={r}" for r in RADII],
                  [[name, *r.accuracy] for name, r in results.items()], fmt="{:.0%}")
    mean_high = {}
    for name in models:
        accuracy = results[f"{name} high-pass"].accuracy
        mean_high[name] = summary.number(f"highpass_{name}_mean", sum(accuracy) / len(accuracy))
    agree = mean_high["natural"] > mean_high["adversarial"]
    summary.finding(
        "A natural model classifies from high-frequency components that an adversarially trained one relies on less",
        "Wang et al. 1905.13545, Sec. 3-4",
        "mean accuracy on high-pass filtered images over radii 1-20: natural {highpass_natural_mean:.1%}, "
        "adversarial {highpass_adversarial_mean:.1%}",
        agree,
        "criterion: the natural model's mean high-pass accuracy is above the adversarial one's; "
        + ("it is." if agree else "it is not."),
    )


def corruptions(s, summary: Summary, model, x: torch.Tensor, y: torch.Tensor) -> None:
    corr = corruption_spectrum(model, x, y, severity=3, generator=torch.Generator().manual_seed(s.seed))
    # The widest figure (one panel per corruption): drawn at a lower dpi to stay a small PNG.
    plots.save_figure(plots.plot_corruption_spectra(corr), s.out / "corruption_spectra.png", dpi=72)
    summary.figure(s.out / "corruption_spectra.png", "E|F(C(X) - X)| per corruption, severity 3")
    summary.table("Natural model under each corruption (severity 3)",
                  ["corruption", "accuracy", "high-frequency share"],
                  [[r.name, r.accuracy, r.high_fraction] for r in corr.results])
    summary.number("corr_clean_acc", corr.clean_accuracy)
    drop = [corr.clean_accuracy - r.accuracy for r in corr.results]
    rho = spearmanr([r.high_fraction for r in corr.results], drop).statistic
    summary.number("corr_spearman", rho)
    summary.number("corr_count", len(corr.results))
    agree = rho > 0
    summary.finding(
        "A naturally trained model is hurt most by corruptions whose energy sits at high frequencies",
        "Yin et al. 1906.08988, Fig. 4",
        "Spearman correlation between a corruption's high-frequency share and the accuracy it costs: "
        "{corr_spearman:.2f} over {corr_count:.0f} corruptions (clean {corr_clean_acc:.1%})",
        agree,
        "criterion: the correlation is positive; " + ("it is." if agree else "it is not."),
    )


def kernels(s, summary: Summary, models: dict) -> None:
    spectra = {name: kernel_spectrum(model) for name, model in models.items()}
    plots.plot_kernel_spectra(spectra["natural"], s.out / "kernel_spectra.png", write_data=False)
    summary.figure(s.out / "kernel_spectra.png", "Kernel spectra of the natural model's conv layers")
    first = {name: summary.number(f"kernel_{name}_high_share", spectrum.layers[0].high_fraction)
             for name, spectrum in spectra.items()}
    summary.table("High-frequency share of each conv layer's kernel spectrum",
                  ["layer", "natural", "adversarial"],
                  [[a.name, a.high_fraction, b.high_fraction]
                   for a, b in zip(spectra["natural"].layers, spectra["adversarial"].layers)])
    agree = first["adversarial"] < first["natural"]
    summary.finding(
        "Adversarial training gives smoother (lower-frequency) first-layer kernels",
        "Wang et al. 1905.13545, Sec. 5",
        "high-frequency share of the first conv layer's kernels: natural {kernel_natural_high_share:.1%}, "
        "adversarial {kernel_adversarial_high_share:.1%}",
        agree,
        "criterion: the adversarial share is below the natural one; " + ("it is." if agree else "it is not."),
    )


def frequency_principle(s, summary: Summary) -> None:
    """A fresh mnist_cnn trained under FPrincipleMonitor (the zoo's nets are trained without one)."""
    train_set = load_dataset("mnist", "train")
    x, y = subset(train_set.images, train_set.labels, s.pick(4000, 20000), seed=s.seed)
    ref_x, ref_y = subset(x, y, 1000, seed=s.seed + 1)
    deltas = (3.0, 10.0, 30.0)
    monitor = FPrincipleMonitor(ref_x.float().div(255).to(s.device), ref_y.to(s.device), deltas=deltas, num_classes=10)
    with torch.random.fork_rng():
        torch.manual_seed(s.seed)
        model = create_model("mnist_cnn").to(s.device)
    config = TrainConfig(epochs=3, batch_size=64, lr=0.02, seed=s.seed, arch="mnist_cnn", dataset="mnist")
    train(model, (x, y), config, callbacks=[monitor], device=s.device, progress=False)
    result = monitor.result()
    plots.plot_fprinciple(result, s.out / "fprinciple.png", write_data=False)
    summary.figure(s.out / "fprinciple.png", "e_low (solid) and e_high (dashed) per epoch, mnist_cnn")
    low, high = result.first_below(0.5, "low"), result.first_below(0.5, "high")
    never = config.epochs + 1
    earlier = []
    for delta in deltas:
        lo = summary.number(f"fp_d{delta:g}_epoch_low", never if low[delta] is None else low[delta])
        hi = summary.number(f"fp_d{delta:g}_epoch_high", never if high[delta] is None else high[delta])
        earlier.append(lo <= hi)
    summary.table("Frequency principle: e_low and e_high after each epoch (columns: delta 3, 10, 30)",
                  ["epoch", *(f"e_low, delta {d:g}" for d in deltas), *(f"e_high, delta {d:g}" for d in deltas)],
                  [[str(e), *lo, *hi] for e, lo, hi in zip(result.epochs, result.e_low, result.e_high)], fmt="{:.3f}")
    agree = all(earlier)
    summary.finding(
        "The low-frequency part of the labels is fitted no later than the high-frequency part (e_low falls first)",
        "Xu et al. 1901.06523, filtering method",
        "first epoch with e < 0.5, low / high: {fp_d3_epoch_low:.0f} / {fp_d3_epoch_high:.0f} (delta 3), "
        "{fp_d10_epoch_low:.0f} / {fp_d10_epoch_high:.0f} (delta 10), {fp_d30_epoch_low:.0f} / {fp_d30_epoch_high:.0f} "
        f"(delta 30; {never} = not within the run)",
        agree,
        "criterion: e_low's epoch <= e_high's for every delta (epoch resolution: ties allowed); "
        + ("it holds." if agree else "it fails at some delta."),
    )


class Clock:
    """Prints each stage's seconds to stderr (the quick run's budget is 10 minutes)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        print(f"{stage}: {now - self.last:.0f} s", file=sys.stderr)
        self.last = now


if __name__ == "__main__":
    main()
