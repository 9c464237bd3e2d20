"""Norm helpers (bandguard/attacks/norms.py) on exact values."""

from __future__ import annotations

import pytest
import torch

from bandguard.attacks.norms import Norm, l2_normalize, l2_project, perturbation_norm


def test_perturbation_norms_exact(dtype) -> None:
    delta = torch.zeros(2, 2, 2, 2, dtype=dtype)
    delta[0, 0, 0, 0], delta[0, 1, 1, 1] = 3.0, -4.0
    assert perturbation_norm(delta, "l2").tolist() == [5.0, 0.0]
    assert perturbation_norm(delta, Norm.LINF).tolist() == [4.0, 0.0]
    assert perturbation_norm(delta, "l2", per_channel=True).tolist() == [[3.0, 4.0], [0.0, 0.0]]
    with pytest.raises(ValueError):
        perturbation_norm(delta, "l1")


def test_l2_helpers(dtype) -> None:
    v = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=dtype)
    torch.testing.assert_close(l2_normalize(v), torch.tensor([[0.6, 0.8], [0.0, 0.0]], dtype=dtype))
    x0 = torch.full((1, 2), 0.5, dtype=dtype)
    out = l2_project(torch.tensor([[0.5 + 0.3, 0.5 + 0.4]], dtype=dtype), x0, 0.25, (0.0, 1.0))
    torch.testing.assert_close(out, torch.tensor([[0.65, 0.7]], dtype=dtype))
