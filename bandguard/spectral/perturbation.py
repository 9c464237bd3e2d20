"""Spectra of perturbations: where in frequency an attack (or any change) puts its energy.

Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision" (arXiv 1906.08988),
figures of ``E|F(delta)|``: adversarial perturbations of naturally trained models are spread to high
frequencies, those of adversarially trained models concentrate at low frequencies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from einops import reduce
from torch import nn

from bandguard._checks import (
    check_bounds,
    check_images,
    check_labels,
    check_model,
    check_names,
    check_nonnegative,
)
from bandguard.fourier import amplitude_spectrum, high_frequency_fraction, radial_profile

if TYPE_CHECKING:  # spectral code reads attack results by duck typing, it never imports attacks
    from bandguard.attacks.results import AttackResults

__all__ = [
    "PerturbationSpectrum",
    "SpectrumComparison",
    "attack_spectrum",
    "compare_attack_spectra",
    "default_radius",
    "perturbation_spectrum",
]

AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], "AttackResults"]


def default_radius(h: int, w: int) -> float:
    """Cut-off between low and high frequencies when none is given: ``min(h, w) / 4``.

    8 for 32 x 32 and 7 for 28 x 28: the disc of radius ``min(h, w) / 4`` holds the lowest
    ~20 % of the frequency positions (Wang et al. 1905.13545 use radii 4 to 16 on 32 x 32).

    Args:
        h: image height.
        w: image width.

    Returns:
        The radius in frequency-index units.
    """
    return min(h, w) / 4


@dataclasses.dataclass(frozen=True)
class PerturbationSpectrum:
    """Mean centred amplitude spectrum of a batch of perturbations.

    Attributes:
        per_channel: ``[C, H, W]`` mean ``|F(delta)|`` over the batch, per channel, centred.
        mean: ``[H, W]`` ``per_channel`` averaged over channels.
        radial: ``[R]`` azimuthal mean of ``mean`` (:func:`bandguard.fourier.radial_profile`).
        high_fraction: share of the perturbations' energy ``E|F(delta)|^2`` (all channels) at
            distance >= ``radius`` from the centre; by Parseval, the share of ``E||delta||^2``.
        radius: the cut-off used for ``high_fraction``.
        n: number of perturbations averaged.
        energy: ``[N]`` float64 energy ``sum |F(delta_n)|^2`` of each perturbation (all channels).
        high_energy: ``[N]`` the part of ``energy`` at distance >= ``radius``; ``high_fraction`` is
            ``high_energy.sum() / energy.sum()``. Per image, so intervals can resample the images
            (:func:`bandguard.bench.stats.bootstrap`).
    """

    per_channel: torch.Tensor
    mean: torch.Tensor
    radial: torch.Tensor
    high_fraction: float
    radius: float
    n: int
    energy: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0, dtype=torch.float64), repr=False)
    high_energy: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0, dtype=torch.float64),
                                                  repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists and numbers) for JSON."""
        return {
            "per_channel": self.per_channel.tolist(),
            "mean": self.mean.tolist(),
            "radial": self.radial.tolist(),
            "high_fraction": self.high_fraction,
            "radius": self.radius,
            "n": self.n,
        }


def _spectrum(delta: torch.Tensor, radius: float) -> PerturbationSpectrum:
    """Inner :func:`perturbation_spectrum` without checks; ``delta`` ``[N, C, H, W]``."""
    amplitude = amplitude_spectrum(delta.double())
    per_channel = reduce(amplitude, "n c h w -> c h w", "mean")
    mean = reduce(per_channel, "c h w -> h w", "mean")
    # Energy, not mean amplitude, so the fraction is the share of E||delta||^2 (Parseval).
    power = reduce(amplitude**2, "n c h w -> n h w", "sum")  # [N, H, W]
    energy = reduce(power, "n h w -> n", "sum")
    high_energy = energy * high_frequency_fraction(power.sqrt(), radius)
    return PerturbationSpectrum(
        per_channel=per_channel.float().cpu(),
        mean=mean.float().cpu(),
        radial=radial_profile(mean).float().cpu(),
        high_fraction=float(high_energy.sum() / energy.sum().clamp_min(torch.finfo(energy.dtype).tiny)),
        radius=radius,
        n=delta.shape[0],
        energy=energy.cpu(),
        high_energy=high_energy.cpu(),
    )


def perturbation_spectrum(delta: torch.Tensor, *, radius: float | None = None) -> PerturbationSpectrum:
    """Mean centred ``|F(delta)|`` of a batch of perturbations (Yin et al. 1906.08988).

    Args:
        delta: perturbations ``[N, C, H, W]`` (for example ``x_adv - x``), any finite values.
        radius: low/high cut-off for ``high_fraction``; default :func:`default_radius`.

    Returns:
        :class:`PerturbationSpectrum` (tensors on the CPU).
    """
    delta = check_images(delta, "delta", bounds=None)
    h, w = delta.shape[-2:]
    radius = default_radius(h, w) if radius is None else check_nonnegative(radius, "radius")
    return _spectrum(delta, radius)


def _adversarial(attack: AttackFn, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run ``attack`` (one eps) and take ``x_adv`` from its one result."""
    results = attack(model, x, y)
    if len(results) != 1:
        raise ValueError(f"attack must have one eps, got {len(results)} results (eps {results.epsilons})")
    x_adv = results[0].x_adv
    if x_adv.shape != x.shape:
        raise ValueError(f"attack returned x_adv of shape {tuple(x_adv.shape)}, expected {tuple(x.shape)}")
    return x_adv.detach()


def attack_spectrum(
    model: nn.Module,
    attack: AttackFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    radius: float | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> PerturbationSpectrum:
    """Spectrum of the perturbations ``attack`` finds against ``model`` (Yin et al. 1906.08988).

    Args:
        model: the classifier attacked.
        attack: a bandguard attack with one eps (any callable ``(model, x, y)`` returning
            :class:`~bandguard.attacks.AttackResults` of length one).
        x: images ``[N, C, H, W]`` in ``bounds``.
        y: labels ``[N]`` int64.
        radius: low/high cut-off for ``high_fraction``; default :func:`default_radius`.
        bounds: the model's pixel bounds.

    Returns:
        :class:`PerturbationSpectrum` of ``x_adv - x``.
    """
    check_model(model)
    if not callable(attack):
        raise TypeError(f"attack must be callable as attack(model, x, y), got {type(attack).__name__} {attack!r}")
    bounds = check_bounds(bounds)
    x = check_images(x, "x", bounds=bounds)
    y = check_labels(y, x)
    h, w = x.shape[-2:]
    radius = default_radius(h, w) if radius is None else check_nonnegative(radius, "radius")
    return _spectrum(_adversarial(attack, model, x, y) - x, radius)


@dataclasses.dataclass(frozen=True)
class SpectrumComparison:
    """Attack spectra of several models on the same images, in the order given.

    Attributes:
        names: one label per model (for example ``("natural", "adversarial")``).
        spectra: one :class:`PerturbationSpectrum` per model.
    """

    names: tuple[str, ...]
    spectra: tuple[PerturbationSpectrum, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.spectra):
            raise ValueError(f"got {len(self.names)} names for {len(self.spectra)} spectra")

    def __getitem__(self, name: str) -> PerturbationSpectrum:
        return self.spectra[self.names.index(name)]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form, keyed by name."""
        return {name: s.to_dict() for name, s in zip(self.names, self.spectra)}


def compare_attack_spectra(
    models: Sequence[nn.Module],
    attack: AttackFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    names: Sequence[str] = ("natural", "adversarial"),
    radius: float | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> SpectrumComparison:
    """Attack each model on the same images and return their perturbation spectra side by side.

    Yin et al. (1906.08988) compare a naturally and an adversarially trained model this way; plot
    the result with :func:`bandguard.spectral.plots.plot_spectra`.

    Args:
        models: the classifiers, typically ``(natural, adversarially_trained)``.
        attack: callable ``(model, x, y)`` as in :func:`attack_spectrum`.
        x: images ``[N, C, H, W]`` in ``bounds``, the same for every model.
        y: labels ``[N]`` int64.
        names: one label per model.
        radius: low/high cut-off for ``high_fraction``; default :func:`default_radius`.
        bounds: the models' pixel bounds.

    Returns:
        :class:`SpectrumComparison`.
    """
    models, names = list(models), check_names(names, "names")
    if len(models) != len(names):
        raise ValueError(f"got {len(models)} models but {len(names)} names {names!r}")
    spectra = tuple(
        attack_spectrum(m, attack, x, y, radius=radius, bounds=bounds) for m in models
    )
    return SpectrumComparison(names=names, spectra=spectra)
