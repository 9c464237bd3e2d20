"""Weight regularizers that make conv kernels smooth during training.

Wang et al. (arXiv 1905.13545) smooth kernels after training and suggest that adjacent weights
should be close; their code has no regularizer, so these two penalties are bandguard's own
construction of that idea. Each is a function ``(model) -> scalar Tensor`` to add to the loss,
differentiable in the weights (``TrainConfig(regularizers=[(penalty, weight), ...])``; use
:func:`functools.partial` to fix the options).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from bandguard import fourier
from bandguard._checks import check_choice, check_int, check_nonnegative
from bandguard.defenses._layers import LayerSpec, select_convs

__all__ = [
    "PENALTY_KINDS",
    "Penalty",
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


def kernel_high_frequency_energy(weight: torch.Tensor, radius: float, *, size: int | None = None) -> torch.Tensor:
    """Energy of each kernel's centred spectrum at distance >= ``radius`` from its centre.

    Args:
        weight: ``[..., kh, kw]``.
        radius: cut-off in the frequency units of the transform grid.
        size: ``None`` transforms each kernel on its own ``kh x kw`` grid (periodic; a constant
            kernel then has only the zero frequency); an int zero-pads to ``size x size`` first
            (then a constant kernel is a box and has high frequencies).

    Returns:
        Tensor ``[...]``: ``sum_{d >= radius} |F|^2 / (h w)``, in squared-weight units
        (Parseval: with ``radius = 0`` it is the kernel's squared L2 norm).
    """
    if size is not None:
        kh, kw = weight.shape[-2:]
        weight = torch.nn.functional.pad(weight, (0, size - kw, 0, size - kh))
    h, w = weight.shape[-2:]
    spectrum = fourier.fft2c(weight)
    # real^2 + imag^2 rather than |F|^2: abs() has no useful gradient where F is zero.
    energy = spectrum.real.pow(2) + spectrum.imag.pow(2)
    high = fourier.highpass_mask(h, w, radius, device=weight.device, dtype=energy.dtype)
    return (energy * high).sum(dim=(-2, -1)) / (h * w)


def kernel_high_frequency_penalty(
    model: nn.Module, radius: float = 1.0, layers: LayerSpec = "all", *, size: int | None = None
) -> torch.Tensor:
    """Mean high-frequency energy over every kernel of the selected conv layers.

    With the default ``size=None`` each kernel is transformed on its own grid, so for a 3x3 kernel
    ``radius=1`` penalises every non-zero frequency (all but the mean) and ``radius=1.5`` nothing;
    zero-pad with ``size`` for a finer frequency grid. See :func:`kernel_high_frequency_energy`.

    Args:
        model: a model with at least one ``nn.Conv2d``.
        radius: cut-off (>= 0).
        layers: ``"all"`` (default), ``"first"`` or a list of module names.
        size: ``None`` or the padded size (>= the largest kernel).

    Returns:
        Scalar tensor, differentiable in the weights; zero for constant kernels (``size=None``).
    """
    radius = check_nonnegative(radius, "radius")
    convs = select_convs(model, layers)
    if size is not None:
        check_int(size, "size", minimum=max(max(c.kernel_size) for _, c in convs))
    energies = [kernel_high_frequency_energy(c.weight, radius, size=size).flatten() for _, c in convs]
    return torch.cat(energies).mean()


PENALTY_KINDS = ("neighbor", "highfreq")


@dataclasses.dataclass(frozen=True)
class Penalty:
    """A named, picklable regularizer ``(model) -> scalar`` with its options bound.

    ``TrainConfig(regularizers=[(Penalty("neighbor"), 1e-3)])``; its ``__name__`` (e.g.
    ``"highfreq:radius=1,layers=all"``) is what checkpoint metadata records.

    Attributes:
        kind: ``"neighbor"`` (:func:`neighbor_weight_penalty`) or ``"highfreq"``
            (:func:`kernel_high_frequency_penalty`).
        radius: cut-off for ``"highfreq"``.
        layers: ``"all"``, ``"first"`` or a tuple of module names.
        size: padded size for ``"highfreq"`` (``None``: the kernel's own grid).
    """

    kind: str
    radius: float = 1.0
    layers: str | tuple[str, ...] = "all"
    size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", check_choice(self.kind, PENALTY_KINDS, "penalty"))
        object.__setattr__(self, "radius", check_nonnegative(self.radius, "radius"))
        if not isinstance(self.layers, str):
            object.__setattr__(self, "layers", tuple(self.layers))
        if self.size is not None:
            check_int(self.size, "size", minimum=1)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        if self.kind == "neighbor":
            return neighbor_weight_penalty(model, self.layers)
        return kernel_high_frequency_penalty(model, self.radius, self.layers, size=self.size)

    @property
    def __name__(self) -> str:  # read by TrainConfig.recipe()
        layers = self.layers if isinstance(self.layers, str) else "+".join(self.layers)
        if self.kind == "neighbor":
            return f"neighbor:layers={layers}"
        size = "" if self.size is None else f",size={self.size}"
        return f"highfreq:radius={self.radius:g},layers={layers}{size}"


def parse_regularizer(spec: str) -> tuple[Penalty, float]:
    """Parse a CLI regularizer spec into a ``(penalty, weight)`` pair for ``TrainConfig``.

    Forms: ``neighbor:WEIGHT[:LAYERS]`` and ``highfreq:RADIUS:WEIGHT[:LAYERS]``, where ``LAYERS`` is
    ``all`` (default), ``first`` or module names joined by ``+``. Examples: ``neighbor:1e-3``,
    ``highfreq:1:1e-2:first``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"regularizer spec must be a non-empty string, got {spec!r}")
    kind, *rest = spec.strip().split(":")
    kind = check_choice(kind, PENALTY_KINDS, "regularizer")
    want = 1 if kind == "neighbor" else 2
    if len(rest) not in (want, want + 1):
        form = "neighbor:WEIGHT[:LAYERS]" if kind == "neighbor" else "highfreq:RADIUS:WEIGHT[:LAYERS]"
        raise ValueError(f"bad regularizer spec {spec!r}; expected {form}")
    try:
        numbers = [float(v) for v in rest[:want]]
    except ValueError:
        raise ValueError(f"bad number in regularizer spec {spec!r}") from None
    layers: str | tuple[str, ...] = "all"
    if len(rest) > want:
        text = rest[want].strip()
        layers = text if text in ("all", "first") else tuple(t for t in text.split("+") if t)
    weight = check_nonnegative(numbers[-1], "regularizer weight")
    radius = numbers[0] if kind == "highfreq" else 1.0
    return Penalty(kind, radius=radius, layers=layers), weight
