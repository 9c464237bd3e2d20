"""Contracts of bandguard.defenses.regularizers: exact penalty values, gradients, the spec grammar."""

from __future__ import annotations

import copy

import pytest
import torch
from _tiny import tiny_net
from torch import nn
from torch.func import functional_call

from bandguard import fourier
from bandguard.defenses import (
    KERNEL_HIGH_RADIUS,
    Penalty,
    RegularizerKind,
    kernel_high_frequency_penalty,
    neighbor_weight_penalty,
    parse_regularizer,
)
from bandguard.defenses.regularizers import kernel_high_frequency_energy


class _Penalty(nn.Module):
    """Calls a penalty inside forward so functional_call can substitute the weights."""

    def __init__(self, net: nn.Module, fn) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.net, self.fn = net, fn

    def forward(self) -> torch.Tensor:
        return self.fn(self.net)


@pytest.mark.parametrize("penalty", [neighbor_weight_penalty, kernel_high_frequency_penalty,
                                     lambda m: kernel_high_frequency_penalty(m, 2.0, "first")],
                         ids=["neighbor", "highfreq", "highfreq-first"])
def test_penalties_are_differentiable_in_the_weights(penalty) -> None:  # type: ignore[no-untyped-def]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 1, 3)).double()
    wrapper = _Penalty(net, penalty)
    names = ["net.0.weight", "net.2.weight"]

    def f(w0: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        return functional_call(wrapper, dict(zip(names, (w0, w2))), ())

    w0 = net[0].weight.detach().clone().requires_grad_(True)
    w2 = net[2].weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (w0, w2))


def test_neighbor_penalty_exact_values_and_zero_for_constant_kernels() -> None:
    conv = nn.Conv2d(1, 1, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))
    assert neighbor_weight_penalty(nn.Sequential(conv)).item() == pytest.approx(0.5)  # diffs 0, 0, 1, 1
    const = copy.deepcopy(tiny_net())
    with torch.no_grad():
        for conv in (const[0], const[2]):
            conv.weight.copy_(torch.randn(conv.weight.shape[:2])[..., None, None].expand_as(conv.weight))
    assert neighbor_weight_penalty(const).item() == 0.0


def test_high_frequency_energy_on_the_kernel_grid_exact(dtype: torch.dtype, device: torch.device) -> None:
    # A delta kernel has |F| = 1 at all 32 x 32 frequencies: the energy at d >= r is the share of
    # grid positions there.
    delta = torch.zeros(1, 1, 3, 3, dtype=dtype, device=device)
    delta[..., 1, 1] = 1.0
    for radius in (0.0, 4.0, KERNEL_HIGH_RADIUS, 20.0):
        expected = float((fourier.radial_distance(32, 32, dtype=torch.float64) >= radius).sum()) / 32**2
        assert float(kernel_high_frequency_energy(delta, radius)) == pytest.approx(expected)
    weight = torch.randn(3, 2, 3, 3, dtype=dtype, device=device)
    # radius 0 keeps everything: Parseval gives each kernel's squared norm.
    torch.testing.assert_close(kernel_high_frequency_energy(weight, 0.0), weight.pow(2).sum(dim=(-2, -1)))
    # Constant kernels are boxes on the grid and keep some high-frequency energy.
    assert float(kernel_high_frequency_energy(torch.ones(3, 3, dtype=dtype, device=device), 8.0)) > 0


def test_high_frequency_penalty_is_the_mean_over_selected_kernels() -> None:
    net = tiny_net()
    every = torch.cat([kernel_high_frequency_energy(net[i].weight, 8.0).flatten() for i in (0, 2)]).mean()
    torch.testing.assert_close(kernel_high_frequency_penalty(net), every)
    first = kernel_high_frequency_energy(net[0].weight, 3.0).mean()
    torch.testing.assert_close(kernel_high_frequency_penalty(net, 3.0, "first"), first)
    assert KERNEL_HIGH_RADIUS == 8.0


def test_penalty_settings() -> None:
    net = tiny_net()
    high = Penalty("highfreq")
    assert high.kind is RegularizerKind.HIGHFREQ and high.radius == KERNEL_HIGH_RADIUS
    assert torch.equal(high(net), kernel_high_frequency_penalty(net))
    assert torch.equal(Penalty("neighbor", layers="first")(net), neighbor_weight_penalty(net, "first"))
    assert Penalty("highfreq", radius=2, layers=["0", "2"]).__name__ == "highfreq:radius=2,layers=0+2"
    with pytest.raises(ValueError, match="unknown regularizer 'l1'"):
        Penalty("l1")
    with pytest.raises(ValueError, match="'neighbor' takes no radius"):
        Penalty("neighbor", radius=2.0)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        Penalty("highfreq", radius=-1.0)


def test_regularizer_specs_use_the_defense_grammar() -> None:
    net = tiny_net()
    pen, w = parse_regularizer("neighbor:1e-3")
    assert w == 1e-3 and pen == Penalty("neighbor") and pen.__name__ == "neighbor:layers=all"
    pen, w = parse_regularizer("highfreq:0.01,radius=1.5,layers=first")
    assert w == 0.01 and pen == Penalty("highfreq", radius=1.5, layers="first")
    assert torch.equal(pen(net), kernel_high_frequency_penalty(net, 1.5, "first"))
    pen, w = parse_regularizer("neighbor:weight=2,layers=0+2")
    assert w == 2.0 and pen.layers == ("0", "2")
    assert parse_regularizer("highfreq:1e-2,layers=0")[0].layers == ("0",)
    # A penalty's name is a spec: adding the weight gives the same penalty back.
    named = Penalty("highfreq", radius=4, layers=("0", "2"))
    assert parse_regularizer(f"{named.__name__},weight=0.5") == (named, 0.5)
    for bad in ("l1:1e-3", "neighbor", "highfreq:1e-3,2e-3", "neighbor:-1", "neighbor:1,radius=2",
                "highfreq:1,size=3", "neighbor:1,weight=2", ""):
        with pytest.raises(ValueError):
            parse_regularizer(bad)
    with pytest.raises(TypeError, match="regularizer weight must be a real number"):
        parse_regularizer("neighbor:abc")


def test_errors_name_the_problem() -> None:
    dense = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        neighbor_weight_penalty(dense)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        kernel_high_frequency_penalty(tiny_net(), -1.0)
