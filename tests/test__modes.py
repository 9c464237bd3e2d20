"""The mode helper: every submodule's ``training`` flag and every ``requires_grad`` come back as found."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bandguard._modes import model_mode


def mixed_model() -> nn.Sequential:
    """Top in train mode, a BatchNorm frozen in eval mode, a Dropout in train mode, one frozen weight."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5), nn.Flatten(), nn.Linear(18, 3))
    model.train()
    model[1].eval()
    model[0].bias.requires_grad_(False)
    return model


def flags(model: nn.Module) -> tuple[list[bool], list[bool]]:
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


@pytest.mark.parametrize("train", [False, True, None])
@pytest.mark.parametrize("requires_grad", [False, True, None])
def test_every_flag_is_restored(train: bool | None, requires_grad: bool | None) -> None:
    model = mixed_model()
    before = flags(model)
    with model_mode(model, train=train, requires_grad=requires_grad):
        modes, grads = flags(model)
        if train is not None:
            assert modes == [train] * len(modes)
        else:
            assert modes == before[0]
        if requires_grad is not None:
            assert grads == [requires_grad] * len(grads)
        else:
            assert grads == before[1]
    assert flags(model) == before
    assert before[0] == [True, True, False, True, True, True]  # the fixture really is mixed
    assert before[1].count(False) == 1


def test_flags_are_restored_after_an_exception() -> None:
    model = mixed_model()
    before = flags(model)
    with pytest.raises(RuntimeError, match="boom"), model_mode(model, requires_grad=False):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("boom")
    assert flags(model) == before


# --------------------------------------------------------------------------- the contract, entry point by entry point
#
# Every public function that runs a model gets a model whose top is in train mode, with a
# BatchNorm frozen in eval mode, a Dropout in train mode and one frozen parameter, and must give it
# back with every flag, parameter and buffer bit-identical.


def contract_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
        nn.Flatten(), nn.Linear(4 * 8 * 8, 4),
    )
    model.train()
    model[1].eval()
    model[0].bias.requires_grad_(False)
    return model


def contract_batch(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def state(model: nn.Module) -> tuple[list[bool], list[bool], dict[str, torch.Tensor]]:
    modes, grads = flags(model)
    return modes, grads, {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(model: nn.Module, before: tuple) -> None:
    modes, grads, tensors = state(model)
    assert modes == before[0], "a submodule's train/eval mode changed"
    assert grads == before[1], "a parameter's requires_grad changed"
    for key, value in tensors.items():
        assert torch.equal(value, before[2][key]), f"{key} changed"


ATTACK_SETTINGS = {
    "pgd": {"steps": 2}, "fgsm": {}, "fgm": {}, "fourier": {"max_queries": 4},
    "fourier_greedy": {"max_queries": 4}, "apgd": {"steps": 2}, "square": {"queries": 4},
    "standard": {"steps": 2, "square_queries": 4, "fourier_queries": 4},
}


def entry_points() -> dict[str, object]:
    """name -> callable(model, x, y): every public function that runs a caller's model."""
    from bandguard.attacks import ATTACKS, create_attack
    from bandguard.bench import evaluate_robustness
    from bandguard.defenses import DEFENSES, build_defense, defend
    from bandguard.spectral import (
        FPrincipleMonitor,
        attack_spectrum,
        compare_attack_spectra,
        corruption_spectrum,
        filtered_accuracy,
        fourier_heatmap,
        kernel_spectrum,
    )

    assert set(ATTACK_SETTINGS) == set(ATTACKS.names()), "a registered attack is missing from the contract"
    points: dict[str, object] = {}
    for name, settings in ATTACK_SETTINGS.items():
        eps = 1.0 if name.startswith("fourier") or name == "fgm" else 0.1
        attack = create_attack(name, eps=eps, **settings)
        points[f"attack:{name}"] = lambda m, x, y, a=attack: a(m, x, y)
    points["attack:foolbox"] = lambda m, x, y: create_attack("foolbox:LinfPGD", eps=0.1, steps=2)(m, x, y)
    pgd = create_attack("pgd", eps=0.1, steps=2)
    points["evaluate_robustness"] = lambda m, x, y: evaluate_robustness(
        m, x, y, {"pgd": pgd}, defenses={"lowpass": build_defense("lowpass:2", m)}, batch_size=5)
    points["fourier_heatmap"] = lambda m, x, y: fourier_heatmap(m, x, y, eps=1.0)
    points["fourier_heatmap:layer"] = lambda m, x, y: fourier_heatmap(m, x, y, eps=1.0, layer="2")
    points["filtered_accuracy"] = lambda m, x, y: filtered_accuracy(m, x, y, [2.0])
    points["corruption_spectrum"] = lambda m, x, y: corruption_spectrum(m, x, y, ["gaussian_noise"])
    points["kernel_spectrum"] = lambda m, x, y: kernel_spectrum(m)
    points["attack_spectrum"] = lambda m, x, y: attack_spectrum(m, pgd, x, y)
    points["compare_attack_spectra"] = lambda m, x, y: compare_attack_spectra([m, m], pgd, x, y)
    points["fprinciple"] = lambda m, x, y: FPrincipleMonitor(x, y, deltas=(2.0,), num_classes=4).record(m, 1)
    specs = {"lowpass": "lowpass:2", "highpass": "highpass:2", "post_average": "post_average:0.5,K=2",
             "smooth": "smooth:0.25", "filter_kernels": "filter_kernels:2"}
    assert set(specs) == set(DEFENSES.names()), "a registered defense is missing from the contract"
    for name, spec in specs.items():
        def run(m, x, y, spec=spec):
            defended = build_defense(spec, m)
            with torch.no_grad():
                defended(x)
            return pgd(defended, x, y)
        points[f"defense:{name}"] = run
    points["defend"] = lambda m, x, y: pgd(defend(m, lowpass=2, post_average=0.5, smooth=0.25), x, y)
    return points


@pytest.mark.parametrize("name", sorted(entry_points()))
def test_every_public_entry_point_gives_the_model_back_bit_identical(name: str) -> None:
    model = contract_model()
    x, y = contract_batch()
    before = state(model)
    entry_points()[name](model, x, y)
    assert_untouched(model, before)


def test_train_keeps_a_frozen_submodule_frozen() -> None:
    """``train`` updates the model in place, but a BatchNorm the caller froze (eval mode, no
    gradients) keeps its statistics, its weights and its flags; every requires_grad comes back."""
    from bandguard.training import TrainConfig, train

    model = contract_model()
    model[1].requires_grad_(False)
    x, y = contract_batch(32)
    frozen_before = {k: v.clone() for k, v in model[1].state_dict().items()}
    grads_before = flags(model)[1]
    weight_before = model[5].weight.detach().clone()
    train(model, (x, y), TrainConfig(epochs=1, batch_size=8, lr=0.1, seed=0, schedule="constant"), progress=False)
    assert not model[1].training
    for key, value in model[1].state_dict().items():
        assert torch.equal(value, frozen_before[key]), f"frozen BatchNorm {key} changed"
    assert flags(model)[1] == grads_before
    assert not torch.equal(model[5].weight, weight_before)  # the rest did train
