"""Exact-answer tests for bandguard.fourier: centred FFT, the one frequency mask and filter, kernel spectra.

The paper masks are written out here independently of the package: Wang et al. (1905.13545, HFC
``mask_radial``: distance from ``(H/2, W/2)`` strictly below r) and Yin et al. (1906.08988: centred
square of bandwidth B).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bandguard import fourier

SIZES = [(28, 28), (32, 32), (13, 16), (7, 9)]
PAPER_SIZES = [(28, 28), (32, 32)]


def wang_disc(h: int, w: int, r: float) -> np.ndarray:
    """HFC's mask_radial with 0/1 values, one position at a time."""
    mask = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            mask[i, j] = 1.0 if math.sqrt((i - h / 2) ** 2 + (j - w / 2) ** 2) < r else 0.0
    return mask


def yin_square(h: int, w: int, bandwidth: float) -> np.ndarray:
    """Yin et al.'s low-pass: keep the centred B x B square (|offset| < B/2 on both axes)."""
    mask = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            mask[i, j] = 1.0 if abs(i - h / 2) < bandwidth / 2 and abs(j - w / 2) < bandwidth / 2 else 0.0
    return mask


def hfc_filter(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """HFC's generateDataWithDifferentFrequencies: per image and channel, real(ifft(mask * fft))."""
    out = np.zeros_like(images)
    for n in range(images.shape[0]):
        for c in range(images.shape[1]):
            spectrum = np.fft.fftshift(np.fft.fft2(images[n, c])) * mask
            out[n, c] = np.real(np.fft.ifft2(np.fft.ifftshift(spectrum)))
    return out


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_fft2c_puts_zero_frequency_at_centre(h: int, w: int, device: torch.device, dtype: torch.dtype) -> None:
    spectrum = fourier.fft2c(torch.full((h, w), 2.0, dtype=dtype, device=device))
    expected = torch.zeros(h, w, dtype=spectrum.dtype, device=device)
    expected[h // 2, w // 2] = 2.0 * h * w
    torch.testing.assert_close(spectrum, expected, atol=1e-9 if dtype == torch.float64 else 1e-3, rtol=0)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_ifft2c_inverts_fft2c(h: int, w: int) -> None:
    x = torch.rand(2, 3, h, w, dtype=torch.float64)
    torch.testing.assert_close(fourier.ifft2c(fourier.fft2c(x)).real, x)


# --------------------------------------------------------------------------- masks against the papers


@pytest.mark.parametrize(("h", "w"), PAPER_SIZES)
@pytest.mark.parametrize("radius", [1.0, 4.0, 8.0, 12.5, 16.0, 28.0])
def test_disc_mask_is_wang_et_al_mask_radial(h: int, w: int, radius: float) -> None:
    got = fourier.frequency_mask(h, w, radius, dtype=torch.float64).numpy()
    np.testing.assert_array_equal(got, wang_disc(h, w, radius))
    high = fourier.frequency_mask(h, w, radius, kind="high", dtype=torch.float64).numpy()
    np.testing.assert_array_equal(high, 1 - wang_disc(h, w, radius))


@pytest.mark.parametrize(("h", "w"), PAPER_SIZES)
@pytest.mark.parametrize("bandwidth", [2, 4, 8, 15, 16, 24])
def test_square_mask_is_yin_et_al_centred_square(h: int, w: int, bandwidth: int) -> None:
    got = fourier.frequency_mask(h, w, bandwidth / 2, shape="square", dtype=torch.float64).numpy()
    np.testing.assert_array_equal(got, yin_square(h, w, bandwidth))
    # An odd number of rows and columns (2 ceil(B/2) - 1), centred, so the filter stays real.
    side = 2 * math.ceil(bandwidth / 2) - 1
    assert got.sum() == side * side


def test_the_two_shapes_differ_and_known_counts() -> None:
    disc = fourier.frequency_mask(32, 32, 4.0)
    square = fourier.frequency_mask(32, 32, 4.0, shape="square")
    assert int(disc.sum()) == 45  # lattice points with i^2 + j^2 < 16
    assert int(square.sum()) == 49  # |i|, |j| <= 3
    assert disc[16, 16] == 1 and disc[16, 20] == 0 and disc[16, 19] == 1  # d = 0, 4 (strict), 3
    assert square[19, 19] == 1 and disc[19, 19] == 0  # the square's corner lies outside the disc


@pytest.mark.parametrize(("h", "w"), PAPER_SIZES)
@pytest.mark.parametrize("shape", ["disc", "square"])
def test_filter_equals_hfc_construction_without_clipping(h: int, w: int, shape: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((3, 2, h, w))
    radius = 6.0
    mask = wang_disc(h, w, radius) if shape == "disc" else yin_square(h, w, 2 * radius)
    x = torch.from_numpy(images)
    low = fourier.frequency_filter(x, radius, shape=shape).numpy()
    high = fourier.frequency_filter(x, radius, kind="high", shape=shape).numpy()
    np.testing.assert_allclose(low, hfc_filter(images, mask), atol=1e-12)
    np.testing.assert_allclose(high, hfc_filter(images, 1 - mask), atol=1e-12)
    assert high.min() < -0.05  # never clipped: a high-pass image goes negative
    rescaled = fourier.frequency_filter(x, radius, kind="high", shape=shape, rescale=True).numpy()
    reference = hfc_filter(images, 1 - mask)
    np.testing.assert_allclose(rescaled, reference / reference.max(axis=(1, 2, 3), keepdims=True), atol=1e-12)


def test_unknown_vocabulary_is_refused_even_at_radius_zero() -> None:
    with pytest.raises(ValueError, match="unknown shape 'box'; expected one of 'disc', 'square'"):
        fourier.frequency_mask(8, 8, 0.0, shape="box")
    with pytest.raises(ValueError, match="unknown profile 'box'"):
        fourier.frequency_mask(8, 8, 0.0, profile="box")
    with pytest.raises(ValueError, match="unknown kind 'band'"):
        fourier.frequency_mask(8, 8, 0.0, kind="band")
    with pytest.raises(ValueError, match="radius must be >= 0"):
        fourier.frequency_mask(8, 8, -1.0)
    with pytest.raises(ValueError, match="order must be >= 1"):
        fourier.frequency_mask(8, 8, 2.0, profile="butterworth", order=0)
    with pytest.raises(TypeError, match="radius must be a real number"):
        fourier.frequency_mask(8, 8, "2")  # type: ignore[arg-type]


def test_vocabularies_accept_members_and_any_case() -> None:
    a = fourier.frequency_mask(16, 16, 3.0, shape=fourier.MaskShape.SQUARE, kind="HIGH")
    b = fourier.frequency_mask(16, 16, 3.0, shape="Square", kind=fourier.FilterKind.HIGH)
    assert torch.equal(a, b)


def test_smooth_profiles_have_their_documented_values_at_the_radius() -> None:
    d = fourier.radial_distance(33, 33)
    on_radius = d == 5
    gauss = fourier.frequency_mask(33, 33, 5.0, profile="gaussian")
    butter = fourier.frequency_mask(33, 33, 5.0, profile="butterworth", order=3)
    torch.testing.assert_close(gauss[on_radius], torch.full_like(gauss[on_radius], math.exp(-0.5)))
    torch.testing.assert_close(butter[on_radius], torch.full_like(butter[on_radius], 0.5))
    assert gauss.max() == 1 and butter.max() == 1 and gauss.min() > 0
    square = fourier.frequency_mask(33, 33, 5.0, shape="square", profile="gaussian")
    assert square[16, 21] == square[21, 21] == pytest.approx(math.exp(-0.5))  # Chebyshev distance 5


def test_radial_distance_of_each_shape(device: torch.device) -> None:
    disc = fourier.radial_distance(4, 6, device=device, dtype=torch.float64)
    square = fourier.radial_distance(4, 6, shape="square", device=device, dtype=torch.float64)
    assert disc[0, 0] == math.hypot(2, 3) and square[0, 0] == 3 and square[3, 5] == 2
    assert disc[2, 3] == 0 and square.device.type == device.type


def test_bandpass_is_the_ring_between_two_radii() -> None:
    d = fourier.radial_distance(32, 32)
    band = fourier.bandpass_mask(32, 32, 3.0, 6.0)
    assert torch.equal(band.bool(), (d >= 3) & (d < 6))


# --------------------------------------------------------------------------- filtering


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("shape", ["disc", "square"])
@pytest.mark.parametrize("profile", ["ideal", "gaussian", "butterworth"])
def test_low_plus_high_is_the_input(h: int, w: int, shape: str, profile: str, device: torch.device,
                                    dtype: torch.dtype) -> None:
    x = torch.rand(4, 3, h, w, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    low = fourier.frequency_filter(x, 3.5, shape=shape, profile=profile)
    high = fourier.frequency_filter(x, 3.5, kind="high", shape=shape, profile=profile)
    assert low.dtype == dtype and low.device.type == device.type and low.shape == x.shape
    torch.testing.assert_close(low + high, x, atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=0)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_radius_beyond_the_corner_keeps_everything(h: int, w: int) -> None:
    x = torch.rand(2, 1, h, w, dtype=torch.float64)
    corner = math.hypot(h / 2, w / 2) + 0.01
    torch.testing.assert_close(fourier.frequency_filter(x, corner), x)
    torch.testing.assert_close(fourier.frequency_filter(x, max(h, w) / 2 + 0.01, shape="square"), x)
    assert fourier.frequency_filter(x, corner, kind="high").abs().max() < 1e-12
    assert fourier.frequency_filter(x, 0.0).abs().max() < 1e-12


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("shape", ["disc", "square"])
def test_real_fft_filter_equals_full_complex_filter(h: int, w: int, shape: str) -> None:
    x = torch.rand(3, 2, h, w, dtype=torch.float64)
    mask = fourier.frequency_mask(h, w, 3.5, shape=shape, profile="gaussian", dtype=torch.float64)
    full = fourier.ifft2c(fourier.fft2c(x) * mask)
    assert full.imag.abs().max() < 1e-12  # masks equal their mirror: the output is real
    torch.testing.assert_close(fourier.filter_with_mask(x, mask), full.real)


def test_a_low_frequency_is_kept_and_a_high_one_removed() -> None:
    rows = torch.arange(16, dtype=torch.float64)[:, None].expand(16, 16)
    slow = torch.cos(2 * torch.pi * 2 * rows / 16)
    fast = torch.cos(2 * torch.pi * 7 * rows / 16)
    x = (slow + fast)[None, None]
    for shape in ("disc", "square"):
        torch.testing.assert_close(fourier.frequency_filter(x, 4, shape=shape)[0, 0], slow, atol=1e-12, rtol=0)
        torch.testing.assert_close(fourier.frequency_filter(x, 4, kind="high", shape=shape)[0, 0], fast,
                                   atol=1e-12, rtol=0)


def test_rescale_is_x_over_max_and_clip_comes_first() -> None:
    x = torch.tensor([[[[0.5, -1.0], [0.25, 0.0]]], [[[-0.5, -1.0], [-0.25, 0.0]]]], dtype=torch.float64)
    out = fourier.rescale_by_max(x)
    torch.testing.assert_close(out[0], x[0] / 0.5)  # negative values keep their sign
    torch.testing.assert_close(out[1], x[1])  # a non-positive maximum leaves the image alone
    with pytest.raises(ValueError, match="rescale needs images"):
        fourier.rescale_by_max(torch.ones(4, 4))
    images = torch.rand(3, 2, 8, 8, dtype=torch.float64)
    raw = fourier.frequency_filter(images, 2.0, kind="high")
    both = fourier.frequency_filter(images, 2.0, kind="high", clip=(0.0, 1.0), rescale=True)
    clipped = raw.clamp(0, 1)
    torch.testing.assert_close(both, clipped / clipped.amax(dim=(1, 2, 3), keepdim=True))


def test_frequency_filter_settings_validate_once_and_match_the_function() -> None:
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    settings = fourier.FrequencyFilter(3, kind="high", shape="square", profile="butterworth", order=3,
                                       rescale=True, clip=(0, 1))
    assert settings.kind is fourier.FilterKind.HIGH and settings.shape is fourier.MaskShape.SQUARE
    assert settings.clip == (0.0, 1.0) and settings.radius == 3.0
    expected = fourier.frequency_filter(x, 3, kind="high", shape="square", profile="butterworth", order=3,
                                        rescale=True, clip=(0, 1))
    assert torch.equal(settings(x), expected)
    assert torch.equal(settings.mask(12, 12, dtype=torch.float64),
                       fourier.frequency_mask(12, 12, 3, kind="high", shape="square", profile="butterworth",
                                              order=3, dtype=torch.float64))
    assert fourier.FrequencyFilter(8).describe() == "radius=8"
    assert settings.describe() == ("radius=3, kind='high', shape='square', profile='butterworth', order=3, "
                                   "rescale=True, clip=(0.0, 1.0)")
    with pytest.raises(ValueError, match="unknown shape 'circle'"):
        fourier.FrequencyFilter(3, shape="circle")
    with pytest.raises(ValueError, match="clip must have lo < hi"):
        fourier.FrequencyFilter(3, clip=(1.0, 0.0))
    with pytest.raises(TypeError, match="rescale must be True or False"):
        fourier.FrequencyFilter(3, rescale=1)  # type: ignore[arg-type]


def test_filter_is_differentiable() -> None:
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    for shape in ("disc", "square"):
        assert torch.autograd.gradcheck(lambda t, s=shape: fourier.frequency_filter(t, 2.5, shape=s), (x,))
    assert torch.autograd.gradcheck(lambda t: fourier.frequency_filter(t, 2.5, profile="gaussian"), (x,))


# --------------------------------------------------------------------------- conv kernels


def test_kernel_frequency_response_on_the_one_grid(device: torch.device, dtype: torch.dtype) -> None:
    delta = torch.zeros(2, 3, 3, 3, dtype=dtype, device=device)
    delta[..., 1, 1] = 1.0
    response = fourier.kernel_frequency_response(delta)
    assert response.shape == (2, 3, fourier.KERNEL_GRID, fourier.KERNEL_GRID) and fourier.KERNEL_GRID == 32
    torch.testing.assert_close(response.abs(), torch.ones(2, 3, 32, 32, dtype=dtype, device=device))
    box = torch.full((3, 3), 1.0 / 9, dtype=torch.float64)
    amp = fourier.kernel_frequency_response(box).abs()
    assert float(amp[16, 16]) == pytest.approx(1.0) and float(amp.max()) == pytest.approx(1.0)
    # The 3-tap box's response along one axis vanishes at 1/3 cycle per pixel: index 32 / 3 is not
    # on the grid, so check the closed form sin(3 pi k / 32) / (3 sin(pi k / 32)) at k = 5 instead.
    k = 5
    expected = abs(math.sin(3 * math.pi * k / 32) / (3 * math.sin(math.pi * k / 32)))
    assert float(amp[16, 16 + k]) == pytest.approx(expected)
    weight = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    energy = fourier.kernel_frequency_response(weight).abs().pow(2).sum(dim=(-2, -1)) / 32**2
    torch.testing.assert_close(energy, weight.pow(2).sum(dim=(-2, -1)))  # Parseval on the padded grid
    with pytest.raises(ValueError, match="at most 32 x 32"):
        fourier.kernel_frequency_response(torch.zeros(1, 33, 3))


# --------------------------------------------------------------------------- summaries


def test_radial_profile_of_rings() -> None:
    d = fourier.radial_distance(32, 32, dtype=torch.float64)
    profile = fourier.radial_profile(d.round())
    torch.testing.assert_close(profile, torch.arange(len(profile), dtype=torch.float64))
    assert fourier.radial_profile(torch.ones(3, 32, 32)).shape == (3, len(profile))


def test_high_frequency_fraction_of_a_flat_spectrum_is_the_area_share() -> None:
    flat = torch.ones(2, 16, 16, dtype=torch.float64)
    share = float((fourier.radial_distance(16, 16) >= 4).double().mean())
    torch.testing.assert_close(fourier.high_frequency_fraction(flat, 4.0), torch.full((2,), share, dtype=torch.float64))
