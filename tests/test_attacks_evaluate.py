"""evaluate_attack (bandguard/attacks/evaluate.py): batch sums equal one whole-set call."""

from __future__ import annotations

import json

import pytest
import torch
from attack_models import batch, tiny_model

from bandguard.attacks import PGD, FourierGreedy, evaluate_attack


def test_sums_over_batches_equal_one_call(tmp_path) -> None:
    model, (x, y) = tiny_model(), batch(40)
    attack = FourierGreedy(eps=(0.3, 1.0), max_queries=6)  # deterministic, so batches add up exactly
    seen: list[int] = []
    result = evaluate_attack(model, x, y, attack, batch_size=16, callback=seen.append)
    assert seen == [16, 16, 8]
    whole = attack(model, x, y)
    assert result.clean_accuracy == pytest.approx(whole.clean_accuracy)
    assert result.robust_accuracy == pytest.approx(whole.robust_accuracy)
    assert result.forwards == tuple(int(r.forwards.sum()) for r in whole)
    assert result.mean_norm == pytest.approx(tuple(float(r.norms.double().mean()) for r in whole))
    assert result.epsilons == (0.3, 1.0) and result.norm == "l2" and result.name == "fourier_greedy"
    path = result.save(tmp_path / "out" / "r.json")
    data = json.loads(path.read_text())
    assert data["epsilons"] == [0.3, 1.0] and data["n"] == 40 and len(data["per_eps"]) == 2
    assert not list(path.parent.glob(".*tmp"))


def test_errors() -> None:
    model, (x, y) = tiny_model(), batch(4)
    with pytest.raises(TypeError, match="attack"):
        evaluate_attack(model, x, y, lambda m, a, b: a)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model"):
        evaluate_attack(lambda t: t, x, y, PGD(eps=0.1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_attack(model, x, y, PGD(eps=0.1), batch_size=0)
    assert torch.equal(y, batch(4)[1])
