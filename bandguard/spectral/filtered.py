"""Accuracy on low- and high-pass filtered images, per radius.

Yin et al. (arXiv 1906.08988) report test accuracy on low/high-pass filtered CIFAR-10 with a
centred square of bandwidth B; Wang et al. (arXiv 1905.13545, HFC ``utility/frequencyHelper.py``)
split each image into the part inside a centred disc (distance strictly < r) and the rest. Both
shapes come from the one filter, :class:`bandguard.fourier.FrequencyFilter`, which the
filtered-data training modes and the ``LowPass`` defense use too.

By default the model sees the raw filtered image, as Wang et al.'s code makes it: never clipped (a
high-pass image is small and mostly negative). ``rescale=True`` is their scripts' per-image
``x / max(x)``; ``clip=(lo, hi)`` clamps to the bounds first, an explicit option (clipping zeroes
about half of an MNIST high-pass image).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bandguard._checks import (
    check_bool,
    check_bounds,
    check_int,
    check_labels,
    check_model_input,
    check_model_output,
    check_nonnegative,
    is_scalar_number,
)
from bandguard._modes import model_mode
from bandguard.fourier import FilterKind, FrequencyFilter, MaskShape

__all__ = ["FilteredAccuracy", "filtered_accuracy"]


@dataclasses.dataclass(frozen=True)
class FilteredAccuracy:
    """Accuracy on filtered images, one entry per radius.

    Attributes:
        radii: the cut-off radii, in frequency-index units.
        accuracy: top-1 accuracy on the images filtered at each radius, in [0, 1].
        clean: accuracy on the unfiltered images.
        kind: ``"low"`` or ``"high"``.
        shape: ``"disc"`` (Wang et al.) or ``"square"`` (Yin et al.).
        n: number of images.
        rescale: whether Wang et al.'s per-image ``x / max(x)`` was applied.
        clip: the range the filtered images were clipped to, or ``None``.
        correct: ``[R, N]`` bool, whether each image is classified right at each radius; kept only
            when asked (``filtered_accuracy(..., per_image=True)``), for intervals over images.
        clean_correct: ``[N]`` bool, the same on the unfiltered images, with ``correct``.
    """

    radii: tuple[float, ...]
    accuracy: tuple[float, ...]
    clean: float
    kind: str
    n: int
    shape: str = MaskShape.DISC.value
    rescale: bool = False
    clip: tuple[float, float] | None = None
    correct: torch.Tensor | None = dataclasses.field(default=None, repr=False)
    clean_correct: torch.Tensor | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.radii) != len(self.accuracy):
            raise ValueError(f"got {len(self.accuracy)} accuracies for {len(self.radii)} radii")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON (tuples as lists); the per-image values are left out."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("correct", "clean_correct")}
        return json.loads(json.dumps(data))


def filtered_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radii: Sequence[float],
    *,
    kind: str | FilterKind = "low",
    shape: str | MaskShape = "disc",
    rescale: bool = False,
    clip: tuple[float, float] | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 1024,
    per_image: bool = False,
) -> FilteredAccuracy:
    """Accuracy of ``model`` on low- or high-pass filtered images per radius.

    Each image is filtered with ``FrequencyFilter(r, kind=kind, shape=shape, rescale=rescale,
    clip=clip)`` (ideal profile). A low-pass radius beyond the corner of the spectrum keeps every
    frequency, so its accuracy equals the clean accuracy (with no rescale); a high-pass one removes
    every frequency.

    Args:
        model: classifier on ``[B, C, H, W]``.
        x: images ``[N, C, H, W]`` inside ``bounds``.
        y: labels ``[N]`` int64.
        radii: cut-offs >= 0 in frequency-index units (Wang et al.: 4, 8, 12, 16 on 32 x 32).
        kind: ``"low"`` or ``"high"``.
        shape: ``"disc"`` (Wang et al. 1905.13545) or ``"square"`` (Yin et al. 1906.08988,
            bandwidth ``B = 2 * radius``).
        rescale: Wang et al.'s per-image ``x / max(x)``.
        clip: clip the filtered images to ``(lo, hi)``; ``None`` (default, as the papers) does not.
        bounds: the pixel bounds ``x`` must lie in.
        batch_size: images per forward.
        per_image: also return which images are classified right (``correct`` ``[R, N]``,
            ``clean_correct`` ``[N]``, bool, on the CPU), for bootstrap intervals over images.

    Returns:
        :class:`FilteredAccuracy`.
    """
    bounds = check_bounds(bounds)
    x = check_model_input(model, x, bounds=bounds)
    y = check_labels(y, x)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    rescale = check_bool(rescale, "rescale")
    per_image = check_bool(per_image, "per_image")
    if is_scalar_number(radii):  # one radius, also a numpy or 0-d tensor scalar
        radii = [radii]  # type: ignore[list-item]
    radii = tuple(check_nonnegative(r, "radii") for r in radii)
    if not radii:
        raise ValueError("radii must hold at least one radius, got an empty sequence")
    filters = [FrequencyFilter(r, kind=kind, shape=shape, rescale=rescale, clip=clip) for r in radii]
    y = y.to(x.device)

    with model_mode(model), torch.inference_mode():

        clean_parts, parts = [], []  # per chunk: [B] and [R, B] bool
        for chunk, (x_chunk, y_chunk) in enumerate(zip(x.split(batch_size), y.split(batch_size))):
            logits = model(x_chunk)
            if chunk == 0:  # the number of classes is known only now; check the output once
                logits = check_model_output(logits, n=x_chunk.shape[0])
                check_labels(y, x, num_classes=logits.shape[1])
            clean_parts.append((logits.argmax(dim=1) == y_chunk).cpu())
            parts.append(torch.stack([(model(t(x_chunk)).argmax(dim=1) == y_chunk).cpu() for t in filters]))
    clean_correct, correct = torch.cat(clean_parts), torch.cat(parts, dim=1)  # [N], [R, N]
    n = x.shape[0]
    first = filters[0]
    return FilteredAccuracy(
        radii=radii,
        accuracy=tuple(float(a) for a in correct.double().mean(dim=1)),
        clean=float(clean_correct.double().mean()),
        kind=first.kind.value,
        n=n,
        shape=first.shape.value,
        rescale=first.rescale,
        clip=first.clip,
        correct=correct if per_image else None,
        clean_correct=clean_correct if per_image else None,
    )
