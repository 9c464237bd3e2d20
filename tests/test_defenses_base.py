"""Contracts of bandguard.defenses.base: the three facts every defense declares."""

from __future__ import annotations

from _tiny import tiny_net
from torch import nn

from bandguard.defenses import Defense, HighPass, LowPass, PostAveraging, forward_cost, is_randomized


def test_every_defense_declares_the_three_facts() -> None:
    net = tiny_net()
    for defense in (LowPass(3), HighPass(3), PostAveraging(net, radius_l2=1.0, K=2)):
        assert isinstance(defense, Defense)
        assert isinstance(defense.randomized, bool) and isinstance(defense.differentiable, bool)
        assert defense.forward_cost >= 1
    assert not hasattr(Defense, "approx")


def test_facts_are_read_through_wrappers() -> None:
    net = tiny_net()
    assert not is_randomized(nn.Sequential(LowPass(3), net)) and forward_cost(net) == 1
    wrapped = nn.Sequential(PostAveraging(nn.Sequential(LowPass(3), net), radius_l2=1.0, K=4))
    assert is_randomized(wrapped) and forward_cost(wrapped) == 1 + 3 * 2 * 4
