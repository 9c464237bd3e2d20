"""Accuracy on low- and high-pass filtered CIFAR-10, and of models trained on filtered images.

Two papers on the frequency content CIFAR-10 classifiers use:

- Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision" (arXiv 1906.08988):
  models *trained and tested* on high-pass filtered images still classify them well above chance
  (their filtered-data figure, on ImageNet with a square filter; here CIFAR-10 with a disc).
- Wang et al., "High-frequency Component Helps Explain the Generalization of CNNs" (arXiv
  1905.13545): a natural CNN's prediction can follow the high-frequency component (HFC) of an image,
  which humans barely see (Fig. 2, eight examples); and a model trained on the low-frequency
  components (LFC) generalises to the original test images far better than one trained on the HFC
  (Table 1).

Models: the zoo's ``cifar_fast`` (natural), ``cifar_fast_lowpass`` and ``cifar_fast_highpass``
(trained on Wang et al.'s per-image rescaled LFC / HFC, the parts inside / outside the centred disc
of radius 8), one net and schedule trained on the full training set (weights in
``examples/models/``). Filtered test images are the raw filter outputs (never clipped) unless marked
rescaled (Wang et al.'s ``x / max(x)``, as the filtered models were trained). Every model sees the
same test images. Forward passes run under bf16 autocast (``bandguard.BF16Forward``) where the
device computes bf16 natively.

The measures, fixed before the run: accuracies with 95 % percentile-bootstrap intervals over the
images; a difference counts when its interval (paired when two models or filters see the same
images) excludes 0. The statement that a low-pass filter keeps the accuracy down to some bandwidth
is true by construction at wide radii and is reported as a sanity check, not a finding.

    BANDGUARD_DATA=/path/to/data python examples/filtered_data.py --quick   # 2,000 images, 2 CPU cores
    BANDGUARD_DATA=/path/to/data python examples/filtered_data.py           # 10,000 images (GPU)
"""

from __future__ import annotations

import torch
from _common import FAMILY, Summary, reference, setup, test_images

from bandguard import BF16Forward, native_bf16
from bandguard.bench.stats import bootstrap, mean_interval, paired_difference
from bandguard.spectral import filtered_accuracy, plots

RADII = (1, 2, 4, 6, 8, 10, 12, 16, 20)
"""Cut-off radii in frequency-index units (32 x 32: the square's corner is at 16, the disc's at 22.6)."""
PIVOT = 8
"""The radius the filtered models were trained at, and where the HFC / LFC claims are read."""
CHANCE = 0.1
LABELS = {"natural": "natural", "lowpass": "LFC-trained", "highpass": "HFC-trained"}

# Criteria, written before the run (the verdicts below only read them).
CRITERION_TRAINED_HFC = (f"the 95 % bootstrap interval of (HFC-trained accuracy on rescaled HFC test images at disc "
                         f"radius {PIVOT} - chance 10 %) lies above 0")
CRITERION_NATURAL_HFC = (f"the 95 % bootstrap interval of (natural model's accuracy on rescaled HFC test images at "
                         f"disc radius {PIVOT} - chance 10 %) lies above 0")
CRITERION_TABLE1 = ("the paired 95 % interval of (LFC-trained - HFC-trained) accuracy on the original test "
                    "images lies above 0")

QUOTE_YIN = ("(paraphrase of the filtered-data figure; the body text could not be read here) models trained and "
             "tested on aggressively high-pass filtered images still reach accuracy well above chance")
QUOTE_WANG_FIG2 = ("For these examples, the prediction outcomes are almost entirely determined by the high-frequency "
                   "components of the image, which are barely perceivable to human.")
QUOTE_WANG_TABLE1 = "Table 1 suggests that LFC is much more “generalizable” than HFC."


def key(label: str, kind: str, shape: str, radius: float, rescale: bool = False) -> str:
    return f"{label}_{kind}_{shape}{'_rescaled' if rescale else ''}_r{radius:g}"


def interval_per_radius(correct: torch.Tensor) -> list[tuple[float, float]]:
    """``(low, high)`` 95 % bootstrap interval of the accuracy per radius from ``[R, N]`` bool correctness."""
    out = []
    for row in correct.double():
        ci = mean_interval(row)
        out.append((ci.low, ci.high))
    return out


def main() -> None:
    settings = setup(__file__, __doc__)
    n = settings.pick(2000, 10_000)  # forwards only: ~80 per image over the three models
    summary = Summary(
        settings, "Accuracy on low- and high-pass filtered CIFAR-10",
        f"Accuracy of the zoo's {', '.join(FAMILY[k] for k in LABELS)} on the same {n} CIFAR-10 test images "
        "filtered in frequency: low-pass keeps the frequencies inside a centred square (Yin et al.) or disc "
        "(Wang et al.) of the given radius (frequency index), high-pass the rest; raw filter outputs unless marked "
        "rescaled (Wang et al.'s x / max(x)). The LFC- and HFC-trained models learnt on the rescaled parts inside "
        f"and outside the disc of radius {PIVOT}. Chance is 10 %. Intervals: 95 % percentile bootstrap over the "
        "images, paired between models. Forward passes in bf16 autocast where the device computes bf16 natively.",
    )
    x, y = test_images("cifar10", n, seed=settings.seed)
    x, y = x.to(settings.device), y.to(settings.device)
    summary.number("n_images", n)
    bf16 = native_bf16(settings.device)
    summary.number("bf16_forwards", bf16)

    results, trained_on = {}, {}
    for label, name in LABELS.items():
        model, meta = reference(FAMILY[label], settings)
        net = BF16Forward(model) if bf16 else model
        shapes = ("square", "disc") if label == "natural" else ("disc",)
        for shape in shapes:
            for kind in ("low", "high"):
                r = filtered_accuracy(net, x, y, RADII, kind=kind, shape=shape, per_image=True)
                results[label, kind, shape] = r
                for radius, acc in zip(r.radii, r.accuracy):
                    summary.number(key(label, kind, shape, radius), acc)
        for kind in ("low", "high"):  # Wang et al.'s rescaled LFC / HFC, as the filtered models were trained
            r = filtered_accuracy(net, x, y, RADII, kind=kind, shape="disc", rescale=True, per_image=True)
            results[label, kind, "disc_rescaled"] = r
            for radius, acc in zip(r.radii, r.accuracy):
                summary.number(key(label, kind, "disc", radius, rescale=True), acc)
        clean = results[label, "low", "disc"]
        summary.number(f"{label}_clean", clean.clean)
        accuracies = {"clean on these images": clean.clean}
        if label != "natural":  # on test images filtered as its training images were
            kind, part = ("low", "LFC") if label == "lowpass" else ("high", "HFC")
            trained_on[label] = results[label, kind, "disc_rescaled"]
            accuracies[f"on rescaled {part} test images"] = trained_on[label].accuracy[RADII.index(PIVOT)]
        summary.model(name, meta, **accuracies)

    for label, name in LABELS.items():
        columns = [(kind, shape) for (m, kind, shape) in results if m == label]
        summary.table(
            f"{name} ({FAMILY[label]}): accuracy per radius (clean {summary.numbers[label + '_clean']:.1%})",
            ["radius", *[f"{kind}-pass {shape.replace('_', ', ')}" for kind, shape in columns]],
            [[f"{radius:g}", *[summary.numbers[key(label, kind, *shape.split('_')[:1], radius,
                                                   rescale=shape.endswith('rescaled'))]
                               for kind, shape in columns]]
             for radius in RADII],
        )

    # Figures: accuracy per radius with 95 % intervals, chance and clean accuracy as lines.
    curves = {f"{kind}-pass {shape}": results["natural", kind, shape]
              for shape in ("square", "disc") for kind in ("low", "high")}
    path = settings.out / "filtered_natural.png"
    plots.plot_filtered_accuracy(curves, path, intervals={k: interval_per_radius(r.correct) for k, r in curves.items()},
                                 chance=CHANCE, title=f"natural ({FAMILY['natural']}), n = {n}: filtered test images",
                                 write_data=False)
    summary.figure(path, f"Natural model: accuracy on low- and high-pass filtered test images per radius, n = {n} "
                         "(square: Yin et al., disc: Wang et al.; bars: 95 % bootstrap intervals; dotted: clean "
                         "accuracy; dashed grey: chance)")
    for kind in ("low", "high"):
        curves = {name: results[label, kind, "disc_rescaled"] for label, name in LABELS.items()}
        path = settings.out / f"filtered_{kind}pass_by_training.png"
        plots.plot_filtered_accuracy(
            curves, path, intervals={k: interval_per_radius(r.correct) for k, r in curves.items()}, chance=CHANCE,
            title=f"{kind}-pass disc, rescaled x / max(x), n = {n}", write_data=False)
        summary.figure(path, f"{kind.capitalize()}-pass disc test images, rescaled per image as the filtered models "
                             f"were trained, n = {n}: the natural model and the models trained on LFC or HFC images "
                             f"(radius {PIVOT}); bars: 95 % bootstrap intervals; dotted: each model's clean accuracy; "
                             "dashed grey: chance")

    # Sanity (true by construction): a wide low-pass keeps every frequency; the narrowest keeps only the lowest.
    low = results["natural", "low", "square"]
    wide = paired_difference(low.correct[-1].double(), low.clean_correct.double())
    narrow = paired_difference(low.correct[0].double(), low.clean_correct.double())
    summary.number("natural_low_wide_minus_clean", wide.estimate)
    summary.number("natural_low_narrow_minus_clean", narrow.estimate)
    summary.sanity(
        f"A low-pass square of radius {RADII[-1]} (beyond the corner) keeps the natural model's accuracy; "
        f"radius {RADII[0]} loses it",
        f"radius {RADII[-1]}: {{natural_low_square_r{RADII[-1]}:.1%}} vs clean {{natural_clean:.1%}} "
        f"({{natural_low_wide_minus_clean:+.1%}}); radius {RADII[0]}: {{natural_low_square_r{RADII[0]}:.1%}} "
        f"({{natural_low_narrow_minus_clean:+.1%}}, 95 % CI [{narrow.low:+.1%}, {narrow.high:+.1%}])",
        not wide.excludes(0) and narrow.high < 0,
    )

    # Finding 1 (Yin et al.): trained and tested on high-pass images, a model is well above chance.
    pivot = RADII.index(PIVOT)
    hfc = trained_on["highpass"]
    ci = bootstrap(lambda c: c.mean(1) - CHANCE, hfc.correct[pivot].double())
    summary.number("hfc_trained_above_chance", ci.estimate)
    summary.finding(
        "A model trained and tested on high-pass filtered images classifies them well above chance",
        "Yin et al. 1906.08988 (filtered-data figure; ImageNet, square filter there)",
        f"HFC-trained on rescaled HFC test images (disc radius {PIVOT}): {{highpass_high_disc_rescaled_r{PIVOT}:.1%}}, "
        "{hfc_trained_above_chance:+.1%} above chance",
        ci.low > 0,
        "the frequencies outside the disc alone carry enough of the label to learn and predict it"
        if ci.low > 0 else "the interval does not lie above chance",
        quote=QUOTE_YIN, criterion=CRITERION_TRAINED_HFC, interval=ci, models=(LABELS["highpass"],),
    )
    # Finding 2 (Wang et al. Fig. 2): the natural model's predictions on the HFC follow the labels.
    natural_hfc = results["natural", "high", "disc_rescaled"]
    ci = bootstrap(lambda c: c.mean(1) - CHANCE, natural_hfc.correct[pivot].double())
    summary.number("natural_hfc_above_chance", ci.estimate)
    summary.finding(
        "A naturally trained CNN's predictions on the nearly invisible high-frequency component follow the labels",
        "Wang et al. 1905.13545, Sec. 1 and Fig. 2 (eight hand-picked test images; no dataset-wide rate is given)",
        f"natural model on rescaled HFC test images (disc radius {PIVOT}): {{natural_high_disc_rescaled_r{PIVOT}:.1%}} "
        f"({{natural_hfc_above_chance:+.1%}} above chance; raw HFC {{natural_high_disc_r{PIVOT}:.1%}})",
        ci.low > 0,
        "over the whole sample, the HFC alone lead the natural model to the label more often than chance"
        if ci.low > 0 else "over the whole sample the natural model reads the HFC at chance",
        quote=QUOTE_WANG_FIG2, criterion=CRITERION_NATURAL_HFC, interval=ci, models=(LABELS["natural"],),
    )
    # Finding 3 (Wang et al. Table 1): LFC-trained generalises to the original images better than HFC-trained.
    ci = paired_difference(results["lowpass", "low", "disc"].clean_correct.double(),
                           results["highpass", "low", "disc"].clean_correct.double())
    summary.number("lfc_minus_hfc_clean", ci.estimate)
    summary.finding(
        "A model trained on the LFC generalises to the original test images much better than one trained on the HFC",
        "Wang et al. 1905.13545, Sec. 4.2, Table 1",
        "original test images: LFC-trained {lowpass_clean:.1%}, HFC-trained {highpass_clean:.1%} "
        "({lfc_minus_hfc_clean:+.1%})",
        ci.low > 0,
        "the HFC-trained model, right on HFC images, does not carry over to whole images; the LFC-trained one does"
        if ci.low > 0 else "the paired interval does not lie above 0",
        quote=QUOTE_WANG_TABLE1, criterion=CRITERION_TABLE1, interval=ci,
        models=(LABELS["lowpass"], LABELS["highpass"]),
    )
    summary.write()


if __name__ == "__main__":
    main()
