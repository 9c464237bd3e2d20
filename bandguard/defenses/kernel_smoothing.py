"""Weight-space defenses: smoothing the conv kernels of a trained model.

Wang et al., "High-frequency Component Helps Explain the Generalization of CNNs" (CVPR 2020,
arXiv 1905.13545), section on smoothing kernels: after training, each ``k x k`` kernel of the first
conv layer is convolved over its two spatial axes with

    [[rho, rho, rho],
     [rho,  1,  rho],
     [rho, rho, rho]]

with mirror borders, same output size, and no renormalisation (HaohanWang/HFC). Their PyTorch port
convolves over the channel axes by mistake; bandguard smooths the spatial axes.

Without renormalisation the mask multiplies a kernel's flat (DC) part by ``1 + 8 rho`` (9 at
rho = 1). Their ResNet has no BatchNorm (``batch_normalization_layer`` returns its input), so the
gain only scales the ReLU net's activations; in a net whose BatchNorm normalises with statistics
fixed at training time, it shifts every activation after the smoothed conv away from them.
``normalise=True`` divides the mask by its sum, keeping flat kernels as they are: the transfer of
their method to such nets (an option: the default stays theirs).

Both functions return a new model (``copy.deepcopy``); the caller's model is untouched.

"First" means the first ``nn.Conv2d``: the frozen patch-whitening layer of the ``cifar_fast`` nets
(:class:`bandguard.models.PatchWhitening`, fixed by the data, never trained) is no ``nn.Conv2d``,
so smoothing starts at their first trainable conv.

Measured clean-accuracy cost of :func:`smooth_kernels` (first conv layer only, first 1,000 test
images, reference nets of the test fixtures; ``benchmarks/defense_cost.py``, recorded in
``benchmarks/RESULTS.md`` under ``## Defense cost``), clean accuracy in %:

    rho           0      0.1    0.25   0.5    1.0
    MNIST CNN     98.5   98.4   98.3   98.3   98.0
    CIFAR small   67.0   68.7   61.8   51.9   37.3

MNIST barely notices; the short-trained CIFAR net loses 5 points at rho = 0.25 and 30 at rho = 1
(its first-layer kernels carry high-frequency detectors), while rho = 0.1 is free.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from bandguard import fourier
from bandguard._checks import check_bool, check_finite, check_nonnegative
from bandguard.defenses._layers import LayerSpec, layer_spec, select_convs

__all__ = ["SmoothSettings", "filter_kernel", "filter_kernels", "smooth_kernel", "smooth_kernels", "smoothing_mask"]


@dataclasses.dataclass(frozen=True)
class SmoothSettings:
    """Settings of :func:`smooth_kernels` (also accepted by :func:`~bandguard.defenses.compose.defend`).

    Attributes:
        rho: neighbour weight of the 3x3 mask, >= 0.
        layers: ``"first"``, ``"all"`` or a tuple of module names.
        normalise: divide the mask by its sum ``1 + 8 rho`` (see the module's note on BatchNorm).
    """

    rho: float
    layers: str | tuple[str, ...] = "first"
    normalise: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "rho", check_nonnegative(self.rho, "rho"))
        object.__setattr__(self, "layers", layer_spec(self.layers))
        object.__setattr__(self, "normalise", check_bool(self.normalise, "normalise"))


def smoothing_mask(rho: float, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> torch.Tensor:
    """Wang et al.'s 3x3 mask (1905.13545): ``rho`` everywhere, 1 at the centre.

    Args:
        rho: the weight of the eight neighbours.
        device: where to build the mask.
        dtype: its dtype; default torch's default dtype.

    Returns:
        Tensor ``[3, 3]``.
    """
    mask = torch.full((3, 3), float(rho), device=device, dtype=dtype or torch.get_default_dtype())
    mask[1, 1] = 1.0
    return mask


def smooth_kernel(weight: torch.Tensor, rho: float, *, normalise: bool = False) -> torch.Tensor:
    """Convolve every kernel of ``weight`` over its spatial axes with :func:`smoothing_mask`.

    Mirror ("symmetric", edge repeated) borders and same size, as
    ``scipy.signal.convolve2d(kernel, mask, boundary="symm", mode="same")``; with a 3x3 mask the
    one-pixel symmetric border equals edge replication. No renormalisation unless asked.
    Differentiable.

    Args:
        weight: conv weights ``[..., kh, kw]`` (e.g. ``[out, in, kh, kw]``).
        rho: mask weight of the eight neighbours, >= 0 (0 is the identity).
        normalise: divide the mask by its sum ``1 + 8 rho`` (a flat kernel is then unchanged).

    Returns:
        Tensor shaped like ``weight``.
    """
    kh, kw = weight.shape[-2:]
    flat = weight.reshape(-1, 1, kh, kw)
    padded = F.pad(flat, (1, 1, 1, 1), mode="replicate")
    # The mask is point-symmetric, so correlation (conv2d) equals convolution.
    mask = smoothing_mask(rho, device=weight.device, dtype=weight.dtype)[None, None]
    if normalise:
        mask = mask / mask.sum()
    return F.conv2d(padded, mask).reshape(weight.shape)


def filter_kernel(weight: torch.Tensor, radius: float) -> torch.Tensor:
    """Remove the high frequencies of each kernel on the :data:`bandguard.fourier.KERNEL_GRID` grid.

    The kernel's spectrum on the 32 x 32 grid (:func:`bandguard.fourier.kernel_frequency_response`,
    the grid the kernel regularizer and ``kernel_spectrum`` read too) is multiplied by the ideal
    low-pass disc (distance ``< radius`` in frequency-index units of that grid), transformed back
    and cropped to ``kh x kw``. Filtering is circular, so what the low-pass spreads beyond the
    ``kh x kw`` window is dropped. A radius beyond the corner (``> 16 sqrt(2) ~ 22.6``) is the
    identity.

    Args:
        weight: ``[..., kh, kw]`` with ``kh, kw <= 32``.
        radius: cut-off, >= 0.

    Returns:
        Tensor shaped like ``weight``.
    """
    kh, kw = weight.shape[-2:]
    spectrum = fourier.kernel_frequency_response(weight)
    mask = fourier.frequency_mask(fourier.KERNEL_GRID, fourier.KERNEL_GRID, radius,
                                  device=weight.device, dtype=weight.dtype)
    return fourier.ifft2c(spectrum * mask).real[..., :kh, :kw].to(weight.dtype)


def _apply_to_convs(model: nn.Module, layers: LayerSpec, fn, setting: str) -> nn.Module:  # type: ignore[no-untyped-def]
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    select_convs(model, layers)  # validate on the user's model first: errors before copying
    new = copy.deepcopy(model)
    with torch.no_grad():
        for name, conv in select_convs(new, layers):
            # Never hand back a model whose weights overflowed (its every output would be NaN).
            conv.weight.copy_(check_finite(fn(conv.weight), f"the new kernels of layer {name!r}",
                                           hint=f"{setting} is too large for its weights' dtype {conv.weight.dtype}"))
    return new


def smooth_kernels(model: nn.Module, rho: float, layers: LayerSpec = "first", *, normalise: bool = False
                   ) -> nn.Module:
    """A copy of ``model`` whose conv kernels are smoothed (Wang et al. 1905.13545).

    Args:
        model: a trained model with at least one ``nn.Conv2d``.
        rho: neighbour weight of the 3x3 mask, >= 0 (paper: 0.1, 0.25, 0.5, 1.0; 0 is the identity).
        layers: ``"first"`` (the paper's choice), ``"all"``, or a list of module names.
        normalise: divide the mask by its sum (for nets with BatchNorm; see the module's note).

    Returns:
        A new model (deep copy, same mode and ``requires_grad`` flags); ``model`` is untouched.

    Raises:
        ValueError: ``rho < 0``, no conv layer, an unknown or non-conv layer name.
    """
    rho = check_nonnegative(rho, "rho")
    normalise = check_bool(normalise, "normalise")
    return _apply_to_convs(model, layers, lambda w: smooth_kernel(w, rho, normalise=normalise),
                           f"rho={rho:g}{', normalised' if normalise else ''}")


def filter_kernels(model: nn.Module, radius: float, layers: LayerSpec = "first") -> nn.Module:
    """A copy of ``model`` whose conv kernels are low-pass filtered (see :func:`filter_kernel`).

    Args:
        model: a model with at least one ``nn.Conv2d`` (kernels at most 32 x 32).
        radius: cut-off in frequency-index units of the 32 x 32 kernel grid, >= 0.
        layers: ``"first"``, ``"all"`` or a list of module names.

    Returns:
        A new model; ``model`` is untouched.
    """
    radius = check_nonnegative(radius, "radius")
    convs = select_convs(model, layers)
    biggest = max(max(c.kernel_size) for _, c in convs)
    if biggest > fourier.KERNEL_GRID:
        raise ValueError(f"kernels must be at most {fourier.KERNEL_GRID} wide, got {biggest}")
    return _apply_to_convs(model, layers, lambda w: filter_kernel(w, radius), f"radius={radius:g}")
