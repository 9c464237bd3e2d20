"""Fourier heat maps: the model's error under a Fourier-basis perturbation at every frequency.

Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision" (arXiv 1906.08988),
``frequency_analysis/freq_heatmap.py``: for every centred frequency ``(i, j)`` each image gets
``clip(x + s * eps * U_ij)`` on each channel, ``s = +-1`` drawn per image and channel, and the cell
is the error rate over the images.

Cost: a frequency and its mirror share one basis image, so only the distinct half of the grid is
evaluated (``K`` = 514 of 1,024 positions for 32 x 32) and mirrored onto the other half. The
``K x N`` perturbed images are flattened into one row-major list and pushed through the model in
chunks of ``max_batch`` images, each chunk built on the fly by broadcasting, so the work is
``K * N`` perturbed forwards plus one clean pass of ``N`` images, in batches as large as allowed.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from bandguard._checks import (
    check_bool,
    check_bounds,
    check_enum,
    check_generator,
    check_int,
    check_labels,
    check_model_input,
    check_model_output,
    check_nonnegative,
    check_per_sample,
)
from bandguard._modes import model_mode
from bandguard.fourier import fourier_basis, frequency_orbits

__all__ = [
    "DEFAULT_MAX_BATCH",
    "HeatmapResult",
    "Sign",
    "fourier_heatmap",
    "heatmap_signs",
    "perturb_with_basis",
]

#: Images per forward when ``max_batch`` is not given: large enough to keep a GPU busy with the
#: small reference nets, small enough for a CPU (about 100 MB of activations for ``mnist_cnn``).
DEFAULT_MAX_BATCH = 2048

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Sign(str, enum.Enum):
    """How the sign ``s`` of the basis perturbation is chosen per image and channel."""

    RANDOM = "random"  # +-1 with probability 1/2 each, independently (Yin et al.)
    POSITIVE = "positive"  # always +1

    @classmethod
    def coerce(cls, value: object) -> Sign:
        """Accept a member, ``"random"``, ``"positive"`` or ``"+"``."""
        if value == "+":
            return cls.POSITIVE
        return check_enum(value, cls, "sign")


@dataclasses.dataclass(frozen=True)
class HeatmapResult:
    """A Fourier heat map (Yin et al. 1906.08988), low frequency at the centre.

    Attributes:
        heatmap: ``[H, W]`` mean metric (error rate by default) per centred frequency; with
            ``layer`` set, the mean L2 change of that layer's output instead, divided by its
            maximum over the map when ``relative_scale`` (Yin et al.'s default).
        stderr: ``[H, W]`` standard error of each cell (binomial ``sqrt(p (1 - p) / n)`` for the
            error rate, ``std / sqrt(n)`` otherwise), on the same scale as ``heatmap``.
        clean: the metric on the unperturbed images (the clean error rate by default).
        eps: L2 norm of the perturbation per channel.
        n: number of images.
        metric: the metric's name (``"error"``, ``"loss"`` or the callable's name).
        sign: ``"random"`` or ``"positive"``.
        layer: the module whose output change is mapped, or ``None``.
        relative_scale: whether the layer-change map was divided by its maximum (only with
            ``layer``; ``False`` otherwise).
    """

    heatmap: torch.Tensor
    stderr: torch.Tensor
    clean: float
    eps: float
    n: int
    metric: str
    sign: str
    layer: str | None = None
    relative_scale: bool = False

    def __post_init__(self) -> None:
        if self.heatmap.shape != self.stderr.shape or self.heatmap.ndim != 2:
            raise ValueError(
                f"heatmap and stderr must both be [H, W], got {tuple(self.heatmap.shape)} "
                f"and {tuple(self.stderr.shape)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists and numbers) for JSON."""
        return {
            "heatmap": self.heatmap.tolist(),
            "stderr": self.stderr.tolist(),
            "clean": self.clean,
            "eps": self.eps,
            "n": self.n,
            "metric": self.metric,
            "sign": self.sign,
            "layer": self.layer,
            "relative_scale": self.relative_scale,
        }


# --------------------------------------------------------------------------- pure pieces


def heatmap_signs(
    k: int,
    n: int,
    c: int,
    *,
    sign: str | Sign = Sign.RANDOM,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The signs ``s[k, n, c]`` used by :func:`fourier_heatmap`, all drawn up front.

    Drawing every sign at once (a few MB at most) makes a heat map reproducible from its generator
    and lets a per-frequency reference loop use exactly the same signs: the same generator state
    gives the same tensor.

    Args:
        k: number of distinct frequencies.
        n: number of images.
        c: number of channels.
        sign: ``"random"`` (+-1 uniformly, drawn on the generator's device) or ``"positive"``.
        generator: source of randomness; ``None`` uses torch's default generator.
        device: where the signs are returned.
        dtype: their dtype; default torch's default dtype.

    Returns:
        Tensor ``[k, n, c]`` of +-1 on ``device`` with ``dtype``.
    """
    dtype = dtype or torch.get_default_dtype()
    if Sign.coerce(sign) is Sign.POSITIVE:
        return torch.ones(k, n, c, device=device, dtype=dtype)
    draw_device = generator.device if generator is not None else "cpu"
    bits = torch.randint(0, 2, (k, n, c), generator=generator, device=draw_device)
    return (2 * bits - 1).to(device=device, dtype=dtype)


def perturb_with_basis(
    x: torch.Tensor,
    basis: torch.Tensor,
    signs: torch.Tensor,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """``clip(x + s * eps * U)`` per image and channel (Yin et al. 1906.08988).

    Args:
        x: images ``[B, C, H, W]``.
        basis: one basis image per row ``[B, H, W]`` (or ``[H, W]`` for all rows).
        signs: ``[B, C]`` of +-1.
        eps: L2 norm of the perturbation of each channel.
        bounds: ``(lo, hi)`` to clip to.

    Returns:
        Tensor ``[B, C, H, W]``.
    """
    if basis.ndim == 2:
        basis = basis.expand(x.shape[0], -1, -1)
    step = rearrange(eps * signs, "b c -> b c 1 1") * rearrange(basis, "b h w -> b 1 h w")
    return (x + step).clamp(bounds[0], bounds[1])


def _error(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) != y).to(logits.dtype)


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


_METRICS: dict[str, MetricFn] = {"error": _error, "loss": _loss}


def _resolve_metric(metric: str | MetricFn) -> tuple[str, MetricFn]:
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__), metric
    if isinstance(metric, str) and metric in _METRICS:
        return metric, _METRICS[metric]
    raise ValueError(
        f"unknown metric {metric!r}; expected one of {', '.join(map(repr, _METRICS))} "
        "or a callable (logits, y) -> per-sample values [N]"
    )


def _find_module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [name for name in modules if name]
        shown = ", ".join(repr(m) for m in names[:12]) + (", ..." if len(names) > 12 else "")
        raise ValueError(f"unknown layer {layer!r}; the model's modules are {shown}")
    return modules[layer]


class _Capture:
    """Forward hook keeping the last output of one module, flattened per sample."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, (tuple, list)):
            output = output[0]
        self.value = rearrange(output, "b ... -> b (...)")


# --------------------------------------------------------------------------- entry point


def fourier_heatmap(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    sign: str | Sign = "random",
    metric: str | MetricFn = "error",
    layer: str | None = None,
    relative_scale: bool = True,
    max_batch: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> HeatmapResult:
    """Fourier heat map of ``model`` on ``(x, y)`` (Yin et al. 1906.08988).

    For every distinct centred frequency ``k`` (one of each mirror pair, see
    :func:`bandguard.fourier.frequency_orbits`) every image gets ``clip(x + s * eps * U_k)`` with
    the sign ``s[k, n, c]`` from :func:`heatmap_signs`; the per-sample metric is averaged over the
    images and the value is written at both the frequency and its mirror, so the map is
    point-symmetric. The model runs in eval mode under ``torch.inference_mode`` (its mode is
    restored) on ``K * N`` perturbed images plus the ``N`` clean ones, ``max_batch`` per forward.

    Args:
        model: classifier taking ``[B, C, H, W]`` in ``bounds`` and returning logits ``[B, classes]``.
        x: images ``[N, C, H, W]`` inside ``bounds``.
        y: labels ``[N]`` int64.
        eps: L2 norm of the perturbation per channel (4 on CIFAR-10 in the paper), >= 0.
        sign: ``"random"`` (Yin et al.) or ``"positive"`` / ``"+"``.
        metric: ``"error"`` (0/1 misclassification), ``"loss"`` (cross-entropy) or a callable
            ``(logits [B, classes], y [B]) -> [B]``.
        layer: name of a module (as in ``model.named_modules()``); if given, the map holds the mean
            L2 change of its output against the clean images instead of the metric.
        relative_scale: with ``layer``, divide the map (and its standard errors) by the map's
            maximum so the largest change is 1, as Yin et al.'s ``generate_freq_heatmap``
            (``relative_scale=True`` there too); ``False`` keeps the mean L2 change in the layer's
            units. Ignored without ``layer``.
        max_batch: images per forward (default :data:`DEFAULT_MAX_BATCH`).
        generator: randomness for the signs.
        progress: show a tqdm bar over the chunks.
        bounds: ``(lo, hi)`` pixel bounds the perturbed images are clipped to.

    Returns:
        :class:`HeatmapResult` with ``[H, W]`` maps on the CPU.

    Example:
        >>> result = fourier_heatmap(model, x, y, eps=4.0, generator=torch.Generator().manual_seed(0))
        >>> result.heatmap.shape
        torch.Size([32, 32])
    """
    bounds = check_bounds(bounds)
    x = check_model_input(model, x, bounds=bounds)
    y = check_labels(y, x)
    eps = check_nonnegative(eps, "eps")
    relative_scale = check_bool(relative_scale, "relative_scale")
    progress = check_bool(progress, "progress")
    check_generator(generator)
    sign = Sign.coerce(sign)
    metric_name, metric_fn = _resolve_metric(metric)
    max_batch = check_int(DEFAULT_MAX_BATCH if max_batch is None else max_batch, "max_batch", minimum=1)
    target = _find_module(model, layer) if layer is not None else None

    n, c, h, w = x.shape
    positions, orbit = frequency_orbits(h, w, device=x.device)
    k = positions.shape[0]
    basis = fourier_basis(h, w, positions, device=x.device, dtype=x.dtype)  # [K, H, W]
    signs = heatmap_signs(k, n, c, sign=sign, generator=generator, device=x.device, dtype=x.dtype)
    y = y.to(x.device)

    capture = _Capture()
    handle = target.register_forward_hook(capture) if target is not None else None
    try:
        with model_mode(model):
            with torch.inference_mode():
                clean_values, clean_features = [], []
                for i, (chunk, labels) in enumerate(zip(x.split(max_batch), y.split(max_batch))):
                    logits = model(chunk)
                    if i == 0:  # the number of classes is known only now; check the output once
                        logits = check_model_output(logits, n=chunk.shape[0])
                        check_labels(y, x, num_classes=logits.shape[1])
                    # Checked on the first chunk, before the K * N perturbed forwards.
                    clean_values.append(_per_sample(metric_fn(logits, labels), len(labels), metric_name))
                    if capture.value is not None:
                        clean_features.append(capture.value)
                clean = torch.cat(clean_values)
                reference = torch.cat(clean_features) if target is not None else None

                values = torch.empty(k * n, device=x.device, dtype=torch.float64)
                starts = range(0, k * n, max_batch)
                for start in tqdm(starts, disable=not progress, desc="heat map", unit="chunk"):
                    flat = torch.arange(start, min(start + max_batch, k * n), device=x.device)
                    ki, ni = flat // n, flat % n
                    batch = perturb_with_basis(x[ni], basis[ki], signs[ki, ni], eps, bounds)
                    logits = model(batch)
                    if reference is not None:
                        out = torch.linalg.vector_norm(capture.value - reference[ni], dim=1)
                    else:
                        out = metric_fn(logits, y[ni])
                    values[start : start + len(flat)] = _per_sample(out, len(flat), metric_name)
    finally:
        if handle is not None:
            handle.remove()

    per_image = rearrange(values, "(k n) -> k n", k=k)
    mean = per_image.mean(dim=1)
    if metric_name == "error" and target is None:
        stderr = torch.sqrt(mean * (1 - mean) / n)
    else:
        stderr = per_image.std(dim=1) / math.sqrt(n) if n > 1 else torch.zeros_like(mean)
    relative = relative_scale and target is not None
    if relative:
        # Yin et al. divide each layer map by its own maximum; an all-zero map (eps = 0) stays zero.
        peak = mean.max()
        scale = torch.where(peak > 0, peak, torch.ones_like(peak))
        mean, stderr = mean / scale, stderr / scale
    return HeatmapResult(
        heatmap=mean[orbit].float().cpu(),
        stderr=stderr[orbit].float().cpu(),
        clean=float(_per_sample(clean, n, metric_name).double().mean()),
        eps=eps,
        n=n,
        metric=metric_name,
        sign=sign.value,
        layer=layer,
        relative_scale=relative,
    )


def _per_sample(values: torch.Tensor, expected: int, metric_name: str) -> torch.Tensor:
    return check_per_sample(values, expected, f"metric {metric_name!r}").double()
