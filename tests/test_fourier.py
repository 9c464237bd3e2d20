"""Exact-answer tests for the centred FFT, radial masks and frequency splitting."""

from __future__ import annotations

import math

import pytest
import torch

from bandguard import fourier

SIZES = [(28, 28), (32, 32), (13, 16), (7, 9)]


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_fft2c_puts_zero_frequency_at_centre(h: int, w: int) -> None:
    spectrum = fourier.fft2c(torch.full((h, w), 2.0, dtype=torch.float64))
    expected = torch.zeros(h, w, dtype=torch.complex128)
    expected[h // 2, w // 2] = 2.0 * h * w
    torch.testing.assert_close(spectrum, expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_ifft2c_inverts_fft2c(h: int, w: int) -> None:
    x = torch.rand(2, 3, h, w, dtype=torch.float64)
    torch.testing.assert_close(fourier.ifft2c(fourier.fft2c(x)).real, x)


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("radius", [0.0, 2.0, 4.5, 8.0])
def test_low_plus_high_is_the_input(h: int, w: int, radius: float) -> None:
    x = torch.rand(4, 3, h, w, generator=torch.Generator().manual_seed(0))
    low, high = fourier.split_frequencies(x, radius)
    assert (low + high - x).abs().max() < 1e-5
    assert (fourier.highpass(x, radius) - high).abs().max() < 1e-5


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_radius_beyond_the_corner_keeps_everything(h: int, w: int) -> None:
    x = torch.rand(2, 1, h, w)
    corner = math.hypot(h / 2, w / 2) + 1
    assert (fourier.lowpass(x, corner) - x).abs().max() < 1e-5
    assert fourier.highpass(x, corner).abs().max() < 1e-5
    assert fourier.lowpass(x, 0.0).abs().max() < 1e-6


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("smooth", ["ideal", "gaussian", "butterworth"])
def test_real_fft_filter_equals_full_complex_filter(h: int, w: int, smooth: str) -> None:
    x = torch.rand(3, 2, h, w, dtype=torch.float64)
    mask = fourier.lowpass_mask(h, w, 3.5, smooth=smooth, dtype=torch.float64)
    full = fourier.ifft2c(fourier.fft2c(x) * mask)
    assert full.imag.abs().max() < 1e-12  # radial masks are point-symmetric: the output is real
    torch.testing.assert_close(fourier.filter_with_mask(x, mask), full.real)


def test_ideal_mask_keeps_exactly_the_positions_closer_than_the_radius() -> None:
    mask = fourier.lowpass_mask(32, 32, 4.0)
    d = fourier.radial_distance(32, 32)
    assert mask[16, 16] == 1 and mask[16, 20] == 0 and mask[16, 19] == 1  # d = 0, 4 (strict), 3
    assert int(mask.sum()) == int((d < 4).sum()) == 45  # lattice points with i^2 + j^2 < 16


def test_smooth_masks_have_their_documented_values_at_the_radius() -> None:
    d = fourier.radial_distance(33, 33)
    on_radius = d == 5
    gauss = fourier.lowpass_mask(33, 33, 5.0, smooth="gaussian")
    butter = fourier.lowpass_mask(33, 33, 5.0, smooth="butterworth", order=3)
    torch.testing.assert_close(gauss[on_radius], torch.full_like(gauss[on_radius], math.exp(-0.5)))
    torch.testing.assert_close(butter[on_radius], torch.full_like(butter[on_radius], 0.5))
    assert gauss.max() == 1 and butter.max() == 1 and gauss.min() > 0


def test_bandpass_is_the_ring_between_two_radii() -> None:
    d = fourier.radial_distance(32, 32)
    band = fourier.bandpass_mask(32, 32, 3.0, 6.0)
    assert torch.equal(band.bool(), (d >= 3) & (d < 6))


def test_outputs_follow_the_input_dtype() -> None:
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    assert fourier.lowpass(x, 2).dtype == torch.float64
    assert fourier.lowpass(x.float(), 2).dtype == torch.float32


def test_lowpass_is_differentiable() -> None:
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fourier.lowpass(t, 2.5), (x,))
    assert torch.autograd.gradcheck(lambda t: fourier.lowpass(t, 2.5, smooth="gaussian"), (x,))


def test_unknown_smooth_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown smooth 'box'"):
        fourier.lowpass_mask(8, 8, 2.0, smooth="box")


def test_radial_profile_of_rings() -> None:
    d = fourier.radial_distance(32, 32, dtype=torch.float64)
    profile = fourier.radial_profile(d.round())
    torch.testing.assert_close(profile, torch.arange(len(profile), dtype=torch.float64))
    assert fourier.radial_profile(torch.ones(3, 32, 32)).shape == (3, len(profile))
