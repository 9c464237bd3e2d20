"""APGD contracts: invariants (bounds, eps-ball, no graph, model untouched), exact query counts
against a model that counts what it sees, the checkpoint schedule, EOT, the band option, errors,
and agreement with torchattacks' APGD / APGDT on the trained fixtures."""

from __future__ import annotations

import functools

import pytest
import torch
import torchattacks
from attack_models import assert_same, plain_model, snapshot
from attack_models import batch as shared_batch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bandguard.attacks.apgd import APGD, APGDLoss, _apgd_loss, apgd, checkpoints
from bandguard.attacks.band import Band
from bandguard.fourier import filter_with_mask, frequency_filter, frequency_mask

pytestmark = pytest.mark.usefixtures("one_thread")


tiny_model = functools.partial(plain_model, classes=5)
batch = functools.partial(shared_batch, classes=5)


class _CountGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, box):
        ctx.box = box
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        ctx.box["gradients"] += g.shape[0]
        return g, None


class Counting(nn.Module):
    """Counts the rows (images) of every forward and of every input gradient."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.box = {"forwards": 0, "gradients": 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.box["forwards"] += x.shape[0]
        return self.inner(_CountGrad.apply(x, self.box))


def within(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, bounds=(0.0, 1.0)) -> None:
    tol = 1e-6 if x.dtype == torch.float64 else 2e-6
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert float(x_adv.min()) >= bounds[0] and float(x_adv.max()) <= bounds[1]
    d = (x_adv - x).flatten(1)
    dist = d.abs().amax(1) if norm == "linf" else torch.linalg.vector_norm(d, dim=1)
    assert float(dist.max()) <= eps * (1 + tol) + tol


# --------------------------------------------------------------------------- invariants


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(4, 9), st.integers(4, 9)),
    eps=st.floats(0.0, 1.0),
    norm=st.sampled_from(["linf", "l2"]),
    loss=st.sampled_from(["ce", "dlr"]),
    target_classes=st.sampled_from([0, 2]),
    band=st.sampled_from([None, Band(high=2.5), Band(low=2.0, slack=0.0)]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    bounds=st.sampled_from([(0.0, 1.0), (-1.0, 1.0)]),
    seed=st.integers(0, 2**16),
)
def test_x_adv_inside_bounds_and_ball_and_model_untouched(shape, eps, norm, loss, target_classes, band,
                                                          dtype, bounds, seed) -> None:
    n, c, h, w = shape
    model = tiny_model(c, h, w, seed=seed, dtype=dtype)
    model.train()
    model[1].eval()  # mixed modes must come back per submodule
    lo, hi = bounds
    x, y = batch(n, c, h, w, seed=seed + 1, dtype=dtype)
    x = lo + (hi - lo) * x
    eps = eps * (hi - lo) * (1.0 if norm == "linf" else 3.0)
    before = snapshot(model)
    r = APGD(eps=eps, norm=norm, steps=4, loss=loss, target_classes=target_classes, band=band,
             bounds=bounds, seed=seed)(model, x, y)[0]
    assert_same(before, snapshot(model))
    within(r.x_adv, x, eps, norm, bounds)
    assert torch.equal(r.success, r.adv_pred != y)
    assert r.x_adv.grad_fn is None


def test_function_equals_class_and_is_deterministic() -> None:
    model = tiny_model()
    x, y = batch(12)
    a = apgd(model, x, y, eps=0.1, steps=5, loss="dlr", seed=3)[0]
    b = APGD(eps=0.1, steps=5, loss="dlr", seed=3)(model, x, y)[0]
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.forwards, b.forwards)
    assert torch.equal(a.success, b.success)


def test_dlr_losses_match_the_papers_formulas() -> None:
    z = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    y, t = torch.tensor([0]), torch.tensor([2])
    # Untargeted: -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3) = -(3 - 2) / (3 - 1).
    assert float(_apgd_loss(z, y, None, APGDLoss.DLR)) == pytest.approx(-0.5)
    # Targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(3 - 2) / (3 - 0.5).
    assert float(_apgd_loss(z, y, t, APGDLoss.DLR)) == pytest.approx(-0.4)
    # User-targeted (no true label): the rival is the best class other than the target.
    assert float(_apgd_loss(z, None, t, APGDLoss.DLR)) == pytest.approx(-0.4)
    # Shift and scale invariance, the point of the ratio (2003.01690, sec. 4).
    assert float(_apgd_loss(5 * z + 7, y, None, APGDLoss.DLR)) == pytest.approx(-0.5)


# --------------------------------------------------------------------------- counts


def test_checkpoints_follow_the_paper_schedule() -> None:
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 of 100 iterations (2003.01690, sec. 3.2).
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert checkpoints(1) == [1]


@pytest.mark.parametrize("target_classes", [0, 3])
def test_counts_are_exact_per_sample(target_classes) -> None:
    inner = tiny_model(classes=5)
    x, y = batch(24)
    model = Counting(inner)
    steps = 6
    r = APGD(eps=0.3, steps=steps, target_classes=target_classes, loss="dlr")(model, x, y)[0]
    assert model.box["forwards"] == int(r.forwards.sum())
    assert model.box["gradients"] == int(r.gradients.sum())
    clean_wrong = r.clean_pred != y
    assert bool((r.forwards[clean_wrong] == 1).all()) and bool((r.gradients[clean_wrong] == 0).all())
    # Every run costs 1 + steps forwards and gradients at most; APGD-T ranks its targets on the
    # driver's clean forward, so it spends no extra one.
    runs = max(target_classes, 1)
    attacked = ~clean_wrong
    assert bool((r.gradients[attacked] <= runs * (steps + 1)).all())
    assert bool((r.gradients[attacked] >= 1).all())
    assert torch.equal(r.forwards[attacked], 1 + r.gradients[attacked])
    # A sample never broken paid the full price.
    robust = attacked & ~r.success
    assert bool((r.gradients[robust] == runs * (steps + 1)).all())


def test_unbreakable_samples_pay_every_step_and_restart() -> None:
    model = Counting(tiny_model())
    x, y = batch(8)
    r = APGD(eps=1e-6, steps=5, restarts=2)(model, x, y)[0]
    attacked = r.clean_pred == y
    assert not bool(r.success[attacked].any())
    assert bool((r.gradients[attacked] == 2 * 6).all())
    assert model.box["forwards"] == int(r.forwards.sum())


def test_eot_on_a_randomized_model_multiplies_the_counts() -> None:
    class Noisy(nn.Module):
        randomized = True

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 0.01 * torch.randn_like(x)

    model = Counting(nn.Sequential(Noisy(), tiny_model()))
    x, y = batch(6)
    r = APGD(eps=1e-6, steps=3, eot_samples=4)(model, x, y)[0]
    attacked = r.clean_pred == y
    assert bool((r.gradients[attacked] == 4 * 4).all())
    assert model.box["forwards"] == int(r.forwards.sum())
    default = APGD(eps=1e-6, steps=3)(model, x, y)[0]  # EOT chosen from the model's declaration
    assert bool((default.gradients[attacked] > 4).all())


def test_targeted_apgd_reaches_the_target() -> None:
    model = tiny_model(classes=5)
    x, y = batch(16)
    target = (y + 1) % 5
    r = APGD(eps=0.5, steps=20, loss="dlr")(model, x, y, target=target)[0]
    assert r.success_rate > 0.5
    assert torch.equal(r.success, r.adv_pred == target)


# --------------------------------------------------------------------------- band option


def test_low_band_apgd_cannot_fool_a_high_frequency_model() -> None:
    """A model that reads only frequencies >= 3: a perturbation below radius 3 changes nothing."""
    torch.manual_seed(0)
    lin = nn.Linear(64, 5)

    class HighOnly(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return lin(frequency_filter(x, 3.0, kind="high").flatten(1))

    model = HighOnly()
    x, y = batch(32)
    y = model(x).argmax(1).detach()
    low = APGD(eps=0.3, steps=10, band=Band(high=3.0, slack=0.0))(model, x, y)[0]
    full = APGD(eps=0.3, steps=10)(model, x, y)[0]
    assert low.robust_accuracy == 1.0
    assert full.robust_accuracy < 0.5
    d = low.x_adv - x
    mask = frequency_mask(8, 8, 3.0)
    assert float((d - filter_with_mask(d, mask)).abs().max()) < 1e-5
    assert float(d.abs().max()) > 0.05  # it did move, inside the band


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"steps": 0}, "steps"), ({"restarts": 0}, "restarts"), ({"loss": "margin"}, "loss"),
    ({"norm": "l1"}, "norm"), ({"rho": 1.5}, "rho"), ({"target_classes": -1}, "target_classes"),
    ({"eot_samples": 0}, "eot_samples"), ({"band": 3.0}, "band"), ({"eps": -1.0}, "eps"),
])
def test_bad_settings_raise_naming_the_argument(kwargs, name) -> None:
    settings_ = {"eps": 0.1, **kwargs}
    with pytest.raises((ValueError, TypeError), match=name):
        APGD(**settings_)


def test_dlr_needs_enough_classes() -> None:
    model = tiny_model(classes=2)
    x, y = batch(4, classes=2)
    with pytest.raises(ValueError, match="at least 3 classes"):
        APGD(eps=0.1, steps=2, loss="dlr")(model, x, y)[0]


# --------------------------------------------------------------------------- agreement


def _robust(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def _agreement(model, x, y, eps, steps, kind) -> tuple[float, float]:
    if kind == "apgd-t":
        ours = APGD(eps=eps, steps=steps, loss="dlr", target_classes=9)(model, x, y)[0].robust_accuracy
        ref = torchattacks.APGDT(model, eps=eps, steps=steps, n_classes=10, seed=0)(x, y)
    else:
        ours = APGD(eps=eps, steps=steps, loss=kind)(model, x, y)[0].robust_accuracy
        ref = torchattacks.APGD(model, eps=eps, steps=steps, loss=kind, seed=0)(x, y)
    return ours, _robust(model, ref, y)


def test_apgd_ce_agrees_with_torchattacks_on_mnist_small(mnist_model, mnist_test) -> None:
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    ours, ref = _agreement(mnist_model, x, y, 0.1, 10, "ce")
    assert 0.05 < ref < 0.95  # the eps is informative
    assert abs(ours - ref) <= 0.03  # 3 images of 100: random starts differ


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ce", "dlr", "apgd-t"])
@pytest.mark.parametrize(("net", "epsilons"), [
    ("mnist", (0.05, 0.1, 0.15)), ("cifar", (2 / 255, 4 / 255, 8 / 255)),
])
def test_apgd_agrees_with_torchattacks_on_1000_images(request, net, epsilons, kind) -> None:
    model = request.getfixturevalue(f"{net}_model")
    x, y = request.getfixturevalue(f"{net}_test")
    for eps in epsilons:
        ours, ref = _agreement(model, x, y, eps, 20, kind)
        assert abs(ours - ref) <= 0.01, (eps, ours, ref)
