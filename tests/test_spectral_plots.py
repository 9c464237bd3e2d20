"""Contracts of bandguard.spectral.plots: every figure writes a PNG and its data, without pyplot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from bandguard.spectral import (
    corruption_spectrum,
    filtered_accuracy,
    fourier_heatmap,
    kernel_spectrum,
    perturbation_spectrum,
    plots,
)
from bandguard.spectral.fprinciple import FPrincipleResult


def tiny_model(channels: int = 3, size: int = 8, classes: int = 5) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * size * size, classes)).double()


def test_every_plot_writes_a_png_and_its_data(tmp_path) -> None:
    model = tiny_model(channels=3, size=8)
    x = torch.rand(6, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (6,))
    heat = fourier_heatmap(model, x, y, eps=1.0)
    spec = perturbation_spectrum(torch.randn(4, 3, 8, 8))
    filt = filtered_accuracy(model, x, y, [1, 2, 4])
    fp = FPrincipleResult(deltas=(1.0, 2.0), epochs=(0, 1), e_low=((0.9, 0.8), (0.5, 0.4)),
                          e_high=((1.0, 1.0), (0.9, 0.95)), n=10, self_weight=(0.5, 0.3))
    corr = corruption_spectrum(model, x, y, ["fog", "gaussian_noise"])
    written = [
        plots.plot_heatmap(heat, tmp_path / "heat.png"),
        plots.plot_spectra({"a": spec, "b": spec}, tmp_path / "spectra.png"),
        plots.plot_radial_profiles({"a": spec, "b": spec.radial * 2}, tmp_path / "radial.png"),
        plots.plot_filtered_accuracy({"low": filt}, tmp_path / "filtered.png"),
        plots.plot_corruption_spectra(corr, tmp_path / "corr.png"),
        plots.plot_kernel_spectra(kernel_spectrum(model), tmp_path / "kernels.png"),
        plots.plot_fprinciple(fp, tmp_path / "fprinciple.png"),
    ]
    assert len(written) == 7
    for name in ("heat", "spectra", "radial", "filtered", "corr", "kernels", "fprinciple"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 300_000
        json.loads((tmp_path / f"{name}.json").read_text())
    assert "clean error" in written[0].axes[0].get_title()
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def test_plots_do_not_touch_pyplot() -> None:
    code = "import sys, bandguard.spectral.plots; sys.exit('matplotlib.pyplot' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_spectral_modules_import_without_the_plotting_layer() -> None:
    # fprinciple and plots no longer import each other: the analyses load without matplotlib.
    code = ("import sys, bandguard.spectral.fprinciple, bandguard.spectral.heatmap; "
            "sys.exit('bandguard.spectral.plots' in sys.modules or 'matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_corruption_gain_plots_the_accuracy_difference_against_the_high_frequency_share(tmp_path) -> None:
    x = torch.rand(6, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=torch.Generator().manual_seed(1))
    names = ["fog", "gaussian_noise"]
    base = corruption_spectrum(tiny_model(), x, y, names, generator=torch.Generator().manual_seed(0))
    other_model = tiny_model()
    with torch.no_grad():
        other_model[-1].bias += torch.arange(5, dtype=torch.float64) * 10  # predicts class 4 always
    other = corruption_spectrum(other_model, x, y, names, generator=torch.Generator().manual_seed(0))
    fig = plots.plot_corruption_gain(base, other, tmp_path / "gain.png", labels=("a", "b"))
    data = json.loads((tmp_path / "gain.json").read_text())
    assert list(data["points"]) == names and data["labels"] == ["a", "b"]
    for name in names:
        point = data["points"][name]
        assert point["gain"] == pytest.approx(float((y == 4).double().mean()) - base[name].accuracy)
        assert point["high_fraction"] == pytest.approx(base[name].high_fraction)
    # the scatter's points are the recorded ones, gains in accuracy points
    offsets = fig.axes[0].collections[0].get_offsets()
    assert offsets[:, 1].tolist() == pytest.approx([100 * data["points"][n]["gain"] for n in names])
    assert (tmp_path / "gain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fewer = corruption_spectrum(tiny_model(), x, y, ["fog"])
    with pytest.raises(ValueError, match="same corruptions"):
        plots.plot_corruption_gain(base, fewer)
    harsher = corruption_spectrum(tiny_model(), x, y, names, severity=5)
    with pytest.raises(ValueError, match="same severities"):
        plots.plot_corruption_gain(base, harsher)


def test_compared_heat_maps_share_one_colour_scale_and_one_labelled_bar(tmp_path) -> None:
    model = tiny_model(channels=3, size=8)
    x, y = torch.rand(6, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (6,))
    low = fourier_heatmap(model, x, y, eps=0.5, generator=torch.Generator().manual_seed(0))
    high = fourier_heatmap(model, x, y, eps=8.0, generator=torch.Generator().manual_seed(0))
    fig = plots.plot_heatmaps({"eps 0.5": low, "eps 8": high}, tmp_path / "maps.png", title="two budgets")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    top = max(float(low.heatmap.max()), float(high.heatmap.max()))
    assert all(im.get_clim() == (0.0, top) for im in images)
    bars = [ax for ax in fig.axes if not ax.images]
    assert len(bars) == 1 and bars[0].get_ylabel() == "error rate"
    assert (tmp_path / "maps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(json.loads((tmp_path / "maps.json").read_text())) == {"eps 0.5", "eps 8"}
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_heatmaps({})
    loss = fourier_heatmap(model, x, y, eps=0.5, metric="loss")
    with pytest.raises(ValueError, match="share one metric"):
        plots.plot_heatmaps({"a": low, "b": loss})


def test_fprinciple_plot_normalises_each_curve_to_its_first_value() -> None:
    fp = FPrincipleResult(deltas=(1.0,), epochs=(0, 1, 2), e_low=((0.8,), (0.4,), (0.2,)),
                          e_high=((0.5,), (0.5,), (0.25,)), n=10, self_weight=(0.5,))
    fig = plots.plot_fprinciple(fp, normalise=True, title="cifar_fast, seed 0")
    ax = fig.axes[0]
    low, high = (line.get_ydata().tolist() for line in ax.get_lines())
    assert low == [1.0, 0.5, 0.25] and high == [1.0, 1.0, 0.5]
    assert ax.get_ylabel() == "relative error / its epoch-0 value" and ax.get_title() == "cifar_fast, seed 0"
    raw = plots.plot_fprinciple(fp).axes[0]
    assert raw.get_lines()[0].get_ydata().tolist() == [0.8, 0.4, 0.2] and raw.get_ylabel() == "relative error"


def test_point_labels_are_moved_apart_by_their_rendered_boxes() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from bandguard.spectral.plots import _separate_labels

    # Where the adversarial net's corruption-gain labels once touched: a long name beside a close pair,
    # two near-identical points at the left, and one label far from all.
    points = {"jpeg_compression": (0.62, 2.0), "gaussian_blur": (0.70, 6.0), "defocus_blur": (0.73, 4.0),
              "saturate": (0.01, 1.0), "brightness": (0.02, -1.0), "pixelate": (0.87, 40.0)}
    fig = Figure(figsize=(4.6, 3.6))
    ax = fig.add_subplot()
    ax.set_xlim(0, 0.95)
    ax.set_ylim(-45, 75)
    labels = [ax.annotate(n, p, fontsize=6, xytext=(3, 0), textcoords="offset points", va="center")
              for n, p in points.items()]
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert boxes[0].overlaps(boxes[2]) and boxes[3].overlaps(boxes[4])  # the case to mend
    _separate_labels(fig, labels)
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    moved = {t.get_text() for t in labels if t.xyann != (3, 0)}
    assert "pixelate" not in moved and "gaussian_blur" not in moved and "saturate" not in moved
    assert {"defocus_blur", "brightness"} <= moved


def test_normalised_kernel_spectra_share_one_scale_of_each_panels_peak() -> None:
    import dataclasses

    from bandguard.defenses import smooth_kernels
    from bandguard.spectral import KernelSpectrum

    model = tiny_model()
    bare = kernel_spectrum(model).layers[0]
    smoothed = kernel_spectrum(smooth_kernels(model, 1.0)).layers[0]  # the published mask scales it up
    result = KernelSpectrum(layers=(dataclasses.replace(bare, name="rho = 0"),
                                    dataclasses.replace(smoothed, name="rho = 1")), size=kernel_spectrum(model).size)
    fig = plots.plot_kernel_spectra(result, normalise=True, title="tiny net")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2 and len(fig.axes) == 3  # two maps, one colour bar, no empty panel
    for ax in panels:
        data = ax.images[0].get_array()
        assert ax.images[0].get_clim() == (0.0, 1.0) and abs(float(data.max()) - 1.0) < 1e-6
        assert ax.get_xlabel() == "horizontal frequency index" and ax.get_ylabel() == "vertical frequency index"
    bar = next(ax for ax in fig.axes if not ax.images)
    assert bar.get_ylabel() == "mean kernel amplitude / panel's peak"
    own = plots.plot_kernel_spectra(result)  # default: one bar per panel, in amplitude units
    assert len(own.axes) == 4 and [ax for ax in own.axes if ax.images][1].images[0].get_clim()[1] > 1.5
