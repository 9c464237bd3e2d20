"""Accuracy on low- and high-pass filtered images, per radius.

Yin et al. (arXiv 1906.08988) report test accuracy on low/high-pass filtered CIFAR-10; Wang et al.
(arXiv 1905.13545, HFC ``utility/frequencyHelper.py``) split each image into the part inside a
centred disc (distance strictly < r) and the rest. Both use the ideal disc mask of
:func:`bandguard.fourier.lowpass_mask`.

Filtered images leave the pixel bounds (a high-pass image has mean about zero); they are clipped
back to the bounds before the model sees them, since a model is only defined on its bounds. Wang
et al.'s scripts also rescale each filtered image so its maximum is the top of the range: offered
as ``rescale=True``, off by default.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bandguard._checks import (
    check_bounds,
    check_enum,
    check_images,
    check_int,
    check_labels,
    check_nonnegative,
)
from bandguard._modes import model_mode
from bandguard.fourier import filter_with_mask, lowpass_mask

__all__ = ["FilterKind", "FilteredAccuracy", "filter_images", "filtered_accuracy"]


class FilterKind(str, enum.Enum):
    """Which part of the spectrum is kept."""

    LOW = "low"  # distance from the centre < radius
    HIGH = "high"  # distance >= radius


@dataclasses.dataclass(frozen=True)
class FilteredAccuracy:
    """Accuracy on filtered images, one entry per radius.

    Attributes:
        radii: the cut-off radii, in centred index units.
        accuracy: top-1 accuracy on the images filtered at each radius, in [0, 1].
        clean: accuracy on the unfiltered images.
        kind: ``"low"`` or ``"high"``.
        n: number of images.
        rescale: whether Wang et al.'s per-image rescaling was applied.
    """

    radii: tuple[float, ...]
    accuracy: tuple[float, ...]
    clean: float
    kind: str
    n: int
    rescale: bool = False

    def __post_init__(self) -> None:
        if len(self.radii) != len(self.accuracy):
            raise ValueError(f"got {len(self.accuracy)} accuracies for {len(self.radii)} radii")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def filter_images(
    x: torch.Tensor,
    radius: float,
    kind: str | FilterKind = "low",
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    rescale: bool = False,
) -> torch.Tensor:
    """Low- or high-pass filter each channel of ``x`` with an ideal disc, then clip to ``bounds``.

    Args:
        x: images ``[N, C, H, W]``.
        radius: cut-off; ``low`` keeps centred distances ``< radius``, ``high`` the rest.
        kind: ``"low"`` or ``"high"``.
        bounds: ``(lo, hi)`` to clip to.
        rescale: stretch each image linearly so that its maximum reaches ``hi`` (Wang et al.'s
            scripts do this; an all-``lo`` image is left as it is).

    Returns:
        Tensor ``[N, C, H, W]`` inside ``bounds``.
    """
    kind = check_enum(kind, FilterKind, "kind")
    h, w = x.shape[-2:]
    mask = lowpass_mask(h, w, radius, device=x.device, dtype=x.dtype)
    if kind is FilterKind.HIGH:
        mask = 1 - mask
    lo, hi = bounds
    out = filter_with_mask(x, mask).clamp(lo, hi)
    if rescale:
        top = (out - lo).amax(dim=(1, 2, 3), keepdim=True)
        out = torch.where(top > 0, lo + (out - lo) * (hi - lo) / top.clamp_min(1e-12), out)
    return out


def filtered_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radii: Sequence[float],
    *,
    kind: str | FilterKind = "low",
    rescale: bool = False,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 1024,
) -> FilteredAccuracy:
    """Accuracy of ``model`` on low- or high-pass filtered images per radius (Yin et al. 1906.08988).

    A radius beyond the corner (``> sqrt((H/2)^2 + (W/2)^2)``) keeps every frequency for
    ``kind="low"``, so its accuracy equals the clean accuracy; for ``kind="high"`` it removes every
    frequency (a constant ``lo`` image).

    Args:
        model: classifier on ``[B, C, H, W]`` in ``bounds``.
        x: images ``[N, C, H, W]``; y: labels ``[N]`` int64.
        radii: cut-offs >= 0, in centred index units (Wang et al.: 4, 8, 12, 16 on 32 x 32).
        kind: ``"low"`` or ``"high"``.
        rescale: Wang et al.'s per-image rescaling (see :func:`filter_images`).
        bounds: the model's pixel bounds.
        batch_size: images per forward.

    Returns:
        :class:`FilteredAccuracy`.
    """
    bounds = check_bounds(bounds)
    x = check_images(x, "x", bounds=bounds)
    y = check_labels(y, x)
    kind = check_enum(kind, FilterKind, "kind")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if isinstance(radii, (int, float)):
        radii = [radii]
    radii = tuple(check_nonnegative(r, "radii") for r in radii)
    if not radii:
        raise ValueError("radii must hold at least one radius, got an empty sequence")
    y = y.to(x.device)

    with model_mode(model):
        with torch.inference_mode():

            def correct(images: torch.Tensor, labels: torch.Tensor) -> int:
                return int((model(images).argmax(dim=1) == labels).sum())

            clean_hits, hits = 0, [0] * len(radii)
            for x_chunk, y_chunk in zip(x.split(batch_size), y.split(batch_size)):
                clean_hits += correct(x_chunk, y_chunk)
                for i, r in enumerate(radii):
                    filtered = filter_images(x_chunk, r, kind, bounds=bounds, rescale=rescale)
                    hits[i] += correct(filtered, y_chunk)
    n = x.shape[0]
    return FilteredAccuracy(
        radii=radii,
        accuracy=tuple(h / n for h in hits),
        clean=clean_hits / n,
        kind=kind.value,
        n=n,
        rescale=rescale,
    )
