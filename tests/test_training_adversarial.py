"""Adversarial training through the attack protocol (bandguard/training.py, adversary parts):
any Attack is an adversary, crafted in train mode by default (Madry et al., Wong et al.: BatchNorm
batch statistics) or in eval mode, every flag restored; seeded runs repeat."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from attack_models import batch, tiny_model
from torch import nn

from bandguard.attacks import FGSM, PGD, FourierGreedy
from bandguard.training import AdversaryMode, TrainConfig, train


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recording(PGD):
    """PGD that records the modes it crafts in and what it crafts (test-only)."""

    log: list = dataclasses.field(default_factory=list, compare=False, repr=False)

    def _craft(self, model, x, y, eps, generator):
        self.log.append(("modes", [m.training for m in model.modules()]))
        x_adv = super()._craft(model, x, y, eps, generator)
        self.log.append(("x_adv", x_adv.clone()))
        return x_adv


def _run(mode: str, *, steps: int = 3) -> tuple[Recording, nn.Module]:
    model = tiny_model(c=1, seed=0)
    x, y = batch(16, seed=2)
    adversary = Recording(eps=0.2, steps=steps)
    config = TrainConfig(epochs=1, batch_size=16, lr=0.01, amp="off", adversary=adversary, adversary_mode=mode)
    train(model, (x, y), config, progress=False)
    return adversary, model


def test_train_and_eval_modes_both_run_and_give_different_adversaries() -> None:
    train_adv, train_model = _run("train")
    eval_adv, eval_model = _run("eval")
    (_, train_modes), (_, train_x) = train_adv.log
    (_, eval_modes), (_, eval_x) = eval_adv.log
    assert all(train_modes) and not any(eval_modes)
    # Same start, same random draws: only the BatchNorm statistics differ.
    assert not torch.equal(train_x, eval_x)
    assert float((train_x - eval_x).abs().max()) > 1e-3
    # In train mode each attack forward updates the running statistics, as in the references'
    # code: 3 PGD steps + the training step; in eval mode only the training step.
    assert int(train_model[1].num_batches_tracked) == 3 + 1
    assert int(eval_model[1].num_batches_tracked) == 1


def test_default_mode_is_train_and_is_recorded() -> None:
    config = TrainConfig(adversary=PGD(eps=0.1))
    assert config.adversary_mode is AdversaryMode.TRAIN
    assert config.recipe()["adversary_mode"] == "train" and "PGD(eps=(0.1,)" in config.recipe()["adversary"]
    with pytest.raises(ValueError, match="adversary_mode"):
        TrainConfig(adversary=PGD(eps=0.1), adversary_mode="test")
    with pytest.raises(TypeError, match="adversary"):
        TrainConfig(adversary=lambda m, x, y: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one eps"):
        TrainConfig(adversary=PGD(eps=(0.1, 0.2)))


def test_seeded_runs_repeat_and_batches_get_fresh_randomness() -> None:
    a, model_a = _run("train", steps=1)
    b, model_b = _run("train", steps=1)
    assert torch.equal(a.log[1][1], b.log[1][1])
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)
    # 32 copies of one image and a model that barely moves: both batches are the same tensor, so
    # only the random start can tell their adversaries apart, and it must (a fixed seed per call
    # would give the same adversary twice).
    model, (x, y) = tiny_model(), batch(1, seed=3)
    adversary = Recording(eps=0.2, steps=1)
    config = TrainConfig(epochs=1, batch_size=16, lr=1e-12, momentum=0.0, weight_decay=0.0, amp="off",
                         adversary=adversary)
    train(model, (x.expand(32, -1, -1, -1), y.expand(32)), config, progress=False)
    first, second = adversary.log[1][1], adversary.log[3][1]
    assert first.shape == second.shape == (16, 1, 8, 8)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("attack", [FGSM(eps=0.1, random_start=True), PGD(eps=0.5, norm="l2", steps=2),
                                    FourierGreedy(eps=0.5, max_queries=4)], ids=["fgsm_rs", "pgd_l2", "greedy"])
def test_any_attack_is_an_adversary_and_flags_come_back(attack) -> None:
    model = tiny_model()
    model[0].weight.requires_grad_(False)  # a frozen layer stays frozen
    x, y = batch(16)
    train(model, (x, y), TrainConfig(epochs=1, batch_size=8, amp="off", adversary=attack), progress=False)
    assert model[0].weight.requires_grad is False and model[4].weight.requires_grad is True
    assert not model.training  # train() ends in eval mode
