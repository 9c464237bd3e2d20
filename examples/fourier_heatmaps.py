"""Fourier heat maps of naturally trained, Gaussian-augmented and adversarially trained CIFAR-10 nets.

Reproduces Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision" (arXiv
1906.08988, Fig. 2 and Sec. 3): every test image gets ``clip(x + s * eps * U_ij)`` on each channel
(``U_ij`` the unit-L2 Fourier basis image of frequency ``(i, j)``, ``s = +-1`` per image and
channel, eps = 4 with pixels in [0, 1]) and each cell of the map is the error rate. The claims:
a naturally trained model is sensitive to high-frequency perturbations; Gaussian noise
augmentation makes it robust at high frequencies at the cost of more error at low frequencies; so
does adversarial training. Each claim is measured as the mean error of the map inside a
low-frequency disc (distance from the centre < H/8) and in a high-frequency ring (>= 3H/8), per
model, and the shift of each between models.

Each map is computed on the test images its model classifies correctly (so a cell is the rate at
which the perturbation turns a right answer wrong). Yin et al. map all images, which is nearly
the same for their 87-95 % accurate nets; the quick nets here are far weaker and differ in clean
accuracy, so an all-image map would mostly show each model's clean error and compare those.

The three nets are the zoo's ``cifar_small``, ``cifar_small_gaussian`` (N(0, 0.1^2) noise) and
``cifar_small_adversarial`` (FGSM with random start at 8/255), one architecture.

    BANDGUARD_DATA=/path/to/data python examples/fourier_heatmaps.py --quick   # 2 CPU cores, 150 images
    BANDGUARD_DATA=/path/to/data python examples/fourier_heatmaps.py           # GPU, 1,000 images
"""

from __future__ import annotations

import itertools

import torch
from _common import Summary, reference, setup, test_images

from bandguard.fourier import radial_distance
from bandguard.spectral import fourier_heatmap, plots

EPS = 4.0  # per-channel L2 norm of the perturbation (Yin et al. on CIFAR-10)
MODELS = {"natural": "cifar_small", "gaussian": "cifar_small_gaussian", "adversarial": "cifar_small_adversarial"}
MIN_SHIFT = 0.05  # a band's error must move by at least 5 points between two models to count
RINGS = (0, 4, 8, 12, 16, 23)  # radial bands of the table (the corners of a 32 x 32 map reach 22.6)


def main() -> None:
    settings = setup(__file__, __doc__)
    n = settings.pick(150, 1000)
    summary = Summary(
        settings, "Fourier heat maps of natural, Gaussian-augmented and adversarially trained CIFAR-10 nets",
        f"Yin et al. (arXiv 1906.08988) heat maps at eps = {EPS:g} (per-channel L2, pixels in [0, 1]) of the "
        f"zoo's {', '.join(MODELS.values())}, each on those of {n} CIFAR-10 test images it classifies correctly "
        "(a cell: the rate at which the perturbation makes a right answer wrong). Low band: distance from the "
        "centre < H/8; high band: >= 3H/8 (frequency-index units).",
    )
    x, y = test_images("cifar10", n, settings.seed)
    x, y = x.to(settings.device), y.to(settings.device)
    h, w = x.shape[-2:]
    dist = radial_distance(h, w)
    low, high = dist < h / 8, dist >= 3 * h / 8
    summary.number("n_images", n)
    summary.number("eps", EPS)

    rows, ring_rows = [], []
    for label, recipe in MODELS.items():
        model, meta = reference(recipe, settings)
        with torch.inference_mode():
            correct = model(x).argmax(1) == y
        generator = torch.Generator(settings.device).manual_seed(settings.seed)
        result = fourier_heatmap(model, x[correct], y[correct], eps=EPS, generator=generator)
        err, se = result.heatmap, result.stderr
        numbers = {
            "test_acc": meta["test_accuracy"], "subset_acc": correct.double().mean(), "n_correct": correct.sum(),
            "err_low": err[low].mean(),
            "err_high": err[high].mean(), "err_mean": err.mean(), "se_low": se[low].mean(),
            "se_high": se[high].mean(), "train_seconds": meta["train_seconds"],
        }
        for key, value in numbers.items():
            summary.number(f"{key}_{label}", value)
        rows.append([label, meta["test_accuracy"], float(correct.double().mean()), float(err[low].mean()),
                     float(err[high].mean()), float(err.mean())])
        ring_rows.append([label] + [float(err[(dist >= a) & (dist < b)].mean()) for a, b in itertools.pairwise(RINGS)])
        path = settings.out / f"heatmap_{label}.png"
        plots.plot_heatmap(result, path, title=f"{label} ({recipe})")
        summary.figure(path, f"Fourier heat map of the {label} model ({recipe}) at eps {EPS:g}: error rate on the "
                             f"{int(correct.sum())} images it classifies correctly (each map its own colour scale)")

    nums = summary.numbers
    summary.table("Heat-map error per band (on the correctly classified images; accuracy on the whole test split "
                  "and on the subset)",
                  ["model", "test accuracy", "subset accuracy", "low band error", "high band error", "map mean"], rows)
    summary.table("Mean heat-map error per ring of distance from the centre",
                  ["model"] + [f"[{a}, {b})" for a, b in itertools.pairwise(RINGS)], ring_rows)

    # Finding 1: the natural model errs more under high- than under low-frequency perturbations.
    gap = summary.number("gap_natural", nums["err_high_natural"] - nums["err_low_natural"])
    agree = gap >= MIN_SHIFT and nums["err_high_natural"] >= 1.5 * nums["err_low_natural"]
    summary.finding(
        "A naturally trained model is sensitive to high-frequency perturbations",
        "Yin et al. 1906.08988, Fig. 2",
        "natural: {err_high_natural:.1%} error in the high band vs {err_low_natural:.1%} in the low band "
        "({n_correct_natural:.0f} images)",
        agree,
        "high-band error is at least 1.5x the low-band error and 5 points above it" if agree
        else "the high band does not err at least 1.5x and 5 points more than the low band",
    )
    # Findings 2-5, per augmented model: (a) its errors lean further towards low frequencies than the
    # natural model's (low/high band ratio), (b) the trade-off: less error at high, more at low.
    source = "Yin et al. 1906.08988, Fig. 2 and Sec. 4.1"
    def ratio(label: str) -> float:  # the high band's error floored at 0.1 %: a robust net may have none
        return summary.number(f"ratio_{label}", nums[f"err_low_{label}"] / max(nums[f"err_high_{label}"], 1e-3))

    ratio_nat = ratio("natural")
    for label, what in (("gaussian", "Gaussian data augmentation"), ("adversarial", "Adversarial training")):
        agree = ratio(label) >= 1.5 * ratio_nat
        summary.finding(
            f"{what} moves the model's sensitivity towards low frequencies",
            source,
            f"low/high band error ratio: {label} {{ratio_{label}:.2f}} vs natural {{ratio_natural:.2f}}",
            agree,
            "its errors lean towards low frequencies: the ratio is at least 1.5x the natural model's" if agree
            else "the ratio is below 1.5x the natural model's: its errors do not lean further to low frequencies",
        )
        d_high = summary.number(f"shift_high_{label}", nums[f"err_high_{label}"] - nums["err_high_natural"])
        d_low = summary.number(f"shift_low_{label}", nums[f"err_low_{label}"] - nums["err_low_natural"])
        agree = d_high <= -MIN_SHIFT and d_low >= MIN_SHIFT
        low_part = ("low-band error rises" if d_low >= MIN_SHIFT else
                    "low-band error falls too (more robust in both bands)" if d_low <= -MIN_SHIFT else
                    "low-band error does not rise")
        parts = ["high-band error falls" if d_high <= -MIN_SHIFT else "high-band error does not fall", low_part]
        summary.finding(
            f"{what}: more robust to high-frequency perturbations, less robust to low-frequency ones",
            source,
            f"{label} vs natural: high band {{err_high_{label}:.1%}} vs {{err_high_natural:.1%}}, "
            f"low band {{err_low_{label}:.1%}} vs {{err_low_natural:.1%}}",
            agree,
            f"{parts[0]} and {parts[1]} by >= {MIN_SHIFT * 100:.0f} points against the natural model",
        )
    summary.write()


if __name__ == "__main__":
    main()
