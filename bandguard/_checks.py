"""Input validation shared by every public entry point.

Each check raises ``ValueError`` (bad value) or ``TypeError`` (bad type) with a message that
names the argument, what was given and what was expected. Inner code trusts its inputs; only
public functions call these.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from typing import TypeVar

import torch

E = TypeVar("E", bound=enum.Enum)

Bounds = tuple[float, float]

# Inputs computed in float32 may stray a rounding error outside [lo, hi]; refusing those would
# refuse the outputs of our own filters and attacks.
BOUNDS_TOL = 1e-5


def check_tensor(x: object, name: str) -> torch.Tensor:
    """Return ``x`` if it is a tensor, else raise ``TypeError`` naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_images(
    x: object,
    name: str = "x",
    *,
    bounds: Bounds | None = (0.0, 1.0),
    channels: int | None = None,
    min_size: int = 1,
) -> torch.Tensor:
    """Check an image batch: a finite floating tensor ``[N, C, H, W]`` inside ``bounds``.

    Args:
        x: the candidate tensor.
        name: the argument's name, quoted in errors.
        bounds: ``(lo, hi)`` every value must lie in (with a 1e-5 tolerance); ``None`` skips it.
        channels: the required ``C``, if any.
        min_size: smallest ``H`` and ``W`` accepted.

    Returns:
        ``x`` unchanged.
    """
    x = check_tensor(x, name)
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape [N, C, H, W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got {x.shape[1]}")
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"{name} must be at least {min_size}x{min_size}, got {tuple(x.shape[-2:])}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if bounds is not None:
        lo, hi = bounds
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - BOUNDS_TOL or xmax > hi + BOUNDS_TOL:
            raise ValueError(
                f"{name} must lie inside the model's bounds [{lo}, {hi}], "
                f"got values in [{xmin:.4g}, {xmax:.4g}]"
            )
    return x


def check_labels(y: object, x: torch.Tensor | None = None, name: str = "y",
                 *, num_classes: int | None = None) -> torch.Tensor:
    """Check class labels: an int64 tensor ``[N]`` matching the batch size of ``x``."""
    y = check_tensor(y, name)
    if y.dtype != torch.int64:
        raise ValueError(f"{name} must be an int64 tensor of class indices, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name} must have shape [N], got {tuple(y.shape)}")
    if x is not None and y.shape[0] != x.shape[0]:
        raise ValueError(f"{name} has {y.shape[0]} labels but x has {x.shape[0]} images")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{name} must hold non-negative class indices, got {int(y.min())}")
    if num_classes is not None and y.numel() and int(y.max()) >= num_classes:
        raise ValueError(f"{name} holds class {int(y.max())} but the model has {num_classes}")
    return y


def check_bounds(bounds: object, name: str = "bounds") -> Bounds:
    """Check ``(lo, hi)`` with finite ``lo < hi``; return it as a tuple of floats."""
    try:
        lo, hi = (float(b) for b in bounds)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi), got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be finite with lo < hi, got {(lo, hi)}")
    return lo, hi


def check_nonnegative(value: object, name: str) -> float:
    """Check a finite real number >= 0 (an epsilon, a radius, a rate)."""
    v = _as_real(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def check_positive(value: object, name: str) -> float:
    """Check a finite real number > 0."""
    v = _as_real(value, name)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    return v


def check_epsilons(eps: object, name: str = "eps") -> list[float]:
    """Accept one epsilon or a sequence of them; each must be finite and >= 0."""
    values = list(eps) if isinstance(eps, Iterable) and not isinstance(eps, str) else [eps]
    if not values:
        raise ValueError(f"{name} must hold at least one value, got {eps!r}")
    return [check_nonnegative(v, name) for v in values]


def check_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """Check an integer (not a bool), optionally ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_choice(value: object, choices: Sequence[str], name: str) -> str:
    """Check that ``value`` is one of ``choices`` (strings, case-insensitive)."""
    if isinstance(value, str) and value.lower() in choices:
        return value.lower()
    raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")


def check_enum(value: object, enum_type: type[E], name: str) -> E:
    """Coerce a string or member into ``enum_type``; unknown names raise ``ValueError``."""
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str):
        for member in enum_type:
            if value.lower() == str(member.value).lower():
                return member
    choices = ", ".join(repr(m.value) for m in enum_type)
    raise ValueError(f"unknown {name} {value!r}; expected one of {choices}")


def _as_real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v
