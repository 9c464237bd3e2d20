"""Do the Gaussian-augmentation findings survive a new training seed?

The other examples compare one trained net per kind (the committed ``cifar_fast`` family, seed 0):
their intervals resample the test images, not the training run. Here the natural (``cifar_fast``)
and Gaussian-augmented (``cifar_fast_gaussian``) nets are trained from three seeds each (0, 1, 2;
seeds 1 and 2 are committed in ``examples/models/`` as ``<net>-seed<N>``) and the trade-off Yin et
al. (arXiv 1906.08988) describe is measured at every seed, each measure exactly as its own example
defines it (the functions are imported from there):

- ``corruption_spectra``: the gain in the share of clean accuracy kept under the noise, blur and
  fog-and-contrast corruptions (severity 3), Gaussian minus natural, on 1,000 test images;
- ``fourier_heatmaps``: the high- and low-band sensitivity (band error minus clean error, per
  image) at eps 4, Gaussian minus natural, on 500 test images (1,000 there).

The criterion, fixed before the run: a claim holds when its own example's criterion (a paired 95 %
bootstrap interval over the images on the paper's side of 0) holds at every seed. Each row's
interval is that of the mean over the seeds (the images resampled jointly for all seeds); the row
also gives each seed's estimate and the spread over seeds beside the width of one seed's interval.
The adversarially trained net (28 min a seed here) and the claims that rest on the natural net alone
are not repeated.

    BANDGUARD_DATA=/path/to/data python examples/training_seeds.py --quick   # 2 CPU cores
    BANDGUARD_DATA=/path/to/data python examples/training_seeds.py           # GPU: 10,000 / 1,000 images
"""

from __future__ import annotations

import torch
from _common import FAMILY, Summary, reference, setup, test_images
from corruption_spectra import CRITERION_DOWN, CRITERION_UP, DIRECTION, GROUPS, RADIUS, SEVERITY, kept_gain, per_image
from corruption_spectra import QUOTE_TRADEOFF as QUOTE_CORRUPTIONS
from corruption_spectra import SOURCE as SOURCE_CORRUPTIONS
from fourier_heatmaps import CRITERION_HIGH, CRITERION_LOW, EPS, band_sensitivity
from fourier_heatmaps import QUOTE_TRADEOFF as QUOTE_BANDS

from bandguard import BF16Forward, native_bf16
from bandguard.bench.stats import Statistic, bootstrap
from bandguard.fourier import radial_distance
from bandguard.spectral import corruption_spectrum, fourier_heatmap

SEEDS = (0, 1, 2)
LABELS = ("natural", "gaussian")

# The criterion, written before the run (the verdicts below only read it).
CRITERION = ("the claim's criterion in its own example holds at every one of the 3 training seeds: {inner}; "
             "the row's interval is that of the mean over the seeds")


def mean_over_seeds(parts: list[tuple[Statistic, tuple[torch.Tensor, ...]]]) -> tuple[Statistic, list[torch.Tensor]]:
    """One statistic over every seed's columns: the mean of the seeds' statistics, so that
    :func:`bootstrap` resamples the same images for all seeds (they were measured on the same ones).

    Args:
        parts: per seed, a statistic (``bootstrap``'s kind: resampled columns -> ``[B]``) and its columns.

    Returns:
        The pooled statistic and all the columns, in order, for ``bootstrap(statistic, *columns)``.
    """
    columns = [c for _, cols in parts for c in cols]

    def statistic(*resampled: torch.Tensor) -> torch.Tensor:
        values, start = [], 0
        for one, cols in parts:
            values.append(one(*resampled[start:start + len(cols)]))
            start += len(cols)
        return torch.stack(values).mean(0)

    return statistic, columns


def tag(label: str, seed: int) -> str:
    """The recorded model label of ``label`` trained with ``seed``: ``"gaussian_s1"``."""
    return f"{label}_s{seed}"


def main() -> None:
    settings = setup(__file__, __doc__)
    n_corr = settings.pick(1000, 10_000)
    n_map = settings.pick(500, 1000)
    summary = Summary(
        settings, "Training seeds: Gaussian augmentation's trade-off at three seeds",
        f"The zoo's {FAMILY['natural']} and {FAMILY['gaussian']} trained from seeds {', '.join(map(str, SEEDS))} "
        f"(seed 0: the family the other examples use). At each seed, Gaussian minus natural: the gain in the share "
        f"of clean accuracy kept under three corruption groups (severity {SEVERITY}, {n_corr} test images, as in "
        f"corruption_spectra) and the high- and low-band sensitivity of the Fourier heat map (eps {EPS:g}, "
        f"{n_map} test images, as in fourier_heatmaps). The same images, corrupted draws and signs for every net. "
        "A claim holds when its example's criterion holds at every seed; intervals: 95 % paired percentile "
        "bootstrap over the images (for the mean over seeds, the images resampled jointly).",
    )
    x, y = test_images("cifar10", n_corr, seed=settings.seed)
    xm, ym = test_images("cifar10", n_map, seed=settings.seed)
    x, y, xm, ym = (t.to(settings.device) for t in (x, y, xm, ym))
    summary.number("n_corruption_images", n_corr)
    summary.number("n_heatmap_images", n_map)
    h = xm.shape[-1]
    dist = radial_distance(h, h)
    low, high = dist < h / 8, dist >= 3 * h / 8
    bf16 = native_bf16(settings.device)
    summary.number("bf16_forwards", bf16)
    compiled = settings.device.type == "cpu"  # as in fourier_heatmaps: 1.35x on a CPU

    table: dict[str, torch.Tensor] = {}  # tag -> [N, K + 1] correctness under each corruption
    sens: dict[str, dict[str, torch.Tensor]] = {"high": {}, "low": {}}  # band -> tag -> [N]
    names: list[str] = []
    accuracy_rows = []
    for seed in SEEDS:
        row = [str(seed)]
        for label in LABELS:
            model, meta = reference(FAMILY[label], settings, seed=seed)
            name = tag(label, seed)
            summary.model(name, meta)
            row.append(meta["test_accuracy"])
            net = BF16Forward(model) if bf16 else model
            generator = torch.Generator(settings.device).manual_seed(settings.seed)  # the same draws for every net
            run = corruption_spectrum(net, x, y, severity=SEVERITY, generator=generator, radius=RADIUS, per_image=True)
            names = [r.name for r in run.results]
            table[name] = per_image(run, names)
            generator = torch.Generator(settings.device).manual_seed(settings.seed)  # the same signs for every net
            heat = fourier_heatmap(torch.compile(net) if compiled else net, xm, ym, eps=EPS, generator=generator,
                                   per_image=True, progress=True)
            sens["high"][name] = band_sensitivity(heat.per_image, heat.clean_per_image, high)
            sens["low"][name] = band_sensitivity(heat.per_image, heat.clean_per_image, low)
        accuracy_rows.append(row)
    summary.table("Clean accuracy on the 10,000 test images per training seed", ["seed", *LABELS], accuracy_rows)
    images = torch.arange(len(y))  # resampled by bootstrap; kept_gain turns it into counts per image

    def corruption_gain(seed: int, cols: list[int]) -> Statistic:
        """Gaussian minus natural share kept at ``seed``, averaged over the columns ``cols`` -> ``[B]``."""
        return lambda idx: kept_gain(idx, table[tag("gaussian", seed)], table[tag("natural", seed)])[:, cols].mean(1)

    def band_shift(gaussian: torch.Tensor, natural: torch.Tensor) -> torch.Tensor:
        """Gaussian minus natural mean band sensitivity of resampled ``[B, N]`` columns -> ``[B]``."""
        return gaussian.mean(1) - natural.mean(1)

    claims = []  # (slug, claim, source, quote, its example's criterion, up, per seed: (statistic, columns))
    for group, members in GROUPS.items():
        cols = [names.index(m) for m in members]
        up = DIRECTION[group] > 0
        claims.append((
            "corr_" + group.replace(" and ", "_").replace(" ", "_"),
            f"Gaussian data augmentation {'improves' if up else 'degrades'} robustness to {group} corruptions",
            SOURCE_CORRUPTIONS, QUOTE_CORRUPTIONS, CRITERION_UP if up else CRITERION_DOWN, up,
            [(corruption_gain(seed, cols), (images,)) for seed in SEEDS]))
    for band, criterion, up in (("high", CRITERION_HIGH, False), ("low", CRITERION_LOW, True)):
        claims.append((
            f"band_{band}",
            f"Gaussian data augmentation makes the model {'less' if up else 'more'} robust to {band}-frequency "
            "perturbations",
            "Yin et al. 1906.08988, Fig. 2 and abstract", QUOTE_BANDS, criterion, up,
            [(band_shift, (sens[band][tag("gaussian", seed)], sens[band][tag("natural", seed)])) for seed in SEEDS]))

    ci_rows = []
    for slug, claim, source, quote, inner, up, parts in claims:
        seeds = [bootstrap(statistic, *columns) for statistic, columns in parts]
        holds = [ci.low > 0 if up else ci.high < 0 for ci in seeds]
        pooled, columns = mean_over_seeds(parts)
        ci = bootstrap(pooled, *columns)
        for seed, one in zip(SEEDS, seeds):
            summary.number(f"{slug}_s{seed}", one.estimate)
        summary.number(f"{slug}_mean", ci.estimate)
        summary.number(f"{slug}_spread", max(c.estimate for c in seeds) - min(c.estimate for c in seeds))
        summary.number(f"{slug}_width", sum(c.high - c.low for c in seeds) / len(seeds))
        summary.number(f"{slug}_holds", sum(holds))
        ci_rows.append([claim, *[f"{c.estimate:+.1%} [{c.low:+.1%}, {c.high:+.1%}]" for c in seeds]])
        per = " / ".join(f"{{{slug}_s{seed}:+.1%}}" for seed in SEEDS)
        agree = all(holds)
        summary.finding(
            f"{claim} (at each of {len(SEEDS)} training seeds)", source,
            f"seeds {' / '.join(map(str, SEEDS))}: {per}; mean {{{slug}_mean:+.1%}}; spread over seeds "
            f"{{{slug}_spread:.1%}} against a mean per-seed interval width of {{{slug}_width:.1%}}; the example's "
            f"criterion holds at {{{slug}_holds:.0f}} of {len(SEEDS)} seeds",
            agree,
            ("it holds at every seed" if agree else
             "it holds at no seed: the seed-0 verdict is not a training accident" if not any(holds) else
             "it holds at some seeds only: the verdict turns on the training run"),
            quote=quote, criterion=CRITERION.format(inner=inner), interval=ci,
            models=tuple(tag(label, seed) for seed in SEEDS for label in LABELS),
        )
    summary.table("Each seed's estimate and paired 95 % interval (Gaussian minus natural)",
                  ["claim", *[f"seed {s}" for s in SEEDS]], ci_rows)
    summary.write()


if __name__ == "__main__":
    main()
