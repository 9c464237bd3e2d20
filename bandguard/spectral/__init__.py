"""Spectral analysis of models, perturbations and corruptions (Yin et al. 1906.08988, Wang et al.
1905.13545, Xu et al. 1901.06523): Fourier heat maps, perturbation and corruption spectra, accuracy
on filtered images, kernel spectra, the frequency-principle monitor and their plots
(:mod:`bandguard.spectral.plots`, imported on demand since it loads matplotlib)."""

from __future__ import annotations

from bandguard.spectral.corruptions import (
    CORRUPTIONS,
    CorruptionResult,
    CorruptionSpectra,
    corrupt,
    corruption_spectrum,
)
from bandguard.spectral.filtered import FilteredAccuracy, filtered_accuracy
from bandguard.spectral.fprinciple import FPrincipleMonitor, FPrincipleResult
from bandguard.spectral.heatmap import HeatmapResult, fourier_heatmap, heatmap_signs
from bandguard.spectral.kernels import KernelSpectrum, kernel_spectrum
from bandguard.spectral.perturbation import (
    PerturbationSpectrum,
    SpectrumComparison,
    attack_spectrum,
    compare_attack_spectra,
    perturbation_spectrum,
)

__all__ = [
    "CORRUPTIONS",
    "CorruptionResult",
    "CorruptionSpectra",
    "FPrincipleMonitor",
    "FPrincipleResult",
    "FilteredAccuracy",
    "HeatmapResult",
    "KernelSpectrum",
    "PerturbationSpectrum",
    "SpectrumComparison",
    "attack_spectrum",
    "compare_attack_spectra",
    "corrupt",
    "corruption_spectrum",
    "filtered_accuracy",
    "fourier_heatmap",
    "heatmap_signs",
    "kernel_spectrum",
    "perturbation_spectrum",
]
