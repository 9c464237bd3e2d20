"""FGSM / FGM (bandguard/attacks/fgsm.py): bit-for-bit agreement with torchattacks and foolbox,
and the random-start step of fast adversarial training."""

from __future__ import annotations

import foolbox as fb
import pytest
import torch
import torchattacks
from attack_models import batch, tiny_model, within

from bandguard.attacks import FGSM, fgm, fgsm


def test_fgsm_equals_torchattacks_bit_for_bit(dtype) -> None:
    model = tiny_model(c=3, h=8, w=8, classes=4, seed=3, dtype=dtype)
    x, y = batch(64, c=3, classes=4, seed=4, dtype=dtype)
    ours = fgsm(model, x, y, eps=0.05)[0]
    theirs = torchattacks.FGSM(model, eps=0.05)(x, y)
    right = ours.clean_pred == y
    assert torch.equal(ours.x_adv[right], theirs[right].to(dtype))
    assert torch.equal(ours.x_adv[~right], x[~right])


def test_fgm_matches_foolbox_l2_fast_gradient() -> None:
    model = tiny_model(seed=9)
    x, y = batch(64, seed=10)
    ours = fgm(model, x, y, eps=0.5)[0]
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    _, theirs, _ = fb.attacks.L2FastGradientAttack(random_start=False)(fmodel, x, y, epsilons=0.5)
    right = ours.clean_pred == y
    torch.testing.assert_close(ours.x_adv[right], theirs[right], atol=1e-6, rtol=0)


def test_random_start_steps_one_and_a_quarter_eps_then_projects() -> None:
    """Wong et al. 2001.03994: delta = clip(U(-eps, eps) + 1.25 eps sign(g), -eps, eps)."""
    model = tiny_model(seed=5, dtype=torch.float64)
    x, y = batch(32, seed=6, dtype=torch.float64)
    eps = 0.1
    r = FGSM(eps=eps, random_start=True, seed=7)(model, x, y)[0]
    right = r.clean_pred == y
    xs, ys = x[right], y[right]  # the driver attacks the correctly classified samples only
    g = torch.Generator().manual_seed(7)
    start = xs + (2 * torch.rand(xs.shape, generator=g, dtype=x.dtype) - 1) * eps
    start = start.clamp(0, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(start), ys, reduction="sum"), start)
    step = start.detach() + 1.25 * eps * grad.sign()
    expected = torch.minimum(torch.maximum(step, xs - eps), xs + eps).clamp(0, 1)
    torch.testing.assert_close(r.x_adv[right], expected, atol=1e-12, rtol=0)
    within(r.x_adv, x, eps, "linf")
    small = FGSM(eps=eps, random_start=True, step_size=0.02, seed=7)(model, x, y)[0]
    assert not torch.equal(small.x_adv[right], r.x_adv[right])


def test_fgsm_is_one_gradient() -> None:
    model, (x, y) = tiny_model(), batch(16)
    r = FGSM(eps=0.1)(model, x, y)[0]
    right = r.clean_pred == y
    assert r.gradients[right].tolist() == [1] * int(right.sum())
    assert r.forwards[right].tolist() == [3] * int(right.sum())  # clean + step + final score
    with pytest.raises(TypeError, match="norm"):
        FGSM(eps=0.1, norm="l2")  # FGSM is Linf by definition: FGM is its L2 twin
