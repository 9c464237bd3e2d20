"""Exact-answer tests for the Fourier basis of Yin et al. (1906.08988) and the spectral summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bandguard import fourier
from bandguard.spectral.perturbation import perturbation_spectrum

SIZES = [(32, 32), (28, 28), (6, 5), (7, 7), (4, 9), (1, 4)]


def yin_basis(h: int, w: int, i: int, j: int) -> np.ndarray:
    """The basis image built exactly as the paper describes, one position at a time, in numpy."""
    sym = [(h - i) % h if h % 2 == 0 else h - 1 - i, (w - j) % w if w % 2 == 0 else w - 1 - j]
    freq = np.zeros((h, w), dtype=np.complex128)
    if (sym[0], sym[1]) == (i, j):
        freq[i, j] = 1.0
    else:
        freq[i, j] = 0.5 + 0.5j
        freq[sym[0], sym[1]] = 0.5 - 0.5j
    basis = np.fft.ifft2(np.fft.ifftshift(freq)).real
    return basis / np.linalg.norm(basis)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_basis_images_are_real_with_unit_norm(h: int, w: int) -> None:
    basis = fourier.fourier_basis(h, w)
    k = fourier.distinct_frequencies(h, w).shape[0]
    assert basis.shape == (k, h, w)
    assert basis.dtype == torch.float32 and not basis.is_complex()
    norms = torch.linalg.vector_norm(basis.double(), dim=(-2, -1))
    torch.testing.assert_close(norms, torch.ones(k, dtype=torch.float64), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("h", "w"), [(6, 5), (7, 7), (8, 8), (4, 9)])
def test_basis_equals_the_papers_construction(h: int, w: int) -> None:
    positions = fourier.distinct_frequencies(h, w)
    basis = fourier.fourier_basis(h, w, positions, dtype=torch.float64)
    for k, (i, j) in enumerate(positions.tolist()):
        np.testing.assert_allclose(basis[k].numpy(), yin_basis(h, w, i, j), atol=1e-12)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_a_position_and_its_mirror_give_the_identical_image(h: int, w: int) -> None:
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    every = torch.stack([rows.flatten(), cols.flatten()], dim=1)
    mi, mj = fourier.mirror_positions(h, w)
    mirrored = torch.stack([mi[every[:, 0]], mj[every[:, 1]]], dim=1)
    a = fourier.fourier_basis(h, w, every, dtype=torch.float64)
    b = fourier.fourier_basis(h, w, mirrored, dtype=torch.float64)
    assert torch.equal(a, b)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_distinct_frequencies_cover_the_grid_once_up_to_mirroring(h: int, w: int) -> None:
    positions, orbit = fourier.frequency_orbits(h, w)
    mi, mj = fourier.mirror_positions(h, w)
    seen = torch.zeros(h, w, dtype=torch.long)
    for i, j in positions.tolist():
        seen[i, j] += 1
        if (mi[i], mj[j]) != (i, j):
            seen[mi[i], mj[j]] += 1
    assert torch.equal(seen, torch.ones(h, w, dtype=torch.long))  # every position exactly once
    self_mirrored = int(((mi[:, None] == torch.arange(h)[:, None]) & (mj[None] == torch.arange(w))).sum())
    assert positions.shape[0] == (h * w + self_mirrored) // 2
    # orbit sends each position to the index of its representative
    for k, (i, j) in enumerate(positions.tolist()):
        assert orbit[i, j] == k and orbit[mi[i], mj[j]] == k


def test_distinct_counts_for_the_papers_image_sizes() -> None:
    # 514 for 32 x 32: PAPERS.md's "544" is the rfft half-grid 32 x 17, which double-counts.
    assert fourier.distinct_frequencies(32, 32).shape[0] == 514
    assert fourier.distinct_frequencies(28, 28).shape[0] == 394


@pytest.mark.parametrize(("h", "w", "m"), [(8, 8, 2), (7, 7, 1), (6, 9, 2), (8, 8, 4), (5, 4, 9), (224, 224, 31)])
def test_max_frequency_keeps_the_whole_pairs_of_the_centred_square(h: int, w: int, m: int) -> None:
    positions, orbit = fourier.frequency_orbits(h, w, max_frequency=m)
    full_positions, full_orbit = fourier.frequency_orbits(h, w)
    rows = slice(max(0, h // 2 - m), min(h, h // 2 + m + 1))
    cols = slice(max(0, w // 2 - m), min(w, w // 2 + m + 1))
    assert orbit.shape == full_orbit[rows, cols].shape
    # the square's pairs are full-grid pairs, in the same row-major order, relabelled 0..K-1
    inside = torch.unique(full_orbit[rows, cols])
    assert torch.equal(positions, full_positions[inside])
    assert torch.equal(orbit, torch.searchsorted(inside, full_orbit[rows, cols].contiguous()))
    d = (positions - torch.tensor([h // 2, w // 2])).abs()
    assert int(d.max()) <= m
    if (h, w, m) == (224, 224, 31):
        assert positions.shape[0] == 1985 and orbit.shape == (63, 63)  # Yin et al.'s ImageNet map
    assert torch.equal(fourier.distinct_frequencies(h, w, max_frequency=m), positions)


def test_basis_spectrum_is_supported_on_the_position_and_its_mirror() -> None:
    h, w = 32, 32
    positions = fourier.distinct_frequencies(h, w)
    basis = fourier.fourier_basis(h, w, dtype=torch.float64)
    spectrum = fourier.fft2c(basis).abs()
    mi, mj = fourier.mirror_positions(h, w)
    support = torch.zeros_like(spectrum, dtype=torch.bool)
    ks = torch.arange(positions.shape[0])
    support[ks, positions[:, 0], positions[:, 1]] = True
    support[ks, mi[positions[:, 0]], mj[positions[:, 1]]] = True
    assert spectrum[~support].max() < 1e-9
    assert spectrum[support].min() > 1.0  # unit-norm image: |F| = sqrt(HW / 2) or sqrt(HW)


def test_basis_follows_device_and_dtype(device: torch.device, dtype: torch.dtype) -> None:
    basis = fourier.fourier_basis(8, 8, device=device, dtype=dtype)
    assert basis.device.type == device.type and basis.dtype == dtype


@pytest.mark.parametrize(("a", "b"), [(3, 5), (0, 7), (10, 2), (16, 0)])
def test_pure_sinusoid_spectrum_peaks_at_its_frequency_and_mirror(a: int, b: int) -> None:
    h = w = 32
    r = torch.arange(h, dtype=torch.float64)[:, None]
    c = torch.arange(w, dtype=torch.float64)[None, :]
    wave = torch.cos(2 * math.pi * (a * r / h + b * c / w) + 0.3)
    spec = perturbation_spectrum(wave.expand(2, 3, h, w).clone()).mean
    peak = ((h // 2 + a) % h, (w // 2 + b) % w)
    mirror = ((h // 2 - a) % h, (w // 2 - b) % w)
    top = torch.topk(spec.flatten(), 2).indices.tolist()
    expected = {peak[0] * w + peak[1], mirror[0] * w + mirror[1]}
    if peak == mirror:  # Nyquist in both axes: one position, amplitude cos(0.3) * HW
        assert top[0] in expected
    else:
        assert set(top) == expected
    rest = spec.clone()
    for i, j in (peak, mirror):
        rest[i, j] = 0
    assert rest.max() < 1e-3 * spec.max()


@pytest.mark.parametrize("radius", [4.0, 8.0, 12.0])
def test_white_noise_high_frequency_fraction_equals_the_area_fraction(radius: float) -> None:
    h = w = 32
    noise = torch.randn(256, 3, h, w, generator=torch.Generator().manual_seed(0))
    fraction = perturbation_spectrum(noise, radius=radius).high_fraction
    area = float((fourier.radial_distance(h, w) >= radius).double().mean())
    assert abs(fraction - area) < 0.02


def test_radial_profile_is_the_azimuthal_mean() -> None:
    d = fourier.radial_distance(16, 16, dtype=torch.float64)
    profile = fourier.radial_profile(d)
    rings = d.round()
    for r in range(profile.numel()):
        assert abs(float(profile[r]) - float(d[rings == r].mean())) < 1e-12
    assert torch.allclose(fourier.radial_profile(torch.ones(5, 16, 16)), torch.ones(5, profile.numel()))


def test_high_frequency_fraction_of_a_single_frequency_is_zero_or_one() -> None:
    basis = fourier.fourier_basis(16, 16, torch.tensor([[8, 9], [8, 15]]), dtype=torch.float64)
    amplitude = fourier.amplitude_spectrum(basis)
    torch.testing.assert_close(fourier.high_frequency_fraction(amplitude, 3.0),
                               torch.tensor([0.0, 1.0], dtype=torch.float64))
