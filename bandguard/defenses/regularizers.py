"""Weight regularizers that make conv kernels smooth during training.

Wang et al. (arXiv 1905.13545) smooth kernels after training and suggest that adjacent weights
should be close; their code has no regularizer, so these two penalties are bandguard's own
construction of that idea. Each is a function ``(model) -> scalar Tensor`` to add to the loss,
differentiable in the weights (``TrainConfig(regularizers=[(penalty, weight), ...])``; use
:func:`functools.partial` to fix the options).
"""

from __future__ import annotations

import torch
from torch import nn

from bandguard import fourier
from bandguard._checks import check_int, check_nonnegative
from bandguard.defenses._layers import LayerSpec, select_convs

__all__ = [
    "kernel_high_frequency_energy",
    "kernel_high_frequency_penalty",
    "neighbor_differences",
    "neighbor_weight_penalty",
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
