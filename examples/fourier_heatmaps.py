"""Fourier heat maps of naturally trained, Gaussian-augmented and adversarially trained CIFAR-10 nets.

Reproduces Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision" (arXiv
1906.08988, Fig. 2 and Sec. 3): every test image gets ``clip(x + s * eps * U_ij)`` on each channel
(``U_ij`` the unit-L2 Fourier basis image of frequency ``(i, j)``, ``s = +-1`` per image and
channel, eps = 4 with pixels in [0, 1]) and each cell of the map is the error rate over the images.
As in the paper, every model is mapped on the same 1,000 test images with the same signs.

The three nets are the zoo's ``cifar_fast`` (natural), ``cifar_fast_gaussian`` (N(0, 0.1^2) noise)
and ``cifar_fast_adversarial`` (PGD-2 at 8/255): one architecture and schedule, trained on the full
training set (weights in ``examples/models/``).

The measure, fixed before the run: a band's *sensitivity* is its mean error minus the clean error,
per image (so a model is not charged in every band for the images it gets wrong unperturbed),
averaged over the images. Low band: distance from the centre < H/8; high band: >= 3H/8 (frequency
index units). Intervals: 95 % percentile bootstrap over the images, paired between bands of one
model and between models (the same images and signs).

    BANDGUARD_DATA=/path/to/data python examples/fourier_heatmaps.py --quick   # 2 CPU cores
    BANDGUARD_DATA=/path/to/data python examples/fourier_heatmaps.py           # GPU
"""

from __future__ import annotations

import itertools

import torch
from _common import FAMILY, Summary, reference, setup, test_images

from bandguard import BF16Forward, native_bf16
from bandguard.bench.stats import bootstrap
from bandguard.fourier import radial_distance
from bandguard.spectral import fourier_heatmap, plots

EPS = 4.0  # per-channel L2 norm of the perturbation (Yin et al. on CIFAR-10)
LABELS = ("natural", "gaussian", "adversarial")
RINGS = (0, 4, 8, 12, 16, 23)  # radial bands of the table (the corners of a 32 x 32 map reach 22.6)

# Criteria, written before the run (the verdicts below only read them).
CRITERION_NATURAL = ("the natural model's sensitivity outside the low band (error minus clean error, per "
                     "image) has a 95 % bootstrap interval above 0")
CRITERION_HIGH = ("the paired 95 % interval of (model - natural) high-band sensitivity lies below 0")
CRITERION_LOW = ("the paired 95 % interval of (model - natural) low-band sensitivity lies above 0")

# Paraphrase: the text of Fig. 2 could not be read here; a third-party summary words it "highly sensitive
# to additive noise in all but the lowest frequencies".
QUOTE_NATURAL = ("(paraphrase of Fig. 2) the naturally trained model is highly sensitive to additive "
                 "perturbations in all but the lowest frequencies")
QUOTE_TRADEOFF = ("both methods improve robustness to corruptions that are concentrated in the high frequency "
                  "domain while reducing robustness to corruptions that are concentrated in the low frequency "
                  "domain")
SOURCE = "Yin et al. 1906.08988"


def band_sensitivity(per_image: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image sensitivity of a band: ``[N, H, W]`` errors, ``[N]`` clean errors, ``[H, W]`` mask -> ``[N]``."""
    return per_image[:, mask].mean(1) - clean


def main() -> None:
    settings = setup(__file__, __doc__)
    n = 1000  # Yin et al.'s sample; quick mode keeps it (the maps are the costly part: bf16 on a CPU)
    summary = Summary(
        settings, "Fourier heat maps of natural, Gaussian-augmented and adversarially trained CIFAR-10 nets",
        f"Yin et al. (arXiv 1906.08988) heat maps at eps = {EPS:g} (per-channel L2, pixels in [0, 1]) of the "
        f"zoo's {', '.join(FAMILY[k] for k in LABELS)} on the same {n} CIFAR-10 test images and signs. A cell: "
        "the error rate under that frequency's perturbation. Band sensitivity: the band's mean error minus the "
        "clean error, per image. Low band: distance from the centre < H/8; high band: >= 3H/8.",
    )
    x, y = test_images("cifar10", n, settings.seed)
    x, y = x.to(settings.device), y.to(settings.device)
    h, w = x.shape[-2:]
    dist = radial_distance(h, w)
    low, high = dist < h / 8, dist >= 3 * h / 8
    summary.number("n_images", n)
    summary.number("eps", EPS)
    bf16 = native_bf16(settings.device)
    summary.number("bf16_forwards", bf16)
    # On a CPU, inductor's compiled forward of these nets is about 1.35x the eager one (bf16, 2,048
    # images a call: 2,311 against 1,715 img/s, measured here), which brings the three 1,000-image maps
    # (1.54 M forwards) under the quick mode's 15 minutes; compiling costs about 30 s a net.
    compiled = settings.device.type == "cpu"
    summary.number("compiled_forwards", compiled)

    results, sens_low, sens_high, sens_out = {}, {}, {}, {}
    rows, ring_rows = [], []
    for label in LABELS:
        model, meta = reference(FAMILY[label], settings)
        summary.model(label, meta)
        net = BF16Forward(model) if bf16 else model
        net = torch.compile(net) if compiled else net
        generator = torch.Generator(settings.device).manual_seed(settings.seed)  # the same signs for every model
        r = fourier_heatmap(net, x, y, eps=EPS, generator=generator, per_image=True, progress=True)
        results[label] = r
        clean = r.clean_per_image
        sens_low[label] = band_sensitivity(r.per_image, clean, low)
        sens_high[label] = band_sensitivity(r.per_image, clean, high)
        sens_out[label] = band_sensitivity(r.per_image, clean, ~low)
        summary.number(f"clean_err_{label}", clean.mean())
        summary.number(f"err_low_{label}", r.heatmap[low].mean())
        summary.number(f"err_high_{label}", r.heatmap[high].mean())
        rows.append([label, meta["test_accuracy"], 1 - float(clean.mean()), float(r.heatmap[low].mean()),
                     float(r.heatmap[high].mean()), float(sens_low[label].mean()), float(sens_high[label].mean())])
        ring_rows.append([label] + [float(r.heatmap[(dist >= a) & (dist < b)].mean())
                                    for a, b in itertools.pairwise(RINGS)])

    path = settings.out / "heatmaps.png"
    plots.plot_heatmaps(results, path, title=f"Fourier heat maps, eps {EPS:g}, n = {n} CIFAR-10 test images")
    summary.figure(path, f"Fourier heat maps of the three models at eps {EPS:g} on the same {n} test images "
                         "(one colour scale: error rate; frequency index from the centre)")
    summary.table("Heat-map error and band sensitivity (sensitivity = band error - clean error)",
                  ["model", "test accuracy (10,000)", "accuracy (these images)", "low band error",
                   "high band error", "low band sensitivity", "high band sensitivity"], rows)
    summary.table("Mean heat-map error per ring of distance from the centre",
                  ["model"] + [f"[{a}, {b})" for a, b in itertools.pairwise(RINGS)], ring_rows)

    # Finding 1: the natural model errs under perturbations at all but the lowest frequencies.
    ci = bootstrap(lambda s: s.mean(1), sens_out["natural"])
    summary.number("sens_out_natural", ci.estimate)
    summary.finding(
        "A naturally trained model is sensitive to perturbations at all but the lowest frequencies",
        f"{SOURCE}, Fig. 2 and Sec. 3",
        "natural: error outside the low band {sens_out_natural:+.1%} above its clean error; high band "
        "{err_high_natural:.1%}, low band {err_low_natural:.1%} (clean error {clean_err_natural:.1%})",
        ci.low > 0,
        "the perturbations outside the lowest frequencies turn right answers wrong" if ci.low > 0
        else "outside the lowest frequencies the error does not rise above the clean error",
        quote=QUOTE_NATURAL, criterion=CRITERION_NATURAL, interval=ci, models=("natural",),
    )
    # Findings 2-5: the trade-off, per augmented model, in one measure (paired band sensitivity).
    for label, what in (("gaussian", "Gaussian data augmentation"), ("adversarial", "Adversarial training")):
        for band, sens, criterion, direction in (("high", sens_high, CRITERION_HIGH, -1),
                                                 ("low", sens_low, CRITERION_LOW, +1)):
            ci = bootstrap(lambda a, b: a.mean(1) - b.mean(1), sens[label], sens["natural"])
            key = summary.number(f"shift_{band}_{label}", ci.estimate)
            agree = ci.high < 0 if direction < 0 else ci.low > 0
            claim = (f"{what} makes the model more robust to high-frequency perturbations" if band == "high"
                     else f"{what} makes the model less robust to low-frequency perturbations")
            summary.finding(
                claim, f"{SOURCE}, Fig. 2 and abstract",
                f"{band}-band sensitivity, {label} minus natural: {{shift_{band}_{label}:+.1%}} "
                f"(errors {{err_{band}_{label}:.1%}} vs {{err_{band}_natural:.1%}})",
                agree,
                (f"the {band}-band sensitivity {'falls' if direction < 0 else 'rises'} against the natural model"
                 if agree else f"the paired interval does not exclude 0 in that direction ({key:+.1%})"),
                quote=QUOTE_TRADEOFF, criterion=criterion, interval=ci, models=(label, "natural"),
            )
    summary.write()


if __name__ == "__main__":
    main()
