"""Atomic file writes: a temp file in the target's folder, then a rename.

Readers (and a resumed run) see either the old file or the whole new one, never a part. Every
result, checkpoint, cache entry and figure bandguard writes goes through :func:`atomic_write`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_write", "torch_save_atomic", "write_bytes_atomic", "write_json_atomic"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it onto ``path``.

    Creates missing parent folders; the file gets mode 0644 (``mkstemp`` alone gives 0600, and
    results are meant to be shared). The temp file is flushed to disk (``fsync``) before the
    rename and the folder after it, so a crash leaves either the old or the whole new file, never
    an empty one. On any failure (an exception from ``write`` included) the temp file is removed
    and ``path`` is left as it was. A hard kill during ``write`` can still leave a hidden
    ``.<name>.*.tmp`` beside ``path``; it is never read.

    Args:
        path: the file to (over)write.
        write: writes the whole content to the temp file it is given.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        IsADirectoryError: ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {str(path)!r}: it is a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o644)
        os.close(fd)
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; some platforms (Windows) cannot open a folder, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`).

    Args:
        path: the file to (over)write.
        data: its whole content.

    Returns:
        ``path`` as a ``Path``.
    """
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (unknown types as ``str``).

    Args:
        path: the file to (over)write.
        obj: anything ``json.dumps`` takes; other values are written as their ``str``.

    Returns:
        ``path`` as a ``Path``.
    """
    text = json.dumps(obj, indent=2, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def torch_save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)`` atomically (see :func:`atomic_write`).

    Args:
        obj: what ``torch.save`` takes, e.g. a state dict.
        path: the file to (over)write.

    Returns:
        ``path`` as a ``Path``.
    """
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
