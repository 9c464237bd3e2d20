"""Threat-model norms and the small tensor helpers that measure, normalise and project with them.

Linf and L2 only (Madry et al. 1706.06083); every helper works per sample on ``[N, ...]`` tensors.
"""

from __future__ import annotations

import enum
import math

import torch
from einops import rearrange

__all__ = ["Norm", "effective_eps", "l2_normalize", "l2_project", "perturbation_norm"]


class Norm(str, enum.Enum):
    """The norm a budget ``eps`` and a perturbation's size are measured in."""

    LINF = "linf"
    L2 = "l2"

    def __repr__(self) -> str:
        return repr(self.value)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``[N]`` so it broadcasts against ``like`` ``[N, ...]``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def perturbation_norm(delta: torch.Tensor, norm: Norm | str, *, per_channel: bool = False) -> torch.Tensor:
    """Per-sample (or per-sample-and-channel) ``linf`` or ``l2`` norm of ``delta``.

    Args:
        delta: ``[N, ...]``; with ``per_channel`` it must be ``[N, C, H, W]``.
        norm: ``"linf"`` or ``"l2"``.
        per_channel: measure each channel on its own (Yin et al.'s Fourier eps convention).

    Returns:
        ``[N]``, or ``[N, C]`` with ``per_channel``.
    """
    flat = rearrange(delta, "n c h w -> n c (h w)") if per_channel else delta.flatten(1)
    if Norm(norm) is Norm.LINF:
        return flat.abs().amax(-1) if flat.shape[-1] else flat.new_zeros(flat.shape[:-1])
    return torch.linalg.vector_norm(flat, dim=-1)


def effective_eps(eps: float, norm: Norm, bounds: tuple[float, float], x: torch.Tensor) -> float:
    """``eps`` (or a step size) capped at the diameter of the box ``bounds`` for images like ``x[0]``.

    A larger budget reaches the same points (every perturbed image is clipped into the box), so
    the cap changes no attack's feasible set, and a longer step crosses the whole box all the
    same; it keeps the arithmetic finite: ``2 * eps`` or the L2 norm of a perturbation ``eps``
    wide would overflow float32 for an eps near its maximum.
    """
    width = bounds[1] - bounds[0]
    diameter = width if Norm(norm) is Norm.LINF else width * math.sqrt(x[0].numel())
    return min(float(eps), diameter)


def l2_normalize(v: torch.Tensor) -> torch.Tensor:
    """``v`` ``[N, ...]`` scaled to unit L2 norm per sample (zero stays zero).

    Args:
        v: any ``[N, ...]`` tensor, e.g. a batch of input gradients.

    Returns:
        Tensor of ``v``'s shape whose samples have L2 norm 1 (or 0).
    """
    norms = torch.linalg.vector_norm(v.flatten(1), dim=1).clamp_min(1e-12)
    return v / _per_sample(norms, v)


def l2_project(x: torch.Tensor, x0: torch.Tensor, eps: float, bounds: tuple[float, float]) -> torch.Tensor:
    """Project ``x`` onto the L2 ball of radius ``eps`` around ``x0``, then clip to ``bounds``.

    Clipping moves each pixel towards ``x0`` (which lies inside the bounds), so it cannot leave the
    ball: the result is in both sets.

    Args:
        x: the points to project ``[N, ...]``.
        x0: the centres ``[N, ...]``, inside ``bounds``.
        eps: the ball's radius (L2 over each whole sample).
        bounds: ``(lo, hi)`` of the input domain.

    Returns:
        Tensor of ``x``'s shape, within ``eps`` of ``x0`` and inside ``bounds``.
    """
    delta = x - x0
    norms = torch.linalg.vector_norm(delta.flatten(1), dim=1)
    factor = (eps / norms.clamp_min(1e-12)).clamp_max(1.0)
    return (x0 + delta * _per_sample(factor, x)).clamp_(*bounds)
