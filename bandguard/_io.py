"""Atomic file writes: a temp file in the target's folder, then a rename.

Readers (and a resumed run) see either the old file or the whole new one, never a part. Every
result, checkpoint, cache entry and figure bandguard writes goes through :func:`atomic_write`.

Debris. A writer killed hard (``kill -9``, a lost node) leaves its hidden temp file behind. Each
temp file's name carries its writer: ``.<name>.bg<host>p<pid>.<random>.tmp`` (``host`` a short
hash of the host name). Every write removes the stale ones in its folder, ours only (that exact
pattern), and only when stale: written on this host by a process that no longer exists and
untouched for :data:`DEAD_WRITER_GRACE_S` seconds, or untouched for :data:`STALE_TEMP_S`
seconds whatever wrote it (a writer on another host of a shared folder; a reused pid).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_write", "remove_stale_temps", "torch_save_atomic", "write_bytes_atomic", "write_json_atomic"]

logger = logging.getLogger(__name__)

#: A temp file whose writer (on this host) is gone is removed once untouched this long: a writer
#: between ``mkstemp`` and its first byte is alive, so this only guards pid namespaces we cannot see.
DEAD_WRITER_GRACE_S = 60.0
#: A temp file untouched this long is removed whatever wrote it: no single write takes a day.
STALE_TEMP_S = 24 * 3600.0

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP = re.compile(r"^\..+\.bg(?P<host>[0-9a-f]{8})p(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it onto ``path``.

    Creates missing parent folders; the file gets mode 0644 (``mkstemp`` alone gives 0600, and
    results are meant to be shared). The temp file is flushed to disk (``fsync``) before the
    rename and the folder after it, so a crash leaves either the old or the whole new file, never
    an empty one. On any failure (an exception from ``write`` included) the temp file is removed
    and ``path`` is left as it was. A hard kill during ``write`` can still leave a hidden
    ``.<name>.bg<host>p<pid>.*.tmp`` beside ``path``; it is never read, and the next write into
    that folder removes it once stale (:func:`remove_stale_temps`).

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
    remove_stale_temps(path.parent)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.bg{_HOST}p{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


def remove_stale_temps(folder: str | os.PathLike[str], *, now: float | None = None) -> list[Path]:
    """Remove the stale temp files :func:`atomic_write` left in ``folder`` (see the module's note).

    Only names of our exact pattern are considered; a file is stale when its writer ran on this
    host, no longer exists and the file is untouched for :data:`DEAD_WRITER_GRACE_S`, or when it is
    untouched for :data:`STALE_TEMP_S` whatever wrote it. Races with other cleaners are harmless.

    Returns:
        The paths removed.
    """
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if match is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            dead = match["host"] == _HOST and not _pid_alive(int(match["pid"]))
            if age > STALE_TEMP_S or (dead and age > DEAD_WRITER_GRACE_S):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone already (another cleaner) or not ours to remove
            continue
    if removed:
        logger.info("removed %d stale temp file(s) of interrupted writes in %s", len(removed), folder)
    return removed


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists here; unsure (no permission, no such call) counts as alive."""
    if pid <= 0 or os.name == "nt":  # on Windows os.kill(pid, 0) would kill it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):
        return True
    return True


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
