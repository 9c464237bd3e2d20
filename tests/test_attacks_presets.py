"""Published settings by name (bandguard/attacks/presets.py)."""

from __future__ import annotations

import pytest

from bandguard.attacks import ATTACK_PRESETS, FGSM, PGD, attack_preset


def test_presets_are_the_published_settings() -> None:
    mnist = attack_preset("madry_mnist")
    assert type(mnist) is PGD and mnist.eps == (0.3,) and mnist.steps == 40
    assert mnist.step_for(0.3) == 0.01 and mnist.random_start and mnist.norm.value == "linf"
    cifar = attack_preset("madry_cifar10")
    assert cifar.eps == (8 / 255,) and cifar.steps == 7 and cifar.step_for(8 / 255) == 2 / 255
    # bandguard's default step differs from both: 2.5 * eps / steps
    assert PGD(eps=0.3, steps=40).step_for(0.3) == pytest.approx(0.01875)
    fast = attack_preset("wong_fast_cifar10")
    assert type(fast) is FGSM and fast.random_start and fast.step_size == pytest.approx(1.25 * 8 / 255)
    assert attack_preset("wong_fast_mnist").step_size == pytest.approx(1.25 * 0.3)
    assert sorted(ATTACK_PRESETS) == ["madry_cifar10", "madry_mnist", "wong_fast_cifar10", "wong_fast_mnist"]


def test_overrides_and_errors() -> None:
    assert attack_preset("madry_mnist", seed=3).seed == 3
    assert ATTACK_PRESETS["madry_mnist"].seed == 0  # the table itself is untouched
    with pytest.raises(ValueError, match="unknown attack preset 'madry'"):
        attack_preset("madry")
    with pytest.raises(ValueError, match="takes no setting 'steps'"):
        attack_preset("wong_fast_mnist", steps=3)
    with pytest.raises(TypeError):
        ATTACK_PRESETS["x"] = PGD(eps=0.1)  # type: ignore[index]
