"""The registry type (bandguard/_registry.py): duplicates refused, unknown names listed, typos hinted."""

from __future__ import annotations

import pytest

from bandguard._registry import Registry
from bandguard.models import MODELS, create_model


def test_registry_refuses_duplicates_and_names_unknown_entries() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a")(2)
    with pytest.raises(ValueError, match="unknown widget 'b'; expected one of a"):
        reg.get("b")
    with pytest.raises(ValueError, match="unknown model 'resnet9000'"):
        create_model("resnet9000")
    with pytest.raises(ValueError, match=r"unknown model 'mnist_cn' \(did you mean 'mnist_cnn'\?\); expected one of"):
        create_model("mnist_cn")
    with pytest.raises(TypeError, match="model name must be a str, got int 3"):
        MODELS.get(3)  # type: ignore[arg-type]


def test_registry_lists_sorted_names_and_membership() -> None:
    reg: Registry[int] = Registry("widget")
    for name, value in (("b", 2), ("a", 1)):
        reg.register(name)(value)
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and len(reg) == 2
    assert "a" in reg and "c" not in reg and reg.get("b") == 2
