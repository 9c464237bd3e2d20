"""The foolbox adapter (bandguard/attacks/foolbox_adapter.py): same x_adv as foolbox itself,
exact counts, one result per eps for minimization attacks, errors."""

from __future__ import annotations

import foolbox as fb
import pytest
import torch
from attack_models import batch, tiny_model, within

from bandguard.attacks import FoolboxAttack, create_attack, foolbox_attack


def test_matches_foolbox_and_counts_its_work() -> None:
    model = tiny_model(seed=13)
    x, y = batch(32, seed=14)
    r = FoolboxAttack(attack=fb.attacks.LinfPGD(steps=5, random_start=False), eps=0.1)(model, x, y)[0]
    attacked = r.clean_pred == y
    assert r.gradients[attacked].tolist() == [5] * int(attacked.sum())
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    _, theirs, _ = fb.attacks.LinfPGD(steps=5, random_start=False)(fmodel, x, y, epsilons=0.1)
    torch.testing.assert_close(r.x_adv[attacked], theirs[attacked], atol=1e-6, rtol=0)
    within(r.x_adv, x, 0.1, "linf")


def test_function_twin_and_by_name_give_the_same_result() -> None:
    model, (x, y) = tiny_model(seed=3), batch(16, seed=4)
    inner = fb.attacks.LinfPGD(steps=3, random_start=False)
    a = foolbox_attack(model, x, y, attack=inner, eps=0.1)[0]
    b = create_attack("foolbox:LinfPGD", eps=0.1, steps=3, random_start=False)(model, x, y)[0]
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.forwards, b.forwards)


def test_minimization_attack_gives_one_result_per_eps() -> None:
    model = tiny_model(seed=15)
    x, y = batch(16, seed=16)
    results = create_attack("foolbox:L2CarliniWagnerAttack", eps=(0.3, 3.0), steps=20)(model, x, y)
    assert results.epsilons == (0.3, 3.0) and [r.norm for r in results] == ["l2", "l2"]
    assert bool((results[1].success | ~results[0].success).all())
    within(results[0].x_adv, x, 0.3, "l2")
    within(results[1].x_adv, x, 3.0, "l2")
    # one run serves every eps: the counts are the same
    assert torch.equal(results[0].forwards, results[1].forwards)


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown foolbox attack 'Nope'"):
        create_attack("foolbox:Nope", eps=0.1)
    with pytest.raises(ValueError, match="LinfPGD"):
        create_attack("foolbox:LinfPGD", eps=0.1, colour="red")
    with pytest.raises(ValueError, match="foolbox 3 attack instance"):
        FoolboxAttack(attack="LinfPGD", eps=0.1)
    with pytest.raises(ValueError, match="p=1"):
        FoolboxAttack(attack=fb.attacks.L1FastGradientAttack(), eps=0.1)
