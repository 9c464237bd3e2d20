"""bandguard.data.mnist: the numpy-only unpickler and the decoding of ``mnist.pkl.gz``.

Small pickles written here cover every protocol, the refused globals and the bad layouts; the
real file (``$BANDGUARD_DATA/mnist.pkl.gz``) is checked pixel for pixel when present.
"""

from __future__ import annotations

import gzip
import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest
import torch

from bandguard.data.mnist import MNIST_CLASSES, NumpyOnlyUnpickler, decode_mnist_pickle


def _part(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images stored as the classic file does (pixel / 256, float32) and int64 labels."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 784))
    return (pixels / 256).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)


def _write(path: Path, obj: object, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    path.write_bytes(gzip.compress(pickle.dumps(obj, protocol=protocol)))
    return path


class _CallsPrint:
    """Pickles as a call to ``print``: the unpickler must refuse it before anything runs."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return print, ("this must never run",)


class _BigBytes:
    """Pickles as ``bytes(10**12)``: a terabyte allocation, if ``bytes`` took arguments."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return bytes, (10**12,)


class _Rot13:
    """Pickles as ``_codecs.encode('text', 'rot13')``: the codec machinery, not latin-1 bytes."""

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        import codecs

        return codecs.encode, ("text", "rot13")


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_every_protocol_decodes_to_the_exact_pixels(tmp_path: Path, protocol: int) -> None:
    parts = (_part(3, 0), _part(2, 1), _part(4, 2))
    source = _write(tmp_path / "mnist.pkl.gz", parts, protocol)
    splits, classes = decode_mnist_pickle(source)
    assert classes == MNIST_CLASSES == tuple("0123456789")
    train_x, train_y = splits["train"]
    test_x, test_y = splits["test"]
    assert (train_x.shape, train_x.dtype, test_x.shape) == ((5, 1, 28, 28), torch.uint8, (4, 1, 28, 28))
    assert train_y.dtype == test_y.dtype == torch.int64
    # Train is the pickle's train followed by its valid part; pixels are the stored values * 256.
    expected = np.concatenate([parts[0][0], parts[1][0]]) * 256
    assert np.array_equal(train_x.reshape(5, 784).numpy(), expected.astype(np.uint8))
    assert train_y.tolist() == [*parts[0][1].tolist(), *parts[1][1].tolist()]
    assert np.array_equal(test_x.reshape(4, 784).numpy(), (parts[2][0] * 256).astype(np.uint8))


def test_protocol_2_pickle_uses_codecs_encode(tmp_path: Path) -> None:
    """The reason protocol 2 needs care: Python 3 writes bytes there as ``_codecs.encode``."""
    parts = (_part(1, 0),) * 3
    ops = {arg for op, arg, _ in pickletools.genops(pickle.dumps(parts, protocol=2)) if op.name == "GLOBAL"}
    assert "_codecs encode" in ops
    splits, _ = decode_mnist_pickle(_write(tmp_path / "mnist.pkl.gz", parts, protocol=2))
    assert splits["test"][0].shape == (1, 1, 28, 28)


def test_empty_split_in_protocol_2(tmp_path: Path) -> None:
    """An empty array's buffer is ``bytes()`` in protocol 2 (``__builtin__.bytes``): allowed."""
    empty = (np.zeros((0, 784), np.float32), np.zeros(0, np.int64))
    splits, _ = decode_mnist_pickle(_write(tmp_path / "mnist.pkl.gz", (_part(2, 0), empty, empty), 2))
    assert splits["train"][0].shape == (2, 1, 28, 28) and splits["test"][0].shape == (0, 1, 28, 28)


def test_unit_scaled_pixels_are_rounded_by_255(tmp_path: Path) -> None:
    """A file storing pixel / 255 (maximum exactly 1.0) gives back the same bytes."""
    pixels = np.arange(784 * 2).reshape(2, 784) % 256
    part = ((pixels / 255).astype(np.float32), np.array([3, 4]))
    splits, _ = decode_mnist_pickle(_write(tmp_path / "mnist.pkl.gz", (part, part, part)))
    assert np.array_equal(splits["test"][0].reshape(2, 784).numpy(), pixels.astype(np.uint8))


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (os.system, r"(posix|nt)\.system"),
        (_CallsPrint(), r"(builtins|__builtin__)\.print"),
        (_BigBytes(), None),
        (_Rot13(), None),
    ],
    ids=["os.system", "print", "bytes(10**12)", "codecs rot13"],
)
def test_other_globals_and_uses_are_refused(tmp_path: Path, payload: object, refused: str | None) -> None:
    source = _write(tmp_path / "mnist.pkl.gz", (payload, _part(1, 0), _part(1, 1)), protocol=2)
    match = rf"mnist\.pkl\.gz: refusing to unpickle global {refused}" if refused else r"mnist\.pkl\.gz: corrupt"
    with pytest.raises(ValueError, match=match):
        decode_mnist_pickle(source)


def test_unpickler_alone_refuses_before_running(capsys: pytest.CaptureFixture[str]) -> None:
    import io

    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.print"):
        NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(_CallsPrint())), encoding="latin1").load()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ([1, 2], r"expected a \(train, valid, test\) tuple, got list"),
        ((_part(2, 0), _part(2, 0)), r"expected a \(train, valid, test\) tuple"),
        (((np.zeros((5, 783), np.float32), np.zeros(5, np.int64)),) * 3, "train images must be a float array"),
        ((_part(2, 0), (np.zeros((2, 784), np.int64), np.zeros(2, np.int64)), _part(1, 0)),
         "valid images must be a float array"),
        ((_part(2, 0), _part(2, 0), (np.zeros((2, 784), np.float32), np.zeros(3, np.int64))),
         r"test labels must be an int array \[2\]"),
        (((np.full((1, 784), 2.0, np.float32), np.zeros(1, np.int64)),) * 3, r"finite and in \[0, 1\]"),
        (((np.full((1, 784), np.nan, np.float32), np.zeros(1, np.int64)),) * 3, r"finite and in \[0, 1\]"),
        (((np.zeros((1, 784), np.float32), np.array([10])),) * 3, r"labels must lie in 0\.\.9"),
        ((_part(1, 0), "x", _part(1, 0)), r"valid must be an \(images, labels\) pair"),
    ],
)
def test_bad_layouts_name_the_part(tmp_path: Path, obj: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_mnist_pickle(_write(tmp_path / "mnist.pkl.gz", obj))


def test_truncated_and_non_gzip_files(tmp_path: Path) -> None:
    source = _write(tmp_path / "mnist.pkl.gz", (_part(50, 0),) * 3)
    source.write_bytes(source.read_bytes()[:4000])
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: corrupt or truncated MNIST pickle"):
        decode_mnist_pickle(source)
    source.write_bytes(b"plain text, no gzip header")
    with pytest.raises(ValueError, match="corrupt or truncated MNIST pickle"):
        decode_mnist_pickle(source)


def test_real_file_pixel_for_pixel(data_root: Path) -> None:
    source = data_root / "mnist.pkl.gz"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    with gzip.open(source, "rb") as f:
        train, valid, test = NumpyOnlyUnpickler(f, encoding="latin1").load()
    splits, _ = decode_mnist_pickle(source)
    x, y = splits["train"]
    assert (x.shape, y.shape, splits["test"][0].shape) == ((60_000, 1, 28, 28), (60_000,), (10_000, 1, 28, 28))
    # The file stores pixel / 256 exactly, so the bytes come back without rounding.
    assert np.array_equal(x[:50_000].reshape(50_000, 784).numpy(), (train[0] * 256).astype(np.uint8))
    assert np.array_equal(x[50_000:].reshape(10_000, 784).numpy(), (valid[0] * 256).astype(np.uint8))
    assert np.array_equal(splits["test"][1].numpy(), test[1])
    assert y[:5].tolist() == [5, 0, 4, 1, 9] and splits["test"][1][:5].tolist() == [7, 2, 1, 0, 4]
    assert int(x.max()) == 255 and int(x.min()) == 0
