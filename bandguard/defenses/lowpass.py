"""Input low-pass and high-pass filters as defenses (Wang et al. 1905.13545; Yin et al. 1906.08988).

Each defense holds one :class:`bandguard.fourier.FrequencyFilter` (the one filter implementation,
shared with the filtered-data training modes and ``filtered_accuracy``) and applies it in front of
the model: ``nn.Sequential(LowPass(8), model)``.

A defense is not the papers' data construction: it feeds a model that expects images in its bounds,
so by default its output is clipped to ``(0, 1)``, the bounds of bandguard's models (the ringing of
an ideal low-pass overshoots them by a few percent). ``clip=None`` gives the raw filtered image, as
Wang et al. build their filtered data; ``clip=(lo, hi)`` other bounds. Works on any ``H x W``, is
differentiable (a fixed linear map, then the clip), and composes with ``torch.compile``.
"""

from __future__ import annotations

import torch

from bandguard._checks import FFT_DTYPES, check_images
from bandguard.defenses.base import Defense
from bandguard.fourier import FilterKind, FrequencyFilter, MaskProfile, MaskShape

__all__ = ["DEFENSE_CLIP", "HighPass", "LowPass"]

#: Default output range of the filter defenses: the pixel bounds of bandguard's models.
DEFENSE_CLIP = (0.0, 1.0)


class _BandFilter(Defense):
    """Shared body of :class:`LowPass` and :class:`HighPass`: one :class:`FrequencyFilter`."""

    kind = FilterKind.LOW
    randomized = False
    differentiable = True
    forward_cost = 1

    def __init__(
        self,
        radius: float,
        *,
        shape: str | MaskShape = MaskShape.DISC,
        profile: str | MaskProfile = MaskProfile.IDEAL,
        order: int = 2,
        rescale: bool = False,
        clip: tuple[float, float] | None = DEFENSE_CLIP,
    ) -> None:
        super().__init__()
        self.filter = FrequencyFilter(radius, kind=self.kind, shape=shape, profile=profile,
                                      order=order, rescale=rescale, clip=clip)

    @classmethod
    def from_filter(cls, settings: FrequencyFilter) -> _BandFilter:
        """The defense applying ``settings`` exactly (its ``kind`` must match the class)."""
        if settings.kind is not cls.kind:
            raise ValueError(f"{cls.__name__} needs a kind={cls.kind.value!r} filter, got {settings.kind.value!r}")
        s = settings
        return cls(s.radius, shape=s.shape, profile=s.profile, order=s.order, rescale=s.rescale, clip=s.clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Metadata only: an empty batch, a channels-last layout or a dtype the FFT lacks (half,
        # bfloat16) would otherwise reach the FFT (an MKL or "Unsupported dtype" error, or a wrong
        # geometry). The values (NaN, bounds) are checked once by the entry point that calls the
        # model (attack, harness, heat map), not on every forward of its loop: reading them is a
        # host sync per forward on a GPU. NaN in gives NaN out.
        return self.filter(check_images(x, "x", bounds=None, dtypes=FFT_DTYPES, values=False))

    def extra_repr(self) -> str:
        text = self.filter.describe().replace(f", kind={self.kind.value!r}", "")
        return text if self.filter.clip is not None else f"{text}, clip=None"


class LowPass(_BandFilter):
    """Keep the low frequencies of each input channel (Wang et al. 1905.13545; Yin et al. 1906.08988).

    Args:
        radius: cut-off in frequency-index units from the centre of the spectrum. The ideal disc
            keeps distances ``< radius``; for 32 x 32 inputs the corner lies at ``16 * sqrt(2) ~
            22.6``, so ``radius > 22.7`` keeps everything.
        shape: ``"disc"`` (Wang et al.) or ``"square"`` (Yin et al., bandwidth ``2 * radius``).
        profile: ``"ideal"`` (both papers), ``"gaussian"`` or ``"butterworth"``.
        order: Butterworth order.
        rescale: Wang et al.'s per-image ``x / max(x)`` (analysis; off by default).
        clip: output range, default ``(0, 1)`` (the model's bounds); ``None`` keeps the raw filter.

    Shape:
        ``[N, C, H, W] -> [N, C, H, W]``, any ``H, W``.

    Example:
        >>> defended = nn.Sequential(LowPass(8), model)
    """

    kind = FilterKind.LOW


class HighPass(_BandFilter):
    """Keep the high frequencies of each input channel: the complement of :class:`LowPass`.

    Arguments and shapes as in :class:`LowPass`. With ``clip=None``,
    ``HighPass(r, clip=None)(x) + LowPass(r, clip=None)(x) == x``; with the default clip a
    high-pass image (mostly negative) loses its negative half.
    """

    kind = FilterKind.HIGH
