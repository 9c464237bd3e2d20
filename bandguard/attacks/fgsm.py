"""One-step attacks: FGSM (Linf, Goodfellow et al. 1412.6572), FGM (L2) and FGSM with a random
start (Wong et al. 2001.03994, the step of fast adversarial training).

All are one step of the PGD core, so they share its projection, clipping and bookkeeping.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from bandguard._checks import (
    Bounds,
    check_enum,
    check_int,
    check_positive,
)
from bandguard._modes import model_mode
from bandguard.attacks.base import Attack, Loss, Norm, _check_call, _Outcome
from bandguard.attacks.pgd import _pgd_core

__all__ = ["FGM", "FGSM", "fgm", "fgsm"]

RS_STEP = 1.25
"""Step of FGSM with random start, as a multiple of eps (Wong et al. 2001.03994)."""


def _one_step(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    random_start: bool,
    step_size: float | None,
    loss: Loss,
    targeted: bool,
    bounds: Bounds,
    generator: torch.Generator | None,
) -> _Outcome:
    if step_size is None:
        step_size = RS_STEP * eps if random_start else eps
    return _pgd_core(
        model, x, labels, eps=eps, norm=norm, steps=1, step_size=step_size,
        random_start=random_start, restarts=1, loss=loss, targeted=targeted, eot=1,
        bounds=bounds, generator=generator,
    )


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    random_start: bool = False,
    step_size: float | None = None,
    loss: Loss | str = "ce",
    target: torch.Tensor | None = None,
    bounds: Bounds = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fast gradient sign method: ``clip(x + eps * sign(grad))`` (Goodfellow et al. 1412.6572).

    With ``random_start`` it is the step of fast adversarial training (Wong et al. 2001.03994):
    start uniformly in the eps-box, step ``1.25 * eps`` along the gradient sign, project back.

    Args:
        model: maps ``[N, C, H, W]`` images in ``bounds`` to logits ``[N, K]`` (run in eval mode,
            modes restored).
        x: clean images ``[N, C, H, W]``; y: int64 labels ``[N]``.
        eps: Linf budget.
        random_start: start from a uniform point of the eps-box.
        step_size: the step; default ``eps`` (``1.25 * eps`` with ``random_start``).
        loss: ``"ce"`` or ``"margin"``; target: int64 ``[N]`` target classes or ``None``.
        bounds: ``(lo, hi)`` of the input domain; generator: source of the random start.

    Returns:
        ``x_adv`` ``[N, C, H, W]``, detached, inside ``bounds`` and the eps-box.
    """
    x, y, target, eps, bounds = _check_call(model, x, y, target, eps, bounds)
    if step_size is not None:
        check_positive(step_size, "step_size")
    loss_ = check_enum(loss, Loss, "loss")
    with model_mode(model):
        return _one_step(
            model, x, y if target is None else target, eps=eps, norm=Norm.LINF,
            random_start=random_start, step_size=step_size, loss=loss_, targeted=target is not None,
            bounds=bounds, generator=generator,
        ).x_adv


def fgm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    loss: Loss | str = "ce",
    target: torch.Tensor | None = None,
    bounds: Bounds = (0.0, 1.0),
) -> torch.Tensor:
    """Fast gradient method in L2: ``clip(x + eps * grad / |grad|_2)`` (Goodfellow et al. 1412.6572).

    Args and returns as :func:`fgsm`, with ``eps`` an L2 budget.
    """
    x, y, target, eps, bounds = _check_call(model, x, y, target, eps, bounds)
    loss_ = check_enum(loss, Loss, "loss")
    with model_mode(model):
        return _one_step(
            model, x, y if target is None else target, eps=eps, norm=Norm.L2, random_start=False,
            step_size=None, loss=loss_, targeted=target is not None, bounds=bounds, generator=None,
        ).x_adv


@dataclasses.dataclass(frozen=True, kw_only=True)
class FGSM(Attack):
    """Settings of :func:`fgsm`; ``FGSM(eps=0.1)(model, x, y) -> AttackResult``.

    Attributes:
        eps: Linf budget(s); random_start, step_size, loss: as in :func:`fgsm`;
        bounds: input domain; seed: seeds the random start (``None``: torch's global generator).
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
        if self.step_size is not None:
            check_positive(self.step_size, "step_size")
        if self.seed is not None:
            check_int(self.seed, "seed")

    def _run(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
        generator: torch.Generator | None,
    ) -> _Outcome:
        return _one_step(
            model, x, labels, eps=eps, norm=Norm.LINF, random_start=self.random_start,
            step_size=self.step_size, loss=self.loss, targeted=targeted, bounds=self.bounds,
            generator=generator,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class FGM(Attack):
    """Settings of :func:`fgm`; ``FGM(eps=1.0)(model, x, y) -> AttackResult`` (L2)."""

    name = "fgm"
    norm = Norm.L2

    loss: Loss = Loss.CE

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "loss", check_enum(self.loss, Loss, "loss"))

    def _run(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
        generator: torch.Generator | None,
    ) -> _Outcome:
        return _one_step(
            model, x, labels, eps=eps, norm=Norm.L2, random_start=False, step_size=None,
            loss=self.loss, targeted=targeted, bounds=self.bounds, generator=generator,
        )
