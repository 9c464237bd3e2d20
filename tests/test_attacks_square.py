"""Square attack contracts: invariants (bounds, eps-ball, no graph, model untouched), the p schedule,
exact query counts against a model that counts what it sees, the L2 update pattern, errors, and
agreement with torchattacks' Square on the trained fixtures."""

from __future__ import annotations

import functools

import pytest
import torch
import torchattacks
from attack_models import RowCounter, plain_model
from attack_models import batch as shared_batch
from hypothesis import given, settings
from hypothesis import strategies as st

from bandguard.attacks.square import Square, _eta, square, square_fraction

pytestmark = pytest.mark.usefixtures("one_thread")


tiny_model = functools.partial(plain_model, classes=4)
batch = functools.partial(shared_batch, classes=4)


def within(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, bounds=(0.0, 1.0)) -> None:
    tol = 1e-6 if x.dtype == torch.float64 else 2e-6
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert float(x_adv.min()) >= bounds[0] and float(x_adv.max()) <= bounds[1]
    d = (x_adv - x).flatten(1)
    dist = d.abs().amax(1) if norm == "linf" else torch.linalg.vector_norm(d, dim=1)
    assert float(dist.max()) <= eps * (1 + tol) + tol


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(3, 9), st.integers(3, 9)),
    eps=st.floats(0.0, 1.0),
    norm=st.sampled_from(["linf", "l2"]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    bounds=st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)]),
    seed=st.integers(0, 2**16),
)
def test_x_adv_inside_bounds_and_ball_and_model_untouched(shape, eps, norm, dtype, bounds, seed) -> None:
    n, c, h, w = shape
    model = tiny_model(c, h, w, seed=seed, dtype=dtype).train()
    modes = [m.training for m in model.modules()]
    params = {k: v.clone() for k, v in model.state_dict().items()}
    lo, hi = bounds
    x, y = batch(n, c, h, w, seed=seed + 1, dtype=dtype)
    x = lo + (hi - lo) * x
    eps = eps * (hi - lo) * (1.0 if norm == "linf" else 3.0)
    r = Square(eps=eps, norm=norm, queries=12, bounds=bounds, seed=seed)(model, x, y)[0]
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in params.items())
    within(r.x_adv, x, eps, norm, bounds)
    assert torch.equal(r.success, r.adv_pred != y)
    assert bool((r.gradients == 0).all()) and bool((r.forwards <= 1 + 12).all())


def test_p_schedule_halves_at_the_papers_iterations() -> None:
    assert square_fraction(0, 10000, 0.8) == 0.8
    assert square_fraction(10, 10000, 0.8) == 0.8
    assert square_fraction(11, 10000, 0.8) == 0.4
    assert square_fraction(51, 10000, 0.8) == 0.2
    assert square_fraction(8001, 10000, 0.8) == pytest.approx(0.8 / 512)
    # Rescaled to the budget: iteration 100 of 1,000 is iteration 1,000 of 10,000.
    assert square_fraction(100, 1000, 0.8) == pytest.approx(0.8 / 16)
    assert square_fraction(101, 1000, 0.8) == pytest.approx(0.8 / 32)


def test_l2_pattern_has_unit_norm_and_opposite_halves() -> None:
    for side in (3, 5, 8):
        eta = _eta(side)
        assert float(eta.norm()) == pytest.approx(1.0)
        top = side // 2
        assert bool((eta[:top] >= 0).all()) and bool((eta[top:] <= 0).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_counts_are_exact_and_unbroken_images_spend_the_whole_budget(norm) -> None:
    model = RowCounter(tiny_model())
    x, y = batch(20)
    queries = 30
    r = Square(eps=1e-4 if norm == "linf" else 1e-3, norm=norm, queries=queries)(model, x, y)[0]
    assert model.rows == int(r.forwards.sum())
    attacked = r.clean_pred == y
    assert not bool(r.success[attacked].any())
    assert bool((r.forwards[attacked] == 1 + queries).all())
    assert bool((r.forwards[~attacked] == 1).all())


def test_broken_images_stop_at_their_first_success() -> None:
    model = RowCounter(tiny_model())
    x, y = batch(32)
    r = Square(eps=0.3, queries=200)(model, x, y)[0]
    assert model.rows == int(r.forwards.sum())
    broken = r.success & (r.clean_pred == y)
    assert bool(broken.any()) and bool((r.forwards[broken] < 1 + 200).any())
    # Replaying the returned example costs one query and confirms it.
    with torch.no_grad():
        assert torch.equal(model(r.x_adv).argmax(1), r.adv_pred)


def test_targeted_square_and_function_form() -> None:
    model = tiny_model()
    x, y = batch(12)
    target = (y + 1) % 4
    a = square(model, x, y, eps=0.5, queries=100, target=target)[0]
    b = Square(eps=0.5, queries=100)(model, x, y, target=target)[0]
    assert torch.equal(a.x_adv, b.x_adv)
    assert torch.equal(a.success, a.adv_pred == target) and a.success_rate > 0.5


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"queries": 0}, "queries"), ({"p_init": 0.0}, "p_init"), ({"p_init": 2.0}, "p_init"),
    ({"norm": "l1"}, "norm"), ({"seed": 1.5}, "seed"),
])
def test_bad_settings_raise_naming_the_argument(kwargs, name) -> None:
    with pytest.raises((ValueError, TypeError), match=name):
        Square(eps=0.1, **kwargs)


def _torchattacks_robust(model, x, y, eps, norm, queries, seed) -> float:
    ta = torchattacks.Square(model, eps=eps, norm="Linf" if norm == "linf" else "L2", n_queries=queries, seed=seed)
    x_adv = ta(x, y)
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


@pytest.mark.slow
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.15), ("l2", 2.0)])
def test_square_agrees_with_torchattacks_on_mnist(mnist_model, mnist_test, norm, eps) -> None:
    """Mean robust accuracy over seeds: ours 3, torchattacks' 10.

    torchattacks' port draws one window and sign set per iteration for the whole batch, so one of
    its runs moves as a block (10 seeds on 1,000 MNIST images at Linf 0.15: 22.7 % to 29.8 %); a
    single seed cannot be held to 2 points. Ours draws per image and varies far less.
    """
    x, y = mnist_test[0][:500], mnist_test[1][:500]
    ours = [Square(eps=eps, norm=norm, queries=301, seed=s)(mnist_model, x, y)[0].robust_accuracy for s in range(3)]
    ref = [_torchattacks_robust(mnist_model, x, y, eps, norm, 300, s) for s in range(10)]
    assert abs(sum(ours) / 3 - sum(ref) / 10) <= 0.02, (ours, ref)
    assert max(ours) - min(ours) <= 0.02, ours  # per-image draws: the seeds agree closely


def _paper_rectangles(a: int, b: int) -> torch.Tensor:
    """The paper's loop (Andriushchenko et al. 1912.00049, ``meta_pseudo_gaussian_pert``)."""
    block = torch.zeros(a, b, dtype=torch.float64)
    r, c = a // 2, b // 2
    for k in range(max(a // 2 + 1, b // 2 + 1)):
        block[max(r, 0):min(r + 2 * k + 1, a), max(c, 0):min(c + 2 * k + 1, b)] += 1.0 / (k + 1) ** 2
        r, c = r - 1, c - 1
    return block / block.norm().clamp_min(1e-12)


def test_l2_pattern_built_in_one_pass_equals_the_papers_loop(device: torch.device) -> None:
    from bandguard.attacks.square import _rectangles

    for a, b in [(1, 1), (1, 3), (2, 5), (4, 9), (5, 5), (12, 24), (37, 75)]:
        block = _rectangles(a, b, device=device)
        assert block.device.type == device.type  # built where the images are: no copy per query
        if device.type == "cpu":
            assert torch.equal(block, _paper_rectangles(a, b))  # summed in the paper's order: bit-equal
        else:  # a GPU cumsum is a parallel scan
            torch.testing.assert_close(block.cpu(), _paper_rectangles(a, b), rtol=1e-12, atol=0)
    assert _eta(7, device=device).device.type == device.type
