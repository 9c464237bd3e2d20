"""Frequency response of a model's convolution kernels.

Wang et al., "High-frequency Component Helps Explain the Generalization of CNNs" (arXiv 1905.13545):
smoothing the kernels (or penalising their high frequencies) makes a model rely less on
high-frequency input components. :func:`kernel_spectrum` shows that directly: the mean amplitude of
each conv layer's kernels in the centred frequency plane.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from einops import reduce
from torch import nn

from bandguard._checks import check_model
from bandguard.fourier import KERNEL_GRID, high_frequency_fraction, kernel_frequency_response, radial_profile

__all__ = [
    "KernelSpectrum",
    "LayerKernelSpectrum",
    "kernel_amplitude",
    "kernel_spectrum",
]

#: Cut-off of ``high_fraction``: a quarter of the kernel grid (8 of 32), as the kernel regularizer.
HIGH_RADIUS = KERNEL_GRID / 4


def kernel_amplitude(weight: torch.Tensor) -> torch.Tensor:
    """Mean centred ``|FFT|`` of conv kernels on the 32 x 32 kernel grid.

    A 3 x 3 kernel has only a 3 x 3 DFT; :func:`bandguard.fourier.kernel_frequency_response`
    zero-pads it to the one kernel grid (:data:`bandguard.fourier.KERNEL_GRID`), which samples its
    continuous frequency response finely enough that smoothing shows as a smooth fall-off.

    Args:
        weight: conv weights ``[C_out, C_in, kh, kw]`` with ``kh, kw <= 32``.

    Returns:
        Tensor ``[32, 32]``, zero frequency at ``(16, 16)``, averaged over all ``C_out * C_in``
        kernels.
    """
    return reduce(kernel_frequency_response(weight.detach()).abs(), "o i h w -> h w", "mean")


@dataclasses.dataclass(frozen=True)
class LayerKernelSpectrum:
    """One conv layer's kernel spectrum.

    Attributes:
        name: the module's name in ``model.named_modules()``.
        kernel_shape: ``(C_out, C_in, kh, kw)``.
        spectrum: ``[32, 32]`` mean centred amplitude on the kernel grid.
        radial: its azimuthal mean ``[R]``.
        high_fraction: share of the kernels' (mean-amplitude) energy at distance >= 8 (a quarter
            of the grid).
    """

    name: str
    kernel_shape: tuple[int, ...]
    spectrum: torch.Tensor
    radial: torch.Tensor
    high_fraction: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON."""
        return {
            "name": self.name,
            "kernel_shape": list(self.kernel_shape),
            "spectrum": self.spectrum.tolist(),
            "radial": self.radial.tolist(),
            "high_fraction": self.high_fraction,
        }


@dataclasses.dataclass(frozen=True)
class KernelSpectrum:
    """:func:`kernel_spectrum` output: one entry per conv layer, in module order.

    Attributes:
        layers: one :class:`LayerKernelSpectrum` per conv layer; ``spectrum["conv1"]`` finds one by
            module name.
        size: the side of the grid the kernels are read on (:data:`bandguard.fourier.KERNEL_GRID`).
    """

    layers: tuple[LayerKernelSpectrum, ...]
    size: int

    def __getitem__(self, name: str) -> LayerKernelSpectrum:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON."""
        return {"size": self.size, "layers": [layer.to_dict() for layer in self.layers]}


def kernel_spectrum(model: nn.Module) -> KernelSpectrum:
    """Per ``nn.Conv2d`` layer, the mean centred ``|FFT|`` of its kernels (Wang et al. 1905.13545).

    Each kernel's spectrum is read on the one 32 x 32 kernel grid (see :func:`kernel_amplitude`);
    the amplitude is averaged over output and input channels. Layers with a 1 x 1 kernel have a
    flat response and are included for completeness. The frozen patch-whitening layer of the
    ``cifar_fast`` nets (:class:`bandguard.models.PatchWhitening`) is no ``nn.Conv2d`` and is not
    analysed: its filters come from the data, not from training. The model is not changed.

    Args:
        model: any module; every ``nn.Conv2d`` inside it is analysed (kernels at most 32 x 32).

    Returns:
        :class:`KernelSpectrum`.
    """
    check_model(model)
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        kh, kw = module.weight.shape[-2:]
        if max(kh, kw) > KERNEL_GRID:
            raise ValueError(f"kernels must be at most {KERNEL_GRID} x {KERNEL_GRID}; layer {name!r} has {kh}x{kw}")
        amplitude = kernel_amplitude(module.weight.double())
        layers.append(
            LayerKernelSpectrum(
                name=name,
                kernel_shape=tuple(module.weight.shape),
                spectrum=amplitude.float().cpu(),
                radial=radial_profile(amplitude).float().cpu(),
                high_fraction=float(high_frequency_fraction(amplitude, HIGH_RADIUS)),
            )
        )
    if not layers:
        raise ValueError(f"model has no nn.Conv2d layer to analyse ({type(model).__name__})")
    return KernelSpectrum(layers=tuple(layers), size=KERNEL_GRID)
