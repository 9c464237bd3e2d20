"""BPDA (bandguard/defenses/bpda.py): the exact value forward, the approximation's gradient back."""

from __future__ import annotations

import pytest
import torch

from bandguard.defenses import BPDA, straight_through


def test_value_is_exact_gradient_is_the_approximation(dtype) -> None:
    quantize = BPDA(lambda t: torch.round(t * 4) / 4)
    x = torch.rand(3, 1, 4, 4, dtype=dtype, requires_grad=True)
    out = quantize(x)
    assert torch.equal(out, torch.round(x.detach() * 4) / 4)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(g, torch.ones_like(x))  # identity approximation
    doubled = BPDA(lambda t: torch.round(t * 4) / 4, approx=lambda t: 2 * t)
    (g2,) = torch.autograd.grad(doubled(x).sum(), x)
    assert torch.equal(g2, torch.full_like(x, 2.0))
    assert BPDA.differentiable is False and quantize.randomized is False and quantize.forward_cost == 1


def test_errors() -> None:
    with pytest.raises(TypeError, match="fn"):
        BPDA(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="approx"):
        BPDA(torch.round, approx="identity")  # type: ignore[arg-type]


def test_straight_through_has_the_value_of_exact_and_the_gradient_of_approx() -> None:
    exact, approx = torch.tensor([3.0]), torch.tensor([1.0], requires_grad=True)
    out = straight_through(exact, approx * 2)
    out.backward()
    assert out.item() == 3.0 and approx.grad.item() == 2.0
