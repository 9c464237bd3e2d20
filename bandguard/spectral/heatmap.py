"""Fourier heat maps: the model's error under a Fourier-basis perturbation at every frequency.

Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision" (arXiv 1906.08988),
``frequency_analysis/freq_heatmap.py``: for every centred frequency ``(i, j)`` each image gets
``clip(x + s * eps * U_ij)`` on each channel, ``s = +-1`` drawn per image and channel, and the cell
is the error rate over the images.

Cost: a frequency and its mirror share one basis image, so only the distinct half of the grid is
evaluated (``K`` = 514 of 1,024 positions for 32 x 32) and mirrored onto the other half;
``max_frequency=31`` keeps only the centred 63 x 63 square (Yin et al.'s ImageNet maps, ``K`` =
1,985 at 224 x 224). The ``K x N`` perturbed images are flattened into one row-major list and pushed
through the model in chunks of ``max_batch`` images, so the work is ``K * N`` perturbed forwards plus
one clean pass of ``N`` images. Memory is set by the chunk, not by ``H x W``: each chunk builds only
its own basis images, the signs are drawn in blocks (:func:`bandguard.fourier.sign_blocks`), and the
per-frequency results are running sums (``K`` values, not ``K x N``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from bandguard._checks import (
    check_bool,
    check_bounds,
    check_enum,
    check_eps,
    check_generator,
    check_int,
    check_labels,
    check_model_input,
    check_model_output,
    check_per_sample,
)
from bandguard._modes import model_mode
from bandguard._progress import bar as progress_bar
from bandguard.fourier import fourier_basis, frequency_orbits, sign_blocks

__all__ = [
    "DEFAULT_MAX_BATCH",
    "HEATMAP_CHUNK_BYTES",
    "HeatmapResult",
    "Sign",
    "fourier_heatmap",
    "heatmap_signs",
    "perturb_with_basis",
]

#: Images per forward when ``max_batch`` is not given: large enough to keep a GPU busy with the
#: small reference nets, small enough for a CPU (about 100 MB of activations for ``mnist_cnn``).
DEFAULT_MAX_BATCH = 2048

#: Bytes of perturbed images per forward when ``max_batch`` is not given: caps the default at large
#: sizes (445 images of 3 x 224 x 224 float32), leaves :data:`DEFAULT_MAX_BATCH` at 32 x 32.
HEATMAP_CHUNK_BYTES = 2**28

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
        max_frequency: the half-width ``m`` of the centred square the map covers (its maps are
            then ``[min(H, 2m + 1), min(W, 2m + 1)]``, zero frequency still at ``(H' // 2, W' // 2)``),
            or ``None`` for the whole grid.
        per_image: ``[N, H, W]`` float32 per-image metric at every cell (the map is its mean over
            images), kept only when asked (``fourier_heatmap(..., per_image=True)``): what
            bootstrap intervals over images and paired comparisons of two models need. ``None``
            otherwise.
        clean_per_image: ``[N]`` float32 per-image metric on the unperturbed images, with
            ``per_image``; ``None`` otherwise.
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
    max_frequency: int | None = None
    per_image: torch.Tensor | None = dataclasses.field(default=None, repr=False)
    clean_per_image: torch.Tensor | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.heatmap.shape != self.stderr.shape or self.heatmap.ndim != 2:
            raise ValueError(
                f"heatmap and stderr must both be [H, W], got {tuple(self.heatmap.shape)} "
                f"and {tuple(self.stderr.shape)}"
            )
        if self.per_image is not None and self.per_image.shape != (self.n, *self.heatmap.shape):
            raise ValueError(f"per_image must be [n, H, W] = {[self.n, *self.heatmap.shape]}, "
                             f"got {list(self.per_image.shape)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists and numbers) for JSON; the per-image values are left out."""
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
            "max_frequency": self.max_frequency,
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
    """The signs ``s[k, n, c]`` used by :func:`fourier_heatmap`, all at once.

    :func:`fourier_heatmap` draws the same tensor block by block
    (:func:`bandguard.fourier.sign_blocks`), so the same generator
    state gives a heat map and the signs it used, and a per-frequency reference loop can replay it.

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
    blocks = sign_blocks(k, n, c, positive=Sign.coerce(sign) is Sign.POSITIVE, generator=generator,
                         device=device, dtype=dtype)
    return torch.cat([block for _, block in blocks])


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
    # One fused kernel: no [B, C, H, W] temporary for the step.
    out = torch.addcmul(x, rearrange(eps * signs, "b c -> b c 1 1"), rearrange(basis, "b h w -> b 1 h w"))
    return out.clamp_(bounds[0], bounds[1])


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
    max_frequency: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool | None = False,
    bounds: tuple[float, float] = (0.0, 1.0),
    per_image: bool = False,
) -> HeatmapResult:
    """Fourier heat map of ``model`` on ``(x, y)`` (Yin et al. 1906.08988).

    For every distinct centred frequency ``k`` (one of each mirror pair, see
    :func:`bandguard.fourier.frequency_orbits`) every image gets ``clip(x + s * eps * U_k)`` with
    the sign ``s[k, n, c]`` from :func:`heatmap_signs`; the per-sample metric is averaged over the
    images and the value is written at both the frequency and its mirror, so the map is
    point-symmetric. The model runs in eval mode under ``torch.inference_mode`` (its mode is
    restored) on exactly ``K * N`` perturbed images plus the ``N`` clean ones, ``max_batch`` per
    forward; each forward builds only its own basis images, so memory is set by ``max_batch``.

    Args:
        model: classifier taking ``[B, C, H, W]`` in ``bounds`` and returning logits ``[B, classes]``.
        x: images ``[N, C, H, W]`` inside ``bounds``.
        y: labels ``[N]`` int64.
        eps: L2 norm of the perturbation per channel (4 on CIFAR-10 in the paper), >= 0; text such as
            ``"8/255"`` is read as on the command line.
        sign: ``"random"`` (Yin et al.) or ``"positive"`` / ``"+"``.
        metric: ``"error"`` (0/1 misclassification), ``"loss"`` (cross-entropy) or a callable
            ``(logits [B, classes], y [B]) -> [B]``.
        layer: name of a module (as in ``model.named_modules()``); if given, the map holds the mean
            L2 change of its output against the clean images instead of the metric.
        relative_scale: with ``layer``, divide the map (and its standard errors) by the map's
            maximum so the largest change is 1, as Yin et al.'s ``generate_freq_heatmap``
            (``relative_scale=True`` there too); ``False`` keeps the mean L2 change in the layer's
            units. Ignored without ``layer``.
        max_batch: images per forward (default :data:`DEFAULT_MAX_BATCH`, fewer for large images:
            at most :data:`HEATMAP_CHUNK_BYTES` of perturbed images).
        max_frequency: evaluate only the centred square ``|i - H/2|, |j - W/2| <= max_frequency``
            (Yin et al.'s ImageNet maps: 31, a 63 x 63 map at 224 x 224); ``None`` maps every
            frequency. See :func:`bandguard.fourier.frequency_orbits`.
        generator: randomness for the signs.
        progress: a tqdm bar over the ``K * N`` perturbed images: ``True`` always, ``None`` on a
            terminal only (:mod:`bandguard._progress`), ``False`` never.
        bounds: ``(lo, hi)`` pixel bounds the perturbed images are clipped to.
        per_image: also return every image's metric at every cell (``K x N`` float32 values
            kept, 2 MB for 1,000 CIFAR-10 images), for intervals over images; ``False`` keeps only
            the running sums.

    Returns:
        :class:`HeatmapResult` with ``[H, W]`` maps on the CPU (``[2m + 1, 2m + 1]`` with
        ``max_frequency = m`` below ``H / 2``).

    Example:
        >>> result = fourier_heatmap(model, x, y, eps=4.0, generator=torch.Generator().manual_seed(0))
        >>> result.heatmap.shape
        torch.Size([32, 32])
    """
    bounds = check_bounds(bounds)
    x = check_model_input(model, x, bounds=bounds)
    y = check_labels(y, x)
    eps = check_eps(eps, "eps")
    relative_scale = check_bool(relative_scale, "relative_scale")
    progress = None if progress is None else check_bool(progress, "progress")
    per_image = check_bool(per_image, "per_image")
    check_generator(generator)
    sign = Sign.coerce(sign)
    metric_name, metric_fn = _resolve_metric(metric)
    n, c, h, w = x.shape
    if max_batch is None:
        max_batch = max(1, min(DEFAULT_MAX_BATCH, HEATMAP_CHUNK_BYTES // (c * h * w * x.element_size())))
    max_batch = check_int(max_batch, "max_batch", minimum=1)
    target = _find_module(model, layer) if layer is not None else None

    positions, orbit = frequency_orbits(h, w, max_frequency=max_frequency, device=x.device)
    k = positions.shape[0]
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
                clean = _per_sample(torch.cat(clean_values), n, metric_name)
                reference = torch.cat(clean_features) if target is not None else None

                # Running sums per frequency instead of K x N values. A loss is shifted by its clean
                # mean so the variance does not cancel; 0/1 errors stay exact counts.
                plain = reference is not None or metric_name == "error"
                shift = clean.new_zeros(()) if plain else clean.mean()
                sums = torch.zeros(k, device=x.device, dtype=torch.float64)
                squares = torch.zeros_like(sums)
                values = torch.zeros(k * n, device=x.device) if per_image else None  # [K * N], row-major
                blocks = sign_blocks(k, n, c, positive=sign is Sign.POSITIVE, generator=generator,
                                     device=x.device, dtype=x.dtype)
                bar = progress_bar(k * n, "heat map", progress=progress, unit="image")
                for k0, signs in blocks:  # [kb, N, C]: batches never straddle two blocks
                    for start in range(0, signs.shape[0] * n, max_batch):
                        flat = torch.arange(start, min(start + max_batch, signs.shape[0] * n), device=x.device)
                        ki, ni = flat // n, flat % n
                        first, last = start // n, (start + len(flat) - 1) // n
                        basis = fourier_basis(h, w, positions[k0 + first:k0 + last + 1], device=x.device,
                                              dtype=x.dtype)  # only this chunk's frequencies
                        batch = perturb_with_basis(x[ni], basis[ki - first], signs[ki, ni], eps, bounds)
                        logits = model(batch)
                        if reference is not None:
                            out = torch.linalg.vector_norm(capture.value - reference[ni], dim=1)
                        else:
                            out = metric_fn(logits, y[ni])
                        out = _per_sample(out, len(flat), metric_name) - shift
                        sums.index_add_(0, k0 + ki, out)
                        if values is not None:
                            values[k0 * n + start:k0 * n + start + len(flat)] = (out + shift).float()
                        squares.index_add_(0, k0 + ki, out * out)
                        bar.update(len(flat))
                bar.close()
    finally:
        if handle is not None:
            handle.remove()

    centred = sums / n
    mean = centred + shift
    if metric_name == "error" and target is None:
        stderr = torch.sqrt(mean * (1 - mean) / n)
    elif n > 1:
        variance = ((squares - n * centred**2) / (n - 1)).clamp_min(0)
        stderr = torch.sqrt(variance / n)
    else:
        stderr = torch.zeros_like(mean)
    relative = relative_scale and target is not None
    if relative:
        # Yin et al. divide each layer map by its own maximum; an all-zero map (eps = 0) stays zero.
        peak = mean.max()
        scale = torch.where(peak > 0, peak, torch.ones_like(peak))
        mean, stderr = mean / scale, stderr / scale
    return HeatmapResult(
        heatmap=mean[orbit].float().cpu(),
        stderr=stderr[orbit].float().cpu(),
        clean=float(clean.mean()),
        eps=eps,
        n=n,
        metric=metric_name,
        sign=sign.value,
        layer=layer,
        relative_scale=relative,
        max_frequency=max_frequency,
        per_image=_per_image_maps(values, n, orbit, scale if relative else None),
        clean_per_image=clean.float().cpu() if per_image else None,
    )


def _per_image_maps(values: torch.Tensor | None, n: int, orbit: torch.Tensor,
                    scale: torch.Tensor | None) -> torch.Tensor | None:
    """``[K * N]`` per-image values -> ``[N, H, W]`` maps (mirrored like the mean map)."""
    if values is None:
        return None
    if scale is not None:
        values = values / scale.float()
    return rearrange(values.view(-1, n)[orbit], "h w n -> n h w").cpu()


def _per_sample(values: torch.Tensor, expected: int, metric_name: str) -> torch.Tensor:
    return check_per_sample(values, expected, f"metric {metric_name!r}").double()
