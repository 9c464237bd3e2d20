"""The mode helper: every submodule's ``training`` flag and every ``requires_grad`` come back as found."""

from __future__ import annotations

import pytest
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
