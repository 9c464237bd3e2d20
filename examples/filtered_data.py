"""Accuracy on low- and high-pass filtered CIFAR-10, and models trained on filtered images.

Reproduces two observations on the frequency content CIFAR-10 classifiers use:

- Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision" (arXiv 1906.08988):
  a naturally trained model keeps its accuracy on low-pass filtered test images (a centred square
  of the spectrum kept) only down to some bandwidth, and still classifies high-pass filtered images
  (that square removed) above chance.
- Wang et al., "High-frequency Component Helps Explain the Generalization of CNNs" (arXiv
  1905.13545): a natural model classifies the high-frequency component of an image (outside a
  centred disc), which humans barely see, well above chance; a model trained on the low-frequency
  components only does not. A model trained on the high-frequency components alone learns from
  them.

Models (``bandguard.bench.zoo`` recipes, one network): ``cifar_small`` (natural),
``cifar_small_lowpass`` and ``cifar_small_highpass`` (trained on the parts inside / outside the disc
of radius 8). Filtered images are the raw filter outputs (never clipped), as the training modes
make them; Wang et al.'s per-image ``x / max(x)`` rescaling is also measured for the high-pass
images, since their scripts apply it.

    PYTHONPATH=. BANDGUARD_DATA=/path/to/data python examples/filtered_data.py --quick
    # ~3 min with the three models cached (2 shared CPU cores, load ~12), plus ~75 s per model to train
    PYTHONPATH=. BANDGUARD_DATA=/path/to/data python examples/filtered_data.py          # full: GPU
"""

from __future__ import annotations

import math

from _common import Summary, reference, setup, test_images

from bandguard.spectral import filtered_accuracy, plots

RADII = (1, 2, 4, 6, 8, 10, 12, 16, 20)
"""Cut-off radii in frequency-index units (32 x 32: the square's corner is at 16, the disc's at 22.6)."""
PIVOT = 8
"""The radius the filtered models were trained at, and where the high-pass claims are read."""
CHANCE = 0.1
MODELS = {"natural": "cifar_small", "lowpass-trained": "cifar_small_lowpass",
          "highpass-trained": "cifar_small_highpass"}
KEEP_MARGIN = 0.05
"""A low-pass radius 'keeps' the accuracy when it is within this of the clean accuracy."""


def key(model: str, kind: str, shape: str, radius: float, rescale: bool = False) -> str:
    return f"{model.split('-')[0]}_{kind}_{shape}{'_rescaled' if rescale else ''}_r{radius:g}"


def main() -> None:
    settings = setup(__file__, __doc__)
    summary = Summary(
        settings, "Accuracy on low- and high-pass filtered CIFAR-10",
        "Accuracy of `cifar_small` models on CIFAR-10 test images filtered in frequency: low-pass keeps "
        "the frequencies inside a centred square (Yin et al.) or disc (Wang et al.) of the given radius, "
        "high-pass the rest; raw filter outputs unless marked rescaled (Wang et al.'s x / max(x)). "
        "`lowpass-trained` and `highpass-trained` learnt on the parts inside and outside the disc of "
        f"radius {PIVOT}. The high-pass claims are read at radius {PIVOT}; chance is 10 %.",
    )
    x, y = test_images("cifar10", settings.pick(1000, 10_000), seed=settings.seed)
    x, y = x.to(settings.device), y.to(settings.device)
    n = summary.number("n_images", len(y))
    # Three binomial standard errors above chance: above it, an accuracy is not a lucky 10 %.
    above_chance = summary.number("above_chance", CHANCE + 3 * math.sqrt(CHANCE * (1 - CHANCE) / n))

    results = {}
    for label, recipe in MODELS.items():
        model, meta = reference(recipe, settings)
        short = label.split("-")[0]
        summary.number(f"{short}_test_accuracy", meta["test_accuracy"])
        shapes = ("square", "disc") if label == "natural" else ("disc",)
        for shape in shapes:
            for kind in ("low", "high"):
                r = filtered_accuracy(model, x, y, RADII, kind=kind, shape=shape)
                results[label, kind, shape] = r
                summary.number(f"{short}_clean", r.clean)
                for radius, acc in zip(r.radii, r.accuracy):
                    summary.number(key(label, kind, shape, radius), acc)
        rescaled = filtered_accuracy(model, x, y, [PIVOT], kind="high", shape="disc", rescale=True)
        summary.number(key(label, "high", "disc", PIVOT, rescale=True), rescaled.accuracy[0])

    for label in MODELS:
        summary.table(
            f"{label}: accuracy per radius (clean {summary.numbers[label.split('-')[0] + '_clean']:.1%})",
            ["radius", *[f"{kind}-pass {shape}" for (m, kind, shape) in results if m == label]],
            [[f"{radius:g}", *[summary.numbers[key(label, kind, shape, radius)]
                               for (m, kind, shape) in results if m == label]] for radius in RADII],
        )
    summary.table(
        f"High-pass (disc, radius {PIVOT}) test images, raw and rescaled per image (x / max(x))",
        ["model", "raw", "rescaled"],
        [[label, summary.numbers[key(label, "high", "disc", PIVOT)],
          summary.numbers[key(label, "high", "disc", PIVOT, rescale=True)]] for label in MODELS],
    )

    natural_curves = {f"{kind}-pass {shape}": results["natural", kind, shape]
                      for shape in ("square", "disc") for kind in ("low", "high")}
    path = settings.out / "filtered_natural.png"
    plots.plot_filtered_accuracy(natural_curves, path, write_data=False)
    summary.figure(path, "Natural model: accuracy on low- and high-pass filtered test images per radius "
                         "(square: Yin et al., disc: Wang et al.; dotted: clean accuracy)")
    for kind in ("low", "high"):
        path = settings.out / f"filtered_{kind}pass_by_training.png"
        plots.plot_filtered_accuracy({label: results[label, kind, "disc"] for label in MODELS}, path,
                                     write_data=False)
        summary.figure(path, f"{kind.capitalize()}-pass (disc) test images: natural versus models trained "
                             f"on low- or high-pass images (radius {PIVOT}); dotted: each model's clean accuracy")

    # Yin et al.: the low-pass accuracy holds down to a radius, then falls.
    clean = summary.numbers["natural_clean"]
    low = results["natural", "low", "square"]
    kept = [r for r, a in zip(low.radii, low.accuracy) if a >= clean - KEEP_MARGIN]
    # The smallest radius from which every larger one keeps the accuracy.
    keep_radius = min(r for r in kept if all(b >= clean - KEEP_MARGIN for s, b in zip(low.radii, low.accuracy)
                                              if s >= r))
    summary.number("keep_radius", keep_radius)
    smallest = summary.numbers[key("natural", "low", "square", RADII[0])]
    summary.finding(
        "A naturally trained model keeps its accuracy on low-pass filtered images only down to some bandwidth",
        "Yin et al. 1906.08988 (Fig. 2)",
        "within 5 points of clean ({natural_clean:.1%}) down to square radius {keep_radius:g}; "
        f"{{natural_low_square_r{RADII[0]}:.1%}} at radius {RADII[0]}",
        # kept below the square's edge (16: all but the Nyquist row and column), lost at the smallest radius
        keep_radius < 16 and smallest < clean - 0.2,
        "removing the highest frequencies costs little, removing all but the lowest costs most of the accuracy"
        if smallest < clean - 0.2 else "the accuracy does not collapse at the smallest radius",
    )
    hp_square = summary.numbers[key("natural", "high", "square", PIVOT)]
    high = results["natural", "high", "square"]
    above = [r for r, a in zip(high.radii, high.accuracy) if a > above_chance]
    # 0 when no radius is above chance (the radii start at 1)
    last_above = summary.number("last_above_chance_radius", max(above, default=0))
    summary.finding(
        "High-pass filtered images are still classified above chance by a naturally trained model",
        "Yin et al. 1906.08988 (Fig. 2)",
        f"{{natural_high_square_r{PIVOT}:.1%}} at square radius {PIVOT} (raw), "
        f"{{natural_high_square_r{RADII[0]}:.1%}} at radius {RADII[0]}; chance + 3 SE {{above_chance:.1%}}, "
        "exceeded up to radius {last_above_chance_radius:g}",
        hp_square > above_chance,
        "the model reads label information from the frequencies outside the central square"
        if hp_square > above_chance else
        (f"above chance only while the lowest frequencies alone are removed (radius <= {last_above:g}), "
         f"at chance at radius {PIVOT}" if last_above > 0 else "the high-pass images are classified at chance"),
    )

    # Wang et al.: high-frequency components carry label information a natural model uses.
    natural_hf = summary.numbers[key("natural", "high", "disc", PIVOT, rescale=True)]
    summary.finding(
        "A natural model classifies the high-frequency component (HFC) of test images well above chance",
        "Wang et al. 1905.13545 (Sec. 3)",
        f"{{natural_high_disc_rescaled_r{PIVOT}:.1%}} rescaled, {{natural_high_disc_r{PIVOT}:.1%}} raw, "
        f"at disc radius {PIVOT}",
        natural_hf > 2 * CHANCE,
        "the natural model's predictions on the nearly invisible HFC follow the labels"
        if natural_hf > 2 * CHANCE else "at this scale the natural model reads the HFC at most at twice chance",
    )
    lowpass_hf = summary.numbers[key("lowpass-trained", "high", "disc", PIVOT, rescale=True)]
    summary.finding(
        "A model trained on low-frequency components (LFC) loses that: its HFC accuracy falls to chance",
        "Wang et al. 1905.13545 (Sec. 3)",
        f"{{lowpass_high_disc_rescaled_r{PIVOT}:.1%}} (LFC-trained) vs {{natural_high_disc_rescaled_r{PIVOT}:.1%}} "
        "(natural) on rescaled HFC images; chance + 3 SE {above_chance:.1%}",
        lowpass_hf <= above_chance < natural_hf,
        "never shown the high frequencies, the LFC-trained model finds no label in them"
        if lowpass_hf <= above_chance else "the LFC-trained model still reads some label from the HFC images",
    )
    highpass_hf = summary.numbers[key("highpass-trained", "high", "disc", PIVOT)]
    summary.finding(
        "High-frequency components alone suffice to learn the labels (a model trained on HFC generalises)",
        "Wang et al. 1905.13545 (Sec. 3)",
        f"{{highpass_high_disc_r{PIVOT}:.1%}} on HFC test images (HFC-trained), clean images {{highpass_clean:.1%}}",
        highpass_hf > 2 * CHANCE,
        "the HFC carry enough of the label for a CNN to learn it from them alone"
        if highpass_hf > 2 * CHANCE else "the HFC-trained model does not reach twice chance at this scale",
    )
    summary.write()


if __name__ == "__main__":
    main()
