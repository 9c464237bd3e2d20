"""Band-limited projection: hypothesis invariants (bounds, eps-ball, band confinement: the
perturbation's spectrum outside the band is zero up to float error), the slack's leak bound,
idempotence, and errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bandguard.attacks.band import Band, band_mask, band_project
from bandguard.fourier import bandpass_mask, fft2c, filter_with_mask, radial_distance

pytestmark = pytest.mark.usefixtures("one_thread")


bands = st.sampled_from([Band(high=2.5), Band(low=2.0), Band(low=1.0, high=3.5), Band(high=1.0)])


def _outside(delta: torch.Tensor, band: Band) -> torch.Tensor:
    """The part of ``delta`` outside the band, by an independent route: the full complex FFT."""
    h, w = delta.shape[-2:]
    d = radial_distance(h, w, dtype=torch.float64)
    high = math.inf if band.high is None else band.high
    outside = ~((d >= band.low) & (d < high))
    return fft2c(delta.double()) * outside


@settings(max_examples=80, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(3, 10), st.integers(3, 10)),
    eps=st.floats(0.0, 2.0),
    norm=st.sampled_from(["linf", "l2"]),
    band=bands,
    rounds=st.integers(0, 4),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    bounds=st.sampled_from([(0.0, 1.0), (-1.0, 1.0)]),
    saturate=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_exact_projection_stays_in_ball_bounds_and_band(shape, eps, norm, band, rounds, dtype, bounds,
                                                        saturate, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    lo, hi = bounds
    x0 = lo + (hi - lo) * torch.rand(shape, generator=g, dtype=dtype)
    if saturate:  # pixels on the bounds, as MNIST's background
        x0 = x0.clamp(lo + 0.2 * (hi - lo), hi - 0.2 * (hi - lo))
        x0 = torch.where(x0 <= lo + 0.2 * (hi - lo), torch.full_like(x0, lo), x0)
    x = x0 + 2 * eps * torch.randn(shape, generator=g, dtype=dtype)
    exact = Band(low=band.low, high=band.high, rounds=rounds, slack=0.0)
    d = radial_distance(*shape[-2:], dtype=torch.float64)
    if not bool(((d >= band.low) & (d < (math.inf if band.high is None else band.high))).any()):
        # A band holding no frequency of the image: an attack confined to it could not move.
        with pytest.raises(ValueError, match="holds no frequency of a"):
            band_project(x, x0, eps=eps, norm=norm, band=exact, bounds=bounds)
        return
    out = band_project(x, x0, eps=eps, norm=norm, band=exact, bounds=bounds)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert out.dtype == dtype and out.shape == x0.shape
    assert float(out.min()) >= lo and float(out.max()) <= hi
    d = (out - x0).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else torch.linalg.vector_norm(d, dim=1)
    assert float(size.max()) <= eps * (1 + tol) + tol
    leak = _outside(out - x0, band).abs().amax()
    assert float(leak) <= tol * (1 + eps) * math.sqrt(shape[-1] * shape[-2])


@settings(max_examples=40, deadline=None)
@given(
    eps=st.floats(0.01, 1.0),
    norm=st.sampled_from(["linf", "l2"]),
    band=bands,
    slack=st.floats(0.0, 0.2),
    seed=st.integers(0, 2**16),
)
def test_slack_leaks_at_most_slack_eps_per_pixel(eps, norm, band, slack, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(3, 2, 8, 8, generator=g) > 0.6).double()  # every pixel on a bound
    x = x0 + eps * torch.randn(3, 2, 8, 8, generator=g, dtype=torch.float64)
    loose = Band(low=band.low, high=band.high, slack=slack)
    out = band_project(x, x0, eps=eps, norm=norm, band=loose)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    mask = band_mask(band, 8, 8, dtype=torch.float64)
    d = out - x0
    # ``d`` is a band-limited ``b`` minus a clamp correction ``c`` with |c| <= slack * eps per pixel,
    # so its out-of-band part, (I - P) c, has L2 norm <= |c|_2 <= slack * eps * sqrt(pixels).
    outside = torch.linalg.vector_norm((d - filter_with_mask(d, mask)).flatten(1), dim=1)
    assert float(outside.max()) <= slack * eps * math.sqrt(2 * 64) + 1e-9


def test_projection_of_a_feasible_band_limited_point_is_the_identity() -> None:
    g = torch.Generator().manual_seed(0)
    band = Band(high=3.0, slack=0.0)
    x0 = 0.25 + 0.5 * torch.rand(4, 3, 12, 12, generator=g, dtype=torch.float64)
    delta = filter_with_mask(torch.randn(4, 3, 12, 12, generator=g, dtype=torch.float64),
                             band_mask(band, 12, 12, dtype=torch.float64))
    delta = 0.1 * delta / delta.flatten(1).abs().amax(1).view(-1, 1, 1, 1)  # Linf 0.1: inside everything
    out = band_project(x0 + delta, x0, eps=0.2, norm="linf", band=band)
    assert torch.allclose(out, x0 + delta, atol=1e-12)


def test_saturated_pixels_force_a_smaller_step_without_slack() -> None:
    """MNIST-like images (most pixels at 0): exact confinement shrinks the step, slack restores it."""
    g = torch.Generator().manual_seed(1)
    x0 = (torch.rand(8, 1, 16, 16, generator=g) > 0.8).float()
    x = x0 + 0.3 * torch.randn(8, 1, 16, 16, generator=g)
    exact = band_project(x, x0, eps=0.3, norm="linf", band=Band(high=4.0, slack=0.0))
    loose = band_project(x, x0, eps=0.3, norm="linf", band=Band(high=4.0, slack=0.05))
    exact_size = (exact - x0).flatten(1).abs().amax(1)
    loose_size = (loose - x0).flatten(1).abs().amax(1)
    assert float(exact_size.max()) < 1e-6
    assert float(loose_size.min()) > 0.01


def test_mask_matches_the_fourier_masks() -> None:
    assert torch.equal(band_mask(Band(low=1.0, high=3.0), 9, 9), bandpass_mask(9, 9, 1.0, 3.0))
    assert float(band_mask(Band(), 9, 9).min()) == 1.0  # the full band keeps everything


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"low": -1.0}, "band.low"), ({"low": 3.0, "high": 2.0}, "band.high"),
    ({"rounds": -1}, "band.rounds"), ({"slack": -0.1}, "band.slack"),
])
def test_bad_band_raises_naming_the_field(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        Band(**kwargs)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_band_limited_pgd_stays_in_band_ball_and_bounds(norm: str) -> None:
    """PGD with ``band`` (Guo et al. 1809.08758): every step is projected into the band exactly."""
    from bandguard.attacks import PGD

    g = torch.Generator().manual_seed(0)
    # Seeded: with the global generator's state left by earlier tests, about 1 model in 20 already
    # misclassifies all six images, which are then not attacked and the "it moved" check fails.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 4)).double()
    x = 0.25 + 0.5 * torch.rand(6, 3, 12, 12, generator=g, dtype=torch.float64)
    y = torch.arange(6) % 4
    eps = 0.05 if norm == "linf" else 0.5
    band = Band(high=3.0, slack=0.0)
    r = PGD(eps=eps, norm=norm, steps=5, band=band)(model, x, y)[0]
    delta = r.x_adv - x
    mask = band_mask(band, 12, 12, dtype=torch.float64)
    assert float(delta.abs().max()) > 0  # it moved
    assert float((delta - filter_with_mask(delta, mask)).abs().max()) < 1e-10
    assert float(r.norms.max()) <= eps + 1e-9
    assert float(r.x_adv.min()) >= 0 and float(r.x_adv.max()) <= 1
