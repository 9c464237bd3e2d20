"""Centred 2-D Fourier helpers: spectra, radial masks, filtering and the Fourier basis.

This is the one module that knows about centred spectra. Conventions, shared by every caller:

- Spectra are *centred*: ``fft2c`` applies ``fftshift`` so the zero frequency sits at
  ``(H // 2, W // 2)`` (``(H/2, W/2)`` for even sizes, as in Wang et al. 1905.13545 and Yin et al.
  1906.08988). For even sizes row/column 0 holds the Nyquist frequency.
- The *mirror* of index ``p`` along an axis of length ``d`` is ``(d - p) % d`` for even ``d`` and
  ``d - 1 - p`` for odd ``d``: the position of the conjugate frequency.
- Distances are measured from the centre in frequency-index units: Euclidean for the disc
  masks (Wang et al.), Chebyshev for the square masks (Yin et al.); see :class:`MaskShape`.

Imports nothing else of bandguard. Every function follows the device and dtype of its input;
factories take keyword-only ``device`` and ``dtype``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from typing import TypeVar

import torch
from einops import rearrange

from bandguard._checks import check_bool, check_bounds, check_int, check_nonnegative

__all__ = [
    "KERNEL_GRID",
    "SIGN_BLOCK_VALUES",
    "FilterKind",
    "FrequencyFilter",
    "MaskProfile",
    "MaskShape",
    "amplitude_spectrum",
    "bandpass_mask",
    "distinct_frequencies",
    "fft2c",
    "filter_with_mask",
    "fourier_basis",
    "frequency_filter",
    "frequency_mask",
    "frequency_orbits",
    "high_frequency_fraction",
    "ifft2c",
    "kernel_frequency_response",
    "mirror_positions",
    "radial_distance",
    "radial_profile",
    "rescale_by_max",
    "sign_blocks",
]

E = TypeVar("E", bound=enum.Enum)


class MaskShape(str, enum.Enum):
    """Which distance from the centre a frequency mask thresholds.

    ``DISC``: the Euclidean distance, a centred disc (Wang et al. 1905.13545, HFC's
    ``mask_radial``: distance from ``(H/2, W/2)`` strictly below ``r``). ``SQUARE``: the Chebyshev
    distance ``max(|i - H/2|, |j - W/2|)``, a centred square (Yin et al. 1906.08988 low-pass with
    bandwidth ``B = 2 * radius``).
    """

    DISC = "disc"
    SQUARE = "square"


class MaskProfile(str, enum.Enum):
    """How a mask falls off with the distance ``d`` from the centre (``r`` the radius).

    ``IDEAL``: 1 where ``d < r``, else 0 (both papers). ``GAUSSIAN``: ``exp(-d^2 / (2 r^2))``.
    ``BUTTERWORTH``: ``1 / (1 + (d / r)^(2 order))``.
    """

    IDEAL = "ideal"
    GAUSSIAN = "gaussian"
    BUTTERWORTH = "butterworth"


class FilterKind(str, enum.Enum):
    """Which part of the spectrum a filter keeps: ``LOW`` the mask, ``HIGH`` one minus the mask."""

    LOW = "low"
    HIGH = "high"


KERNEL_GRID = 32
"""Side of the FFT grid every conv-kernel spectrum is read on (:func:`kernel_frequency_response`).

A kernel is zero-padded to ``KERNEL_GRID x KERNEL_GRID``, so frequency index ``k`` means ``k / 32``
cycles per pixel, as on a CIFAR-10 input; a kernel "radius" names the same frequencies in kernel
filtering, the kernel regularizer and the kernel spectrum.
"""


def _coerce(value: object, enum_type: type[E], name: str) -> E:
    """A member of ``enum_type`` from itself or its (case-insensitive) value; else ``ValueError``."""
    try:
        return enum_type(value.lower() if isinstance(value, str) else value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in enum_type)
        raise ValueError(f"unknown {name} {value!r}; expected one of {choices}") from None


def _check_radius(radius: object) -> float:
    # numpy scalars and 0-d tensors are radii too; an int too large for a float is refused here.
    return check_nonnegative(radius, "radius")


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
    """Inverse of :func:`fft2c`: complex ``[..., H, W]`` (centred) to complex ``[..., H, W]``.

    Args:
        spectrum: complex tensor ``[..., H, W]``, zero frequency at ``(H // 2, W // 2)``.

    Returns:
        Complex tensor ``[..., H, W]`` in pixel space (take ``.real`` for a real image's spectrum).
    """
    return torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1)))


def amplitude_spectrum(x: torch.Tensor) -> torch.Tensor:
    """``|fft2c(x)|``, real ``[..., H, W]``, centred.

    Args:
        x: real or complex tensor ``[..., H, W]``.

    Returns:
        Real tensor ``[..., H, W]``, zero frequency at ``(H // 2, W // 2)``.
    """
    return fft2c(x).abs()


# --------------------------------------------------------------------------- masks


def radial_distance(
    h: int,
    w: int,
    *,
    shape: str | MaskShape = MaskShape.DISC,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Distance of every centred frequency position from the centre ``(h // 2, w // 2)``.

    Args:
        h, w: grid size.
        shape: ``"disc"`` for the Euclidean distance, ``"square"`` for the Chebyshev distance
            ``max(|di|, |dj|)`` (see :class:`MaskShape`). In frequency-index units.
        device: where to build the tensor.
        dtype: its dtype; default torch's default dtype.

    Returns:
        Tensor ``[h, w]``.
    """
    shape = _coerce(shape, MaskShape, "shape")
    dtype = dtype or torch.get_default_dtype()
    rows = (torch.arange(h, device=device, dtype=dtype) - h // 2)[:, None]
    cols = (torch.arange(w, device=device, dtype=dtype) - w // 2)[None, :]
    if shape is MaskShape.SQUARE:
        return torch.maximum(rows.abs(), cols.abs())
    return torch.sqrt(rows**2 + cols**2)


def frequency_mask(
    h: int,
    w: int,
    radius: float,
    *,
    kind: str | FilterKind = FilterKind.LOW,
    shape: str | MaskShape = MaskShape.DISC,
    profile: str | MaskProfile = MaskProfile.IDEAL,
    order: int = 2,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Low- or high-pass mask in centred coordinates: the one mask every filter in bandguard uses.

    With ``shape="disc"`` and ``profile="ideal"`` the low-pass keeps the positions whose distance
    from ``(H/2, W/2)`` is strictly below ``radius``: Wang et al.'s mask (1905.13545, HFC
    ``mask_radial``). With ``shape="square"`` it keeps ``max(|i - H/2|, |j - W/2|) < radius``:
    Yin et al.'s centred square (1906.08988) of bandwidth ``B = 2 * radius``. The high-pass mask is
    one minus the low-pass one, so the two parts of an image add up to it. Every mask depends only
    on ``|i - H/2|`` and ``|j - W/2|``, so it equals its mirror (the Nyquist row and column of even
    sizes are their own mirrors) and filtering a real image gives a real image.

    Args:
        h, w: grid size.
        radius: cut-off distance in frequency-index units, >= 0 (for 32 x 32 the disc's corner
            lies at ``16 * sqrt(2) ~ 22.6``, the square's at 16).
        kind: ``"low"`` or ``"high"``.
        shape: ``"disc"`` (Wang et al.) or ``"square"`` (Yin et al.).
        profile: ``"ideal"``, ``"gaussian"`` or ``"butterworth"`` (see :class:`MaskProfile`).
        order: Butterworth order, >= 1.
        device: where to build the mask.
        dtype: its dtype; default torch's default dtype.

    Returns:
        Tensor ``[h, w]`` with values in [0, 1].

    Raises:
        ValueError: an unknown ``kind``, ``shape`` or ``profile`` (whatever the radius), a negative
            radius or an order below 1.
    """
    kind = _coerce(kind, FilterKind, "kind")
    profile = _coerce(profile, MaskProfile, "profile")
    radius = _check_radius(radius)
    order = check_int(order, "order", minimum=1)
    d = radial_distance(h, w, shape=shape, device=device, dtype=dtype)
    if profile is MaskProfile.IDEAL:
        low = (d < radius).to(d.dtype)
    elif radius == 0:
        low = torch.zeros_like(d)
    else:
        # d / radius, with 0 at the centre: a radius below the dtype's smallest number would
        # otherwise give 0 / 0 = NaN there (and radius**2 overflows long before radius does).
        ratio = torch.where(d > 0, d / radius, torch.zeros_like(d))
        if profile is MaskProfile.GAUSSIAN:
            low = torch.exp(-0.5 * ratio**2)
        else:
            low = 1.0 / (1.0 + ratio ** (2 * order))
    return low if kind is FilterKind.LOW else 1.0 - low


def bandpass_mask(
    h: int,
    w: int,
    inner: float,
    outer: float,
    *,
    shape: str | MaskShape = MaskShape.DISC,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Ideal band mask keeping ``inner <= d < outer`` (``d`` as in :func:`radial_distance`).

    The difference of two ideal low-pass masks (:func:`frequency_mask`), so it equals its mirror.

    Args:
        h, w: grid size.
        inner: the band's inner radius, in frequency-index units (kept).
        outer: its outer radius (excluded); ``outer <= inner`` gives an empty band.
        shape: ``"disc"`` (Wang et al. 1905.13545) or ``"square"`` (Yin et al. 1906.08988).
        device: where to build the mask.
        dtype: its dtype; default torch's default dtype.

    Returns:
        Tensor ``[h, w]``: 1 inside the band, 0 outside.
    """
    outer_mask = frequency_mask(h, w, outer, shape=shape, device=device, dtype=dtype)
    return outer_mask - frequency_mask(h, w, inner, shape=shape, device=device, dtype=dtype)


# --------------------------------------------------------------------------- filtering


def filter_with_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Multiply the centred spectrum of each channel by ``mask`` and return to pixel space.

    Uses the real FFT: for real ``x`` and a mask equal to its mirror (every
    :func:`frequency_mask` is one) it equals ``ifft2c(fft2c(x) * mask).real`` at half the cost.

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


def rescale_by_max(x: torch.Tensor) -> torch.Tensor:
    """Divide each image of ``x`` ``[..., C, H, W]`` by its own maximum over ``C, H, W``.

    Exactly Wang et al.'s ``x / max(x)`` (1905.13545, HFC scripts: ``x / max(x) * 255`` on 0..255
    pixels), so the brightest value of every image becomes 1 and the rest keep their sign. An image
    whose maximum is <= 0 (nothing to scale by) is returned unchanged.

    Args:
        x: real images ``[..., C, H, W]``.

    Returns:
        Tensor shaped like ``x``, each image's maximum 1 (where it was positive).

    Raises:
        ValueError: ``x`` has fewer than three dimensions.
    """
    if x.ndim < 3:
        raise ValueError(f"rescale needs images [..., C, H, W], got shape {tuple(x.shape)}")
    peak = x.amax(dim=(-3, -2, -1), keepdim=True)
    positive = peak > 0
    return torch.where(positive, x / torch.where(positive, peak, torch.ones_like(peak)), x)


def frequency_filter(
    x: torch.Tensor,
    radius: float,
    *,
    kind: str | FilterKind = FilterKind.LOW,
    shape: str | MaskShape = MaskShape.DISC,
    profile: str | MaskProfile = MaskProfile.IDEAL,
    order: int = 2,
    rescale: bool = False,
    clip: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Low- or high-pass filter each channel of ``x``: bandguard's one frequency filter.

    The spectrum of every channel is multiplied by :func:`frequency_mask`; then, only if asked,
    the result is clipped to ``clip`` and divided by its per-image maximum (:func:`rescale_by_max`),
    in that order. The defaults give the raw filtered image, as Wang et al.'s HFC code makes it
    (``np.real(ifft(mask * fft(x)))``, never clipped): a high-pass image is small and mostly
    negative. ``rescale=True`` is their scripts' ``x / max(x)``. Differentiable (a fixed linear map
    before the optional clip and rescale).

    Args:
        x: real images ``[..., H, W]`` (``[N, C, H, W]`` for ``rescale``).
        radius: cut-off in frequency-index units (see :func:`frequency_mask`).
        kind, shape, profile, order: see :func:`frequency_mask`.
        rescale: divide each image by its maximum (Wang et al.).
        clip: ``(lo, hi)`` to clamp to, or ``None`` (default: no clipping, as both papers).

    Returns:
        Tensor shaped like ``x``, dtype of ``x``.

    Example:
        >>> low = frequency_filter(x, 8)                      # Wang et al. disc, r = 8
        >>> high = frequency_filter(x, 8, kind="high")        # low + high == x
        >>> yin = frequency_filter(x, 4, shape="square")      # Yin et al. square, B = 8
    """
    h, w = x.shape[-2:]
    clip = None if clip is None else check_bounds(clip, "clip")
    rescale = check_bool(rescale, "rescale")
    mask = frequency_mask(h, w, radius, kind=kind, shape=shape, profile=profile, order=order,
                          device=x.device, dtype=x.dtype)
    out = filter_with_mask(x, mask)
    if clip is not None:
        out = out.clamp(clip[0], clip[1])
    return rescale_by_max(out) if rescale else out


@dataclasses.dataclass(frozen=True)
class FrequencyFilter:
    """Settings of :func:`frequency_filter`, validated once; calling it filters a batch.

    The one transform behind the ``LowPass``/``HighPass`` defenses, the filtered-data training
    modes and ``filtered_accuracy``, so each of them filters identically for equal settings.

    Attributes:
        radius: cut-off in frequency-index units, >= 0.
        kind: ``"low"`` or ``"high"``.
        shape: ``"disc"`` (Wang et al. 1905.13545) or ``"square"`` (Yin et al. 1906.08988).
        profile: ``"ideal"``, ``"gaussian"`` or ``"butterworth"``.
        order: Butterworth order.
        rescale: Wang et al.'s per-image ``x / max(x)``.
        clip: ``(lo, hi)`` or ``None`` (no clipping).
    """

    radius: float
    kind: FilterKind = FilterKind.LOW
    shape: MaskShape = MaskShape.DISC
    profile: MaskProfile = MaskProfile.IDEAL
    order: int = 2
    rescale: bool = False
    clip: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", _check_radius(self.radius))
        object.__setattr__(self, "kind", _coerce(self.kind, FilterKind, "kind"))
        object.__setattr__(self, "shape", _coerce(self.shape, MaskShape, "shape"))
        object.__setattr__(self, "profile", _coerce(self.profile, MaskProfile, "profile"))
        object.__setattr__(self, "order", check_int(self.order, "order", minimum=1))
        object.__setattr__(self, "rescale", check_bool(self.rescale, "rescale"))
        if self.clip is not None:
            object.__setattr__(self, "clip", check_bounds(self.clip, "clip"))

    def mask(self, h: int, w: int, *, device: torch.device | str | None = None,
             dtype: torch.dtype | None = None) -> torch.Tensor:
        """The mask these settings apply, ``[h, w]``."""
        return frequency_mask(h, w, self.radius, kind=self.kind, shape=self.shape,
                              profile=self.profile, order=self.order, device=device, dtype=dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Filter ``x`` ``[..., H, W]`` (see :func:`frequency_filter`)."""
        return frequency_filter(x, self.radius, kind=self.kind, shape=self.shape,
                                profile=self.profile, order=self.order, rescale=self.rescale,
                                clip=self.clip)

    def describe(self) -> str:
        """Settings that differ from the defaults, as ``key=value`` text (for ``repr``)."""
        parts = [f"radius={self.radius:g}"]
        for field in dataclasses.fields(self)[1:]:
            value = getattr(self, field.name)
            if value != field.default:
                if field.name == "order" and self.profile is not MaskProfile.BUTTERWORTH:
                    continue
                shown = value.value if isinstance(value, enum.Enum) else value
                parts.append(f"{field.name}={shown!r}")
        return ", ".join(parts)


# --------------------------------------------------------------------------- conv kernels


def kernel_frequency_response(weight: torch.Tensor) -> torch.Tensor:
    """Centred spectrum of conv kernels on the :data:`KERNEL_GRID` grid (one grid for all kernels).

    Each ``kh x kw`` kernel is zero-padded at the bottom and right to ``KERNEL_GRID x KERNEL_GRID``
    (32 x 32) and transformed with :func:`fft2c`: the kernel's response to the frequencies of a
    32 x 32 input, so index ``k`` from the centre is ``k / 32`` cycles per pixel whatever the
    kernel size. Where the kernel sits in the canvas changes only the phase. Used by kernel
    filtering, the kernel high-frequency regularizer and the kernel spectrum.

    Args:
        weight: kernels ``[..., kh, kw]`` with ``kh, kw <= KERNEL_GRID``.

    Returns:
        Complex tensor ``[..., KERNEL_GRID, KERNEL_GRID]``, zero frequency at ``(16, 16)``.
    """
    kh, kw = weight.shape[-2:]
    if kh > KERNEL_GRID or kw > KERNEL_GRID:
        raise ValueError(f"kernels must be at most {KERNEL_GRID} x {KERNEL_GRID}, got {kh} x {kw}")
    canvas = torch.nn.functional.pad(weight, (0, KERNEL_GRID - kw, 0, KERNEL_GRID - kh))
    return fft2c(canvas)


# --------------------------------------------------------------------------- Fourier basis


def mirror_positions(
    h: int, w: int, *, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror index along each axis in centred coordinates (Yin et al. 1906.08988, ``_get_symmetric_pos``).

    Args:
        h, w: grid size.
        device: where to build the indices.

    Returns:
        ``(rows [h], cols [w])``: ``rows[i]`` is the mirror of row ``i``, likewise ``cols``.
    """

    def mirror(d: int) -> torch.Tensor:
        p = torch.arange(d, device=device)
        return (d - p) % d if d % 2 == 0 else d - 1 - p

    return mirror(h), mirror(w)


def frequency_orbits(
    h: int,
    w: int,
    *,
    max_frequency: int | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group the centred positions into mirror pairs (orbits of size 1 or 2).

    The representative of each pair is the one first in row-major order, as Yin et al.'s loop
    visits them; there are ``(h * w + s) / 2`` pairs where ``s`` counts self-mirrored positions
    (514 for 32 x 32, 394 for 28 x 28).

    With ``max_frequency = m`` only the centred square ``|i - h // 2| <= m``, ``|j - w // 2| <= m``
    is grouped (Yin et al.'s ImageNet maps: ``m = 31``, a 63 x 63 square at 224 x 224). The mirror
    of a position in the square lies in the square, so its pairs are whole: 1,985 of them for
    ``m = 31`` at even sizes.

    Args:
        h, w: grid size.
        max_frequency: keep only the centred square of this half-width (>= 0); ``None`` keeps
            the whole grid, as does any ``m`` reaching past the edges.
        device: where to build the tensors.

    Returns:
        ``(positions [K, 2], orbit [h', w'])``: the representatives' ``(row, col)`` on the full
        ``h x w`` grid in row-major order, and for every position of the (cropped) grid the index
        ``k`` of its pair, so ``values[orbit]`` spreads ``K`` per-pair values back onto it.
        ``h' = min(h, 2 m + 1)`` rows around the centre (likewise ``w'``), ``h x w`` without ``m``;
        the zero frequency sits at ``(h' // 2, w' // 2)`` of the crop as of the full grid.
    """
    mi, mj = mirror_positions(h, w, device=device)
    linear = torch.arange(h * w, device=device).reshape(h, w)
    representative = torch.minimum(linear, linear[mi][:, mj])
    if max_frequency is not None:
        m = check_int(max_frequency, "max_frequency", minimum=0)
        rows, cols = _centred_span(h, m), _centred_span(w, m)
        representative = representative[rows, cols].contiguous()
    reps = torch.unique(representative)  # sorted, so row-major order
    orbit = torch.searchsorted(reps, representative)
    positions = torch.stack([reps // w, reps % w], dim=1)
    return positions, orbit


def _centred_span(d: int, m: int) -> slice:
    """Indices within ``m`` of the centre ``d // 2`` along an axis of length ``d``."""
    return slice(max(0, d // 2 - m), min(d, d // 2 + m + 1))


def distinct_frequencies(
    h: int, w: int, *, max_frequency: int | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """One ``(row, col)`` per mirror pair, row-major (see :func:`frequency_orbits`).

    Args:
        h, w: grid size.
        max_frequency: keep only the centred square of this half-width (see
            :func:`frequency_orbits`); ``None``: the whole grid.
        device: where to build the tensor.

    Returns:
        int64 tensor ``[K, 2]`` of centred ``(row, col)`` positions.
    """
    return frequency_orbits(h, w, max_frequency=max_frequency, device=device)[0]


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
            (:func:`distinct_frequencies`). The result holds ``K x h x w`` values: callers at large
            sizes pass one chunk of positions at a time (25,090 images of 224 x 224 would be 5 GB).
        device: where to build the basis (default: that of ``positions``, else the CPU).
        dtype: real dtype of the images; default torch's default dtype.

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


SIGN_BLOCK_VALUES = 2**22
"""Most random signs drawn per generator call by :func:`sign_blocks`: blocks ``[kb, n, c]`` with
``kb = max(1, SIGN_BLOCK_VALUES // (n c))`` frequencies, fixed by ``n`` and ``c`` alone."""


def sign_blocks(
    k: int,
    n: int,
    c: int,
    *,
    positive: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """The signs ``s[k, n, c]`` of basis perturbations ``x + s eps U_k``, drawn a block at a time.

    Yin et al. (1906.08988) draw ``s = +-1`` independently per frequency, image and channel. The
    ``k`` frequencies are cut into blocks whose size depends on ``n`` and ``c`` only (see
    :data:`SIGN_BLOCK_VALUES`), one generator call each, so the signs never depend on how a caller
    chunks its forwards and never need ``k x n x c`` memory at once.

    Args:
        k, n, c: frequencies, images, channels.
        positive: all ``+1`` instead of random signs.
        generator: source of randomness, drawn on its own device; ``None`` draws from torch's
            default generator of ``device``.
        device, dtype: of the blocks.

    Yields:
        ``(k0, block)``: the first frequency of the block and its signs ``[kb, n, c]``.
    """
    dtype = dtype or torch.get_default_dtype()
    per_block = max(1, SIGN_BLOCK_VALUES // max(1, n * c))
    draw_device = generator.device if generator is not None else device
    for k0 in range(0, k, per_block):
        kb = min(per_block, k - k0)
        if positive:
            yield k0, torch.ones(kb, n, c, device=device, dtype=dtype)
        else:
            bits = torch.randint(0, 2, (kb, n, c), generator=generator, device=draw_device)
            yield k0, (2 * bits - 1).to(device=device, dtype=dtype)


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
    high = frequency_mask(h, w, radius, kind=FilterKind.HIGH, device=spectrum.device, dtype=energy.dtype)
    total = energy.sum(dim=(-2, -1))
    return (energy * high).sum(dim=(-2, -1)) / total.clamp_min(torch.finfo(energy.dtype).tiny)
