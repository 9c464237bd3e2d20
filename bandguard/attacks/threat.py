"""Threat models as values: a norm, its budgets and the image shape they apply to.

A :class:`ThreatModel` is what an attack promises: every perturbation it returns at budget
``epsilons[i]`` lies in that ball. Anything that groups attacks (cascades, worst cases, sanity
checks, plots) compares threat models, never a norm's name and eps numbers alone: on colour images
the Fourier-basis attacks' L2 budget is *per channel* (Yin et al. 1906.08988), so its ball of
radius ``eps`` has whole-image L2 radius ``eps * sqrt(C)``.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import torch
from einops import rearrange

from bandguard.attacks.norms import Norm, perturbation_norm

__all__ = ["ThreatModel", "ThreatNorm"]

_REL = 1e-6
"""Relative slack when comparing radii: budgets written by hand (``1.7320508``) round."""


class ThreatNorm(str, enum.Enum):
    """The norm of a threat model: Linf, L2 of the whole image, or L2 of each channel on its own."""

    LINF = "linf"
    L2 = "l2"
    L2_CHANNEL = "l2/channel"

    def __repr__(self) -> str:
        return repr(self.value)


@dataclasses.dataclass(frozen=True)
class ThreatModel:
    """A norm with its budgets, on images of one shape.

    Attributes:
        norm: :class:`ThreatNorm`.
        epsilons: the budgets ``(E,)``, in the order the attack reports them.
        shape: ``(C, H, W)`` of the images the budgets apply to.
    """

    norm: ThreatNorm
    epsilons: tuple[float, ...]
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", ThreatNorm(self.norm))
        object.__setattr__(self, "epsilons", tuple(float(e) for e in self.epsilons))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if len(self.shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {self.shape}")

    @property
    def whole_image(self) -> ThreatModel:
        """The smallest whole-image ball holding this one: per-channel L2 ``eps`` lies in the L2 ball
        of radius ``eps * sqrt(C)`` (channels add in squares); Linf and L2 are whole-image already."""
        if self.norm is not ThreatNorm.L2_CHANNEL:
            return self
        c = self.shape[0]
        return ThreatModel(ThreatNorm.L2, tuple(e * math.sqrt(c) for e in self.epsilons), self.shape)

    def fits_in(self, ball: ThreatModel) -> bool:
        """``True`` if, budget by budget, every perturbation of this threat lies in ``ball``'s.

        ``ball`` must be a whole-image threat with as many budgets on images of the same shape.
        """
        if self.shape != ball.shape or len(self.epsilons) != len(ball.epsilons):
            return False
        if ball.norm is ThreatNorm.L2_CHANNEL:
            return self == ball
        mine = self.whole_image
        if mine.norm is not ball.norm:
            return False
        return all(a <= b * (1 + _REL) for a, b in zip(mine.epsilons, ball.epsilons))

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample size of ``delta`` ``[N, C, H, W]`` in this norm, ``[N]`` (per channel: the largest)."""
        if self.norm is ThreatNorm.L2_CHANNEL:
            flat = rearrange(delta, "n c h w -> n c (h w)")
            return torch.linalg.vector_norm(flat, dim=-1).amax(1)
        return perturbation_norm(delta, Norm(self.norm.value))

    def label(self) -> str:
        """Short text for tables: ``"l2 [0.5, 1] on 3x32x32"``."""
        eps = ", ".join(f"{e:g}" for e in self.epsilons)
        return f"{self.norm.value} [{eps}] on {'x'.join(map(str, self.shape))}"
