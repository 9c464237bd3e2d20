"""Common corruptions, batched in torch, and their Fourier spectra.

The families and severities follow Hendrycks & Dietterich, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations" (arXiv 1903.12261), with their CIFAR-10-C parameters as the
guide, re-implemented as batched tensor ops for images in [0, 1] of any size: spatial parameters
(blur sigma) are scaled by ``min(H, W) / 32`` so a 32 x 32 image gets the CIFAR-10-C values, and fog
is synthesised spectrally (1/f noise with the plasma fractal's decay) rather than by diamond-square.
Yin et al. (arXiv 1906.08988) plot ``E|F(C(X) - X)|`` per corruption next to the model's accuracy
under it: :func:`corruption_spectrum` does both.

Every corruption is a function ``(x [N, C, H, W], severity 1..5, generator) -> x`` in the
:data:`CORRUPTIONS` registry; :func:`corrupt` validates, calls it and clips to [0, 1].
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from bandguard._checks import check_images, check_int, check_labels, check_nonnegative
from bandguard._modes import model_mode
from bandguard._registry import Registry
from bandguard.spectral.perturbation import PerturbationSpectrum, _spectrum, default_radius

__all__ = [
    "CORRUPTIONS",
    "CorruptionResult",
    "CorruptionSpectra",
    "corrupt",
    "corruption_spectrum",
]

CorruptionFn = Callable[[torch.Tensor, int, "torch.Generator | None"], torch.Tensor]

#: Registry of corruption functions ``(x, severity, generator) -> x`` by name.
CORRUPTIONS: Registry[CorruptionFn] = Registry("corruption")

SEVERITIES = (1, 2, 3, 4, 5)


def _param(table: Sequence[Any], severity: int) -> Any:
    return table[severity - 1]


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _randn(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, then moved to ``like``'s."""
    noise = torch.randn(*shape, generator=generator, device=_gen_device(generator), dtype=like.dtype)
    return noise.to(like.device)


def _rand(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    noise = torch.rand(*shape, generator=generator, device=_gen_device(generator), dtype=like.dtype)
    return noise.to(like.device)


# --------------------------------------------------------------------------- noise


@CORRUPTIONS.register("gaussian_noise")
def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Additive N(0, sigma^2) per pixel and channel; sigma 0.04 .. 0.10 (CIFAR-10-C)."""
    sigma = _param((0.04, 0.06, 0.08, 0.09, 0.10), severity)
    return x + sigma * _randn(x.shape, x, generator)


@CORRUPTIONS.register("shot_noise")
def shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Poisson photon noise ``Poisson(x * lam) / lam``; lam 500 .. 50 (CIFAR-10-C)."""
    lam = _param((500.0, 250.0, 100.0, 75.0, 50.0), severity)
    rate = (x * lam).to(_gen_device(generator))
    return torch.poisson(rate, generator=generator).to(x.device) / lam


@CORRUPTIONS.register("impulse_noise")
def impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Salt and pepper: each value becomes 0 or 1 (equally likely) with probability 0.01 .. 0.07."""
    amount = _param((0.01, 0.02, 0.03, 0.05, 0.07), severity)
    hit = _rand(x.shape, x, generator) < amount
    salt = _rand(x.shape, x, generator) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


# --------------------------------------------------------------------------- blur and digital


def _gaussian_kernel(sigma: float, like: torch.Tensor) -> torch.Tensor:
    """1-D Gaussian taps truncated at 4 sigma (as scikit-image), summing to one."""
    radius = max(1, math.ceil(4 * sigma))
    t = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    taps = torch.exp(-(t**2) / (2 * sigma**2))
    return taps / taps.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel, reflect borders."""
    n, c, h, w = x.shape
    taps = _gaussian_kernel(sigma, x)
    r = (taps.numel() - 1) // 2
    planes = rearrange(x, "n c h w -> (n c) 1 h w")
    # Reflect padding needs pad < size; replicate covers tiny images.
    mode = "reflect" if r < min(h, w) else "replicate"
    planes = F.conv2d(F.pad(planes, (r, r, 0, 0), mode=mode), taps.view(1, 1, 1, -1))
    planes = F.conv2d(F.pad(planes, (0, 0, r, r), mode=mode), taps.view(1, 1, -1, 1))
    return rearrange(planes, "(n c) 1 h w -> n c h w", n=n, c=c)


@CORRUPTIONS.register("gaussian_blur")
def gaussian_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian blur, sigma 0.4 .. 1.0 pixels at 32 x 32 (CIFAR-10-C), scaled with the image size."""
    sigma = _param((0.4, 0.6, 0.7, 0.8, 1.0), severity) * min(x.shape[-2:]) / 32
    return _blur(x, sigma)


@CORRUPTIONS.register("contrast")
def contrast(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Pull each channel towards its spatial mean: ``(x - m) * c + m``, c 0.75 .. 0.15."""
    c = _param((0.75, 0.5, 0.4, 0.3, 0.15), severity)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean) * c + mean


@CORRUPTIONS.register("brightness")
def brightness(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Add 0.05 .. 0.3 to the HSV value channel (clipped), keeping hue and saturation.

    With ``V = max_c x`` and hue and saturation fixed, RGB scales with ``V``, so the HSV round trip
    reduces to ``x * V' / V`` (and ``V'`` on every channel where ``V = 0``); a single channel simply
    gets ``x + c``.
    """
    c = _param((0.05, 0.1, 0.15, 0.2, 0.3), severity)
    value = x.amax(dim=1, keepdim=True)
    brighter = (value + c).clamp(0.0, 1.0)
    scaled = x * brighter / value.clamp_min(1e-12)
    return torch.where(value > 0, scaled, brighter.expand_as(x))


def _fog_noise(n: int, h: int, w: int, decay: float, like: torch.Tensor,
               generator: torch.Generator | None) -> torch.Tensor:
    """Low-frequency 1/f^beta noise ``[n, 1, h, w]`` scaled to [0, 1] per image.

    The plasma fractal of CIFAR-10-C halves its wavelength while dividing the amplitude by
    ``decay``, i.e. an amplitude spectrum ``~ f^-log2(decay)``; synthesising that spectrum with
    random phases gives the same statistics on any image size.
    """
    beta = math.log2(decay)
    fy = torch.fft.fftfreq(h, device=like.device, dtype=like.dtype) * h
    fx = torch.fft.fftfreq(w, device=like.device, dtype=like.dtype) * w
    f = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    amplitude = torch.where(f > 0, f.clamp_min(1e-12) ** -beta, torch.zeros_like(f))
    re = _randn((n, 1, h, w), like, generator)
    im = _randn((n, 1, h, w), like, generator)
    noise = torch.fft.ifft2(torch.complex(re, im) * amplitude).real
    lo = noise.amin(dim=(-2, -1), keepdim=True)
    hi = noise.amax(dim=(-2, -1), keepdim=True)
    return (noise - lo) / (hi - lo).clamp_min(1e-12)


@CORRUPTIONS.register("fog")
def fog(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Add grey low-frequency noise of strength 0.2 .. 1.5, then rescale by ``max / (max + s)``."""
    strength, decay = _param(((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)), severity)
    n, _, h, w = x.shape
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    foggy = x + strength * _fog_noise(n, h, w, decay, x, generator)
    return foggy * top / (top + strength)


@CORRUPTIONS.register("jpeg")
def jpeg(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """JPEG round trip at quality 80 .. 40 (torchvision.io, batched over a list; 1 or 3 channels)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    if x.shape[1] not in (1, 3):
        raise ValueError(f"jpeg needs 1 or 3 channels, got {x.shape[1]}")
    quality = _param((80, 65, 58, 50, 40), severity)
    pixels = (x.detach() * 255).round().clamp(0, 255).to(torch.uint8).cpu()
    with warnings.catch_warnings():
        # torchvision >= 0.29 flags its image codecs as deprecated; they are what the issue asks for
        warnings.simplefilter("ignore", DeprecationWarning)
        encoded = encode_jpeg(list(pixels.unbind(0)), quality=quality)
        decoded = torch.stack(decode_jpeg(encoded))
    return decoded.to(device=x.device, dtype=x.dtype) / 255


@CORRUPTIONS.register("pixelate")
def pixelate(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Box-downsample to 0.95 .. 0.65 of the size, then nearest-upsample back."""
    factor = _param((0.95, 0.9, 0.85, 0.75, 0.65), severity)
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * factor)), max(1, int(w * factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


# --------------------------------------------------------------------------- entry points


def corrupt(
    x: torch.Tensor, name: str, severity: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (Hendrycks & Dietterich 1903.12261).

    Args:
        x: images ``[N, C, H, W]`` in [0, 1].
        name: one of ``CORRUPTIONS.names()``: gaussian_noise, shot_noise, impulse_noise,
            gaussian_blur, contrast, brightness, fog, jpeg, pixelate.
        severity: 1 (mild) to 5 (strong).
        generator: randomness for the noise families.

    Returns:
        Tensor ``[N, C, H, W]`` in [0, 1], dtype and device of ``x``.
    """
    x = check_images(x, "x", bounds=(0.0, 1.0))
    fn = CORRUPTIONS.get(name)
    check_int(severity, "severity", minimum=1)
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    return fn(x, severity, generator).clamp(0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class CorruptionResult:
    """One corruption's spectrum and the model's accuracy under it.

    Attributes:
        name: the corruption.
        severity: 1 .. 5.
        spectrum: :class:`PerturbationSpectrum` of ``C(x) - x``; its ``mean`` is ``E|F(C(X) - X)|``.
        accuracy: the model's top-1 accuracy on ``C(x)``.
    """

    name: str
    severity: int
    spectrum: PerturbationSpectrum
    accuracy: float

    @property
    def high_fraction(self) -> float:
        """Share of the corruption's energy at high frequencies (see the spectrum's radius)."""
        return self.spectrum.high_fraction

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON."""
        return {
            "name": self.name,
            "severity": self.severity,
            "accuracy": self.accuracy,
            "high_fraction": self.high_fraction,
            "spectrum": self.spectrum.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class CorruptionSpectra:
    """:func:`corruption_spectrum` output: one :class:`CorruptionResult` per corruption."""

    results: tuple[CorruptionResult, ...]
    clean_accuracy: float
    n: int

    def __getitem__(self, name: str) -> CorruptionResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON."""
        return {
            "clean_accuracy": self.clean_accuracy,
            "n": self.n,
            "results": [r.to_dict() for r in self.results],
        }


def corruption_spectrum(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    names: Sequence[str] | None = None,
    *,
    severity: int = 3,
    generator: torch.Generator | None = None,
    radius: float | None = None,
    batch_size: int = 1024,
) -> CorruptionSpectra:
    """``E|F(C(X) - X)|``, its high-frequency energy share and the accuracy per corruption.

    Yin et al. (arXiv 1906.08988), Figure 4: corruptions whose energy sits at high frequencies
    (noise, pixelate, JPEG) versus low frequencies (fog, contrast).

    Args:
        model: classifier on ``[B, C, H, W]`` in [0, 1].
        x: images ``[N, C, H, W]`` in [0, 1]; y: labels ``[N]`` int64.
        names: corruptions to run; default every registered one.
        severity: 1 .. 5.
        generator: randomness for the noise families.
        radius: low/high cut-off for the energy share; default ``min(H, W) / 4``.
        batch_size: images per forward.

    Returns:
        :class:`CorruptionSpectra`.
    """
    x = check_images(x, "x", bounds=(0.0, 1.0))
    y = check_labels(y, x).to(x.device)
    names = CORRUPTIONS.names() if names is None else list(names)
    for name in names:
        CORRUPTIONS.get(name)  # unknown names fail before any work
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    h, w = x.shape[-2:]
    radius = default_radius(h, w) if radius is None else check_nonnegative(radius, "radius")

    with model_mode(model):
        with torch.inference_mode():

            def accuracy(images: torch.Tensor) -> float:
                hits = sum(
                    int((model(chunk).argmax(dim=1) == labels).sum())
                    for chunk, labels in zip(images.split(batch_size), y.split(batch_size))
                )
                return hits / images.shape[0]

            clean = accuracy(x)
            results = []
            for name in names:
                corrupted = corrupt(x, name, severity, generator=generator)
                results.append(
                    CorruptionResult(
                        name=name,
                        severity=severity,
                        spectrum=_spectrum(corrupted - x, radius),
                        accuracy=accuracy(corrupted),
                    )
                )
    return CorruptionSpectra(results=tuple(results), clean_accuracy=clean, n=x.shape[0])
