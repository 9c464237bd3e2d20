"""AttackResults / AttackResult (bandguard/attacks/results.py): an immutable sequence per eps with
exact summaries, built by hand and by the driver."""

from __future__ import annotations

import itertools

import pytest
import torch
from attack_models import batch, tiny_model, within
from hypothesis import given, settings
from hypothesis import strategies as st

from bandguard.attacks import PGD, AttackResult, AttackResults


def _result(eps: float, adv_pred: list[int], labels: list[int], clean: list[int]) -> AttackResult:
    n = len(labels)
    lab, adv = torch.tensor(labels), torch.tensor(adv_pred)
    return AttackResult(
        eps=eps, norm="linf", x_adv=torch.zeros(n, 1, 2, 2), success=adv != lab,
        norms=torch.full((n,), eps), channel_norms=torch.full((n, 1), eps), labels=lab,
        clean_pred=torch.tensor(clean), adv_pred=adv, forwards=torch.arange(1, n + 1),
        gradients=torch.zeros(n, dtype=torch.long),
    )


def test_summaries_are_exact() -> None:
    labels, clean = [0, 1, 2, 0], [0, 1, 2, 1]
    results = AttackResults((_result(0.1, [0, 1, 0, 1], labels, clean), _result(0.3, [1, 1, 0, 1], labels, clean)))
    assert len(results) == 2 and results.epsilons == (0.1, 0.3)
    assert results.clean_accuracy == 0.75
    assert results.robust_accuracy == (0.5, 0.25)
    assert results.robust.tolist() == [[True, True, False, False], [False, True, False, False]]
    assert results.at(0.3) is results[1] and results[-1] is results[1]
    assert [r.eps for r in results] == [0.1, 0.3]
    assert results[0].queries == 1 + 2 + 3 + 4 and results[0].success_rate == 0.5
    with pytest.raises(KeyError, match=r"0\.2"):
        results.at(0.2)
    d = results.to_dict(per_sample=True)
    assert d["epsilons"] == [0.1, 0.3] and d["robust_accuracy"] == [0.5, 0.25]
    assert d["results"][1]["forwards_per_sample"] == [1, 2, 3, 4]
    assert d["results"][0]["max_channel_norm"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="at least one"):
        AttackResults(())
    with pytest.raises(dataclasses_frozen()):
        results.results = ()  # type: ignore[misc]


def dataclasses_frozen() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


@settings(max_examples=50, deadline=None)
@given(
    norm=st.sampled_from(["linf", "l2"]),
    epsilons=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_success_never_decreases_with_eps(norm, epsilons, seed) -> None:
    model = tiny_model(seed=seed)
    x, y = batch(12, seed=seed)
    scale = 1.0 if norm == "linf" else 4.0
    epsilons = [scale * e for e in epsilons]
    results = PGD(eps=epsilons, norm=norm, steps=3, seed=seed)(model, x, y)
    assert len(results) == len(epsilons) and results.epsilons == tuple(epsilons)
    by_eps = sorted(zip(epsilons, results), key=lambda pair: pair[0])
    for (e_small, small), (e_big, big) in itertools.pairwise(by_eps):
        assert small.eps == e_small and big.eps == e_big
        assert bool((big.success | ~small.success).all())  # broken at a smaller eps stays broken
        assert big.robust_accuracy <= small.robust_accuracy
        within(big.x_adv, x, e_big, norm)
    robust = results.robust
    assert robust.shape == (len(epsilons), 12) and robust.dtype == torch.bool
    assert torch.equal(robust, torch.stack([~r.success for r in results]))
