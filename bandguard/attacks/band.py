"""Band-limited perturbations: confine ``x_adv - x`` to a ring of frequencies, inside the ball and bounds.

A low-pass defense only lets some frequencies through; the attack it invites is one whose
perturbation lives in exactly those frequencies (low-frequency adversarial perturbations, Guo et
al. 1809.08758). :func:`band_project` is the projection an iterative attack uses in place of the
plain eps-ball projection: its output is ``x0 + delta`` with the spectrum of ``delta`` zero outside
the band (up to float rounding), ``|delta| <= eps`` and ``x0 + delta`` inside the bounds.

The three sets (band subspace, eps-ball, box) are convex; the exact projection onto their
intersection is a quadratic program. Instead a few rounds of alternating projections (band, then
ball and box) move towards the intersection, and a final per-sample scalar ``s`` in ``[0, 1]``
makes the band-limited ``delta`` feasible exactly: a scalar multiple of a band-limited image is
band-limited, and ``s * delta`` stays in the ball and the box when ``s`` is small enough
(``s = 0`` always is, since ``x0`` is inside the bounds).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from bandguard._checks import Bounds, check_bounds, check_enum, check_int, check_nonnegative
from bandguard.attacks.norms import Norm
from bandguard.fourier import bandpass_mask, filter_with_mask

__all__ = ["Band", "band_mask", "band_project"]



@dataclasses.dataclass(frozen=True, kw_only=True)
class Band:
    """A ring of centred frequencies ``low <= d < high`` (``d`` the radial distance, as in the masks
    of :mod:`bandguard.fourier`); ``high=None`` means no upper limit.

    ``Band(high=8)`` is a low-pass band (radius 8), ``Band(low=8)`` a high-pass one, ``Band(low=4,
    high=8)`` a ring. Masks are ideal (0 or 1), so confining to the band is an orthogonal projection.

    Attributes:
        low, high: the ring's radii.
        rounds: alternating-projection rounds (band, then ball and box) before the final scaling of
            :func:`band_project`; each costs two real FFTs of the batch.
        slack: how far, in units of eps, a pixel may overshoot the bounds before the scaling binds;
            the final clamp removes the overshoot, so up to ``slack * eps`` per pixel leaks out of
            the band, and only at pixels where a bound binds. ``0`` is exact confinement, which
            images with saturated pixels (MNIST's black background, white skies in CIFAR-10)
            pay for with a perturbation scaled to nearly nothing: any band-limited ``delta``
            almost surely points out of the box at some saturated pixel.
    """

    low: float = 0.0
    high: float | None = None
    rounds: int = 10
    slack: float = 0.02

    def __post_init__(self) -> None:
        low = check_nonnegative(self.low, "band.low")
        high = None if self.high is None else check_nonnegative(self.high, "band.high")
        if high is not None and high <= low:
            raise ValueError(f"band.high must exceed band.low, got low={low} and high={high}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        check_int(self.rounds, "band.rounds", minimum=0)
        object.__setattr__(self, "slack", check_nonnegative(self.slack, "band.slack"))


def band_mask(band: Band, h: int, w: int, *, device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """The ideal mask of ``band`` in centred coordinates, ``[h, w]`` with values 0 or 1.

    Args:
        band: the frequencies to keep (``low <= d < high``, ``d`` the distance from the centre).
        h: image height.
        w: image width.
        device: where to build the mask.
        dtype: the mask's dtype; default torch's default dtype.

    Returns:
        Tensor ``[h, w]``: 1 inside the band, 0 outside.

    Raises:
        ValueError: the band holds no frequency of an ``h x w`` image (an attack confined to it
            could not move, and would report every image robust).
    """
    # Past the corner of the grid every frequency is inside: an infinite radius is the same.
    high = math.hypot(h, w) + 1.0 if band.high is None else band.high
    mask = bandpass_mask(h, w, band.low, high, dtype=dtype)  # on the CPU: the check needs no device sync
    if not bool(mask.any()):
        corner = math.hypot(h // 2, w // 2)
        raise ValueError(
            f"band {band} holds no frequency of a {h}x{w} image (its distances run from 0 to {corner:.4g}); "
            f"expected low <= {corner:.4g} and a ring wide enough to hold a grid point"
        )
    return mask.to(device)


def _clip_to_ball_and_box(delta: torch.Tensor, x0: torch.Tensor, eps: float, norm: Norm,
                          bounds: Bounds) -> torch.Tensor:
    """``delta`` moved into the eps-ball (Linf: clamp; L2: rescale) and then into the box."""
    lo, hi = bounds
    if norm is Norm.L2:
        norms = torch.linalg.vector_norm(delta.flatten(1), dim=1).clamp_min(1e-12)
        delta = delta * (eps / norms).clamp_max(1.0).view(-1, *([1] * (delta.ndim - 1)))
        return torch.maximum(torch.minimum(delta, hi - x0), lo - x0)
    return torch.maximum(torch.minimum(delta, (hi - x0).clamp_max(eps)), (lo - x0).clamp_min(-eps))


def _feasible_scale(delta: torch.Tensor, x0: torch.Tensor, eps: float, norm: Norm,
                    bounds: Bounds, slack: float) -> torch.Tensor:
    """Per-sample largest ``s`` in ``[0, 1]`` with ``s * delta`` in the ball and ``x0 + s * delta``
    in the box; ``[N]``."""
    lo, hi = bounds
    flat, base = delta.flatten(1), x0.flatten(1)
    size = flat.abs().amax(1) if norm is Norm.LINF else torch.linalg.vector_norm(flat, dim=1)
    scale = (eps / size.clamp_min(1e-30)).clamp_max(1.0)
    # Per pixel the room left towards the bound delta points at. Entries at the FFT's rounding level
    # bind nothing (else one pixel at a bound with delta = -1e-9 would force s = 0); the final clamp
    # absorbs what they overshoot, a change at that same rounding level.
    room = torch.where(flat > 0, hi - base, base - lo) + slack * eps
    noise = 64 * torch.finfo(flat.dtype).eps * flat.abs().amax(1, keepdim=True)
    ratio = torch.where(flat.abs() > noise, room / flat.abs().clamp_min(1e-30), math.inf)
    return torch.minimum(scale, ratio.amin(1)).clamp_min(0.0)


def band_project(x: torch.Tensor, x0: torch.Tensor, *, eps: float, norm: Norm | str, band: Band,
                 bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
    """A point ``x0 + delta`` near ``x`` with ``delta`` confined to ``mask``'s band, in the ball and box.

    The step: ``delta = filter(x - x0)``; ``band.rounds`` times ``delta = filter(clip(delta))``
    (clip: into the eps-ball and the box); finally ``delta *= s`` with the per-sample largest ``s``
    in ``[0, 1]`` that makes it feasible (with ``band.slack`` of room at the bounds). A last clamp
    to the bounds removes the slack's overshoot and float rounding.

    Args:
        x: the point to project ``[N, C, H, W]``, e.g. an attack's iterate after its step.
        x0: the clean images ``[N, C, H, W]`` (inside ``bounds``).
        eps: radius of the ball in ``norm``.
        norm: ``"linf"`` or ``"l2"`` (the whole image).
        band: the frequencies ``delta`` may use, and the projection's settings.
        bounds: ``(lo, hi)`` of the input domain.

    Returns:
        ``[N, C, H, W]``, dtype of ``x``: ``|result - x0| <= eps``, the result lies inside
        ``bounds``, and the spectrum of ``result - x0`` outside the band is zero up to float
        rounding plus the clamped overshoot (at most ``band.slack * eps`` per pixel).
    """
    norm = check_enum(norm, Norm, "norm")
    eps = check_nonnegative(eps, "eps")
    bounds = check_bounds(bounds)
    slack = band.slack
    mask = band_mask(band, *x.shape[-2:], device=x.device, dtype=x.dtype)
    delta = filter_with_mask(x - x0, mask)
    for _ in range(band.rounds):
        delta = filter_with_mask(_clip_to_ball_and_box(delta, x0, eps, norm, bounds), mask)
    scale = _feasible_scale(delta, x0, eps, norm, bounds, slack)
    lo, hi = bounds
    return (x0 + delta * scale.view(-1, *([1] * (x.ndim - 1)))).clamp_(lo, hi)
