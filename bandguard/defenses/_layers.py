"""Selecting the conv layers a weight-space defense or regularizer acts on."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from bandguard._checks import check_names

LayerSpec = str | Sequence[str]

_KEYWORDS = ("first", "all")


def layer_spec(layers: object, name: str = "layers") -> str | tuple[str, ...]:
    """Normalise a layer selection: ``"first"``, ``"all"`` or a tuple of module names.

    A single name is one name (bandguard's rule, :func:`~bandguard._checks.check_names`; a spec's
    ``layers=0`` arrives as the int 0 and is the name ``"0"``); a list of names becomes a tuple of
    strings, so settings holding it stay hashable. An empty list is refused.
    """
    if isinstance(layers, str) and layers in _KEYWORDS:
        return layers
    if isinstance(layers, int) and not isinstance(layers, bool):
        return (str(layers),)
    if isinstance(layers, Sequence) and not isinstance(layers, str):
        layers = [str(layer) if isinstance(layer, int) and not isinstance(layer, bool) else layer for layer in layers]
    try:
        return check_names(layers, name)
    except TypeError:
        raise TypeError(
            f"{name} must be 'first', 'all' or module names, got {type(layers).__name__} {layers!r}"
        ) from None


def select_convs(model: nn.Module, layers: LayerSpec, *, name: str = "layers") -> list[tuple[str, nn.Conv2d]]:
    """The ``nn.Conv2d`` modules of ``model`` named by ``layers``, in ``named_modules`` order.

    Args:
        model: any module.
        layers: ``"first"`` (the first conv met in ``model.named_modules()``), ``"all"``, or a
            list of module names as ``named_modules`` spells them (e.g. ``["1.0", "1.4"]``).
        name: the argument's name, quoted in errors.

    Returns:
        ``[(module_name, conv), ...]``, non-empty.

    Raises:
        ValueError: the model has no ``nn.Conv2d``; a name is unknown or is not a conv layer;
            ``layers`` is an unknown string or an empty list.
    """
    layers = layer_spec(layers, name)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"model has no nn.Conv2d layer to act on ({type(model).__name__})")
    if layers == "first":
        return convs[:1]
    if layers == "all":
        return convs
    wanted = list(layers)
    modules = dict(model.named_modules())
    known = [n for n, _ in convs]
    for layer in wanted:
        if layer not in modules:
            raise ValueError(
                f"unknown layer {layer!r} in {name}; expected 'first', 'all' or names of conv layers {known}"
            )
        if not isinstance(modules[layer], nn.Conv2d):
            raise ValueError(
                f"layer {layer!r} in {name} is a {type(modules[layer]).__name__}, not nn.Conv2d; "
                f"conv layers are {known}"
            )
    return [(n, m) for n, m in convs if n in wanted]  # module order, each once
