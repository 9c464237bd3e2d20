"""Ensemble contracts: the cascade equals its members run one after the other on the samples left,
per-sample worst case, summed exact counts, invariants for the standard ensemble (Linf and L2),
errors."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from attack_models import RowCounter, plain_model
from attack_models import batch as shared_batch
from hypothesis import given, settings
from hypothesis import strategies as st

from bandguard.attacks.apgd import APGD
from bandguard.attacks.ensemble import Ensemble, _BallFourier, standard_ensemble
from bandguard.attacks.fourier_basis import FourierAttack
from bandguard.attacks.square import Square
from bandguard.fourier import distinct_frequencies, fourier_basis

pytestmark = pytest.mark.usefixtures("one_thread")


tiny_model = functools.partial(plain_model, classes=5)
batch = functools.partial(shared_batch, classes=5)


def test_cascade_equals_members_run_in_turn_on_the_samples_left() -> None:
    model = tiny_model()
    x, y = batch(32)
    first = Square(eps=0.05, queries=3, seed=2)
    second = APGD(eps=0.05, steps=5, seed=1)
    ens = Ensemble(eps=0.05, attacks=(first, second))(model, x, y)[0]
    a = first(model, x, y)[0]
    left = (~a.success).nonzero().squeeze(1)
    b = second(model, x[left], y[left])[0]
    assert 0 < left.numel() < 32 and bool(b.success.any())  # both members matter here
    expected = a.success.clone()
    expected[left] = b.success
    assert torch.equal(ens.success, expected)
    # Counts: one clean forward, then each member's own (its clean forward excluded).
    forwards = a.forwards.clone()
    forwards[left] += b.forwards - 1
    assert torch.equal(ens.forwards, forwards)
    gradients = a.gradients.clone()
    gradients[left] += b.gradients
    assert torch.equal(ens.gradients, gradients)
    broken_first = a.success & (a.clean_pred == y)
    assert torch.equal(ens.x_adv[broken_first], a.x_adv[broken_first])
    assert torch.equal(ens.x_adv[left], b.x_adv)


def test_worst_case_is_never_better_than_any_member() -> None:
    model = tiny_model()
    x, y = batch(32)
    members = (APGD(eps=0.05, steps=3), Square(eps=0.05, queries=30))
    ens = Ensemble(eps=0.05, attacks=members)(model, x, y)[0]
    for m in members:
        assert ens.robust_accuracy <= m(model, x, y)[0].robust_accuracy


@settings(max_examples=15, deadline=None)
@given(
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.0, 0.5),
    c=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_standard_ensemble_invariants_and_exact_counts(norm, eps, c, seed) -> None:
    inner = tiny_model(c=c, seed=seed).train()
    model = RowCounter(inner)
    modes = [m.training for m in model.modules()]
    x, y = batch(6, c=c, seed=seed + 1)
    eps = eps if norm == "linf" else 4 * eps
    attack = standard_ensemble(eps, norm, steps=3, target_classes=2, fourier_queries=5,
                               square_queries=10, seed=seed)
    r = attack(model, x, y)[0]
    assert [m.training for m in model.modules()] == modes
    assert model.rows == int(r.forwards.sum())
    assert float(r.x_adv.min()) >= 0 and float(r.x_adv.max()) <= 1 and not r.x_adv.requires_grad
    assert float(r.norms.max()) <= eps * (1 + 2e-6) + 2e-6
    assert torch.equal(r.success, r.adv_pred != y)


def test_linf_fourier_uses_the_largest_safe_l2_radius() -> None:
    """Its candidates fill the Linf ball: some basis image reaches eps, none exceeds it."""
    h = w = 8
    basis = fourier_basis(h, w, distinct_frequencies(h, w), dtype=torch.float64)
    peak = float(basis.abs().amax())
    assert peak <= math.sqrt(2 / (h * w)) + 1e-12
    assert peak == pytest.approx(math.sqrt(2 / (h * w)), rel=1e-6)
    model = tiny_model(c=3, classes=4)
    x, y = batch(10, c=3, classes=4)
    x = 0.25 + 0.5 * x  # no clipping at the bounds
    r = _BallFourier(eps=0.1, ball="linf", max_queries=50)(model, x, y)[0]
    d = (r.x_adv - x).flatten(1).abs().amax(1)
    broken = r.success & (r.clean_pred == y)
    assert bool(broken.any()) and float(d.max()) <= 0.1
    # no basis image peaks below peak / sqrt(2), the worst phase, and some attain it exactly
    assert float(d[broken].min()) >= 0.1 / math.sqrt(2) * (1 - 1e-6)


def test_l2_fourier_member_stays_in_the_l2_ball() -> None:
    """In an L2 ball each channel gets eps / sqrt(C): the whole perturbation is at most eps."""
    model = tiny_model(c=3, classes=4)
    x, y = batch(10, c=3, classes=4)
    x = 0.25 + 0.5 * x  # no clipping at the bounds
    r = _BallFourier(eps=0.5, ball="l2", max_queries=50)(model, x, y)[0]
    moved = r.norms > 0
    assert bool(moved.any())
    assert float(r.norms.max()) <= 0.5 + 1e-6
    assert torch.allclose(r.norms[moved], torch.full_like(r.norms[moved], 0.5), rtol=1e-4)


@pytest.mark.parametrize(("kwargs", "err", "match"), [
    ({"attacks": ()}, ValueError, "attacks"),
    ({"attacks": (3,)}, TypeError, "attacks\\[0\\]"),
    ({"attacks": (FourierAttack(eps=1.0),)}, ValueError, "l2"),
    ({"attacks": (APGD(eps=0.1, bounds=(-1.0, 1.0)),)}, ValueError, "bounds"),
])
def test_bad_ensembles_raise(kwargs, err, match) -> None:
    with pytest.raises(err, match=match):
        Ensemble(eps=0.1, **kwargs)


def test_one_cascade_equals_each_attack_called_on_what_is_left() -> None:
    """attacks.cascade: each attack once, with alive [E, N] = what every earlier one left robust."""
    from bandguard.attacks import cascade, cascade_stage

    model = tiny_model()
    x, y = batch(24)
    first, second = Square(eps=(0.02, 0.1), queries=3, seed=2), APGD(eps=(0.02, 0.1), steps=5, seed=1)
    stages = cascade([first, second], model, x, y)
    a = first(model, x, y)
    alive = ~a.success
    assert torch.equal(stages[0].robust, alive)
    b = second(model, x, y, alive=alive)
    assert torch.equal(stages[1].robust, alive & ~b.success)
    assert torch.equal(stages[1].results[1].x_adv, b[1].x_adv)
    assert bool((stages[0].robust & ~stages[1].robust).any())  # the second attack mattered
    # One stage by hand is the same step; an ensemble's worst case is the last stage's robust set.
    assert torch.equal(cascade_stage(second, model, x, y, alive).robust, stages[1].robust)
    ens = Ensemble(eps=(0.02, 0.1), attacks=(first, second))(model, x, y)
    assert torch.equal(ens.robust, stages[1].robust)
