"""Weight regularizers that make conv kernels smooth during training.

Wang et al. (arXiv 1905.13545) smooth kernels after training and suggest that adjacent weights
should be close; their code has no regularizer, so these two penalties are bandguard's own
construction of that idea. Each is a function ``(model) -> scalar Tensor`` to add to the loss,
differentiable in the weights (``TrainConfig(regularizers=[(penalty, weight), ...])``; use
:func:`functools.partial` to fix the options).
"""

from __future__ import annotations

import dataclasses
import enum

import torch
from torch import nn

from bandguard import fourier
from bandguard._checks import check_enum, check_nonnegative, check_options
from bandguard.defenses._layers import LayerSpec, layer_spec, select_convs
from bandguard.defenses.spec import parse_spec

__all__ = [
    "KERNEL_HIGH_RADIUS",
    "Penalty",
    "RegularizerKind",
    "kernel_high_frequency_energy",
    "kernel_high_frequency_penalty",
    "neighbor_differences",
    "neighbor_weight_penalty",
    "parse_regularizer",
]


def neighbor_differences(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differences between vertically and horizontally adjacent weights of each kernel.

    Args:
        weight: ``[..., kh, kw]``.

    Returns:
        ``(vertical [..., kh-1, kw], horizontal [..., kh, kw-1])``.
    """
    return weight[..., 1:, :] - weight[..., :-1, :], weight[..., :, 1:] - weight[..., :, :-1]


def neighbor_weight_penalty(model: nn.Module, layers: LayerSpec = "all") -> torch.Tensor:
    """Mean squared difference between spatially adjacent weights of every selected conv kernel.

    The mean runs over every adjacent pair (vertical and horizontal) of every kernel of every
    selected layer; 1x1 kernels have no pairs. Zero exactly when every kernel is constant.

    Args:
        model: a model with at least one ``nn.Conv2d``.
        layers: ``"all"`` (default), ``"first"`` or a list of module names.

    Returns:
        Scalar tensor on the weights' device, differentiable in them (zero if no layer has pairs).
    """
    convs = select_convs(model, layers)
    total, count = None, 0
    for _, conv in convs:
        for diff in neighbor_differences(conv.weight):
            if diff.numel():
                part = diff.pow(2).sum()
                total = part if total is None else total + part
                count += diff.numel()
    if total is None:
        return convs[0][1].weight.sum() * 0.0  # keeps the graph and device
    return total / count


KERNEL_HIGH_RADIUS = 8.0
"""Default cut-off of the kernel high-frequency penalty, in frequency-index units.

On the 32 x 32 kernel grid (:data:`bandguard.fourier.KERNEL_GRID`): a quarter of the grid, ``8 / 32``
cycles per pixel, the same cut the kernel spectrum's ``high_fraction`` uses.
"""


def kernel_high_frequency_energy(weight: torch.Tensor, radius: float) -> torch.Tensor:
    """Energy of each kernel's spectrum at distance >= ``radius`` from the centre of the kernel grid.

    The spectrum is :func:`bandguard.fourier.kernel_frequency_response` (the kernel zero-padded to
    the one 32 x 32 kernel grid), so ``radius`` is in frequency-index units of that grid, as in
    kernel filtering and the kernel spectrum. A constant kernel is a box there and has high
    frequencies; a delta kernel has a flat spectrum.

    Args:
        weight: ``[..., kh, kw]``.
        radius: cut-off, >= 0.

    Returns:
        Tensor ``[...]``: ``sum_{d >= radius} |F|^2 / 32^2``, in squared-weight units
        (Parseval: with ``radius = 0`` it is the kernel's squared L2 norm).
    """
    grid = fourier.KERNEL_GRID
    spectrum = fourier.kernel_frequency_response(weight)
    # real^2 + imag^2 rather than |F|^2: abs() has no useful gradient where F is zero.
    energy = spectrum.real.pow(2) + spectrum.imag.pow(2)
    high = fourier.frequency_mask(grid, grid, radius, kind="high", device=weight.device, dtype=energy.dtype)
    return (energy * high).sum(dim=(-2, -1)) / (grid * grid)


def kernel_high_frequency_penalty(
    model: nn.Module, radius: float = KERNEL_HIGH_RADIUS, layers: LayerSpec = "all"
) -> torch.Tensor:
    """Mean high-frequency energy over every kernel of the selected conv layers.

    See :func:`kernel_high_frequency_energy`; ``radius`` is in frequency-index units of the
    32 x 32 kernel grid (default 8: frequencies above a quarter cycle per pixel).

    Args:
        model: a model with at least one ``nn.Conv2d`` (kernels at most 32 x 32).
        radius: cut-off (>= 0).
        layers: ``"all"`` (default), ``"first"`` or a list of module names.

    Returns:
        Scalar tensor, differentiable in the weights.
    """
    radius = check_nonnegative(radius, "radius")
    convs = select_convs(model, layers)
    energies = [kernel_high_frequency_energy(c.weight, radius).flatten() for _, c in convs]
    return torch.cat(energies).mean()


class RegularizerKind(str, enum.Enum):
    """The weight regularizers, by spec name."""

    NEIGHBOR = "neighbor"  # neighbor_weight_penalty
    HIGHFREQ = "highfreq"  # kernel_high_frequency_penalty


@dataclasses.dataclass(frozen=True)
class Penalty:
    """A named, picklable regularizer ``(model) -> scalar`` with its options bound.

    ``TrainConfig(regularizers=[(Penalty("neighbor"), 1e-3)])``; its ``__name__`` (e.g.
    ``"highfreq:radius=8,layers=all"``, in the spec grammar of :mod:`bandguard.defenses.spec`) is
    what checkpoint metadata records.

    Attributes:
        kind: ``"neighbor"`` (:func:`neighbor_weight_penalty`) or ``"highfreq"``
            (:func:`kernel_high_frequency_penalty`).
        radius: cut-off of ``"highfreq"`` on the 32 x 32 kernel grid (``None``: 8); ``"neighbor"``
            takes none.
        layers: ``"all"``, ``"first"`` or a tuple of module names.
    """

    kind: RegularizerKind
    radius: float | None = None
    layers: str | tuple[str, ...] = "all"

    def __post_init__(self) -> None:
        kind = check_enum(self.kind, RegularizerKind, "regularizer")
        object.__setattr__(self, "kind", kind)
        if kind is RegularizerKind.NEIGHBOR and self.radius is not None:
            raise ValueError(f"regularizer 'neighbor' takes no radius, got radius={self.radius!r}")
        if kind is RegularizerKind.HIGHFREQ:
            radius = KERNEL_HIGH_RADIUS if self.radius is None else self.radius
            object.__setattr__(self, "radius", check_nonnegative(radius, "radius"))
        object.__setattr__(self, "layers", layer_spec(self.layers))

    def __call__(self, model: nn.Module) -> torch.Tensor:
        if self.kind is RegularizerKind.NEIGHBOR:
            return neighbor_weight_penalty(model, self.layers)
        return kernel_high_frequency_penalty(model, self.radius, self.layers)  # type: ignore[arg-type]

    @property
    def __name__(self) -> str:  # read by TrainConfig.recipe()
        layers = self.layers if isinstance(self.layers, str) else "+".join(self.layers)
        if self.kind is RegularizerKind.NEIGHBOR:
            return f"neighbor:layers={layers}"
        return f"highfreq:radius={self.radius:g},layers={layers}"


def parse_regularizer(spec: str) -> tuple[Penalty, float]:
    """Parse a regularizer spec into a ``(penalty, weight)`` pair for ``TrainConfig``.

    The grammar is the defenses' (:func:`bandguard.defenses.spec.parse_spec`): the name, the
    weight as the one positional value (or ``weight=``), then the :class:`Penalty` options.
    Examples: ``neighbor:1e-3``, ``neighbor:1e-3,layers=first``, ``highfreq:1e-2,radius=4``,
    ``highfreq:1e-2,layers=0+3``.

    Args:
        spec: ``"name:weight,key=value,..."`` with ``name`` a :class:`RegularizerKind`.

    Returns:
        ``(penalty, weight)``: the :class:`Penalty` (a function ``model -> scalar Tensor``) and its
        weight, >= 0.

    Raises:
        ValueError: a malformed spec, an unknown name, not exactly one weight, or unknown options.
    """
    parsed = parse_spec(spec, what="regularizer")
    kind = check_enum(parsed.name, RegularizerKind, "regularizer")
    options = dict(parsed.options)
    if len(parsed.args) + ("weight" in options) != 1:
        raise ValueError(
            f"regularizer spec {spec!r} needs exactly one weight, e.g. '{kind.value}:1e-3'"
        )
    weight = parsed.args[0] if parsed.args else options.pop("weight")
    weight = check_nonnegative(weight, "regularizer weight")
    check_options(options, [f.name for f in dataclasses.fields(Penalty) if f.name != "kind"],
                  f"regularizer {kind.value!r} (spec {spec!r})")
    return Penalty(kind, **options), weight
