"""Figures for the spectral analyses: PNG plus the plotted data as JSON, written atomically.

Figures are built on ``matplotlib.figure.Figure`` directly and rendered by the Agg canvas, so no
pyplot state (current figure, global backend) is touched. Every ``plot_*`` function returns the
``Figure``; given a ``path`` it also writes ``path`` (PNG) and, unless ``write_data=False``, the data
beside it (same name, ``.json``). Spectra are drawn with low frequency at the centre, axes in
centred frequency units.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bandguard._checks import check_bool
from bandguard._io import write_bytes_atomic, write_json_atomic

if TYPE_CHECKING:
    from bandguard.spectral.corruptions import CorruptionSpectra
    from bandguard.spectral.filtered import FilteredAccuracy
    from bandguard.spectral.fprinciple import FPrincipleResult
    from bandguard.spectral.heatmap import HeatmapResult
    from bandguard.spectral.kernels import KernelSpectrum
    from bandguard.spectral.perturbation import PerturbationSpectrum, SpectrumComparison

__all__ = [
    "plot_corruption_gain",
    "plot_corruption_spectra",
    "plot_filtered_accuracy",
    "plot_fprinciple",
    "plot_heatmap",
    "plot_heatmaps",
    "plot_kernel_spectra",
    "plot_radial_profiles",
    "plot_spectra",
    "save_figure",
]

PathLike = str | os.PathLike[str]
CMAP = "viridis"


def save_figure(
    fig: Figure, path: PathLike, data: Any = None, *, dpi: int = 100
) -> Path:
    """Render ``fig`` to PNG at ``path`` atomically; write ``data`` as JSON beside it if given.

    Args:
        fig: the figure, rendered by the Agg canvas (no pyplot state is touched).
        path: the PNG to write; must not end in ``.json``.
        data: anything JSON can hold, written to ``path`` with the suffix ``.json``; ``None`` writes
            nothing.
        dpi: resolution of the PNG.

    Returns:
        The PNG's path.

    Raises:
        ValueError: ``path`` ends in ``.json`` while ``data`` is given.
    """
    path = Path(path)
    if data is not None and path.suffix.lower() == ".json":  # the data would overwrite the figure
        raise ValueError(f"path {str(path)!r} must not end in .json: the figure's data is written beside it as .json")
    FigureCanvasAgg(fig)  # attach the Agg canvas: no pyplot, no global backend switch
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    write_bytes_atomic(path, buffer.getvalue())
    if data is not None:
        write_json_atomic(path.with_suffix(".json"), data)
    return path


def _finish(fig: Figure, path: PathLike | None, data: Any, write_data: bool) -> Figure:
    write_data = check_bool(write_data, "write_data")
    if path is not None:
        save_figure(fig, path, data if write_data else None)
    return fig


def _centred_extent(h: int, w: int) -> tuple[float, float, float, float]:
    """imshow extent putting centred frequency ``(0, 0)`` at ``(H // 2, W // 2)`` on the origin."""
    return (-(w // 2) - 0.5, w - w // 2 - 0.5, h - h // 2 - 0.5, -(h // 2) - 0.5)


def _image(fig: Figure, ax: Any, values: torch.Tensor, title: str, *, label: str | None = None,
           bar: bool = True, **kwargs: Any) -> Any:
    """One centred map, with its own colour bar labelled ``label`` (the quantity and its unit) unless
    ``bar`` is false (panels sharing one scale get one bar: :func:`_shared_bar`). Returns the image."""
    h, w = values.shape
    im = ax.imshow(values.numpy(), cmap=CMAP, extent=_centred_extent(h, w), **kwargs)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    if bar:
        colour_bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        colour_bar.ax.tick_params(labelsize=6, which="both")  # a log scale labels its minor ticks too
        if label is not None:
            colour_bar.set_label(label, fontsize=7)
    return im


def _shared_bar(fig: Figure, image: Any, axes: Sequence[Any], label: str) -> None:
    """One colour bar, labelled ``label``, for panels drawn on ``image``'s scale."""
    bar = fig.colorbar(image, ax=list(axes), fraction=0.03, pad=0.02)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def shared_log_norm(maps: Sequence[torch.Tensor], floor: float = 1e-4) -> Any:
    """One logarithmic colour scale for panels meant to be compared.

    Amplitude spectra are dominated by a few cells (the DC term of a perturbation, the lowest
    frequencies of a corruption): on a linear scale everything else is one colour. The scale runs
    from the smallest positive value (at least ``floor`` times the largest) to the largest value
    over all ``maps``.

    Args:
        maps: the panels' values, each ``[H, W]``.
        floor: the lowest value shown, relative to the largest.

    Returns:
        A ``matplotlib.colors.LogNorm`` (a linear ``Normalize`` where every value is zero).
    """
    from matplotlib.colors import Normalize

    top = max(float(m.max()) for m in maps)
    positive = [float(m[m > 0].min()) for m in maps if bool((m > 0).any())]
    if top <= 0 or not positive:
        return Normalize(vmin=0.0, vmax=max(top, 1e-12))
    return LogNorm(vmin=max(min(positive), top * floor), vmax=top, clip=True)


def _grid(count: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(count, max_cols)
    return math.ceil(count / cols), cols


# --------------------------------------------------------------------------- heat map


def _clean_text(result: HeatmapResult) -> str:
    """The map's value on the unperturbed images, for a title: ``"clean error 10.0%"``."""
    return f"clean error {result.clean:.1%}" if result.metric == "error" else f"clean {result.clean:.3g}"


def plot_heatmap(
    result: HeatmapResult,
    path: PathLike | None = None,
    *,
    title: str | None = None,
    write_data: bool = True,
) -> Figure:
    """Fourier heat map (Yin et al. 1906.08988): low frequency at the centre, colour bar, clean
    error in the title.

    Args:
        result: a :func:`~bandguard.spectral.fourier_heatmap` result (its ``heatmap`` is ``[H, W]``).
        path: PNG to write (data as JSON beside it); ``None`` writes nothing.
        title: the heading; default names the metric.
        write_data: also write the plotted data as JSON beside the PNG.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    fig = Figure(figsize=(4.2, 3.6))
    ax = fig.add_subplot()
    if result.layer is not None:
        what = f"L2 change of {result.layer!r}"
    else:
        what = "error rate" if result.metric == "error" else result.metric
    clean = _clean_text(result)
    heading = title or f"Fourier heat map, {what}"
    if result.layer is not None:
        label = "L2 change of the layer's output" + (" (relative to the largest)" if result.relative_scale else "")
        scale: dict[str, Any] = {}
    elif result.metric == "error":
        # From 0, so a colour reads as an error rate (not as a deviation from the map's minimum).
        top = float(result.heatmap.max())
        label, scale = "error rate (fraction of images misclassified)", {"vmin": 0.0, "vmax": top if top > 0 else 1.0}
    else:
        label, scale = f"mean {result.metric} per image", {}
    _image(fig, ax, result.heatmap, f"{heading}\neps={result.eps:g}, n={result.n}, {clean}", label=label, **scale)
    ax.set_xlabel("horizontal frequency", fontsize=8)
    ax.set_ylabel("vertical frequency", fontsize=8)
    fig.tight_layout()
    return _finish(fig, path, result.to_dict(), write_data)


# --------------------------------------------------------------------------- perturbation spectra


def _as_mapping(spectra: Mapping[str, Any] | SpectrumComparison) -> dict[str, Any]:
    if hasattr(spectra, "names") and hasattr(spectra, "spectra"):
        return dict(zip(spectra.names, spectra.spectra))
    return dict(spectra)


def plot_spectra(
    spectra: Mapping[str, PerturbationSpectrum] | SpectrumComparison,
    path: PathLike | None = None,
    *,
    title: str = "E|F(delta)|",
    write_data: bool = True,
) -> Figure:
    """Mean centred perturbation spectra side by side (Yin et al.: natural vs adversarial training).

    Args:
        spectra: label -> :class:`PerturbationSpectrum` (its ``mean`` is ``[H, W]``), or a
            :class:`SpectrumComparison`.
        path: PNG to write (data as JSON beside it); ``None`` writes nothing.
        title: the quantity shown, in each panel's title.
        write_data: also write the plotted data as JSON beside the PNG.

    Returns:
        The ``matplotlib.figure.Figure``, one panel per label.
    """
    items = _as_mapping(spectra)
    if not items:
        raise ValueError("spectra must hold at least one spectrum")
    rows, cols = _grid(len(items))
    fig = Figure(figsize=(3.6 * cols, 3.3 * rows + 0.4))
    norm = shared_log_norm([s.mean for s in items.values()])  # one scale: panels compare by colour
    for index, (name, spectrum) in enumerate(items.items()):
        ax = fig.add_subplot(rows, cols, index + 1)
        _image(fig, ax, spectrum.mean, f"{name}\nhigh-freq energy {spectrum.high_fraction:.0%}",
               label="mean amplitude |F(x_adv - x)| (log scale)", norm=norm)
    fig.suptitle(f"{title} (one colour scale)", fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, {k: v.to_dict() for k, v in items.items()}, write_data)


def plot_radial_profiles(
    profiles: Mapping[str, PerturbationSpectrum | torch.Tensor] | SpectrumComparison,
    path: PathLike | None = None,
    *,
    ylabel: str = "mean |F|",
    log: bool = True,
    write_data: bool = True,
) -> Figure:
    """Radial (azimuthally averaged) profiles, one line per label.

    Args:
        profiles: label -> spectrum (its ``radial`` is used) or a 1-D profile tensor ``[R]``.
        path: PNG to write (data as JSON beside it); ``None`` writes nothing.
        ylabel: the y axis label.
        log: a logarithmic y axis.
        write_data: also write the plotted data as JSON beside the PNG.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    items = {k: (v if isinstance(v, torch.Tensor) else v.radial) for k, v in _as_mapping(profiles).items()}
    fig = Figure(figsize=(4.2, 3.2))
    ax = fig.add_subplot()
    for name, profile in items.items():
        ax.plot(range(profile.numel()), profile.numpy(), marker=".", label=name)
    # an all-zero profile cannot be logged
    if check_bool(log, "log") and any(bool((p > 0).any()) for p in items.values()):
        ax.set_yscale("log")
    ax.set_xlabel("distance from the centre (frequency)", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path, {k: v.tolist() for k, v in items.items()}, write_data)


# --------------------------------------------------------------------------- filtered accuracy


def plot_filtered_accuracy(
    results: FilteredAccuracy | Sequence[FilteredAccuracy] | Mapping[str, FilteredAccuracy],
    path: PathLike | None = None,
    *,
    intervals: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    chance: float | None = None,
    title: str | None = None,
    write_data: bool = True,
) -> Figure:
    """Accuracy against the filter radius, one line per result (low- and high-pass, per model).

    Each result's clean accuracy is a dotted line of its colour.

    Args:
        results: one :func:`~bandguard.spectral.filtered_accuracy` result, several (labelled by
            kind and shape), or label -> result.
        path: PNG to write (data as JSON beside it); ``None`` writes nothing.
        intervals: label -> one ``(low, high)`` accuracy interval per radius, drawn as error bars.
        chance: the chance accuracy, drawn as a grey dashed line.
        title: the heading (say the model and the number of images).
        write_data: also write the plotted data as JSON beside the PNG.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    if hasattr(results, "radii"):
        results = [results]  # type: ignore[list-item]
    if not isinstance(results, Mapping):
        results = {f"{r.kind}-pass ({r.shape})": r for r in results}  # type: ignore[union-attr]
    intervals = dict(intervals or {})
    fig = Figure(figsize=(4.6, 3.4))
    ax = fig.add_subplot()
    for name, r in results.items():
        acc = [100 * a for a in r.accuracy]
        if name in intervals:
            bars = [[a - 100 * lo for a, (lo, _) in zip(acc, intervals[name])],
                    [100 * hi - a for a, (_, hi) in zip(acc, intervals[name])]]
            line = ax.errorbar(r.radii, acc, yerr=bars, marker="o", markersize=4, capsize=2, label=name).lines[0]
        else:
            line = ax.plot(r.radii, acc, marker="o", label=name)[0]
        ax.axhline(100 * r.clean, color=line.get_color(), linestyle=":", linewidth=0.8)
    if chance is not None:
        ax.axhline(100 * chance, color="grey", linestyle="--", linewidth=0.8, label="chance")
    ax.set_xticks(sorted({float(r) for res in results.values() for r in res.radii}))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("filter radius (frequency index)", fontsize=8)
    ax.set_ylabel("accuracy (%)", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_title(title or "accuracy on filtered images (dotted: clean)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path, {k: v.to_dict() for k, v in results.items()}, write_data)


# --------------------------------------------------------------------------- corruptions


def plot_corruption_spectra(
    result: CorruptionSpectra, path: PathLike | None = None, *, log: bool = True, write_data: bool = True
) -> Figure:
    """Grid of ``E|F(C(X) - X)|`` per corruption with accuracy and high-frequency share (Yin et al.).

    Args:
        result: a :func:`~bandguard.spectral.corruption_spectrum` result.
        path: PNG to write (data as JSON beside it); ``None`` writes nothing.
        log: one logarithmic colour scale for all panels (spectra dominated by the DC term: fog,
            contrast, brightness); ``False``: one linear scale from 0 to the largest value.
        write_data: also write the plotted data as JSON beside the PNG.

    Returns:
        The ``matplotlib.figure.Figure``, one panel per corruption.
    """
    log = check_bool(log, "log")
    rows, cols = _grid(len(result.results), max_cols=3)
    fig = Figure(figsize=(3.2 * cols, 2.9 * rows))
    maps = [r.spectrum.mean for r in result.results]
    if log:
        norm = shared_log_norm(maps)
    else:
        from matplotlib.colors import Normalize

        norm = Normalize(vmin=0.0, vmax=max(float(m.max()) for m in maps))
    for index, r in enumerate(result.results):
        ax = fig.add_subplot(rows, cols, index + 1)
        _image(fig, ax, r.spectrum.mean,
               f"{r.name} (s{r.severity})\nacc {r.accuracy:.0%}, high-freq {r.high_fraction:.0%}",
               label="mean |F(C(x) - x)|" + (" (log scale)" if log else ""), norm=norm)
        ax.set_xlabel("horizontal frequency index", fontsize=7)
        ax.set_ylabel("vertical frequency index", fontsize=7)
    fig.suptitle(f"corruption spectra, clean accuracy {result.clean_accuracy:.0%}", fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, result.to_dict(), write_data)


def _corruption_gain(baseline: CorruptionSpectra, other: CorruptionSpectra) -> dict[str, dict[str, float]]:
    """``{name: {"high_fraction", "gain"}}``: each corruption's high-frequency share (``baseline``'s)
    and ``other``'s accuracy minus ``baseline``'s, in ``baseline``'s order."""
    ours = {r.name: r.severity for r in baseline.results}
    theirs = {r.name: r.severity for r in other.results}
    if ours != theirs:
        raise ValueError(f"baseline and other must hold the same corruptions at the same severities, "
                         f"got {ours} and {theirs}")
    return {r.name: {"high_fraction": r.high_fraction, "gain": other[r.name].accuracy - r.accuracy}
            for r in baseline.results}


def plot_corruption_gain(
    baseline: CorruptionSpectra,
    other: CorruptionSpectra,
    path: PathLike | None = None,
    *,
    labels: tuple[str, str] = ("natural", "Gaussian-augmented"),
    relative: bool = False,
    intervals: Mapping[str, tuple[float, float]] | None = None,
    title: str | None = None,
    write_data: bool = True,
) -> Figure:
    """Accuracy gain of ``other`` over ``baseline`` per corruption against the corruption's
    high-frequency energy share (Yin et al. 1906.08988: Gaussian augmentation helps on
    high-frequency corruptions and hurts on low-frequency ones), one labelled point each.

    Args:
        baseline, other: :func:`~bandguard.spectral.corruption_spectrum` results of two models on
            the same corruptions at the same severity.
        path: PNG to write (data as JSON beside it); ``None`` writes nothing.
        labels: the two models' names, for the axis label.
        relative: plot the gain in the share of clean accuracy kept (corrupted accuracy / clean
            accuracy, ``other``'s minus ``baseline``'s) instead of the gain in accuracy.
        intervals: corruption -> ``(low, high)`` interval of the plotted gain (fractions), drawn
            as error bars.
        title: the heading (say the models and the number of images).
        write_data: also write the plotted data as JSON beside the PNG.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: the two results hold different corruptions or severities.
    """
    points = _corruption_gain(baseline, other)
    if check_bool(relative, "relative"):
        for name, p in points.items():
            p["gain"] = other[name].accuracy / other.clean_accuracy - baseline[name].accuracy / baseline.clean_accuracy
    fig = Figure(figsize=(4.6, 3.6))
    ax = fig.add_subplot()
    xs = [p["high_fraction"] for p in points.values()]
    ys = [100 * p["gain"] for p in points.values()]
    if intervals:
        lows = [100 * intervals[n][0] if n in intervals else y for n, y in zip(points, ys)]
        highs = [100 * intervals[n][1] if n in intervals else y for n, y in zip(points, ys)]
        ax.errorbar(xs, ys, yerr=[[y - lo for y, lo in zip(ys, lows)], [hi - y for y, hi in zip(ys, highs)]],
                    fmt="o", markersize=3, capsize=2, linewidth=0.8)
    else:
        ax.scatter(xs, ys, s=14)
    names = [ax.annotate(name, (xv, yv), fontsize=6, xytext=(3, 0), textcoords="offset points", va="center")
             for name, xv, yv in zip(points, xs, ys)]
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("high-frequency energy fraction of C(x) - x", fontsize=8)
    what = "gain in share of clean accuracy kept" if relative else "accuracy gain"
    ax.set_ylabel(f"{what},\n{labels[1]} - {labels[0]} (points)", fontsize=8)
    ax.set_title(title or f"{what} per corruption", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _separate_labels(fig, names)  # after the layout: it fixes where the labels land
    return _finish(fig, path, {"labels": list(labels), "points": points}, write_data)


def _separate_labels(fig: Figure, labels: Sequence[Any], *, step: float = 1.0, limit: int = 300) -> None:
    """Nudge point labels (annotations in offset points) down until no two rendered labels overlap.

    Long names collide though their points lie far apart, so the labels' rendered boxes decide, not
    the points' distances. From the top down, each label moves ``step`` points at a time until its box
    clears every label placed before it (at most ``limit`` moves); a label that clears stays put.
    """
    renderer = FigureCanvasAgg(fig).get_renderer()
    placed: list[Any] = []
    for label in sorted(labels, key=lambda t: -t.get_window_extent(renderer).y1):
        for _ in range(limit):
            if not any(label.get_window_extent(renderer).overlaps(box) for box in placed):
                break
            x, y = label.xyann
            label.xyann = (x, y - step)
        placed.append(label.get_window_extent(renderer))


# --------------------------------------------------------------------------- kernels


def plot_kernel_spectra(
    result: KernelSpectrum, path: PathLike | None = None, *, max_layers: int = 8,
    write_data: bool = True, normalise: bool = False, title: str | None = None,
) -> Figure:
    """Mean centred kernel amplitude per conv layer (first ``max_layers`` layers).

    Args:
        result: a :func:`~bandguard.spectral.kernel_spectrum` result (each layer's ``spectrum`` is
            ``[32, 32]``).
        path: PNG to write (data as JSON beside it); ``None`` writes nothing.
        max_layers: the number of layers drawn, from the first.
        write_data: also write the plotted data as JSON beside the PNG.
        normalise: divide each panel by its own peak and draw all on one ``[0, 1]`` scale with one
            colour bar: the spectra's shapes compare at a glance when their sizes differ (a smoothing
            mask that scales the kernels, say). Otherwise each panel has its own colour bar, in
            amplitude units (layers of one net differ in scale).
        title: the figure's heading (say the model); none by default.

    Returns:
        The ``matplotlib.figure.Figure``, one panel per layer.
    """
    normalise = check_bool(normalise, "normalise")
    layers = result.layers[:max_layers]
    rows, cols = _grid(len(layers))
    fig = Figure(figsize=(3.0 * cols + (0.8 if normalise else 0.0), 3.0 * rows + (0.3 if title else 0.0)),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(layers):]:
        ax.remove()  # no empty panels
    image = None
    for ax, layer in zip(axes.flat, layers):
        kh, kw = layer.kernel_shape[-2:]
        panel_title = f"{layer.name} ({kh}x{kw})\nhigh-freq {layer.high_fraction:.0%}"
        if normalise:
            peak = float(layer.spectrum.max()) or 1.0
            image = _image(fig, ax, layer.spectrum / peak, panel_title, bar=False, vmin=0.0, vmax=1.0)
        else:
            _image(fig, ax, layer.spectrum, panel_title, label="mean kernel amplitude |F(w)|")
        ax.set_xlabel("horizontal frequency index", fontsize=7)
        ax.set_ylabel("vertical frequency index", fontsize=7)
    if normalise and image is not None:
        _shared_bar(fig, image, axes.flat[:len(layers)], "mean kernel amplitude / panel's peak")
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, path, result.to_dict(), write_data)


# --------------------------------------------------------------------------- F-principle


def plot_fprinciple(
    result: FPrincipleResult, path: PathLike | None = None, *, write_data: bool = True, normalise: bool = False,
    title: str | None = None,
) -> Figure:
    """``e_low`` (solid) and ``e_high`` (dashed) against epochs, one colour per delta (Xu et al. 1901.06523).

    Args:
        result: an :class:`~bandguard.spectral.FPrincipleMonitor`'s :class:`~bandguard.spectral.FPrincipleResult`.
        path: PNG to write (data as JSON beside it); ``None`` writes nothing.
        write_data: also write the plotted data as JSON beside the PNG.
        normalise: divide each curve by its first (epoch-0) value, so the two parts' progress compares
            directly (an untrained net starts with different errors in each).
        title: the axes' title (default ``"frequency principle (n=...)"``).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    fig = Figure(figsize=(4.6, 3.4))
    ax = fig.add_subplot()
    epochs = list(result.epochs)
    for j, delta in enumerate(result.deltas):
        low = [row[j] for row in result.e_low]
        high = [row[j] for row in result.e_high]
        if normalise:
            low, high = [v / low[0] for v in low], [v / high[0] for v in high]
        line = ax.plot(epochs, low, marker=".", label=f"delta={delta:g} low")[0]
        ax.plot(epochs, high, marker=".", linestyle="--", color=line.get_color(),
                label=f"delta={delta:g} high")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("relative error / its epoch-0 value" if normalise else "relative error", fontsize=8)
    ax.set_title(title or f"frequency principle (n={result.n})", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path, result.to_dict(), write_data)


def plot_heatmaps(
    results: Mapping[str, HeatmapResult],
    path: PathLike | None = None,
    *,
    title: str | None = None,
    write_data: bool = True,
) -> Figure:
    """Several Fourier heat maps side by side on one colour scale, with one labelled colour bar.

    Maps meant to be compared (models on the same images, Yin et al. 1906.08988 Fig. 2) share the
    scale ``[0, max over all maps]``, so equal colours mean equal error rates.

    Args:
        results: panel title (e.g. the model) -> :func:`~bandguard.spectral.fourier_heatmap` result;
            all with the same metric.
        path: PNG to write (the maps as JSON beside it); ``None`` writes nothing.
        title: the figure's heading (say the eps and the images); default names the metric.
        write_data: also write the plotted data as JSON beside the PNG.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    if not results:
        raise ValueError("results must name at least one heat map")
    metrics = {r.metric for r in results.values()}
    if len(metrics) != 1:
        raise ValueError(f"results must share one metric to share a colour scale, got {sorted(metrics)}")
    first = next(iter(results.values()))
    what = "error rate" if first.metric == "error" else first.metric
    top = max(float(r.heatmap.max()) for r in results.values())
    fig = Figure(figsize=(3.2 * len(results) + 0.9, 3.8), layout="constrained")
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    image = None
    for ax, (label, r) in zip(axes, results.items()):
        image = _image(fig, ax, r.heatmap, f"{label}\n{_clean_text(r)}", bar=False, vmin=0.0, vmax=top)
        ax.set_xlabel("horizontal frequency index", fontsize=8)
    axes[0].set_ylabel("vertical frequency index", fontsize=8)
    _shared_bar(fig, image, axes, what)
    fig.suptitle(title or f"Fourier heat maps, {what}", fontsize=10)
    return _finish(fig, path, {k: r.to_dict() for k, r in results.items()}, write_data)
