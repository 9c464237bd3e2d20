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

from bandguard._checks import check_int
from bandguard.fourier import high_frequency_fraction, radial_profile

__all__ = [
    "DEFAULT_KERNEL_FFT_SIZE",
    "KernelSpectrum",
    "LayerKernelSpectrum",
    "kernel_amplitude",
    "kernel_spectrum",
]

#: FFT size the kernels are zero-padded to. A 3 x 3 kernel has only a 3 x 3 DFT; padding samples its
#: continuous frequency response on a finer grid, so smoothing shows as a smooth fall-off.
DEFAULT_KERNEL_FFT_SIZE = 16


def kernel_amplitude(weight: torch.Tensor, size: int = DEFAULT_KERNEL_FFT_SIZE) -> torch.Tensor:
    """Mean centred ``|FFT|`` of conv kernels zero-padded to ``size x size``.

    Args:
        weight: conv weights ``[C_out, C_in, kh, kw]`` with ``kh, kw <= size``.
        size: FFT size.

    Returns:
        Tensor ``[size, size]``, zero frequency at ``(size // 2, size // 2)``, averaged over all
        ``C_out * C_in`` kernels.
    """
    spectrum = torch.fft.fft2(weight.detach(), s=(size, size)).abs()
    centred = torch.fft.fftshift(spectrum, dim=(-2, -1))
    return reduce(centred, "o i h w -> h w", "mean")


@dataclasses.dataclass(frozen=True)
class LayerKernelSpectrum:
    """One conv layer's kernel spectrum.

    Attributes:
        name: the module's name in ``model.named_modules()``.
        kernel_shape: ``(C_out, C_in, kh, kw)``.
        spectrum: ``[size, size]`` mean centred amplitude.
        radial: its azimuthal mean ``[R]``.
        high_fraction: share of the kernels' (mean-amplitude) energy at distance >= ``size / 4``.
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
    """:func:`kernel_spectrum` output: one entry per conv layer, in module order."""

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


def kernel_spectrum(model: nn.Module, *, size: int = DEFAULT_KERNEL_FFT_SIZE) -> KernelSpectrum:
    """Per ``nn.Conv2d`` layer, the mean centred ``|FFT|`` of its kernels (Wang et al. 1905.13545).

    Each kernel is zero-padded to ``size x size`` (default 16) before the FFT; the amplitude is
    averaged over output and input channels. Layers with a 1 x 1 kernel have a flat response and are
    included for completeness. The model is not changed.

    Args:
        model: any module; every ``nn.Conv2d`` inside it is analysed.
        size: FFT size, at least the largest kernel.

    Returns:
        :class:`KernelSpectrum`.
    """
    size = check_int(size, "size", minimum=1)
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        kh, kw = module.weight.shape[-2:]
        if max(kh, kw) > size:
            raise ValueError(f"size must be >= the kernel size {kh}x{kw} of layer {name!r}, got {size}")
        amplitude = kernel_amplitude(module.weight.double(), size)
        layers.append(
            LayerKernelSpectrum(
                name=name,
                kernel_shape=tuple(module.weight.shape),
                spectrum=amplitude.float().cpu(),
                radial=radial_profile(amplitude).float().cpu(),
                high_fraction=float(high_frequency_fraction(amplitude, size / 4)),
            )
        )
    if not layers:
        raise ValueError(f"model has no nn.Conv2d layer to analyse ({type(model).__name__})")
    return KernelSpectrum(layers=tuple(layers), size=size)
