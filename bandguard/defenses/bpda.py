"""BPDA: a non-differentiable map with a declared differentiable stand-in for the backward pass.

Backward pass differentiable approximation (Athalye et al. 1802.00420). Attacks never import this
module: they read the ``differentiable = False`` declaration by duck typing and simply
backpropagate, and the module's forward routes the gradient through its approximation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bandguard.defenses.base import Defense

__all__ = ["BPDA", "straight_through"]


def straight_through(exact: torch.Tensor, approx: torch.Tensor) -> torch.Tensor:
    """A tensor whose value is ``exact`` and whose gradient is that of ``approx`` (BPDA's core).

    Args:
        exact: the non-differentiable result, any shape.
        approx: a differentiable approximation of it, same shape.
    """
    return approx + (exact - approx).detach()


class BPDA(Defense):
    """``nn.Module`` whose value is ``fn(x)`` and whose gradient is that of ``approx(x)``.

    Put it in front of a model (``nn.Sequential(BPDA(jpeg), model)``) and every gradient attack
    goes through it. The value is :func:`straight_through` of the two.

    Args:
        fn: the non-differentiable map, ``[N, C, H, W] -> [N, C, H, W]`` (run without autograd).
        approx: a differentiable approximation of ``fn``; ``None`` means the identity.
    """

    differentiable = False

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        approx: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        if approx is not None and not callable(approx):
            raise TypeError(f"approx must be callable or None, got {type(approx).__name__}")
        self.fn = fn
        self.approx_fn = approx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            exact = self.fn(x)
        return straight_through(exact, x if self.approx_fn is None else self.approx_fn(x))
