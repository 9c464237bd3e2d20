"""PGD (bandguard/attacks/pgd.py): exact counts and semantics on tiny models, agreement with
torchattacks, EOT on a randomized model, gradients through a BPDA module, early stop."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from attack_models import batch, linear_model, tiny_model, within
from torch import nn

from bandguard.attacks import PGD, pgd
from bandguard.defenses import BPDA

pytestmark = pytest.mark.usefixtures("one_thread")


def test_counts_are_exact_and_clean_errors_are_not_attacked() -> None:
    model = tiny_model()
    x, y = batch(32)
    steps = 4
    r = PGD(eps=0.05, steps=steps)(model, x, y)[0]
    wrong = r.clean_pred != y
    assert 0 < int(wrong.sum()) < 32
    assert torch.equal(r.x_adv[wrong], x[wrong]) and bool(r.success[wrong].all())
    assert bool((r.forwards[wrong] == 1).all()) and bool((r.gradients[wrong] == 0).all())
    assert bool((r.forwards[~wrong] == 1 + steps + 1).all())
    assert bool((r.gradients[~wrong] == steps).all())
    assert r.clean_accuracy == pytest.approx(1 - float(wrong.float().mean()))


def test_restarts_keep_the_first_success_and_only_rerun_unbroken_samples() -> None:
    model = linear_model()
    x, y = batch(64, classes=2)
    settings_ = {"eps": 0.02, "steps": 1, "step_size": 0.005, "seed": 5}
    one = PGD(restarts=1, **settings_)(model, x, y)[0]
    many = PGD(restarts=4, **settings_)(model, x, y)[0]
    assert bool((many.success | ~one.success).all())  # the first restart is the same run
    assert many.success_rate > one.success_rate
    first = one.success & (one.clean_pred == y)
    assert torch.equal(many.x_adv[first], one.x_adv[first])
    assert bool((many.forwards[first] == 1 + 1 + 1).all())
    unbroken = ~many.success
    assert bool((many.forwards[unbroken] == 1 + 4 * (1 + 1)).all())


def test_targeted_pgd_reaches_the_target() -> None:
    model = tiny_model(classes=5)
    x, y = batch(32, classes=5)
    target = (y + 1) % 5
    r = PGD(eps=0.5, steps=20)(model, x, y, target=target)[0]
    assert r.success_rate >= 0.9
    assert torch.equal(r.success, r.adv_pred == target)


def test_margin_loss_and_l2_break_more_with_more_budget() -> None:
    model = linear_model()
    x, y = batch(64, classes=2)
    small, big = PGD(eps=(0.05, 2.0), norm="l2", loss="margin", steps=10)(model, x, y)
    assert big.success_rate == 1.0 and small.success_rate < 1.0


def test_step_size_absolute_relative_or_default() -> None:
    model = tiny_model()
    x, y = batch(16)
    a = PGD(eps=0.1, steps=1, step_size=0.05, random_start=False)(model, x, y)[0]
    b = PGD(eps=0.1, steps=1, rel_step_size=0.5, random_start=False)(model, x, y)[0]
    assert torch.equal(a.x_adv, b.x_adv)
    attacked = a.clean_pred == y
    assert float(a.norms[attacked].max()) == pytest.approx(0.05, abs=1e-6)
    assert PGD(eps=0.3, steps=40).step_for(0.3) == pytest.approx(2.5 * 0.3 / 40)
    assert PGD(eps=0.3, steps=40, step_size=0.01).step_for(0.3) == 0.01
    with pytest.raises(ValueError, match="step_size"):
        PGD(eps=0.1, step_size=0.1, rel_step_size=0.1)


def test_eps_zero_changes_nothing() -> None:
    model = tiny_model()
    x, y = batch()
    r = PGD(eps=0.0, steps=3)(model, x, y)[0]
    assert torch.equal(r.x_adv, x) and r.robust_accuracy == r.clean_accuracy
    assert bool((r.forwards == 1).all())


def test_pgd_without_random_start_equals_torchattacks(device, dtype) -> None:
    model = tiny_model(seed=7, dtype=dtype).to(device)
    x, y = batch(64, seed=8, dtype=dtype)
    x, y = x.to(device), y.to(device)
    ours = pgd(model, x, y, eps=0.1, steps=5, step_size=0.02, random_start=False)[0]
    theirs = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=5, random_start=False)(x, y)
    right = ours.clean_pred == y  # bandguard leaves clean errors alone
    torch.testing.assert_close(ours.x_adv[right], theirs[right].to(dtype), atol=1e-6, rtol=0)


class GradientNoise(nn.Module):
    """Identity in value; adds strong random noise to the input gradient (a randomized defense
    whose forward value is deterministic, so robust accuracy is exact)."""

    randomized = True

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn_like(x) * self.scale
        return x + noise * (x - x.detach())


def test_eot_pgd_beats_plain_pgd_on_a_randomized_model() -> None:
    torch.manual_seed(0)  # GradientNoise draws from the global generator
    base = linear_model(seed=11)
    model = nn.Sequential(GradientNoise(scale=5.0), base).eval()
    x = batch(200, seed=12)[0]
    y = base(x).argmax(1)  # every sample starts correct
    plain = PGD(eps=0.05, steps=10, eot_samples=1)(model, x, y)[0]
    eot = PGD(eps=0.05, steps=10)(model, x, y)[0]  # EOT chosen automatically
    assert eot.robust_accuracy < plain.robust_accuracy - 0.15
    assert bool((eot.gradients == 10 * 10).all())  # 10 EOT samples per step
    assert bool((plain.gradients == 10).all())


class _Round(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 4) / 4


def test_gradients_flow_through_a_bpda_module() -> None:
    """Attacks read ``differentiable = False`` by duck typing; the module routes the gradient."""
    quantize = BPDA(lambda t: torch.round(t * 4) / 4)
    xs, ys = batch(64)
    attack = PGD(eps=0.2, steps=10, random_start=False)
    masked = attack(nn.Sequential(_Round(), tiny_model()), xs, ys)[0]  # zero gradients: no progress
    through = attack(nn.Sequential(quantize, tiny_model()), xs, ys)[0]
    assert masked.success_rate == pytest.approx(1 - masked.clean_accuracy)
    assert through.success_rate > masked.success_rate + 0.2


def test_early_stop_is_never_weaker_and_leaves_other_trajectories_alone() -> None:
    model = linear_model(seed=21)
    x, y = batch(128, classes=2, seed=22)
    plain = PGD(eps=0.05, steps=10, step_size=0.01)(model, x, y)[0]
    early = PGD(eps=0.05, steps=10, step_size=0.01, early_stop=True)(model, x, y)[0]
    assert bool((early.success | ~plain.success).all())
    assert early.robust_accuracy <= plain.robust_accuracy
    stopped = early.forwards < plain.forwards
    assert int(stopped.sum()) > 10 and bool(early.success[stopped].all())
    assert torch.equal(early.x_adv[~stopped], plain.x_adv[~stopped])
    # A stopped sample was scored by the forward of the step that found it: no extra forward.
    assert torch.equal(early.forwards[stopped] - 1, early.gradients[stopped])
    within(early.x_adv, x, 0.05, "linf")


def test_repr_names_every_setting() -> None:
    text = repr(PGD(eps=0.3, steps=7, norm="l2"))
    for part in ("eps=(0.3,)", "steps=7", "norm='l2'", "loss='ce'", "seed=0"):
        assert part in text
