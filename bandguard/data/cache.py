"""The user cache: decoded data sets (``decoded/``) and archive checksums.

Decoding an archive is slow (the 60,000 CIFAR-10 JPEGs take seconds; the MNIST pickle about
one), so each split is decoded once and stored as a ``torch.save`` file that later loads read
with ``weights_only=True``. An entry's name hashes the source's resolved path, size and
modification time and the checksum a ``SHA256SUMS`` file beside it lists, so a replaced file or
a changed checksum is a new entry; a source with a listed checksum is verified before its first
decode. The cache is disposable: an unreadable entry is decoded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch

from bandguard._io import torch_save_atomic
from bandguard.data.dataset import ImageDataset
from bandguard.data.folders import Decoded, image_files

__all__ = ["CACHE_FORMAT", "CHECKSUM_FILE", "cache_dir", "cached", "entry_path", "expected_checksum"]

logger = logging.getLogger(__name__)

CHECKSUM_FILE = "SHA256SUMS"
# Bumped whenever the cached tensors' layout changes, so stale caches are never read.
CACHE_FORMAT = "bandguard-decoded/2"  # 2: folder images interleaved by class


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bandguard``, else ``~/.cache/bandguard`` (read at call time).

    Returns:
        The folder (it may not exist yet).
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "bandguard"


def entry_path(source: Path, name: str, split: str) -> Path:
    """Where the decoded ``split`` of ``source`` is (or will be) cached.

    Args:
        source: the archive or folder the split is decoded from.
        name: the data set's name (part of the entry's name).
        split: the split, e.g. ``"train"`` or ``"test"``.

    Returns:
        A ``.pt`` path under :func:`cache_dir`, named by a hash of the source's version (its size,
        modification time and listed checksum), so a changed source gets a fresh entry.
    """
    return _entry(name, split, _source_key(source, expected_checksum(source)))


def _entry(name: str, split: str, key: str) -> Path:
    return cache_dir() / "decoded" / f"{name}-{split}-{key}.pt"


def cached(source: Path, name: str, split: str, decode: Callable[[Path], Decoded]) -> ImageDataset:
    """Load ``split`` of ``source`` from the decoded cache, decoding (and caching) it if needed.

    Args:
        source: the archive or folder.
        name: the data set's name (part of the entry's name).
        split: the split wanted.
        decode: ``source -> ({split: (images, labels)}, classes)``; every split it returns is
            cached.

    Returns:
        The :class:`~bandguard.data.ImageDataset` of ``split``: images ``[N, C, H, W]`` and
        labels ``[N]``.

    Raises:
        ValueError: a checksum mismatch, whatever ``decode`` raises, or a split the source
            lacks.
    """
    expected = expected_checksum(source)
    key = _source_key(source, expected)
    path = _entry(name, split, key)
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            return ImageDataset(blob["images"], blob["labels"], tuple(blob["classes"]), name, split, str(source))
        except Exception as err:  # a cache is disposable: rebuild it
            logger.warning("ignoring unreadable cache %s: %s", path, err)
    if expected is not None:
        _verify_checksum(source, expected)
    logger.info("decoding %s (cached in %s)", source, path.parent)
    splits, classes = decode(source)
    if split not in splits:
        raise ValueError(f"{source}: holds no {split!r} split (found {sorted(splits)})")
    for s, (images, labels) in splits.items():
        blob = {"format": CACHE_FORMAT, "images": images, "labels": labels, "classes": list(classes)}
        try:
            torch_save_atomic(blob, _entry(name, s, key))
        except OSError as err:
            logger.warning("could not write the decoded cache in %s: %s", path.parent, err)
    images, labels = splits[split]
    return ImageDataset(images, labels, classes, name, split, str(source))


def expected_checksum(source: Path) -> str | None:
    """The SHA-256 that a ``SHA256SUMS`` file beside ``source`` lists for it, if any.

    Args:
        source: an archive or folder.

    Returns:
        The lower-case hex digest, or ``None`` when no ``SHA256SUMS`` beside it lists ``source``.
    """
    sums = source.parent / CHECKSUM_FILE
    if not sums.is_file():
        return None
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[1].lstrip("*") == source.name:
            return parts[0].lower()
    return None


def _source_key(source: Path, expected: str | None) -> str:
    """Hex digest naming one version of ``source`` (a file, or a folder's image listing)."""
    h = hashlib.sha256(CACHE_FORMAT.encode())
    h.update(str(source.resolve()).encode())
    if source.is_dir():
        for p in image_files(source):
            st = p.stat()
            h.update(f"\0{p.relative_to(source)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    else:
        st = source.stat()
        h.update(f"\0{st.st_size}\0{st.st_mtime_ns}\0{expected}".encode())
    return h.hexdigest()[:20]


def _verify_checksum(source: Path, expected: str) -> None:
    h = hashlib.sha256()
    with source.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != expected:
        raise ValueError(
            f"{source}: SHA-256 checksum mismatch: {CHECKSUM_FILE} lists {expected}, the file "
            f"hashes to {h.hexdigest()}; the file is corrupt or was replaced"
        )
