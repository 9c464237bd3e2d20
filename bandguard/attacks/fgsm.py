"""One-step attacks: FGSM (Linf, Goodfellow et al. 1412.6572), FGM (L2) and FGSM with a random
start (Wong et al. 2001.03994, the step of fast adversarial training).

Each is one step of the PGD core (:class:`~bandguard.attacks.pgd.GradientAttack`), so they share
its projection, clipping and bookkeeping. Every function returns the same
:class:`~bandguard.attacks.results.AttackResults` as its settings twin.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from bandguard._checks import Bounds, check_bool, check_enum, check_positive
from bandguard.attacks.losses import Loss
from bandguard.attacks.norms import Norm
from bandguard.attacks.pgd import GradientAttack
from bandguard.attacks.results import AttackResults

__all__ = ["FGM", "FGSM", "RS_STEP", "fgm", "fgsm"]

RS_STEP = 1.25
"""Step of FGSM with random start, as a multiple of eps (Wong et al. 2001.03994)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FGSM(GradientAttack):
    """Fast gradient sign method: ``clip(x + eps * sign(grad))`` (Goodfellow et al. 1412.6572).

    With ``random_start`` it is the step of fast adversarial training (Wong et al. 2001.03994):
    start uniformly in the eps-box, step ``1.25 * eps`` along the gradient sign, project back.

    Attributes:
        eps: Linf budget(s).
        random_start: start from a uniform point of the eps-box.
        step_size: the step; default ``eps`` (``1.25 * eps`` with ``random_start``).
        loss: ``"ce"`` or ``"margin"``.
        bounds: ``(lo, hi)`` of the input domain.
        seed: seeds the random start (``None``: torch's global generator).
    """

    name = "fgsm"
    norm = Norm.LINF

    random_start: bool = False
    step_size: float | None = None
    loss: Loss = Loss.CE
    seed: int | None = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "loss", check_enum(self.loss, Loss, "loss"))
        object.__setattr__(self, "random_start", check_bool(self.random_start, "random_start"))
        if self.step_size is not None:
            check_positive(self.step_size, "step_size")

    def _settings(self, model: nn.Module, eps: float) -> dict[str, Any]:
        default = RS_STEP * eps if self.random_start else eps
        return dict(
            eps=eps, norm=Norm.LINF, steps=1, step_size=default if self.step_size is None else self.step_size,
            random_start=self.random_start, restarts=1, loss=self.loss, eot=1,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class FGM(GradientAttack):
    """Fast gradient method in L2: ``clip(x + eps * grad / |grad|_2)`` (Goodfellow et al. 1412.6572).

    Attributes:
        eps: L2 budget(s).
        loss: ``"ce"`` or ``"margin"``.
        bounds: ``(lo, hi)`` of the input domain.
    """

    name = "fgm"
    norm = Norm.L2

    loss: Loss = Loss.CE

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "loss", check_enum(self.loss, Loss, "loss"))

    def _settings(self, model: nn.Module, eps: float) -> dict[str, Any]:
        return dict(eps=eps, norm=Norm.L2, steps=1, step_size=eps, random_start=False, restarts=1,
                    loss=self.loss, eot=1)


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | tuple[float, ...],
    random_start: bool = False,
    step_size: float | None = None,
    loss: Loss | str = "ce",
    bounds: Bounds = (0.0, 1.0),
    seed: int | None = 0,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> AttackResults:
    """FGSM (Goodfellow et al. 1412.6572; with ``random_start``, Wong et al. 2001.03994).

    Args:
        model: maps ``[N, C, H, W]`` images in ``bounds`` to logits ``[N, K]``.
        x: clean images ``[N, C, H, W]``.
        y: int64 labels ``[N]``.
        eps: Linf budget(s); one result per value.
        random_start: start from a uniform point of the eps-box (Wong et al.).
        step_size: the step; default ``eps`` (``1.25 * eps`` with ``random_start``).
        loss: ``"ce"`` or ``"margin"``.
        bounds: ``(lo, hi)`` of the input domain.
        seed: seeds the random start; ``None`` draws from torch's global generator.
        target: int64 ``[N]`` target classes for a targeted attack; ``None`` is untargeted.
        generator: the randomness of this call; ``None`` seeds one from ``seed``.

    Returns:
        :class:`~bandguard.attacks.results.AttackResults`, one per eps.
    """
    attack = FGSM(eps=eps, random_start=random_start, step_size=step_size, loss=loss,  # type: ignore[arg-type]
                  bounds=bounds, seed=seed)
    return attack(model, x, y, target=target, generator=generator)


def fgm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | tuple[float, ...],
    loss: Loss | str = "ce",
    bounds: Bounds = (0.0, 1.0),
    target: torch.Tensor | None = None,
) -> AttackResults:
    """FGM in L2 (Goodfellow et al. 1412.6572): one step of size ``eps`` along the L2-normalized gradient.

    Args:
        model: maps ``[N, C, H, W]`` images in ``bounds`` to logits ``[N, K]``.
        x: clean images ``[N, C, H, W]``.
        y: int64 labels ``[N]``.
        eps: L2 budget(s) over the whole image; one result per value.
        loss: ``"ce"`` or ``"margin"``.
        bounds: ``(lo, hi)`` of the input domain.
        target: int64 ``[N]`` target classes for a targeted attack; ``None`` is untargeted.

    Returns:
        :class:`~bandguard.attacks.results.AttackResults`, one per eps; each ``x_adv`` is
        ``[N, C, H, W]``.
    """
    return FGM(eps=eps, loss=loss, bounds=bounds)(model, x, y, target=target)  # type: ignore[arg-type]
