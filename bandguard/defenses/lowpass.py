"""Input low-pass and high-pass filters as defenses (Wang et al. 1905.13545, HFC).

Each channel's centred 2-D spectrum is multiplied by a radial mask from :mod:`bandguard.fourier`
(the one place that builds masks): ``ideal`` keeps frequencies at distance ``< radius`` from the
centre ``(H/2, W/2)`` as in Wang et al.'s HFC code; ``gaussian`` and ``butterworth`` roll off
smoothly. Works on any ``H x W``, is differentiable (a fixed linear map), and composes as
``nn.Sequential(LowPass(8), model)``.
"""

from __future__ import annotations

import dataclasses

import torch

from bandguard import fourier
from bandguard._checks import check_choice, check_int, check_nonnegative
from bandguard.defenses.base import Defense

__all__ = [
    "HighPass",
    "LowPass",
    "LowPassSettings",
    "highpass_filter",
    "lowpass_filter",
    "rescale_to_unit_max",
]

SMOOTH_KINDS = fourier.SMOOTH_KINDS


@dataclasses.dataclass(frozen=True)
class LowPassSettings:
    """Settings of :class:`LowPass` (also accepted by :func:`~bandguard.defenses.compose.defend`).

    Attributes:
        radius: cut-off distance from the spectrum's centre, in frequency index units.
        smooth: ``"ideal"`` (HFC's hard disc), ``"gaussian"`` or ``"butterworth"``.
        order: Butterworth order.
        rescale: HFC's analysis quirk: rescale each filtered image to a maximum of 1.
    """

    radius: float
    smooth: str = "ideal"
    order: int = 2
    rescale: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", check_nonnegative(self.radius, "radius"))
        object.__setattr__(self, "smooth", check_choice(self.smooth, SMOOTH_KINDS, "smooth"))
        check_int(self.order, "order", minimum=1)
        if not isinstance(self.rescale, bool):
            raise TypeError(f"rescale must be a bool, got {self.rescale!r}")


def rescale_to_unit_max(x: torch.Tensor) -> torch.Tensor:
    """Divide each image of ``x`` ``[N, C, H, W]`` by its maximum over ``C, H, W``.

    Wang et al.'s HFC scripts rescale every filtered image to a maximum of 255; in bandguard's
    ``[0, 1]`` space that is a maximum of 1. An image whose maximum is <= 0 is left unchanged.
    """
    peak = x.amax(dim=(-3, -2, -1), keepdim=True)
    return torch.where(peak > 0, x / torch.where(peak > 0, peak, torch.ones_like(peak)), x)


def lowpass_filter(
    x: torch.Tensor, radius: float, *, smooth: str = "ideal", order: int = 2, rescale: bool = False
) -> torch.Tensor:
    """Low-frequency part of each channel of ``x`` (functional twin of :class:`LowPass`).

    Args:
        x: images ``[N, C, H, W]`` (any ``[..., H, W]`` works).
        radius: cut-off; a radius beyond the corner of the spectrum keeps everything.
        smooth: mask kind, see :func:`bandguard.fourier.lowpass_mask`.
        order: Butterworth order.
        rescale: HFC per-image rescaling to a maximum of 1 (analysis only).

    Returns:
        Tensor shaped like ``x``.
    """
    s = LowPassSettings(radius, smooth, order, rescale)
    h, w = x.shape[-2:]
    mask = fourier.lowpass_mask(h, w, s.radius, smooth=s.smooth, order=s.order,
                                device=x.device, dtype=x.dtype)
    out = fourier.filter_with_mask(x, mask)
    return rescale_to_unit_max(out) if s.rescale else out


def highpass_filter(
    x: torch.Tensor, radius: float, *, smooth: str = "ideal", order: int = 2, rescale: bool = False
) -> torch.Tensor:
    """High-frequency part of each channel of ``x``: the complement of :func:`lowpass_filter`.

    Without rescaling, ``lowpass_filter(x, r) + highpass_filter(x, r) == x`` up to rounding.
    Shapes as in :func:`lowpass_filter`.
    """
    s = LowPassSettings(radius, smooth, order, rescale)
    h, w = x.shape[-2:]
    mask = fourier.highpass_mask(h, w, s.radius, smooth=s.smooth, order=s.order,
                                 device=x.device, dtype=x.dtype)
    out = fourier.filter_with_mask(x, mask)
    return rescale_to_unit_max(out) if s.rescale else out


class _MaskFilter(Defense):
    """Shared body of :class:`LowPass` and :class:`HighPass`: a cached mask times the spectrum."""

    _high: bool = False

    def __init__(self, radius: float, *, smooth: str = "ideal", order: int = 2,
                 rescale: bool = False) -> None:
        super().__init__()
        self.settings = LowPassSettings(radius, smooth, order, rescale)
        # Non-persistent: a cache, rebuilt when H, W, device or dtype change; never in state_dict.
        self.register_buffer("mask", torch.empty(0), persistent=False)

    def _build_mask(self, x: torch.Tensor) -> torch.Tensor:
        s = self.settings
        h, w = x.shape[-2:]
        make = fourier.highpass_mask if self._high else fourier.lowpass_mask
        return make(h, w, s.radius, smooth=s.smooth, order=s.order, device=x.device, dtype=x.dtype)

    def _mask_for(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            # Inside a compiled graph the mask is a traced constant; mutating a buffer would
            # only cost graph breaks.
            return self._build_mask(x)
        m = self.mask
        if m.shape != x.shape[-2:] or m.device != x.device or m.dtype != x.dtype:
            self.mask = self._build_mask(x)
        return self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = fourier.filter_with_mask(x, self._mask_for(x))
        return rescale_to_unit_max(out) if self.settings.rescale else out

    def extra_repr(self) -> str:
        s = self.settings
        parts = [f"radius={s.radius:g}", f"smooth={s.smooth!r}"]
        if s.smooth == "butterworth":
            parts.append(f"order={s.order}")
        if s.rescale:
            parts.append("rescale=True")
        return ", ".join(parts)


class LowPass(_MaskFilter):
    """Keep the low frequencies of each input channel (Wang et al. 1905.13545, HFC).

    Args:
        radius: cut-off distance from the centre of the spectrum (index units); ``ideal`` keeps
            distances ``< radius``. For 32 x 32 inputs the corner lies at ``16 * sqrt(2) ~ 22.6``,
            so ``radius > 22.7`` is the identity.
        smooth: ``"ideal"``, ``"gaussian"`` or ``"butterworth"``.
        order: Butterworth order.
        rescale: HFC's per-image rescaling to a maximum of 1 (for analysis; off by default, and
            it leaves the model's bounds meaningless for attacks).

    Shape:
        ``[N, C, H, W] -> [N, C, H, W]``, any ``H, W``.

    Example:
        >>> defended = nn.Sequential(LowPass(8), model)
    """

    _high = False


class HighPass(_MaskFilter):
    """Keep the high frequencies of each input channel: the complement of :class:`LowPass`.

    Arguments and shapes as in :class:`LowPass`; ``HighPass(r)(x) + LowPass(r)(x) == x``.
    """

    _high = True
