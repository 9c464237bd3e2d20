"""One spec grammar for defenses and regularizers, in Python, the CLI and benchmark specs.

Grammar::

    SPEC  := NAME [":" ITEM ("," ITEM)*]
    ITEM  := VALUE | KEY "=" VALUE          (positional values first, then options)
    VALUE := int | float | a/b | true | false | none | A+B+... (a tuple of names) | text

Examples: ``lowpass:8``, ``lowpass:8,shape=square,clip=none``, ``post_average:1.35,K=15,seed=0``,
``smooth:0.25,layers=0+3``, ``neighbor:1e-3,layers=first``, ``highfreq:1e-2,radius=8``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bandguard._checks import parse_number

__all__ = ["Spec", "parse_spec", "parse_value"]


@dataclasses.dataclass(frozen=True)
class Spec:
    """A parsed spec: ``name``, positional ``args`` and keyword ``options``.

    Attributes:
        name: what the spec names, looked up in a registry by the caller.
        args: the positional values, in order (:func:`parse_value` applied).
        options: the ``key=value`` options.
    """

    name: str
    args: tuple[Any, ...] = ()
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


def parse_value(text: str) -> Any:
    """One spec value: int, float, ``a/b``, ``true``/``false``, ``none``, ``a+b`` (tuple) or text.

    Args:
        text: the value as written, e.g. ``"8/255"``, ``"0+3"`` or ``"square"``.

    Returns:
        ``int``, ``float`` (``"8/255"`` gives ``8 / 255``), ``bool``, ``None``, a ``tuple`` of
        strings, or the stripped text itself.
    """
    text = text.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "/" in text:
        try:
            return parse_number(text)
        except ValueError:
            pass
    if "+" in text:  # lists of names, e.g. conv layers "0+3" -> ("0", "3")
        return tuple(t.strip() for t in text.split("+") if t.strip())
    return text


def parse_spec(spec: str, *, what: str = "spec") -> Spec:
    """Split ``"name:value,key=value,..."`` into a :class:`Spec` (grammar in the module docstring).

    Args:
        spec: the text.
        what: what the spec names (``"defense"``, ``"regularizer"``), quoted in errors.

    Returns:
        :class:`Spec`; the caller looks ``name`` up in its registry.

    Example:
        >>> parse_spec("post_average:1.35,K=15")
        Spec(name='post_average', args=(1.35,), options={'K': 15})
    """
    if not isinstance(spec, str):
        raise TypeError(f"{what} spec must be a string such as 'name:value,key=value', got {type(spec).__name__}")
    if not spec.strip():
        raise ValueError(f"{what} spec must be a non-empty string, got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"{what} spec {spec!r} has no name before ':'")
    args: list[Any] = []
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if eq:
            key = key.strip()
            if not key.isidentifier():
                raise ValueError(f"bad option {item!r} in {what} spec {spec!r}; expected key=value")
            if key in options:
                raise ValueError(f"option {key!r} given twice in {what} spec {spec!r}")
            options[key] = parse_value(value)
        elif options:
            raise ValueError(f"positional value {item!r} after options in {what} spec {spec!r}")
        else:
            args.append(parse_value(item))
    return Spec(name, tuple(args), options)
