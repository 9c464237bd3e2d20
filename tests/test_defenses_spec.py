"""Contracts of bandguard.defenses.spec: the one grammar of defense and regularizer specs."""

from __future__ import annotations

import pytest

from bandguard.defenses import Spec, parse_spec
from bandguard.defenses.spec import parse_value


def test_positional_values_then_options() -> None:
    assert parse_spec("lowpass:8") == Spec("lowpass", (8,), {})
    assert parse_spec("post_average:1.35,K=15,seed=0") == Spec("post_average", (1.35,), {"K": 15, "seed": 0})
    assert parse_spec("highfreq:1e-2,radius=8,layers=first") == Spec(
        "highfreq", (0.01,), {"radius": 8, "layers": "first"})
    assert parse_spec(" smooth : 0.25 , layers = 0+3 ") == Spec("smooth", (0.25,), {"layers": ("0", "3")})
    assert parse_spec("lowpass") == Spec("lowpass", (), {})


def test_values() -> None:
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("2.5") == 2.5 and parse_value("1e-3") == 1e-3
    assert parse_value("8/255") == pytest.approx(8 / 255)
    assert parse_value("True") is True and parse_value("false") is False and parse_value("None") is None
    assert parse_value("square") == "square"
    assert parse_value("1.0+conv.2") == ("1.0", "conv.2")


@pytest.mark.parametrize(("spec", "message"), [
    ("", "must be a non-empty string"),
    (":8", "has no name"),
    ("lowpass:radius=8,4", "positional value '4' after options"),
    ("lowpass:8,2x=1", "bad option '2x=1'"),
    ("lowpass:radius=8,radius=4", "option 'radius' given twice"),
])
def test_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(spec, what="defense")
    with pytest.raises(TypeError, match="spec must be a string"):
        parse_spec(None)  # type: ignore[arg-type]
