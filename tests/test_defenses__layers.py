"""Layer selection for weight-space defenses and regularizers (bandguard/defenses/_layers.py)."""

from __future__ import annotations

import pytest
from torch import nn

from bandguard.defenses._layers import layer_spec, select_convs


def net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 1)))


def test_layer_spec_normalises_every_form() -> None:
    assert layer_spec("first") == "first" and layer_spec("all") == "all"
    assert layer_spec("2.0") == ("2.0",)
    assert layer_spec(0) == ("0",)  # a spec's layers=0 arrives as an int
    assert layer_spec(["0", "2.1"]) == ("0", "2.1")
    with pytest.raises(TypeError, match="layers must be 'first', 'all' or module names"):
        layer_spec(1.5)


def test_select_convs_picks_by_keyword_and_name_in_module_order() -> None:
    model = net()
    assert [n for n, _ in select_convs(model, "first")] == ["0"]
    assert [n for n, _ in select_convs(model, "all")] == ["0", "2.0", "2.1"]
    picked = select_convs(model, ("2.1", "0", "2.1"))  # module order, each once
    assert [n for n, _ in picked] == ["0", "2.1"] and picked[1][1] is model[2][1]


@pytest.mark.parametrize(("model", "layers", "match"), [
    (nn.Sequential(nn.Linear(2, 2)), "all", "no nn.Conv2d"),
    (net(), "last", "unknown layer 'last' in layers; expected 'first', 'all' or names of conv layers"),
    (net(), (), "layers must name at least one"),
    (net(), ("1",), "1"),      # a module, but not a conv
    (net(), ("9",), "9"),      # no such module
])
def test_select_convs_refuses_what_it_cannot_act_on(model: nn.Module, layers: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select_convs(model, layers)
