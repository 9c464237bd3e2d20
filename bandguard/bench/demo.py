"""The tour: ``bandguard demo`` as one benchmark run plus two spectral figures.

The MNIST reference CNN (:func:`bandguard.bench.zoo.reference_model`), bare and behind an input
low-pass (Wang et al. 1905.13545), post-averaging (Lin et al. 1905.12797) and kernel smoothing,
under adaptive PGD (EOT where a defense is randomized) and the black-box Fourier-basis attack
(Yin et al. 1906.08988) at three L2 budgets, with the sanity checks; then the model's Fourier heat
map and the spectrum of PGD's perturbations against the bare and the low-passed model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from bandguard._checks import check_bool, check_output_path
from bandguard.bench.engine import Progress
from bandguard.bench.harness import run
from bandguard.bench.loading import load_samples, resolve_device
from bandguard.bench.results import BenchResult, write_reports
from bandguard.bench.spec import BenchSpec, parse_spec

__all__ = ["DemoResult", "demo_spec", "run_demo"]

EPSILONS = (1.0, 2.0, 3.0)
HEATMAP_N = 200
"""Images of the heat map (a figure, not the table): its error rates move in steps of 1 / 200, fine
enough to show the map's structure (32 images gave steps of 3 %), at about 80,000 forwards of the
MNIST CNN (394 frequencies x 200 images; seconds on a laptop CPU)."""
HEATMAP_EPS = 6.0
"""L2 norm (per channel) of the heat map's Fourier basis images. Measured on the demo's CNN (200 test
images): at 2.0, 3.0 and 4.0 every frequency's error stays within 0 - 5 % (the map is noise);
at 6.0 it spans 0.5 - 34 % (median 8 %), which shows where the net is sensitive. An MNIST digit's
own L2 norm is about 9."""
SPECTRUM_N = 100
"""Images of the perturbation spectra (at most the table's ``n``)."""


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """The demo's benchmark result and the files it wrote.

    Args:
        bench: the benchmark run.
        files: what was written, by kind (``"markdown"``, ``"heatmap"``, ...).
        model_meta: the reference model's metadata (test accuracy, cached or trained now).
    """

    bench: BenchResult
    files: dict[str, Path]
    model_meta: dict[str, Any]


def demo_spec(out: str | os.PathLike[str], *, n: int = 100, device: str = "auto", seed: int = 0) -> BenchSpec:
    """The demo's benchmark: the MNIST CNN x 4 defenses x (PGD, Fourier, APGD-DLR) x 3 L2 budgets.

    APGD-DLR is the harness's scale-invariant attack, appended because PGD ascends cross-entropy
    (see :func:`bandguard.bench.engine.scale_invariant_entries`).

    Sized to run in about a minute on two CPU cores (issue 12 item 8): post-averaging with one
    sample per radius (7 forwards per prediction, Lin et al. 1905.12797 use more) attacked with
    EOT over 2 draws per step (the adaptive number is still an EOT attack, only noisier than a
    paper's), PGD with ``early_stop`` (deterministic models stop attacking a broken sample; it is
    ignored under EOT), and 16 samples for the sanity probes.

    Args:
        out: the output folder.
        n: test images of the table.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        seed: the subset's and every attack's randomness.

    Returns:
        The :class:`~bandguard.bench.spec.BenchSpec`.
    """
    return parse_spec({
        "dataset": "mnist", "split": "test", "n": n, "batch_size": 128, "sample_budget": 2048,
        "device": device, "seed": seed, "out": str(Path(out).resolve()), "eot": 2, "sanity_n": 16,
        "defenses": ["lowpass:10", "post_average:3.0,K=1", "smooth:0.25"],
        "models": [{"name": "mnist_cnn", "reference": "mnist_cnn"}],
        "attacks": [
            {"attack": "pgd", "norm": "l2", "eps": list(EPSILONS), "steps": 10, "early_stop": True},
            {"attack": "fourier", "eps": list(EPSILONS), "max_queries": 64},
        ],
    })


def run_demo(
    out: str | os.PathLike[str] = "bandguard-demo",
    *,
    n: int = 100,
    device: str = "auto",
    retrain: bool = False,
    force: bool = False,
    progress: Progress | bool | None = None,
) -> DemoResult:
    """Run the tour and write its report, CSV, JSON and figures into ``out``.

    Args:
        out: the output folder.
        n: test images of the table (the heat map uses :data:`HEATMAP_N`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        retrain: train the reference CNN anew (and recompute every cell).
        force: recompute every cell instead of reusing the stored ones.
        progress: the harness's progress: ``True`` for bars, a callable
            ``progress(description, images_done)``, or ``None``.

    Returns:
        The :class:`DemoResult`.
    """
    from bandguard.bench.zoo import reference_model

    out = check_output_path(out, "out", directory=True)  # before the reference model trains
    retrain, force = check_bool(retrain, "retrain"), check_bool(force, "force")
    spec = demo_spec(out, n=n, device=device)
    dev = resolve_device(spec.device)
    with _cpu_threads(1 if dev.type == "cpu" else None):
        model, meta = reference_model("mnist_cnn", device=dev, retrain=retrain)
        result = run(spec, force=force or retrain, progress=progress)
        files = _figures(spec, model, result, out, dev)
    return DemoResult(bench=result, files=files, model_meta=meta)


@contextlib.contextmanager
def _cpu_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op CPU threads (``None``: unchanged), then restore the count.

    The MNIST CNN's convolutions are too small to gain from splitting over cores, and OpenMP's
    worker threads spin while waiting: on a shared two-core machine at load 7 a forward of 16
    images took 120 ms with two threads and 5 ms with one (measured for issue 12 item 8).
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _figures(spec: BenchSpec, model: torch.nn.Module, result: BenchResult, out: Path,
             dev: torch.device) -> dict[str, Path]:
    """The heat map and perturbation spectrum figures, then the reports with them embedded."""
    from bandguard.attacks import create_attack
    from bandguard.defenses import build_defense
    from bandguard.spectral import compare_attack_spectra, fourier_heatmap
    from bandguard.spectral.plots import plot_heatmap, plot_spectra

    x, y, _ = load_samples(spec if spec.n == 0 else dataclasses.replace(spec, n=max(spec.n, HEATMAP_N)))
    k = min(HEATMAP_N, len(y))
    heat = fourier_heatmap(model, x[:k].to(dev), y[:k].to(dev), eps=HEATMAP_EPS,
                           generator=torch.Generator(device=dev).manual_seed(0))
    x, y, _ = load_samples(spec)  # the table's images for the spectra
    heat_png = out / "fourier_heatmap.png"
    plot_heatmap(heat, heat_png, title="Fourier heat map of the bare CNN, error rate", write_data=False)
    lowpass = build_defense("lowpass:10", model).to(dev)
    attack = create_attack("pgd", eps=EPSILONS[1], norm="l2", steps=10)
    m = min(SPECTRUM_N, len(y))
    spectra = compare_attack_spectra([model, lowpass], attack, x[:m].to(dev), y[:m].to(dev),
                                     names=("bare", "lowpass:10"))
    spectrum_png = out / "perturbation_spectrum.png"
    plot_spectra(spectra, spectrum_png, title=f"E|F(x_adv - x)|, PGD L2 eps {EPSILONS[1]:g}, {m} images",
                 write_data=False)
    extra = "\n".join([
        "## Spectra", "",
        f"Fourier heat map of the bare model (error under one Fourier basis image of L2 norm {HEATMAP_EPS:g}, "
        f"{k} images; clean error {heat.clean:.1%}, worst frequency {float(heat.heatmap.max()):.1%}):", "",
        f"![fourier heat map]({heat_png.name})", "",
        "Mean spectrum of PGD's perturbations against the bare and the low-passed model "
        "(high-frequency energy share: " + ", ".join(
            f"{name} {s.high_fraction:.1%}" for name, s in zip(spectra.names, spectra.spectra)) + "):", "",
        f"![perturbation spectrum]({spectrum_png.name})",
    ])
    files = write_reports(result, out, extra_md=extra)
    files.update(heatmap=heat_png, spectrum=spectrum_png)
    return files
