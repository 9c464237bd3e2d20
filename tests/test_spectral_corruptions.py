"""Contracts of bandguard.spectral.corruptions.

Each built-in family is pinned against a numpy transcription, written here from Hendrycks and
Dietterich's ``make_cifar_c.py`` (arXiv 1903.12261), of the same formula on the same random draws:
the transcriptions take 8-bit HWC arrays as the authors' script does and end with its
``np.uint8(...)``. The PIL-based families (JPEG, pixelate) are compared with PIL itself, and where
the optional extra brings scikit-image and OpenCV, the blurs and HSV families with those too.
The package-backed families run on two small images when ``imagecorruptions`` is installed.
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import scipy.ndimage
import torch
from PIL import Image
from torch import nn

from bandguard._modes import model_mode
from bandguard.spectral.corruptions import (
    CORRUPTIONS,
    FAMILIES,
    Source,
    corrupt,
    corruption_spectrum,
)

BUILTIN = ("brightness", "contrast", "defocus_blur", "fog", "gaussian_blur", "gaussian_noise", "glass_blur",
           "impulse_noise", "jpeg_compression", "pixelate", "saturate", "shot_noise", "speckle_noise", "zoom_blur")


def images_8bit(n: int = 3, size: tuple[int, int] = (32, 32), channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Smooth-ish 8-bit images ``[n, C, H, W]`` in float64 (random walks along rows, as textures)."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(n, channels, *size, generator=g, dtype=torch.float64) * 12
    pixels = (steps.cumsum(-1) + 128).round().clamp(0, 255)
    return pixels / 255


def hwc_uint8(x: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` in [0, 1] -> the authors' input: uint8 ``[N, H, W, C]``."""
    return (x * 255).round().permute(0, 2, 3, 1).numpy().astype(np.uint8)


def assert_same_bytes(out: torch.Tensor, reference: np.ndarray, window: float = 1e-6) -> None:
    """``out`` (``[N, C, H, W]``) equals ``np.uint8(reference)`` (``[N, H, W, C]``, values in [0, 255]).

    Where the reference lies within ``window`` of an integer (but not on it), summation order
    alone decides the level; one level of difference is allowed there and nowhere else. The
    default suits float64 formulas; the reference's float32 ones (zoom and defocus blur) need 1e-4.
    """
    scaled = (out.double() * 255).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(scaled, np.round(scaled))  # the 8-bit grid
    levels = np.round(scaled).astype(np.int64)
    expected = np.uint8(reference).astype(np.int64)
    off_level = np.abs(reference - np.round(reference))
    near_level = (off_level > 0) & (off_level < window)
    exact = ~near_level
    np.testing.assert_array_equal(levels[exact], expected[exact])
    assert np.abs(levels - expected).max(initial=0) <= 1
    assert near_level.mean() < 0.25  # the allowance stays an exception


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- the registry


def test_registry_lists_nineteen_families_with_their_sources() -> None:
    assert CORRUPTIONS.names() == sorted(FAMILIES) and len(FAMILIES) == 19
    builtin = [n for n in FAMILIES if CORRUPTIONS.get(n).cifar10c is not None]
    assert sorted(builtin) == list(BUILTIN)
    for name in FAMILIES:
        family = CORRUPTIONS.get(name)
        expected = (Source.CIFAR10C, Source.IMAGECORRUPTIONS) if name in BUILTIN else (Source.IMAGECORRUPTIONS,)
        assert family.sources == expected and family.default_source is expected[0]


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_gaussian_noise_follows_make_cifar_c(severity: int) -> None:
    x = images_8bit()
    out = corrupt(x, "gaussian_noise", severity, generator=seeded(7))
    z = torch.randn(x.shape, generator=seeded(7), dtype=x.dtype).permute(0, 2, 3, 1).numpy()
    c = [0.04, 0.06, .08, .09, .10][severity - 1]
    img = hwc_uint8(x) / 255.
    assert_same_bytes(out, np.clip(img + c * z, 0, 1) * 255)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_speckle_noise_follows_make_cifar_c(severity: int) -> None:
    x = images_8bit()
    out = corrupt(x, "speckle_noise", severity, generator=seeded(8))
    z = torch.randn(x.shape, generator=seeded(8), dtype=x.dtype).permute(0, 2, 3, 1).numpy()
    c = [.06, .1, .12, .16, .2][severity - 1]
    img = hwc_uint8(x) / 255.
    assert_same_bytes(out, np.clip(img + img * (c * z), 0, 1) * 255)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_shot_noise_follows_make_cifar_c(severity: int) -> None:
    x = images_8bit()
    out = corrupt(x, "shot_noise", severity, generator=seeded(3))
    c = [500, 250, 100, 75, 50][severity - 1]
    counts = torch.poisson(x * c, generator=seeded(3)).permute(0, 2, 3, 1).numpy()
    assert_same_bytes(out, np.clip(counts / c, 0, 1) * 255)


def test_shot_noise_draws_are_poisson() -> None:
    rate = torch.full((200_000,), 0.5 * 50, dtype=torch.float64)
    counts = torch.poisson(rate, generator=seeded(0))
    reference = np.random.default_rng(0).poisson(25.0, size=200_000)
    # mean and variance of Poisson(25) are both 25; standard errors ~0.011 and ~0.08
    assert float(counts.mean()) == pytest.approx(25.0, abs=0.06)
    assert float(counts.var()) == pytest.approx(25.0, abs=0.4)
    assert float(counts.var()) == pytest.approx(reference.var(), abs=0.6)


@pytest.mark.parametrize("severity", [1, 5])
def test_impulse_noise_follows_scikit_image_salt_and_pepper(severity: int) -> None:
    x = images_8bit()
    out = corrupt(x, "impulse_noise", severity, generator=seeded(11))
    g = seeded(11)
    u_flip = torch.rand(x.shape, generator=g, dtype=x.dtype).permute(0, 2, 3, 1).numpy()
    u_salt = torch.rand(x.shape, generator=g, dtype=x.dtype).permute(0, 2, 3, 1).numpy()
    amount = [.01, .02, .03, .05, .07][severity - 1]
    # skimage.util.random_noise(image, mode="s&p", amount=c), salt_vs_pepper 0.5
    image = hwc_uint8(x) / 255.
    noisy = image.copy()
    flipped, salted = u_flip <= amount, u_salt <= 0.5
    noisy[flipped & salted] = 1
    noisy[flipped & ~salted] = 0
    assert_same_bytes(out, np.clip(noisy, 0, 1) * 255)
    assert 0.5 * amount < float(flipped.mean()) < 1.5 * amount


# --------------------------------------------------------------------------- blur and digital


@pytest.mark.parametrize("size", [(32, 32), (28, 20)])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_gaussian_blur_follows_skimage_gaussian(severity: int, size: tuple[int, int]) -> None:
    x = images_8bit(size=size)
    out = corrupt(x, "gaussian_blur", severity)
    c = [.4, .6, 0.7, .8, 1][severity - 1]
    # skimage.filters.gaussian(x, sigma=c, multichannel=True) is scipy's gaussian_filter with
    # sigma 0 on the channel axis, mode "nearest" and truncate 4
    blurred = np.stack([skimage_gaussian(img, c) for img in hwc_uint8(x) / 255.])
    assert_same_bytes(out, np.clip(blurred, 0, 1) * 255)


def skimage_gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """``skimage.filters.gaussian(image, sigma, multichannel=True)`` on HWC: scipy's filter."""
    return scipy.ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0)


@pytest.mark.parametrize("size", [(32, 32), (20, 28)])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_glass_blur_follows_make_cifar_c_on_the_same_draws(severity: int, size: tuple[int, int]) -> None:
    x = images_8bit(n=2, size=size)
    out = corrupt(x, "glass_blur", severity, generator=seeded(6))
    c = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][severity - 1]
    height, width = size
    shape = (2, c[2], height - 2 * c[1], width - 2 * c[1], 2)
    draws = torch.randint(-c[1], c[1], shape, generator=seeded(6)).numpy()
    expected = []
    for img, image_draws in zip(hwc_uint8(x), draws):
        randint = iter(image_draws.reshape(-1, 2))  # np.random.randint(-c[1], c[1], size=(2,)), in order
        img = np.uint8(skimage_gaussian(img / 255., c[0]) * 255)
        for _ in range(c[2]):
            for h in range(height - c[1], c[1], -1):
                for w in range(width - c[1], c[1], -1):
                    dx, dy = next(randint)
                    h_prime, w_prime = h + dy, w + dx
                    img[h, w], img[h_prime, w_prime] = img[h_prime, w_prime], img[h, w]
        expected.append(np.clip(skimage_gaussian(img / 255., c[0]), 0, 1) * 255)
    assert_same_bytes(out, np.stack(expected))


def clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    """make_cifar_c.py's ``clipped_zoom`` (square images)."""
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = scipy.ndimage.zoom(img[top:top + ch, top:top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top:trim_top + h, trim_top:trim_top + h]


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_zoom_blur_follows_make_cifar_c(severity: int) -> None:
    x = images_8bit()
    out = corrupt(x, "zoom_blur", severity)
    c = [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
         np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)][severity - 1]
    expected = []
    for img in hwc_uint8(x):
        img = (img / 255.).astype(np.float32)
        acc = np.zeros_like(img)
        for zoom_factor in c:
            acc += clipped_zoom(img, zoom_factor)
        expected.append(np.clip((img + acc) / (len(c) + 1), 0, 1) * 255)
    assert_same_bytes(out, np.stack(expected).astype(np.float64), window=1e-4)


def disk(radius: float, alias_blur: float) -> np.ndarray:
    """make_cifar_c.py's ``disk`` (radius <= 8), with OpenCV's 3 x 3 GaussianBlur written out."""
    grid = np.arange(-8, 8 + 1)
    gx, gy = np.meshgrid(grid, grid)
    aliased_disk = np.array((gx ** 2 + gy ** 2) <= radius ** 2, dtype=np.float32)
    aliased_disk /= np.sum(aliased_disk)
    taps = np.exp(-0.5 * np.array([1.0, 0.0, 1.0]) / alias_blur ** 2).astype(np.float32)
    taps = (taps / taps.astype(np.float64).sum()).astype(np.float32)
    # cv2.GaussianBlur: separable, reflect-101 borders (numpy's "reflect")
    padded = np.pad(aliased_disk, 1, mode="reflect")
    rows = taps[0] * padded[:, :-2] + taps[1] * padded[:, 1:-1] + taps[2] * padded[:, 2:]
    return taps[0] * rows[:-2] + taps[1] * rows[1:-1] + taps[2] * rows[2:]


@pytest.mark.parametrize("size", [(32, 32), (28, 20)])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_defocus_blur_follows_make_cifar_c(severity: int, size: tuple[int, int]) -> None:
    x = images_8bit(size=size)
    out = corrupt(x, "defocus_blur", severity)
    c = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    kernel = disk(radius=c[0], alias_blur=c[1])
    img = hwc_uint8(x) / 255.
    # cv2.filter2D per channel: correlation with reflect-101 borders (scipy's "mirror")
    channels = np.stack([scipy.ndimage.correlate(img[..., d], kernel[None], mode="mirror") for d in range(3)], -1)
    assert_same_bytes(out, np.clip(channels, 0, 1) * 255, window=1e-4)


@pytest.mark.parametrize("severity", [1, 5])
def test_defocus_blur_matches_opencv(severity: int) -> None:
    cv2 = pytest.importorskip("cv2", reason="OpenCV comes with the optional extra bandguard[corruptions]")
    x = images_8bit()
    out = corrupt(x, "defocus_blur", severity)
    radius, alias_blur = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    grid = np.arange(-8, 8 + 1)
    gx, gy = np.meshgrid(grid, grid)
    aliased = np.array((gx ** 2 + gy ** 2) <= radius ** 2, dtype=np.float32)
    aliased /= np.sum(aliased)
    kernel = cv2.GaussianBlur(aliased, ksize=(3, 3), sigmaX=alias_blur)
    expected = [np.stack([cv2.filter2D(img[:, :, d], -1, kernel) for d in range(3)], -1)
                for img in hwc_uint8(x) / 255.]
    assert_same_bytes(out, np.clip(np.stack(expected), 0, 1) * 255, window=1e-4)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_contrast_follows_make_cifar_c(severity: int) -> None:
    x = images_8bit()
    out = corrupt(x, "contrast", severity)
    c = [.75, .5, .4, .3, 0.15][severity - 1]
    img = hwc_uint8(x) / 255.
    means = np.mean(img, axis=(1, 2), keepdims=True)
    assert_same_bytes(out, np.clip((img - means) * c + means, 0, 1) * 255)


def rgb2hsv(rgb: np.ndarray) -> np.ndarray:
    """scikit-image's ``rgb2hsv`` (last axis RGB)."""
    v = rgb.max(-1)
    delta = np.ptp(rgb, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(delta == 0, 0.0, delta / v)
        h = np.zeros_like(v)
        for k, (a, b) in enumerate(((1, 2), (2, 0), (0, 1))):
            idx = rgb[..., k] == v
            h[idx] = 2.0 * k + (rgb[..., a][idx] - rgb[..., b][idx]) / delta[idx]
    h = (h / 6.0) % 1.0
    h[delta == 0] = 0.0
    return np.stack([h, s, v], axis=-1)


def hsv2rgb(hsv: np.ndarray) -> np.ndarray:
    """scikit-image's ``hsv2rgb``."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hi = np.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    hi = np.stack([hi] * 3, axis=-1).astype(np.uint8) % 6
    table = np.stack([np.stack(c, axis=-1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return np.choose(hi, table)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_brightness_follows_the_hsv_round_trip(severity: int) -> None:
    x = images_8bit()
    x[0, :, :4, :4] = 0.0  # black pixels: V = 0, where the round trip sets grey
    out = corrupt(x, "brightness", severity)
    c = [.05, .1, .15, .2, .3][severity - 1]
    hsv = rgb2hsv(hwc_uint8(x) / 255.)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    assert_same_bytes(out, np.clip(hsv2rgb(hsv), 0, 1) * 255)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_saturate_follows_the_hsv_round_trip(severity: int) -> None:
    x = images_8bit()
    x[0, :, :4, :4] = 77 / 255  # grey pixels: hue 0, saturation 0
    out = corrupt(x, "saturate", severity)
    c = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
    hsv = rgb2hsv(hwc_uint8(x) / 255.)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    assert_same_bytes(out, np.clip(hsv2rgb(hsv), 0, 1) * 255)


def test_brightness_on_one_channel_adds_and_clips() -> None:
    x = images_8bit(channels=1)
    out = corrupt(x, "brightness", 2)
    assert_same_bytes(out, np.clip(hwc_uint8(x) / 255. + 0.1, 0, 1) * 255)


def plasma_fractal(mapsize: int, wibbledecay: float, uniform) -> np.ndarray:
    """make_cifar_c.py's diamond-square, with ``np.random.uniform`` passed in as ``uniform``."""
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100

    def wibbledmean(array):
        return array / 4 + wibble * uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(squareaccum)
        drgrid = maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = (drgrid + np.roll(drgrid, 1, axis=0)) + (ulgrid + np.roll(ulgrid, -1, axis=1))
        maparray[0:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(ltsum)
        ttsum = (drgrid + np.roll(drgrid, 1, axis=1)) + (ulgrid + np.roll(ulgrid, -1, axis=0))
        maparray[stepsize // 2:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def torch_uniform(generator: torch.Generator):
    """``np.random.uniform(low, high, shape)`` fed by the torch generator's draws."""

    def uniform(low: float, high: float, shape: tuple[int, ...]) -> np.ndarray:
        u = torch.rand(shape, generator=generator, dtype=torch.float64).numpy()
        return low + (high - low) * u

    return uniform


@pytest.mark.parametrize("size", [(32, 32), (28, 28)])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_fog_follows_make_cifar_c_on_the_same_draws(severity: int, size: tuple[int, int]) -> None:
    x = images_8bit(n=1, size=size, seed=severity)
    out = corrupt(x, "fog", severity, generator=seeded(5))
    c = [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    img = hwc_uint8(x)[0] / 255.
    max_val = img.max()
    img += c[0] * plasma_fractal(32, c[1], torch_uniform(seeded(5)))[:size[0], :size[1]][..., np.newaxis]
    assert_same_bytes(out, (np.clip(img * max_val / (max_val + c[0]), 0, 1) * 255)[None])


def test_fog_draws_one_fractal_per_image() -> None:
    x = images_8bit(n=4).clone()
    x[:] = x[0]  # four copies of one image
    out = corrupt(x, "fog", 3, generator=seeded(0))
    assert all(not torch.equal(out[0], out[k]) for k in range(1, 4))
    assert torch.equal(corrupt(x, "fog", 3, generator=seeded(0)), out)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_jpeg_compression_gives_pil_bytes(severity: int, channels: int) -> None:
    x = images_8bit(channels=channels)
    out = corrupt(x, "jpeg_compression", severity)
    quality = [80, 65, 58, 50, 40][severity - 1]
    decoded = []
    for img in hwc_uint8(x):
        buffer = io.BytesIO()
        Image.fromarray(img.squeeze(-1) if channels == 1 else img).save(buffer, "JPEG", quality=quality)
        decoded.append(np.array(Image.open(buffer)).reshape(img.shape))
    assert_same_bytes(out, np.stack(decoded).astype(np.float64))


@pytest.mark.parametrize("size", [(32, 32), (28, 28), (24, 40)])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_pixelate_gives_pil_box_resizes(severity: int, size: tuple[int, int]) -> None:
    x = images_8bit(size=size, seed=severity)
    out = corrupt(x, "pixelate", severity)
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    h, w = size
    expected = []
    for img in hwc_uint8(x):
        small = Image.fromarray(img).resize((int(w * c), int(h * c)), Image.BOX)
        expected.append(np.array(small.resize((w, h), Image.BOX)))
    assert_same_bytes(out, np.stack(expected).astype(np.float64))


@pytest.mark.parametrize("severity", [1, 5])
def test_builtins_match_scikit_image_itself(severity: int) -> None:
    skimage = pytest.importorskip("skimage", reason="scikit-image comes with the optional extra bandguard[corruptions]")
    from skimage.filters import gaussian

    x = images_8bit()
    x[0, :, :4, :4] = 77 / 255
    img = hwc_uint8(x) / 255.
    sigma = [.4, .6, 0.7, .8, 1][severity - 1]
    blurred = np.stack([gaussian(i, sigma=sigma, channel_axis=-1) for i in img])
    assert_same_bytes(corrupt(x, "gaussian_blur", severity), np.clip(blurred, 0, 1) * 255)
    c = [.05, .1, .15, .2, .3][severity - 1]
    hsv = skimage.color.rgb2hsv(img)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    assert_same_bytes(corrupt(x, "brightness", severity), np.clip(skimage.color.hsv2rgb(hsv), 0, 1) * 255)
    a, b = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
    hsv = skimage.color.rgb2hsv(img)
    hsv[..., 1] = np.clip(hsv[..., 1] * a + b, 0, 1)
    assert_same_bytes(corrupt(x, "saturate", severity), np.clip(skimage.color.hsv2rgb(hsv), 0, 1) * 255)


# --------------------------------------------------------------------------- all built-ins


@pytest.mark.parametrize("name", BUILTIN)
def test_builtins_stay_on_the_8bit_grid_grow_with_severity_and_replay(name: str) -> None:
    x = images_8bit(n=6).float()
    changes = []
    for severity in (1, 3, 5):
        out = corrupt(x, name, severity, generator=seeded(1))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert torch.equal(out * 255, (out * 255).round())
        changes.append(float((out - x).abs().mean()))
    assert 0 < changes[0] < changes[2], changes
    assert torch.equal(corrupt(x, name, 3, generator=seeded(1)), corrupt(x, name, 3, generator=seeded(1)))


@pytest.mark.parametrize("name", BUILTIN)
def test_builtins_give_the_same_bytes_in_float32_and_float64(name: str) -> None:
    x = images_8bit()
    single = corrupt(x.float(), name, 4, generator=seeded(2))
    assert single.dtype == torch.float32
    assert torch.equal(single, corrupt(x, name, 4, generator=seeded(2)).float())


def test_half_precision_inputs_come_back_in_their_dtype() -> None:
    x = images_8bit()
    for name in ("contrast", "pixelate"):
        expected = corrupt(x.float(), name, 3)
        out = corrupt(x.half(), name, 3)
        assert out.dtype == torch.float16
        assert float((out.float() - expected).abs().max()) < 2 / 255


def test_builtins_take_one_channel_and_other_sizes() -> None:
    x = images_8bit(n=3, size=(28, 20), channels=1)
    for name in BUILTIN:
        out = corrupt(x, name, 2, generator=seeded(0))
        assert out.shape == x.shape and 0 <= float(out.min()) <= float(out.max()) <= 1


def test_corrupt_refuses_bad_arguments() -> None:
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        corrupt(x, "rain", 1)
    with pytest.raises(ValueError, match="severity must be one of"):
        corrupt(x, "fog", 6)
    with pytest.raises(TypeError, match="severity must be an int"):
        corrupt(x, "fog", 2.0)
    with pytest.raises(ValueError, match="unknown source 'imagenet'"):
        corrupt(x, "fog", 1, source="imagenet")
    with pytest.raises(ValueError, match=r"'motion_blur' has no 'cifar10c' source.*bandguard\[corruptions\]"):
        corrupt(x, "motion_blur", 1, source="cifar10c")
    with pytest.raises(ValueError, match="jpeg_compression needs 1 or 3 channels"):
        corrupt(torch.rand(2, 2, 8, 8), "jpeg_compression", 1)
    with pytest.raises(ValueError, match="bounds"):
        corrupt(x * 3, "fog", 1)


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'bandguard\[corruptions\]'"):
        corrupt(torch.rand(1, 3, 32, 32), "motion_blur", 1)


# --------------------------------------------------------------------------- imagecorruptions


@pytest.fixture(scope="module")
def package():
    return pytest.importorskip("imagecorruptions", reason="optional extra bandguard[corruptions] not installed")


@pytest.mark.parametrize("name", FAMILIES)
def test_package_families_run_and_replay(package, name: str) -> None:
    x = images_8bit(n=2, size=(32, 36)).float()
    state = np.random.get_state()  # noqa: NPY002 - the package uses the global generator
    out = corrupt(x, name, 2, generator=seeded(4), source="imagecorruptions", progress=False)
    after = np.random.get_state()  # noqa: NPY002
    assert all(np.array_equal(a, b) for a, b in zip(state[1:], after[1:])), "numpy state restored"
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out * 255, (out * 255).round()) and float((out - x).abs().mean()) > 0
    again = corrupt(x, name, 2, generator=seeded(4), source="imagecorruptions", progress=False)
    assert torch.equal(out, again)


def test_package_source_is_the_package_on_the_same_seed(package) -> None:
    x = images_8bit(n=2)
    out = corrupt(x, "gaussian_noise", 3, generator=seeded(9), source="imagecorruptions", progress=False)
    seeds = torch.randint(0, 2**31 - 1, (2,), generator=seeded(9)).tolist()
    expected = []
    for seed, img in zip(seeds, hwc_uint8(x)):
        np.random.seed(seed)  # noqa: NPY002
        expected.append(package.corrupt(img, severity=3, corruption_name="gaussian_noise"))
    assert_same_bytes(out, np.stack(expected).astype(np.float64))
    # ImageNet-C's sigma at severity 3 is 0.18, CIFAR-10-C's 0.08
    cifar = corrupt(x, "gaussian_noise", 3, generator=seeded(9))
    assert float((out - x).std()) > 1.5 * float((cifar - x).std())


def test_package_source_takes_grey_and_refuses_small_images(package) -> None:
    grey = images_8bit(n=2, channels=1)
    out = corrupt(grey, "zoom_blur", 1, source="imagecorruptions", progress=False)
    assert out.shape == grey.shape
    with pytest.raises(ValueError, match="at least 32 x 32"):
        corrupt(torch.rand(1, 3, 28, 28), "snow", 1, progress=False)


# --------------------------------------------------------------------------- corruption_spectrum


def test_corruption_spectra_separate_noise_from_fog(mnist_model, mnist_test) -> None:
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    names = ["gaussian_noise", "fog", "contrast", "gaussian_blur"]
    result = corruption_spectrum(mnist_model, x, y, names, severity=3, generator=seeded(0))
    noise, fog = result["gaussian_noise"], result["fog"]
    # clipping at 0 on MNIST's black background rectifies part of the noise, adding low
    # frequencies, so the share stays below the white-noise area fraction (0.82) but well above fog
    assert noise.high_fraction > 0.5
    assert fog.high_fraction < 0.2
    contrast = result["contrast"]
    # the channel mean is kept up to the 8-bit truncation: less than one level per pixel at DC
    assert float(contrast.spectrum.mean[14, 14]) < 28 * 28 / 255
    assert contrast.high_fraction < noise.high_fraction
    assert result.clean_accuracy > 0.9
    with model_mode(mnist_model), torch.no_grad():
        hits = mnist_model(corrupt(x, "contrast", 3)).argmax(dim=1) == y
    assert contrast.accuracy == pytest.approx(float(hits.double().mean()))
    assert [r.name for r in result.results] == names
    assert all(r.source is Source.CIFAR10C for r in result.results)
    with pytest.raises(ValueError, match="unknown corruption"):
        corruption_spectrum(mnist_model, x, y, ["rain"])
    with pytest.raises(ValueError, match="'snow' has no 'cifar10c' source"):
        corruption_spectrum(mnist_model, x, y, ["fog", "snow"], source="cifar10c")


def test_corruption_spectrum_defaults_to_the_builtins_and_keeps_the_model() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(4 * 30 * 30, 3))
    model.train()
    model[1].eval()
    model[0].weight.requires_grad_(False)
    x, y = images_8bit(n=4).float(), torch.tensor([0, 1, 2, 0])
    result = corruption_spectrum(model, x, y, generator=seeded(0))
    assert [r.name for r in result.results] == sorted(BUILTIN)
    assert [m.training for m in model.modules()] == [True, True, False, True, True, True]
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True, True, True]
    assert result.to_dict()["results"][0]["source"] == "cifar10c"


def test_corruption_spectrum_per_image_correctness_matches_the_accuracies() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 3))
    x, y = images_8bit(n=6).float(), torch.tensor([0, 1, 2, 0, 1, 2])
    names = ["contrast", "gaussian_noise"]
    result = corruption_spectrum(model, x, y, names, generator=seeded(0), batch_size=4, per_image=True)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        contrast = model(corrupt(x, "contrast", 3)).argmax(1) == y
    assert torch.equal(result.clean_correct, clean)
    assert torch.equal(result["contrast"].correct, contrast)
    for r in result.results:
        assert r.correct.shape == (6,) and r.accuracy == pytest.approx(float(r.correct.double().mean()))
    assert "correct" not in result.to_dict()["results"][0]
    plain = corruption_spectrum(model, x, y, names, generator=seeded(0))
    assert plain.clean_correct is None and plain["contrast"].correct is None
    assert [r.accuracy for r in plain.results] == [r.accuracy for r in result.results]
