"""Common corruptions (Hendrycks & Dietterich, arXiv 1903.12261) and their Fourier spectra.

Nineteen families, each from one of two sources (:class:`Source`):

- ``cifar10c``: batched torch transcriptions of the authors' ``make_cifar_c.py`` (repository
  hendrycks/robustness), with its CIFAR-10-C parameters per severity, its border handling and its
  8-bit output (the authors save ``np.uint8`` of values in [0, 255], which truncates). Fourteen
  families: gaussian_noise, shot_noise, impulse_noise, speckle_noise, gaussian_blur, glass_blur,
  defocus_blur, zoom_blur, contrast, brightness, saturate, fog, jpeg_compression, pixelate. An image drawn from
  CIFAR-10 and corrupted here equals the authors' file up to the random draws (the same draws give
  the same bytes; the tests pin this). The parameters are in pixels of a 32 x 32 image and are
  used as they are on other sizes. They compute in float64 as the reference does (zoom_blur in
  float32, as the reference), on the input snapped to the 8-bit grid where it is within 1e-3 of a
  level, so a float32 and a float64 copy of an image give the same bytes for the same generator.
  Not built in: motion_blur and snow (ImageMagick's motion blur), frost (photographs shipped with
  the reference), spatter and elastic_transform (OpenCV pipelines).
- ``imagecorruptions``: all nineteen families through the ``imagecorruptions-imaug`` package
  (the maintained fork of bethgelab's ``imagecorruptions``; ``pip install 'bandguard[corruptions]'``),
  which uses the ImageNet-C parameters and takes any image of at least 32 x 32. It runs one image
  at a time in numpy on the CPU, with a progress bar over images. ``glass_blur`` is the slow one:
  its pixel shuffle is compiled by numba on the first call (seconds), then takes about 0.2 s per
  224 x 224 image (2 ms at 32 x 32) on one core; without numba, as in the original package, it
  takes seconds per image.

Yin et al. (arXiv 1906.08988) plot ``E|F(C(X) - X)|`` per corruption next to the model's accuracy
under it: :func:`corruption_spectrum` does both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import inspect
import math
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from bandguard._checks import (
    check_bool,
    check_enum,
    check_generator,
    check_images,
    check_int,
    check_labels,
    check_model_input,
    check_model_output,
    check_names,
    check_nonnegative,
)
from bandguard._modes import model_mode
from bandguard._registry import Registry
from bandguard.spectral.perturbation import PerturbationSpectrum, default_radius, perturbation_spectrum

__all__ = [
    "CORRUPTIONS",
    "CorruptionFamily",
    "CorruptionResult",
    "CorruptionSpectra",
    "Source",
    "corrupt",
    "corruption_spectrum",
]

CorruptionFn = Callable[[torch.Tensor, int, "torch.Generator | None"], torch.Tensor]

SEVERITIES = (1, 2, 3, 4, 5)

#: The nineteen families in the order of ``imagecorruptions.get_corruption_names("all")``: the
#: fifteen of the benchmark, then the four held out for validation.
FAMILIES = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate",
)

EXTRA_HINT = "pip install 'bandguard[corruptions]' (the imagecorruptions-imaug package)"


class Source(str, enum.Enum):
    """Where a corruption's formula and parameters come from."""

    #: batched torch transcription of ``make_cifar_c.py`` with the CIFAR-10-C parameters
    CIFAR10C = "cifar10c"
    #: the ``imagecorruptions-imaug`` package with the ImageNet-C parameters (optional extra)
    IMAGECORRUPTIONS = "imagecorruptions"


@dataclasses.dataclass(frozen=True)
class CorruptionFamily:
    """One corruption family and the sources that offer it.

    Attributes:
        name: the family, as ``make_cifar_c.py`` and ``imagecorruptions`` name it.
        cifar10c: the built-in batched torch function ``(x, severity, generator) -> x`` following
            ``make_cifar_c.py`` before clipping and quantisation, or ``None`` where only the
            package offers the family.
    """

    name: str
    cifar10c: CorruptionFn | None

    @property
    def sources(self) -> tuple[Source, ...]:
        """The sources offering this family, the default (built-in where there is one) first."""
        if self.cifar10c is None:
            return (Source.IMAGECORRUPTIONS,)
        return (Source.CIFAR10C, Source.IMAGECORRUPTIONS)

    @property
    def default_source(self) -> Source:
        """The source :func:`corrupt` uses when none is named."""
        return self.sources[0]


def _param(table: Sequence[Any], severity: int) -> Any:
    return table[severity - 1]


def _draw(sample: Callable[..., torch.Tensor], shape: Sequence[int], like: torch.Tensor,
          generator: torch.Generator | None) -> torch.Tensor:
    """Draw on the generator's device (the only one it can feed), then move to ``like``'s."""
    device = generator.device if generator is not None else torch.device("cpu")
    return sample(*shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _snap_to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Values within 1e-3 of a level of the 8-bit grid ``k / 255`` become ``k / 255`` exactly.

    The built-in families compute in float64, as the reference does on ``uint8 / 255.``; a float32
    copy of an 8-bit image is off its levels by ~1e-5 of a level, which is enough to move results
    that sit on a level (a disk blur averaging a few pixels, say) to the level below.
    """
    levels = (x * 255).round()
    return torch.where((x * 255 - levels).abs() < 1e-3, levels / 255, x)


def _to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and quantise as ``make_cifar_c.py`` saves: ``np.uint8(clip(x) * 255) / 255``.

    ``np.uint8`` truncates. A value a few rounding errors below a level is lifted to it first, so
    an unchanged pixel cannot drop one level by rounding alone.
    """
    tol = 255 * 4 * torch.finfo(x.dtype).eps
    return torch.floor(x.clamp(0.0, 1.0) * 255 + tol).clamp(0, 255) / 255


# --------------------------------------------------------------------------- noise


def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """``x + N(0, c^2)`` per pixel and channel, c 0.04 .. 0.10."""
    c = _param((0.04, 0.06, 0.08, 0.09, 0.10), severity)
    return x + c * _draw(torch.randn, x.shape, x, generator)


def shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Photon noise ``Poisson(x * c) / c``, c 500 .. 50."""
    c = _param((500.0, 250.0, 100.0, 75.0, 50.0), severity)
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.poisson((x * c).to(device), generator=generator).to(x.device) / c


def speckle_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Multiplicative noise ``x + x * N(0, c^2)``, c 0.06 .. 0.2."""
    c = _param((0.06, 0.1, 0.12, 0.16, 0.2), severity)
    return x + x * (c * _draw(torch.randn, x.shape, x, generator))


def impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Salt and pepper as scikit-image's ``random_noise(mode="s&p")``: a value is hit with
    probability c (0.01 .. 0.07) and becomes 1 or 0 with equal odds; first draw ``u1 <= c``
    (hit), then ``u2 <= 0.5`` (salt), both over the whole tensor."""
    c = _param((0.01, 0.02, 0.03, 0.05, 0.07), severity)
    hit = _draw(torch.rand, x.shape, x, generator) <= c
    salt = _draw(torch.rand, x.shape, x, generator) <= 0.5
    return torch.where(hit, salt.to(x.dtype), x)


# --------------------------------------------------------------------------- blur and digital


def _gaussian_filter(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``skimage.filters.gaussian`` per channel: scipy's separable kernel of radius
    ``int(4 sigma + 0.5)`` with ``nearest`` (replicate) borders."""
    radius = int(4 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    taps = torch.exp(-0.5 * t**2 / sigma**2)
    taps = taps / taps.sum()
    n, c = x.shape[:2]
    planes = rearrange(x, "n c h w -> (n c) 1 h w")
    planes = torch.nn.functional.pad(planes, (radius, radius, radius, radius), mode="replicate")
    # scipy filters axis 0 (rows, H) first, then axis 1 (W)
    planes = torch.nn.functional.conv2d(planes, taps.view(1, 1, -1, 1))
    planes = torch.nn.functional.conv2d(planes, taps.view(1, 1, 1, -1))
    return rearrange(planes, "(n c) 1 h w -> n c h w", n=n, c=c)


def gaussian_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """``skimage.filters.gaussian`` with sigma 0.4 .. 1.0 px, ``nearest`` borders, channels apart."""
    return _gaussian_filter(x, _param((0.4, 0.6, 0.7, 0.8, 1.0), severity))


def glass_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian blur, 8-bit truncation, local pixel shuffle, Gaussian blur again.

    (sigma, max_delta, iterations) = (0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2),
    (0.4, 1, 2). The shuffle visits rows and columns from ``size - max_delta`` down to
    ``max_delta + 1`` and draws ``(dx, dy)`` in ``[-max_delta, max_delta)`` per pixel (numpy's
    ``randint`` excludes the top). The reference's "swap" ``x[h, w], x[h', w'] = x[h', w'], x[h, w]``
    acts on numpy views and so only copies ``x[h', w']`` into ``x[h, w]``; this does the same.
    Each visit depends on the previous ones, so the visits run in order, batched over images.
    """
    sigma, delta, iterations = _param(
        ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)), severity
    )
    n, _, h, w = x.shape
    pixels = _to_8bit(_gaussian_filter(x, sigma))
    rows = torch.arange(h - delta, delta, -1, device=x.device)
    cols = torch.arange(w - delta, delta, -1, device=x.device)
    if len(rows) and len(cols):
        device = generator.device if generator is not None else torch.device("cpu")
        shape = (n, iterations, len(rows), len(cols), 2)
        offsets = torch.randint(-delta, delta, shape, generator=generator, device=device).to(x.device)
        target = (rows[:, None] * w + cols[None, :]).expand(iterations, -1, -1).reshape(-1)
        source = ((rows[None, :, None] + offsets[..., 1]) * w + cols[None, None, :] + offsets[..., 0])
        source = rearrange(source, "n i r q -> n (i r q)")
        flat = rearrange(pixels, "n c h w -> n c (h w)").clone()
        batch = torch.arange(n, device=x.device)
        for k in range(target.numel()):
            flat[batch, :, target[k]] = flat[batch, :, source[:, k]]
        pixels = rearrange(flat, "n c (h w) -> n c h w", h=h)
    return _gaussian_filter(pixels, sigma)


def contrast(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Pull each channel towards its spatial mean: ``(x - m) * c + m``, c 0.75 .. 0.15."""
    c = _param((0.75, 0.5, 0.4, 0.3, 0.15), severity)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean) * c + mean


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """scikit-image's ``rgb2hsv`` on ``[N, 3, H, W]``: hue, saturation, value along dim 1.

    Where two channels tie for the maximum, blue's formula wins over green's over red's, as in
    scikit-image's assignment order; grey pixels get hue and saturation 0.
    """
    r, g, b = x.unbind(1)
    value = x.amax(dim=1)
    delta = value - x.amin(dim=1)
    grey = delta == 0
    safe = torch.where(grey, torch.ones_like(delta), delta)
    saturation = torch.where(grey, torch.zeros_like(delta), delta / torch.where(grey, torch.ones_like(value), value))
    hue = torch.where(r == value, (g - b) / safe, torch.zeros_like(value))
    hue = torch.where(g == value, 2.0 + (b - r) / safe, hue)
    hue = torch.where(b == value, 4.0 + (r - g) / safe, hue)
    hue = torch.where(grey, torch.zeros_like(hue), torch.remainder(hue / 6.0, 1.0))
    return torch.stack([hue, saturation, value], dim=1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """scikit-image's ``hsv2rgb`` on ``[N, 3, H, W]`` (hue in [0, 1])."""
    hue, sat, value = hsv.unbind(1)
    sector = torch.floor(hue * 6)
    f = hue * 6 - sector
    p = value * (1 - sat)
    q = value * (1 - f * sat)
    t = value * (1 - (1 - f) * sat)
    table = torch.stack([
        torch.stack(rgb, dim=1)
        for rgb in ((value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q))
    ])  # [6, N, 3, H, W]
    index = torch.remainder(sector, 6).long()
    return table.gather(0, index[None, :, None].expand(1, -1, 3, -1, -1)).squeeze(0)


def _on_hsv(x: torch.Tensor, channel: int, change: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Change one HSV channel of RGB images; grey images go through as grey RGB, first channel kept."""
    if x.shape[1] not in (1, 3):
        raise ValueError(f"HSV corruptions need 1 or 3 channels, got {x.shape[1]}")
    rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    hsv = _rgb_to_hsv(rgb)
    hsv = torch.cat([hsv[:, :channel], change(hsv[:, channel:channel + 1]), hsv[:, channel + 1:]], dim=1)
    return _hsv_to_rgb(hsv)[:, : x.shape[1]]


def brightness(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Add c (0.05 .. 0.3) to the HSV value, clipped to 1 (scikit-image's HSV round trip).

    One channel gets ``clip(x + c)``, as ``imagecorruptions`` does for grey images (the same as
    the round trip of a grey RGB image).
    """
    c = _param((0.05, 0.1, 0.15, 0.2, 0.3), severity)
    if x.shape[1] == 1:
        return (x + c).clamp(0.0, 1.0)
    return _on_hsv(x, 2, lambda value: (value + c).clamp(0.0, 1.0))


def saturate(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """HSV saturation ``clip(s * a + b)``, (a, b) = (0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)."""
    a, b = _param(((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)), severity)
    return _on_hsv(x, 1, lambda sat: (sat * a + b).clamp(0.0, 1.0))


def _zoom_centre(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``clipped_zoom`` of ``make_cifar_c.py``, per axis: crop the centre ``ceil(size / factor)``,
    zoom it by ``factor`` as ``scipy.ndimage.zoom(order=1)`` (linear, corners on corners) and cut
    the centre ``size`` back out."""
    h, w = x.shape[-2:]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top:top + ch, left:left + cw]
    oh, ow = round(ch * factor), round(cw * factor)  # scipy's output shape
    if (oh, ow) != (ch, cw):
        crop = torch.nn.functional.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=True)
    trim_top, trim_left = (oh - h) // 2, (ow - w) // 2
    return crop[..., trim_top:trim_top + h, trim_left:trim_left + w]


def zoom_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Mean of the image and its centre zooms by 1, 1.01, .. up to 1.05 .. 1.25 (``np.arange``
    steps of 0.01), in float32 as the reference computes it."""
    stop = _param((1.06, 1.11, 1.16, 1.21, 1.26), severity)
    factors = np.arange(1, stop, 0.01).tolist()  # the reference's float steps, e.g. 1.0499999999999998
    img = x.float()
    out = torch.zeros_like(img)
    for factor in factors:  # a few zoom factors, each batched over every image
        out += _zoom_centre(img, factor)
    return ((img + out) / (len(factors) + 1)).to(x.dtype)


def _disk_kernel(radius: float, alias_blur: float, like: torch.Tensor) -> torch.Tensor:
    """``disk`` of ``make_cifar_c.py``: the normalised 17 x 17 disk ``X^2 + Y^2 <= r^2`` (float32)
    smoothed by OpenCV's 3 x 3 ``GaussianBlur`` of sigma ``alias_blur`` with reflect-101 borders,
    cropped to its non-zero support (the rest adds exact zeros)."""
    grid = torch.arange(-8, 9, dtype=torch.float32)
    disk = ((grid[None, :] ** 2 + grid[:, None] ** 2) <= radius**2).float()
    disk = disk / disk.sum()
    # OpenCV's getGaussianKernel: double exp, rounded to float32, normalised
    taps = torch.exp(-0.5 * torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64) / alias_blur**2).float()
    taps = (taps.double() * (1.0 / taps.double().sum())).float()
    padded = torch.nn.functional.pad(disk[None, None], (1, 1, 1, 1), mode="reflect")
    kernel = torch.nn.functional.conv2d(padded, taps.view(1, 1, 1, 3))
    kernel = torch.nn.functional.conv2d(kernel, taps.view(1, 1, 3, 1))[0, 0]
    support = int((kernel != 0).nonzero().sub(8).abs().max())
    return kernel[8 - support:9 + support, 8 - support:9 + support].to(device=like.device, dtype=like.dtype)


def defocus_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Correlate every channel with an anti-aliased disk (OpenCV ``filter2D``, reflect-101 borders);
    (radius, alias sigma) = (0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)."""
    radius, alias_blur = _param(((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)), severity)
    kernel = _disk_kernel(radius, alias_blur, x)
    r = (kernel.shape[-1] - 1) // 2
    if min(x.shape[-2:]) <= r:
        raise ValueError(f"defocus_blur needs images larger than {r} x {r}, got {tuple(x.shape[-2:])}")
    n, c = x.shape[:2]
    planes = rearrange(x, "n c h w -> (n c) 1 h w")
    planes = torch.nn.functional.pad(planes, (r, r, r, r), mode="reflect")
    planes = torch.nn.functional.conv2d(planes, kernel[None, None])
    return rearrange(planes, "(n c) 1 h w -> n c h w", n=n, c=c)


def _plasma_fractal(
    n: int, mapsize: int, decay: float, *, generator: torch.Generator | None = None,
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``n`` diamond-square height maps ``[n, mapsize, mapsize]`` in [0, 1], batched.

    The ``plasma_fractal`` of ``make_cifar_c.py``: the grid starts at 0, each halving of the step
    fills square centres then diamond points with the mean of their four neighbours (wrapping
    around) plus ``wibble * U(-wibble, wibble)``, and ``wibble`` starts at 100 and is divided by
    ``decay`` per halving; the map is finally scaled to [0, 1]. Random draws come in the
    reference's order, one ``[n, ...]`` tensor per call of its ``wibbledmean``.

    Args:
        n: number of maps.
        mapsize: side, a power of two >= 2.
        decay: ``wibbledecay`` (1.75 .. 3 in CIFAR-10-C's fog).
        generator: randomness; device and dtype of the maps.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    maps = torch.zeros(n, mapsize, mapsize, device=gen_device, dtype=dtype)
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        u = torch.rand(total.shape, generator=generator, device=gen_device, dtype=dtype)
        return total / 4 + wibble * (2 * wibble * u - wibble)

    while step >= 2:
        half = step // 2
        corners = maps[:, ::step, ::step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        maps[:, half::step, half::step] = wibbled_mean(squares)
        centres = maps[:, half::step, half::step]
        corners = maps[:, ::step, ::step]
        # summed in the reference's order, so float64 maps match it bit for bit
        left = (centres + centres.roll(1, dims=1)) + (corners + corners.roll(-1, dims=2))
        maps[:, ::step, half::step] = wibbled_mean(left)
        top = (centres + centres.roll(1, dims=2)) + (corners + corners.roll(-1, dims=1))
        maps[:, half::step, ::step] = wibbled_mean(top)
        step, wibble = half, wibble / decay
    maps = maps - maps.amin(dim=(1, 2), keepdim=True)
    maps = maps / maps.amax(dim=(1, 2), keepdim=True)
    return maps.to(device) if device is not None else maps


def fog(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """Add ``c * plasma_fractal(decay)`` to every channel, then scale by ``max / (max + c)``.

    (c, decay) = (0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75); ``max`` is the image's
    maximum over all channels. The fractal is 32 x 32 as in CIFAR-10-C, cropped to smaller
    images; larger images get one of the next power of two, cropped.
    """
    c, decay = _param(((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)), severity)
    n, _, h, w = x.shape
    mapsize = max(32, 1 << (max(h, w) - 1).bit_length())
    fractal = _plasma_fractal(n, mapsize, decay, generator=generator, dtype=x.dtype).to(x.device)
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    foggy = x + c * rearrange(fractal[:, :h, :w], "n h w -> n 1 h w")
    return foggy * top / (top + c)


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """8-bit pixel values (float, integral) of images in [0, 1]; exact on 8-bit inputs."""
    return (x.detach() * 255).round().clamp(0, 255)


def jpeg_compression(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """JPEG round trip at quality 80 .. 40 of the 8-bit image (libjpeg through torchvision.io,
    the same bytes as PIL's ``save(..., "JPEG", quality=q)``); 1 or 3 channels."""
    from torchvision.io import decode_jpeg, encode_jpeg

    if x.shape[1] not in (1, 3):
        raise ValueError(f"jpeg_compression needs 1 or 3 channels, got {x.shape[1]}")
    quality = _param((80, 65, 58, 50, 40), severity)
    pixels = _pixels(x).to(torch.uint8).cpu()
    with warnings.catch_warnings():
        # torchvision >= 0.29 flags its image codecs as deprecated; they are libjpeg, as PIL
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = torch.stack(decode_jpeg(encode_jpeg(list(pixels.unbind(0)), quality=quality)))
    return decoded.to(device=x.device, dtype=x.dtype) / 255


# Pillow resamples 8-bit images in fixed point with this many fractional bits (Resample.c).
_PRECISION_BITS = 22


def _box_coefficients(in_size: int, out_size: int, like: torch.Tensor) -> torch.Tensor:
    """Pillow's integer BOX-filter coefficients ``[out_size, in_size]`` (``precompute_coeffs``
    then ``normalize_coeffs_8bpc``), as float64 integers."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    centre = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    first = (centre - support + 0.5).trunc().clamp_min(0)
    stop = (centre + support + 0.5).trunc().clamp_max(in_size)
    pos = torch.arange(in_size, dtype=torch.float64)
    arg = (pos[None, :] - centre[:, None] + 0.5) * (1.0 / filterscale)
    inside = (pos[None, :] >= first[:, None]) & (pos[None, :] < stop[:, None])
    weight = ((arg > -0.5) & (arg <= 0.5) & inside).double()
    weight = weight / weight.sum(dim=1, keepdim=True)
    coeff = torch.floor(0.5 + weight * (1 << _PRECISION_BITS))
    return coeff.to(device=like.device)


def _resize_box(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``PIL.Image.resize((width, height), Image.BOX)`` of 8-bit images ``[N, C, H, W]`` (float64
    integers): a horizontal pass then a vertical one, each rounded to 8 bits in fixed point."""

    def fixed_point(total: torch.Tensor) -> torch.Tensor:
        # float64 holds these integer sums exactly; division by a power of two then floor is >>
        return torch.floor((total + (1 << (_PRECISION_BITS - 1))) / (1 << _PRECISION_BITS)).clamp(0, 255)

    across = _box_coefficients(pixels.shape[-1], width, pixels)
    down = _box_coefficients(pixels.shape[-2], height, pixels)
    rows = fixed_point(torch.einsum("nchw,vw->nchv", pixels, across))
    return fixed_point(torch.einsum("nchw,uh->ncuw", rows, down))


def pixelate(x: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """PIL BOX resize of the 8-bit image to ``int(size * c)``, c 0.95 .. 0.65, and BOX back up."""
    c = _param((0.95, 0.9, 0.85, 0.75, 0.65), severity)
    h, w = x.shape[-2:]
    pixels = _pixels(x).double()
    small = _resize_box(pixels, max(1, int(h * c)), max(1, int(w * c)))
    return _resize_box(small, h, w).to(x.dtype) / 255


_CIFAR10C: types.MappingProxyType[str, CorruptionFn] = types.MappingProxyType({
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "glass_blur": glass_blur,
    "defocus_blur": defocus_blur,
    "zoom_blur": zoom_blur,
    "contrast": contrast,
    "brightness": brightness,
    "saturate": saturate,
    "fog": fog,
    "jpeg_compression": jpeg_compression,
    "pixelate": pixelate,
})

CORRUPTIONS: Registry[CorruptionFamily] = Registry("corruption")
"""Every family by name, with the sources that offer it (:class:`CorruptionFamily`)."""
for _name in FAMILIES:
    CORRUPTIONS.register(_name)(CorruptionFamily(_name, _CIFAR10C.get(_name)))
del _name


# --------------------------------------------------------------------------- imagecorruptions


def _imagecorruptions() -> Any:
    try:
        import imagecorruptions
    except ImportError as err:
        raise ImportError(
            f"the imagecorruptions source needs the optional extra: {EXTRA_HINT} ({err})"
        ) from err
    return imagecorruptions


@contextlib.contextmanager
def _numpy_state_kept() -> Iterator[None]:
    """Give numpy's global generator back as found (the package seeds and draws from it)."""
    state = np.random.get_state()  # noqa: NPY002 - the package knows only the global generator
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _package_corrupt(x: torch.Tensor, name: str, severity: int, generator: torch.Generator | None,
                     progress: bool | None) -> torch.Tensor:
    """Run ``imagecorruptions.corrupt`` image by image (the package works on one HWC uint8 array)."""
    package = _imagecorruptions()
    if min(x.shape[-2:]) < 32:
        raise ValueError(
            f"the imagecorruptions source needs images of at least 32 x 32, got {tuple(x.shape[-2:])}"
        )
    if x.shape[1] not in (1, 3):
        raise ValueError(f"the imagecorruptions source needs 1 or 3 channels, got {x.shape[1]}")
    # the package draws from numpy's global generator, and from a seed argument in these two
    takes_seed = "seed" in inspect.signature(package.corruption_dict[name]).parameters
    device = generator.device if generator is not None else torch.device("cpu")
    seeds = torch.randint(0, 2**31 - 1, (x.shape[0],), generator=generator, device=device).tolist()
    images = rearrange(_pixels(x).to(torch.uint8).cpu(), "n c h w -> n h w c").numpy()
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    out = np.empty_like(images)
    with _numpy_state_kept(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bar = tqdm(range(len(images)), desc=f"{name} (imagecorruptions)", unit="image",
                   disable=None if progress is None else not progress, leave=False)
        for i in bar:
            np.random.seed(seeds[i])  # noqa: NPY002 - one seed per image: a replayable draw
            kwargs = {"seed": seeds[i]} if takes_seed else {}
            out[i] = package.corrupt(images[i], severity=severity, corruption_name=name, **kwargs)
    result = torch.from_numpy(rearrange(out, "n h w c -> n c h w")[:, : x.shape[1]].copy())
    return result.to(device=x.device, dtype=x.dtype) / 255


# --------------------------------------------------------------------------- entry points


def corrupt(
    x: torch.Tensor,
    name: str,
    severity: int,
    *,
    generator: torch.Generator | None = None,
    source: Source | str | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (Hendrycks & Dietterich, arXiv 1903.12261).

    Sources (``CORRUPTIONS.get(name).sources``; the first is the default):

    - ``"cifar10c"``, the default where it exists: gaussian_noise, shot_noise, impulse_noise,
      speckle_noise, gaussian_blur, glass_blur, defocus_blur, zoom_blur, contrast, brightness,
      saturate, fog, jpeg_compression, pixelate as batched torch transcriptions of the authors' ``make_cifar_c.py``
      with its CIFAR-10-C parameters (in pixels of a 32 x 32 image), its borders and its 8-bit
      output, computed in float64; any size, any device, no loop over images.
    - ``"imagecorruptions"``: all nineteen families (also motion_blur, snow, frost,
      elastic_transform, spatter) through the
      ``imagecorruptions-imaug`` package with the ImageNet-C parameters; needs
      ``pip install 'bandguard[corruptions]'`` and images of at least 32 x 32. It runs on the CPU
      one image at a time with a progress bar; ``glass_blur`` is the slow one (a numba compile of
      seconds on the first call, then about 0.2 s per 224 x 224 image).
      One-channel images are corrupted as grey RGB and the first channel is kept.

    Either way the output is on the 8-bit grid (``k / 255``), as the released data sets.

    Args:
        x: images ``[N, C, H, W]`` in [0, 1]. Inputs on the 8-bit grid reproduce the reference
            exactly; the PIL-based families (jpeg_compression, pixelate) and the package round
            other inputs to it first.
        name: a family in ``CORRUPTIONS`` (see :data:`FAMILIES`).
        severity: 1 (mild) to 5 (strong).
        generator: randomness of the random families; for the package, one seed per image is
            drawn from it (numpy's global generator is seeded with it, then restored).
        source: ``"cifar10c"`` or ``"imagecorruptions"``; default the family's default source.
        progress: the package's progress bar over images: ``None`` shows it on a terminal only.

    Returns:
        Tensor ``[N, C, H, W]`` in [0, 1] on the 8-bit grid, dtype and device of ``x``.

    Raises:
        ValueError: unknown name, source or severity; a source that lacks the family; images the
            source cannot take.
        ImportError: the ``imagecorruptions`` source without the package installed.
    """
    x = check_images(x, "x", bounds=(0.0, 1.0))
    check_generator(generator)
    progress = None if progress is None else check_bool(progress, "progress")
    family = CORRUPTIONS.get(name)
    check_int(severity, "severity", minimum=1)
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    chosen = family.default_source if source is None else check_enum(source, Source, "source")
    if chosen not in family.sources:
        raise ValueError(
            f"corruption {name!r} has no {chosen.value!r} source; it comes from "
            f"{', '.join(repr(s.value) for s in family.sources)} ({EXTRA_HINT})"
        )
    if chosen is Source.IMAGECORRUPTIONS:
        out = _package_corrupt(x, name, severity, generator, progress)
    else:
        assert family.cifar10c is not None  # sources says so
        out = _to_8bit(family.cifar10c(_snap_to_8bit(x.double()), severity, generator))
    return out.to(x.dtype)


@dataclasses.dataclass(frozen=True)
class CorruptionResult:
    """One corruption's spectrum and the model's accuracy under it.

    Attributes:
        name: the corruption.
        severity: 1 .. 5.
        source: where the corruption's formula came from.
        spectrum: :class:`PerturbationSpectrum` of ``C(x) - x``; its ``mean`` is ``E|F(C(X) - X)|``.
        accuracy: the model's top-1 accuracy on ``C(x)``.
        correct: ``[N]`` bool, whether each corrupted image is classified right; kept only when
            asked (``corruption_spectrum(..., per_image=True)``), for intervals over images.
    """

    name: str
    severity: int
    source: Source
    spectrum: PerturbationSpectrum
    accuracy: float
    correct: torch.Tensor | None = dataclasses.field(default=None, repr=False)

    @property
    def high_fraction(self) -> float:
        """Share of the corruption's energy at high frequencies (see the spectrum's radius)."""
        return self.spectrum.high_fraction

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON."""
        return {
            "name": self.name,
            "severity": self.severity,
            "source": self.source.value,
            "accuracy": self.accuracy,
            "high_fraction": self.high_fraction,
            "spectrum": self.spectrum.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class CorruptionSpectra:
    """:func:`corruption_spectrum` output: one :class:`CorruptionResult` per corruption.

    Attributes:
        results: one result per corruption, in the order asked for; ``spectra["fog"]`` finds one
            by name.
        clean_accuracy: the model's top-1 accuracy on the uncorrupted images.
        n: number of images.
        clean_correct: ``[N]`` bool, whether each uncorrupted image is classified right; with
            ``per_image=True`` only.
    """

    results: tuple[CorruptionResult, ...]
    clean_accuracy: float
    n: int
    clean_correct: torch.Tensor | None = dataclasses.field(default=None, repr=False)

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
    source: Source | str | None = None,
    radius: float | None = None,
    batch_size: int = 1024,
    per_image: bool = False,
) -> CorruptionSpectra:
    """``E|F(C(X) - X)|``, its high-frequency energy share and the accuracy per corruption.

    Yin et al. (arXiv 1906.08988), Figure 4: corruptions whose energy sits at high frequencies
    (noise, pixelate, JPEG) versus low frequencies (fog, contrast).

    Args:
        model: classifier on ``[B, C, H, W]`` in [0, 1]; run in eval mode and given back exactly
            as found.
        x: images ``[N, C, H, W]`` in [0, 1].
        y: labels ``[N]`` int64.
        names: corruptions to run; default the fourteen with a built-in ``cifar10c`` source (no
            optional package needed).
        severity: 1 .. 5.
        generator: randomness for the random families.
        source: passed to :func:`corrupt` for every name; default each family's own.
        radius: low/high cut-off for the energy share; default ``min(H, W) / 4``.
        batch_size: images per forward.
        per_image: also return which images are classified right (each result's ``correct`` and
            ``clean_correct``, ``[N]`` bool on the CPU), for bootstrap intervals over images.

    Returns:
        :class:`CorruptionSpectra`.
    """
    x = check_model_input(model, x, bounds=(0.0, 1.0))
    y = check_labels(y, x).to(x.device)
    check_generator(generator)
    if names is None:
        names = [n for n in CORRUPTIONS.names() if CORRUPTIONS.get(n).cifar10c is not None]
    names = check_names(names, "names")
    chosen = None if source is None else check_enum(source, Source, "source")
    for name in names:  # unknown names and missing sources fail before any work
        family = CORRUPTIONS.get(name)
        if chosen is not None and chosen not in family.sources:
            raise ValueError(f"corruption {name!r} has no {chosen.value!r} source")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    per_image = check_bool(per_image, "per_image")
    h, w = x.shape[-2:]
    radius = default_radius(h, w) if radius is None else check_nonnegative(radius, "radius")

    with model_mode(model), torch.inference_mode():

        def correct(images: torch.Tensor, check: bool = False) -> torch.Tensor:
            """``[N]`` bool on the CPU: the model's top-1 prediction equals the label."""
            parts = []
            for i, (chunk, labels) in enumerate(zip(images.split(batch_size), y.split(batch_size))):
                logits = model(chunk)
                if check and i == 0:  # the number of classes is known only now; check it once
                    logits = check_model_output(logits, n=chunk.shape[0])
                    check_labels(y, x, num_classes=logits.shape[1])
                parts.append((logits.argmax(dim=1) == labels).cpu())
            return torch.cat(parts)

        clean = correct(x, check=True)
        results = []
        for name in names:
            used = CORRUPTIONS.get(name).default_source if chosen is None else chosen
            corrupted = corrupt(x, name, severity, generator=generator, source=used)
            hits = correct(corrupted)
            results.append(
                CorruptionResult(
                    name=name,
                    severity=severity,
                    source=used,
                    spectrum=perturbation_spectrum(corrupted - x, radius=radius),
                    accuracy=float(hits.double().mean()),
                    correct=hits if per_image else None,
                )
            )
    return CorruptionSpectra(results=tuple(results), clean_accuracy=float(clean.double().mean()), n=x.shape[0],
                             clean_correct=clean if per_image else None)
