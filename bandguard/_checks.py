"""Input validation shared by every public entry point.

Each check raises ``ValueError`` (bad value) or ``TypeError`` (bad type) with a message that
names the argument, what was given and what was expected. Inner code trusts its inputs; only
public functions call these.

One coercion rule everywhere:

- Numbers: wherever a Python number is accepted, so are numpy scalars (``np.float32(0.3)``,
  ``np.int64(5)``), 0-d numpy arrays and 0-d tensors. A real setting must be finite and within
  float32's range (:data:`MAX_REAL`): a larger one overflows the first tensor it meets.
- Budgets: an eps is a number or its text, ``"8/255"``, ``"0.03"`` or ``"1e-3"``, read by
  :func:`parse_number` alone: the command line, benchmark specs (TOML) and every Python entry
  point that takes an eps (:func:`check_epsilons`, :func:`check_eps`) give ``"8/255"`` the same
  float, ``8 / 255``.
- Integers and booleans are strict: ``1.5`` is no int and ``"no"`` (or ``1``) is no bool.
- Names: where a list of names belongs, a single string is one name (``"contrast"`` is
  ``("contrast",)``, never ``("c", "o", ...)``); an empty list is refused (:func:`check_names`).
- Results: a computation that overflows is refused with the setting that drove it named, never
  returned as inf or NaN (:func:`check_finite` with a ``hint``).
"""

from __future__ import annotations

import difflib
import enum
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

E = TypeVar("E", bound=enum.Enum)

Bounds = tuple[float, float]

# Inputs computed in float32 may stray a rounding error outside [lo, hi]; refusing those would
# refuse the outputs of our own filters and attacks.
BOUNDS_TOL = 1e-5

# torch.Generator.manual_seed takes any integer that fits in 64 bits; we keep seeds non-negative.
MAX_SEED = 2**64 - 1

# Rows of a model output that are all >= 0 and sum to one within this are probabilities.
PROBABILITY_TOL = 1e-4

#: The largest magnitude of a real setting: float32's range, the dtype tensors default to. A larger
#: eps, radius or rho becomes inf in the first float32 tensor it meets (and NaN after it).
MAX_REAL = float(torch.finfo(torch.float32).max)

#: The dtypes ``torch.fft`` transforms on every device (half only on CUDA, for power-of-two sizes).
FFT_DTYPES = (torch.float32, torch.float64)

def check_tensor(x: object, name: str) -> torch.Tensor:
    """Return ``x`` if it is a tensor, else raise ``TypeError`` naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_finite(x: torch.Tensor, name: str, *, hint: str = "") -> torch.Tensor:
    """Refuse a tensor holding NaN or infinite values.

    Also guards results: ``check_finite(out, "PostAveraging output", hint="radius_l2=1e+38 is too
    large for the model")`` refuses an overflowed result instead of returning it.
    """
    if x.is_floating_point() or x.is_complex():
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values" + (f"; {hint}" if hint else ""))
    return x


def _looks_channels_last(shape: Sequence[int]) -> bool:
    # [N, H, W, C]: one or three trailing channels behind two image-sized dimensions. Read as
    # [N, C, H, W] that would be 8+ channels of images 1 or 3 pixels wide, which no data set has;
    # small genuine batches such as [N, 2, 3, 3] stay accepted.
    return len(shape) == 4 and shape[-1] in (1, 3) and shape[1] >= 8 and shape[2] >= 8


def check_images(
    x: object,
    name: str = "x",
    *,
    bounds: Bounds | None = (0.0, 1.0),
    channels: int | None = None,
    min_size: int = 1,
    dtypes: Sequence[torch.dtype] | None = None,
    values: bool = True,
) -> torch.Tensor:
    """Check an image batch: a finite floating tensor ``[N, C, H, W]`` inside ``bounds``.

    A batch shaped like channels-last images (``[N, H, W, C]`` with ``C`` in {1, 3} and ``H``,
    ``W`` >= 8) is refused with a hint to permute it: read as ``[N, C, H, W]`` it would give
    every Fourier tool the wrong geometry without an error.

    Args:
        x: the candidate tensor.
        name: the argument's name, quoted in errors.
        bounds: ``(lo, hi)`` every value must lie in (with a 1e-5 tolerance); ``None`` skips it.
        channels: the required ``C``, if any.
        min_size: smallest ``H`` and ``W`` accepted.
        dtypes: the floating dtypes accepted (e.g. :data:`FFT_DTYPES`); ``None``: any.
        values: also read the values (finite, inside ``bounds``), a host sync on a GPU. ``False``
            checks the metadata only (type, shape, dtype, layout): for a module's ``forward`` on
            an attack's hot path, whose entry point has checked the values once.

    Returns:
        ``x`` unchanged.
    """
    x = check_tensor(x, name)
    if x.ndim != 4:
        hint = ""
        if x.ndim == 3:
            hint = "; for one image use x.unsqueeze(0), for a grey batch [N, H, W] use x.unsqueeze(1)"
        raise ValueError(f"{name} must have shape [N, C, H, W], got {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating tensor, got dtype {x.dtype}; convert with x.float() / 255 for 8-bit images"
        )
    if dtypes is not None and x.dtype not in dtypes:
        raise TypeError(
            f"{name} has dtype {x.dtype}; expected one of {', '.join(map(str, dtypes))}; "
            f"convert it, e.g. {name} = {name}.to({dtypes[0]})"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image, got shape {tuple(x.shape)}")
    if _looks_channels_last(x.shape) and (channels is None or x.shape[1] != channels):
        raise ValueError(
            f"{name} looks channels-last {tuple(x.shape)} ([N, H, W, C]); expected [N, C, H, W]: "
            f"use x.permute(0, 3, 1, 2)"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"{name} must be at least {min_size}x{min_size}, got {tuple(x.shape[-2:])}")
    if not values:
        return x
    check_finite(x, name)
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
    """Check class labels: an int64 tensor ``[N]`` matching the batch size of ``x``.

    Args:
        y: the candidate labels (or targets).
        x: the images they belong to, if any: the batch sizes must agree.
        name: the argument's name, quoted in errors.
        num_classes: the model's number of classes (``logits.shape[1]`` after the first forward);
            every label must be below it. A label the model cannot output makes an attack report
            success without doing anything, so this check matters.
    """
    y = check_tensor(y, name)
    if y.dtype != torch.int64:
        raise ValueError(f"{name} must be an int64 tensor of class indices, got dtype {y.dtype}; use {name}.long()")
    if y.ndim != 1:
        raise ValueError(f"{name} must have shape [N], got {tuple(y.shape)}")
    if x is not None and y.shape[0] != x.shape[0]:
        raise ValueError(f"{name} has {y.shape[0]} labels but x has {x.shape[0]} images")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{name} must hold non-negative class indices, got {int(y.min())}")
    if num_classes is not None and y.numel() and int(y.max()) >= num_classes:
        raise ValueError(
            f"{name} holds class {int(y.max())} but the model has {num_classes} classes (0..{num_classes - 1})"
        )
    return y


def check_model(model: object, name: str = "model") -> nn.Module:
    """Check that ``model`` is an ``nn.Module`` (a plain function has no mode to restore)."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{name} must be a torch.nn.Module, got {type(model).__name__}; "
            f"wrap a function in a module whose forward calls it"
        )
    return model


def check_logits(out: object, n: int, *, name: str = "model output") -> torch.Tensor:
    """Check what a model returned on ``n`` images: raw logits ``[N, classes]``.

    Called on the first forward, where the number of classes becomes known
    (``check_labels(y, num_classes=logits.shape[1])`` follows). Refused, each with the fix:
    a tuple or list (e.g. logits plus features), a 1-D or 3-D output, a non-floating output,
    fewer than two classes, NaN, and rows that are all non-negative and sum to one (softmax
    probabilities: attacks on them see vanishing gradients and report robustness falsely).

    Args:
        out: the model's output.
        n: the number of images passed in.
        name: how errors refer to it.

    Returns:
        ``out``, known to be a floating tensor ``[n, classes]``.
    """
    out = check_logits_shape(out, n, name=name)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    with torch.no_grad():
        rows = out.detach().float()
        # Half-precision softmax rows sum to one only up to their rounding.
        tol = max(PROBABILITY_TOL, 8 * torch.finfo(out.dtype).eps)
        if bool((rows >= 0).all()) and bool(((rows.sum(1) - 1).abs() <= tol).all()):
            raise ValueError(
                f"{name} looks like probabilities (every row is non-negative and sums to 1); "
                f"expected raw logits: remove the final softmax from the model"
            )
    return out


def check_logits_shape(out: object, n: int, *, name: str = "model output") -> torch.Tensor:
    """The metadata half of :func:`check_logits` (no device sync): a floating tensor ``[n, classes]``
    with ``classes >= 2``, not a tuple or list, not images.

    Cheap enough for every forward of a wrapper (post-averaging runs it on its model's output),
    so the error names the module that returned the wrong thing rather than failing inside torch.
    """
    if isinstance(out, (tuple, list)):
        raise TypeError(
            f"{name} must be a tensor of logits [N, classes], got a {type(out).__name__} of {len(out)} items; "
            f"make the model return the logits alone (e.g. wrap it so forward returns out[0])"
        )
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of logits [N, classes], got {type(out).__name__}")
    if out.ndim != 2:
        hint = ("; it returned images: a defense must wrap the classifier, e.g. defend(model, lowpass=8)"
                if out.ndim == 4 else "")
        raise ValueError(
            f"{name} must have shape [N, classes] (logits), got {tuple(out.shape)}; "
            f"a classifier returns one row of class scores per image{hint}"
        )
    if out.shape[0] != n:
        raise ValueError(f"{name} has {out.shape[0]} rows for {n} images; expected shape [{n}, classes]")
    if not out.is_floating_point():
        raise TypeError(f"{name} must be floating-point logits, got dtype {out.dtype}")
    if out.shape[1] < 2:
        raise ValueError(f"{name} must score at least 2 classes, got shape {tuple(out.shape)}")
    return out


def check_model_input(model: object, x: object, *, bounds: Bounds | None = (0.0, 1.0), name: str = "x",
                      model_name: str = "model") -> torch.Tensor:
    """Everything known before the first forward: ``model`` is a module and ``x`` a finite image
    batch ``[N, C, H, W]`` inside ``bounds`` on the model's device and dtype. Returns ``x``."""
    check_model(model, model_name)
    x_ = check_images(x, name, bounds=bounds)
    return check_same_device_dtype(model, x_, name=name)  # type: ignore[arg-type]


def check_model_output(out: object, y: torch.Tensor | None = None, *, target: torch.Tensor | None = None,
                       n: int | None = None, name: str = "model output") -> torch.Tensor:
    """Everything known after the first forward: ``out`` is logits ``[N, classes]`` and the labels
    ``y`` (and ``target``) name classes the model has. Returns ``out``.

    Example (in an attack's clean forward)::

        logits = check_model_output(model(x), y, target=target)
    """
    count = n if n is not None else (y.shape[0] if y is not None else None)
    if count is None:
        raise ValueError("check_model_output needs y or n to know the batch size")
    logits = check_logits(out, count, name=name)
    if y is not None:
        check_labels(y, None, "y", num_classes=logits.shape[1])
    if target is not None:
        check_labels(target, None, "target", num_classes=logits.shape[1])
    return logits


def _first_tensor(model: nn.Module) -> torch.Tensor | None:
    for t in model.parameters():
        return t
    return next((b for b in model.buffers() if b.is_floating_point()), None)


def check_same_device_dtype(model: nn.Module, x: torch.Tensor, *, name: str = "x") -> torch.Tensor:
    """Check that ``x`` lives on the model's device and has its floating dtype.

    bandguard never moves a model or converts inputs on the caller's behalf (a silent copy of a
    large model or a precision change would surprise); the error says which call fixes it. A
    model with no parameters or buffers accepts anything.
    """
    ref = _first_tensor(model)
    if ref is None:
        return x
    if ref.device != x.device:
        raise ValueError(
            f"{name} is on {x.device} but the model is on {ref.device}; "
            f"move one of them, e.g. {name} = {name}.to({str(ref.device)!r})"
        )
    if ref.is_floating_point() and ref.dtype != x.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the model's parameters are {ref.dtype}; "
            f"convert one of them, e.g. {name} = {name}.to({ref.dtype})"
        )
    return x


def check_bounds(bounds: object, name: str = "bounds") -> Bounds:
    """Check ``(lo, hi)`` with finite ``lo < hi``; return it as a tuple of floats."""
    if isinstance(bounds, (str, bytes)) or not isinstance(bounds, Iterable):
        raise ValueError(f"{name} must be a pair (lo, hi), got {bounds!r}")
    items = list(bounds)
    if len(items) != 2:
        raise ValueError(f"{name} must be a pair (lo, hi), got {bounds!r}")
    lo, hi = (_as_real(b, name) for b in items)
    if not lo < hi:
        raise ValueError(f"{name} must have lo < hi, got {(lo, hi)}")
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


def check_real(value: object, name: str) -> float:
    """Check a finite real number (Python, numpy or 0-d tensor); return it as a ``float``."""
    return _as_real(value, name)


def _scalar_items(value: object) -> list[object] | None:
    """The elements of a sequence-like ``value``; ``None`` for a scalar (0-d arrays included)."""
    if isinstance(value, (str, bytes)):
        return None
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return None if value.ndim == 0 else list(value.reshape(-1))
    if isinstance(value, Iterable):
        return list(value)
    return None


def parse_number(text: str, name: str = "value") -> float:
    """A number written as text: ``"0.03"``, ``"1e-3"`` or a fraction ``"8/255"`` (``8 / 255``).

    The one reader of budgets as text, shared by the command line, benchmark specs and the Python
    entry points, so ``"8/255"`` is the same float everywhere (the correctly rounded ``8 / 255``).

    Args:
        text: the text; surrounding spaces are ignored.
        name: the argument's name, quoted in errors.

    Returns:
        The finite float.
    """
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a string like '0.03' or '8/255', got {type(text).__name__} {text!r}")
    stripped = text.strip()
    try:
        if stripped.count("/") == 1:
            num, den = (float(part) for part in stripped.split("/"))
            value = num / den
        else:
            value = float(stripped)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{name} must be a number like 0.03, 1e-3 or 8/255, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {text!r}")
    return value


def check_eps(eps: object, name: str = "eps") -> float:
    """One budget: a finite number >= 0, or its text (``"8/255"``, read by :func:`parse_number`).

    Args:
        eps: the budget.
        name: the argument's name, quoted in errors.

    Returns:
        The budget as a float.
    """
    if isinstance(eps, str):
        eps = parse_number(eps, name)
    return check_nonnegative(eps, name)


def check_epsilons(eps: object, name: str = "eps") -> list[float]:
    """Accept one epsilon or a sequence of them; each a finite number >= 0 or its text (``"8/255"``)."""
    items = _scalar_items(eps)
    values = [eps] if items is None else items
    if not values:
        raise ValueError(f"{name} must hold at least one value, got {eps!r}")
    return [check_eps(v, name) for v in values]


def is_scalar_number(value: object) -> bool:
    """``True`` for one real number in any accepted form (not a bool, not a sequence)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Real):
        return True
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and value.dtype != torch.bool and not value.is_complex()
    if isinstance(value, np.ndarray):
        return value.ndim == 0 and value.dtype.kind in "iuf"
    return False


def check_int(value: object, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Check an integer (not a bool, not a float such as ``1.5`` or ``2.0``), optionally in a range.

    numpy integers and 0-d integer tensors or arrays are accepted and returned as ``int``.
    """
    v = _as_int(value, name)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return v


def check_seed(seed: object, name: str = "seed") -> int:
    """Check a seed: an integer in ``[0, 2**64 - 1]`` (what ``torch.Generator.manual_seed`` takes)."""
    v = _as_int(seed, name)
    if not 0 <= v <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, 2**64 - 1], got {v}")
    return v


def check_bool(value: object, name: str) -> bool:
    """Check a boolean: ``True``/``False`` (or a numpy bool); strings and numbers are refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def check_names(value: object, name: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """Check a list of names; a single string is one name. Returns a tuple of strings.

    ``"contrast"`` is ``("contrast",)`` (a string is never iterated letter by letter); a list,
    tuple or other iterable of non-empty strings is kept in order. An empty list is refused
    unless ``allow_empty``: a request for nothing is a mistake, not a result.
    """
    if isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a name or a list of names, got {type(value).__name__} {value!r}")
    else:
        items = list(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise TypeError(f"{name} must hold non-empty strings, got {type(item).__name__} {item!r} in {value!r}")
    if not items and not allow_empty:
        raise ValueError(f"{name} must name at least one, got {value!r}; expected a name or a list of names")
    return tuple(items)  # type: ignore[arg-type]


def check_callable(value: object, name: str, expected: str) -> object:
    """Check that ``value`` can be called; ``expected`` says how it is called (quoted in the error)."""
    if not callable(value):
        raise TypeError(f"{name} must be a callable {expected}, got {type(value).__name__} {value!r}")
    return value


def check_per_sample(values: object, n: int, name: str) -> torch.Tensor:
    """Check what a per-sample callable returned on ``n`` samples: a real tensor ``[n]``."""
    if not isinstance(values, torch.Tensor) or values.shape != (n,) or values.is_complex():
        got = f"shape {tuple(values.shape)}" if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"{name} must return one value per sample, a tensor of shape [{n}], got {got}")
    return values


def check_generator(generator: object, name: str = "generator") -> torch.Generator | None:
    """Check ``None`` or a ``torch.Generator`` (a seed is not a generator: use
    ``torch.Generator().manual_seed(seed)``)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    raise TypeError(
        f"{name} must be a torch.Generator or None, got {type(generator).__name__} {generator!r}; "
        f"for a seed use torch.Generator().manual_seed(seed)"
    )


def check_device(device: object, name: str = "device") -> torch.device:
    """Check a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``) that exists here.

    Unknown strings, ``"cuda"`` without a usable GPU and an out-of-range GPU index are refused, so
    a typo fails at once rather than at the first tensor moved there.
    """
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"unknown {name} {device!r}; expected 'cpu', 'cuda', 'cuda:<index>' or 'mps'"
            ) from None
    else:
        raise TypeError(f"{name} must be a str or torch.device, got {type(device).__name__} {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {str(dev)!r} asks for a GPU but CUDA is not available here; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name} {str(dev)!r}: no such GPU; this machine has {torch.cuda.device_count()} "
                f"(indices 0..{torch.cuda.device_count() - 1})"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{name} 'mps' is not available here; use 'cpu'")
    elif dev.type not in ("cpu", "meta"):
        raise ValueError(f"{name} {str(dev)!r} is not supported; expected 'cpu', 'cuda' or 'mps'")
    return dev


def check_path(path: object, name: str = "path") -> Path:
    """Check a file-system path: a non-empty ``str`` or any ``os.PathLike``; return a ``Path``."""
    if isinstance(path, (str, os.PathLike)):
        text = os.fspath(path)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if text.strip():
            return Path(text)
        raise ValueError(f"{name} must be a non-empty path, got {path!r}")
    raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__} {path!r}")


def check_output_path(path: object, name: str = "path", *, directory: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written.

    A file output must not be an existing folder; a folder output must not be an existing file;
    the nearest existing ancestor must be a writable folder (missing folders are created later).
    """
    p = check_path(path, name)
    if directory:
        if p.exists() and not p.is_dir():
            raise ValueError(f"{name} {str(p)!r} is a file; expected a folder (existing or new)")
    elif p.is_dir():
        raise ValueError(f"{name} {str(p)!r} is a folder; expected a file path inside it")
    target = p if directory and p.is_dir() else p.parent
    ancestor = target.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{name} {str(p)!r} cannot be created: {str(ancestor)!r} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {str(p)!r} cannot be written: no write permission in {str(ancestor)!r}")
    if not directory and p.exists() and not os.access(p, os.W_OK):
        raise ValueError(f"{name} {str(p)!r} exists and is not writable")
    return p


def memory_budget(device: torch.device | str | None = None) -> int:
    """Bytes a single allocation may reasonably take on ``device``: its total memory.

    For a GPU the device's total memory; for the CPU the machine's physical memory (or 16 GiB
    where the platform does not say).
    """
    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(dev.index or 0).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


def check_memory(n_bytes: int | float, name: str, budget: int | None = None, *,
                 device: torch.device | str | None = None) -> int:
    """Refuse, before allocating, a tensor that would need more than ``budget`` bytes.

    Args:
        n_bytes: the estimated size (e.g. ``n * K * c * h * w * 4`` for float32).
        name: the setting that drives it, quoted with the fix (``"K"``, ``"max_batch"``).
        budget: the limit; ``None`` uses :func:`memory_budget` of ``device``.
        device: where it would be allocated.

    Returns:
        ``n_bytes`` as an int.
    """
    limit = memory_budget(device) if budget is None else int(budget)
    if n_bytes > limit:
        raise ValueError(
            f"{name} too large: it needs about {_human_bytes(n_bytes)} of memory at once, more than the "
            f"{_human_bytes(limit)} available; lower {name} (or process the batch in smaller chunks)"
        )
    return int(n_bytes)


def check_choice(value: object, choices: Sequence[str], name: str) -> str:
    """Check that ``value`` is one of ``choices`` (strings, case-insensitive)."""
    if isinstance(value, str) and value.lower() in choices:
        return value.lower()
    raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")


def check_options(given: Iterable[str], known: Iterable[str], what: str) -> None:
    """Refuse option names ``what`` does not take, with the closest known one and the full list.

    Args:
        given: the option names passed (``{"stepz": 3}`` gives ``"stepz"``).
        known: every option ``what`` takes.
        what: the thing configured, quoted in the error (``"attack 'pgd'"``, ``"defense 'post_average'"``).

    Raises:
        ValueError: e.g. ``attack 'pgd' takes no option 'stepz' (did you mean 'steps'?); its options
            are ...``; never the name of an internal class or function.
    """
    known = sorted(set(known))
    unknown = [k for k in given if k not in known]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6) or [k for k in known if k.lower() == key.lower()]
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    raise ValueError(f"{what} takes no option {', '.join(hints)}; its options are {', '.join(known)}")


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


def _unwrap_scalar(value: object, name: str, what: str) -> object:
    """A 0-d tensor/array or numpy scalar as the Python number it holds; anything else unchanged."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name} must be {what}, got a tensor of shape {tuple(value.shape)}")
        return value.item()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise TypeError(f"{name} must be {what}, got an array of shape {value.shape}")
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _as_real(value: object, name: str) -> float:
    v = _unwrap_scalar(value, name, "a real number")
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        f = float(v)
    except OverflowError:
        bits = v.bit_length() if isinstance(v, int) else "many"
        raise ValueError(f"{name} must be finite, got an integer too large for a float ({bits} bits)") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {f}")
    if abs(f) > MAX_REAL:
        raise ValueError(
            f"{name} must be at most {MAX_REAL:.4g} in magnitude (float32's range; larger values overflow "
            f"to inf in a tensor), got {f:g}"
        )
    return f


def _as_int(value: object, name: str) -> int:
    v = _unwrap_scalar(value, name, "an int")
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return int(v)
