"""Centred 2-D Fourier helpers: spectra, radial masks, filtering and the Fourier basis.

This is the one module that knows about centred spectra. Conventions, shared by every caller:

- Spectra are *centred*: ``fft2c`` applies ``fftshift`` so the zero frequency sits at
  ``(H // 2, W // 2)`` (``(H/2, W/2)`` for even sizes, as in Wang et al. 1905.13545 and Yin et al.
  1906.08988). For even sizes row/column 0 holds the Nyquist frequency.
- The *mirror* of index ``p`` along an axis of length ``d`` is ``(d - p) % d`` for even ``d`` and
  ``d - 1 - p`` for odd ``d``: the position of the conjugate frequency.
- Radial distances are measured from the centre in index units.

Imports nothing else of bandguard. Every function follows the device and dtype of its input;
factories take keyword-only ``device`` and ``dtype``.
"""

from __future__ import annotations

import torch
from einops import rearrange

__all__ = [
    "amplitude_spectrum",
    "bandpass_mask",
    "distinct_frequencies",
    "fft2c",
    "filter_with_mask",
    "fourier_basis",
    "frequency_orbits",
    "high_frequency_fraction",
    "highpass",
    "highpass_mask",
    "ifft2c",
    "lowpass",
    "lowpass_mask",
    "mirror_positions",
    "radial_distance",
    "radial_profile",
    "split_frequencies",
]

SMOOTH_KINDS = ("ideal", "gaussian", "butterworth")


# --------------------------------------------------------------------------- transforms


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred 2-D FFT over the last two axes.

    Args:
        x: real or complex tensor ``[..., H, W]``.

    Returns:
        Complex tensor ``[..., H, W]``, zero frequency at ``(H // 2, W // 2)``.
    """
    return torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))


def ifft2c(spectrum: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c`: complex ``[..., H, W]`` (centred) to complex ``[..., H, W]``."""
    return torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1)))


def amplitude_spectrum(x: torch.Tensor) -> torch.Tensor:
    """``|fft2c(x)|``, real ``[..., H, W]``, centred."""
    return fft2c(x).abs()


# --------------------------------------------------------------------------- masks


def radial_distance(
    h: int, w: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Distance of every centred frequency position from the centre ``(h // 2, w // 2)``.

    Returns:
        Tensor ``[h, w]``.
    """
    dtype = dtype or torch.get_default_dtype()
    rows = torch.arange(h, device=device, dtype=dtype) - h // 2
    cols = torch.arange(w, device=device, dtype=dtype) - w // 2
    return torch.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)


def lowpass_mask(
    h: int,
    w: int,
    radius: float,
    *,
    smooth: str = "ideal",
    order: int = 2,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Radial low-pass mask in centred coordinates.

    ``ideal`` keeps positions at distance strictly below ``radius`` (Wang et al. 1905.13545, HFC);
    ``gaussian`` is ``exp(-d^2 / (2 radius^2))``; ``butterworth`` is ``1 / (1 + (d / radius)^(2 order))``.
    All three are point-symmetric, so filtering a real image gives a real image.

    Returns:
        Tensor ``[h, w]`` with values in [0, 1].
    """
    d = radial_distance(h, w, device=device, dtype=dtype)
    if smooth == "ideal":
        return (d < radius).to(d.dtype)
    if radius == 0:
        return torch.zeros_like(d)
    if smooth == "gaussian":
        return torch.exp(-(d**2) / (2 * radius**2))
    if smooth == "butterworth":
        return 1.0 / (1.0 + (d / radius) ** (2 * order))
    raise ValueError(f"unknown smooth {smooth!r}; expected one of {SMOOTH_KINDS}")


def highpass_mask(h: int, w: int, radius: float, **kwargs: object) -> torch.Tensor:
    """``1 - lowpass_mask(...)``: keeps positions at distance >= ``radius``. Tensor ``[h, w]``."""
    return 1.0 - lowpass_mask(h, w, radius, **kwargs)  # type: ignore[arg-type]


def bandpass_mask(h: int, w: int, inner: float, outer: float, **kwargs: object) -> torch.Tensor:
    """Keeps ``inner <= d < outer`` (ideal) or the difference of two smooth low-passes."""
    return lowpass_mask(h, w, outer, **kwargs) - lowpass_mask(h, w, inner, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- filtering


def filter_with_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Multiply the centred spectrum of each channel by ``mask`` and return to pixel space.

    Uses the real FFT: valid for real ``x`` and a point-symmetric ``mask`` (every radial mask
    above is one), where it equals ``ifft2c(fft2c(x) * mask).real`` at half the cost.

    Args:
        x: real tensor ``[..., H, W]``.
        mask: real tensor ``[H, W]`` in centred coordinates.

    Returns:
        Real tensor ``[..., H, W]``, dtype of ``x``.
    """
    h, w = x.shape[-2:]
    half = torch.fft.ifftshift(mask, dim=(-2, -1))[..., : w // 2 + 1]
    spectrum = torch.fft.rfft2(x)
    return torch.fft.irfft2(spectrum * half.to(spectrum.real.dtype), s=(h, w))


def lowpass(x: torch.Tensor, radius: float, *, smooth: str = "ideal", order: int = 2) -> torch.Tensor:
    """Low-frequency part of each channel of ``x`` ``[..., H, W]`` (see :func:`lowpass_mask`)."""
    h, w = x.shape[-2:]
    mask = lowpass_mask(h, w, radius, smooth=smooth, order=order, device=x.device, dtype=x.dtype)
    return filter_with_mask(x, mask)


def highpass(x: torch.Tensor, radius: float, *, smooth: str = "ideal", order: int = 2) -> torch.Tensor:
    """High-frequency part of ``x``: ``x - lowpass(x, radius)``. Shape ``[..., H, W]``."""
    return x - lowpass(x, radius, smooth=smooth, order=order)


def split_frequencies(x: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``x`` ``[..., H, W]`` into ``(low, high)`` with ``low + high == x`` (Wang et al. HFC).

    ``low`` keeps centred frequencies at distance < ``radius``; ``high`` is the rest.
    """
    low = lowpass(x, radius)
    return low, x - low


# --------------------------------------------------------------------------- Fourier basis


def mirror_positions(
    h: int, w: int, *, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror index along each axis in centred coordinates (Yin et al. ``_get_symmetric_pos``).

    Returns:
        ``(rows [h], cols [w])``: ``rows[i]`` is the mirror of row ``i``, likewise ``cols``.
    """

    def mirror(d: int) -> torch.Tensor:
        p = torch.arange(d, device=device)
        return (d - p) % d if d % 2 == 0 else d - 1 - p

    return mirror(h), mirror(w)


def frequency_orbits(
    h: int, w: int, *, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group the ``h * w`` centred positions into mirror pairs (orbits of size 1 or 2).

    The representative of each pair is the one first in row-major order, as Yin et al.'s loop
    visits them; there are ``(h * w + s) / 2`` pairs where ``s`` counts self-mirrored positions
    (514 for 32 x 32, 394 for 28 x 28).

    Returns:
        ``(positions [K, 2], orbit [h, w])``: the representatives' ``(row, col)`` in row-major
        order, and for every position the index ``k`` of its pair, so ``values[orbit]`` spreads
        ``K`` per-pair values back onto the full grid.
    """
    mi, mj = mirror_positions(h, w, device=device)
    linear = torch.arange(h * w, device=device).reshape(h, w)
    mirrored = linear[mi][:, mj]
    representative = torch.minimum(linear, mirrored)
    reps = torch.unique(representative)  # sorted, so row-major order
    orbit = torch.searchsorted(reps, representative)
    positions = torch.stack([reps // w, reps % w], dim=1)
    return positions, orbit


def distinct_frequencies(h: int, w: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """One ``(row, col)`` per mirror pair, row-major, as ``[K, 2]`` int64 (see :func:`frequency_orbits`)."""
    return frequency_orbits(h, w, device=device)[0]


def fourier_basis(
    h: int,
    w: int,
    positions: torch.Tensor | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Real Fourier basis images ``U_ij`` with unit L2 norm (Yin et al. 1906.08988).

    In centred coordinates ``0.5 + 0.5j`` is put at ``(i, j)`` and ``0.5 - 0.5j`` at its mirror
    (``1`` where the position is its own mirror); the real part of the inverse FFT, scaled to unit
    norm, is ``U_ij``. A position and its mirror give the same image. Built batched, one inverse FFT
    for all requested positions.

    Args:
        h, w: image size.
        positions: int64 ``[K, 2]`` centred ``(row, col)`` positions; default every distinct one
            (:func:`distinct_frequencies`).

    Returns:
        Tensor ``[K, h, w]``.
    """
    dtype = dtype or torch.get_default_dtype()
    if positions is None:
        positions = distinct_frequencies(h, w, device=device)
    positions = positions.to(device=device, dtype=torch.long)
    mi, mj = mirror_positions(h, w, device=positions.device)
    # Make every position its pair's representative, so a position and its mirror give one image.
    i, j = positions[:, 0], positions[:, 1]
    si, sj = mi[i], mj[j]
    swap = si * w + sj < i * w + j
    i, si = torch.where(swap, si, i), torch.where(swap, i, si)
    j, sj = torch.where(swap, sj, j), torch.where(swap, j, sj)
    own = (si == i) & (sj == j)

    k = positions.shape[0]
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    spectrum = torch.zeros(k, h * w, dtype=complex_dtype, device=positions.device)
    rows = torch.arange(k, device=positions.device)
    spectrum[rows, si * w + sj] = torch.where(own, 1.0 + 0.0j, 0.5 - 0.5j).to(complex_dtype)
    spectrum[rows, i * w + j] = torch.where(own, 1.0 + 0.0j, 0.5 + 0.5j).to(complex_dtype)
    spectrum = rearrange(spectrum, "k (h w) -> k h w", h=h, w=w)
    basis = ifft2c(spectrum).real
    basis = basis / torch.linalg.vector_norm(basis, dim=(-2, -1), keepdim=True)
    return basis.to(dtype)


# --------------------------------------------------------------------------- summaries


def radial_profile(spectrum: torch.Tensor) -> torch.Tensor:
    """Azimuthal mean of a centred map over rings of integer distance ``round(d)``.

    Args:
        spectrum: real tensor ``[..., H, W]`` (an amplitude or energy map, centred).

    Returns:
        Tensor ``[..., R]`` with ``R = round(max distance) + 1``; entry ``r`` is the mean over the
        positions whose distance rounds to ``r``.
    """
    h, w = spectrum.shape[-2:]
    ring = radial_distance(h, w, device=spectrum.device, dtype=torch.float64).round().long()
    ring = rearrange(ring, "h w -> (h w)")
    n_rings = int(ring.max()) + 1
    members = torch.nn.functional.one_hot(ring, n_rings).to(spectrum.dtype)  # [HW, R]
    averaging = members / members.sum(dim=0, keepdim=True)
    return rearrange(spectrum, "... h w -> ... (h w)") @ averaging


def high_frequency_fraction(spectrum: torch.Tensor, radius: float) -> torch.Tensor:
    """Fraction of spectral energy at distance >= ``radius`` from the centre.

    Args:
        spectrum: centred amplitude ``|F|`` ``[..., H, W]`` (energy is its square).
        radius: the cut-off, in index units.

    Returns:
        Tensor ``[...]`` in [0, 1].
    """
    h, w = spectrum.shape[-2:]
    energy = spectrum.abs() ** 2
    high = highpass_mask(h, w, radius, device=spectrum.device, dtype=energy.dtype)
    total = energy.sum(dim=(-2, -1))
    return (energy * high).sum(dim=(-2, -1)) / total.clamp_min(torch.finfo(energy.dtype).tiny)
