"""Where a data set comes from: ``load_dataset(name, split)`` and its search order.

First match wins:

1. ``root`` if given, else the directory named by ``$BANDGUARD_DATA``. A directory may hold
   ``mnist.pkl.gz`` (the classic pickle), ``cifar10-jpeg.tar.gz`` or its extracted folder
   ``cifar10-jpeg/{train,test}/{class}/*.jpg``, or torchvision's own folders (``MNIST/raw``,
   ``cifar-10-batches-py``).
2. torchvision's folders in the user cache (``$XDG_CACHE_HOME/bandguard/torchvision``),
   downloading them there first when ``download=True``. A failed download is remembered for
   :data:`RETRY_AFTER_S` (a marker file in that folder), so an offline machine does not try
   again on every load; delete the marker to try at once.
3. For MNIST only: the small sample bundled with the package (:data:`SAMPLE_SIZES` images of the
   standard set; see ``bandguard/assets/README.md``), announced by one
   :class:`SampleDataWarning` line saying where it looked and how to get the full set.

A name that is a directory is read as an ImageFolder (``<class>/<image>``, optionally below
``train``/``val``/``test``). All of a split is decoded into memory; an ImageNet-size folder, or
one of images of different sizes, streams instead through :class:`bandguard.data.FolderSource`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import time
import urllib.parse
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from bandguard._checks import check_bool, check_choice
from bandguard._io import write_json_atomic
from bandguard.data.cache import cache_dir, cached
from bandguard.data.dataset import FOLDER_SPLITS, SPLITS, ImageDataset
from bandguard.data.folders import decode_folder, decode_image_tar, split_folder
from bandguard.data.mnist import MNIST_CLASSES, decode_mnist_pickle

__all__ = [
    "DATASETS",
    "RETRY_AFTER_S",
    "SAMPLE_SIZES",
    "SampleDataWarning",
    "download",
    "failed_download_marker",
    "load_dataset",
]

logger = logging.getLogger(__name__)

DATASETS = ("mnist", "cifar10")
MNIST_PICKLE = "mnist.pkl.gz"
CIFAR_ARCHIVE = "cifar10-jpeg.tar.gz"
CIFAR_FOLDER = "cifar10-jpeg"
SAMPLE_ASSET = "mnist_sample.npz"
# The bundled sample: the first images of the standard MNIST training and test sets.
SAMPLE_SIZES = {"train": 10_000, "test": 2_000}
# How long a failed download is remembered before the next load tries again.
RETRY_AFTER_S = 24 * 3600
# Seconds to wait for a download mirror to accept a connection before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0


class SampleDataWarning(UserWarning):
    """Warned when MNIST falls back to the small sample bundled with the package."""


def load_dataset(
    name: str | os.PathLike[str],
    split: str = "test",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load one split of MNIST, CIFAR-10 or an ImageFolder directory.

    Args:
        name: ``"mnist"``, ``"cifar10"``, or the path of a folder holding one sub-folder per
            class, or ``train``/``test`` sub-folders that do.
        split: ``"train"``, ``"test"`` or, for a folder only, ``"val"``. MNIST train is the standard 60,000 images (the
            pickle's train + valid), test 10,000; CIFAR-10 has 50,000 and 10,000. A folder with
            no split sub-folders is used whole for either split.
        root: a directory to look in first (instead of ``$BANDGUARD_DATA``).
        download: let torchvision download MNIST/CIFAR-10 into the user cache if nothing local
            is found (not retried for a day after a failure).

    Returns:
        An :class:`ImageDataset`: uint8 images ``[N, C, H, W]``, int64 labels ``[N]``; its
        ``source`` names the file, folder or ``"bundled sample"`` it came from.

    Raises:
        ValueError: unknown name or split, a missing ``root``, or a corrupt, truncated or
            mis-checksummed source (the message names the file).
        FileNotFoundError: CIFAR-10 found nowhere.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a data set name or a folder path, got {type(name).__name__} {name!r}")
    split, download = check_choice(split, FOLDER_SPLITS, "split"), check_bool(download, "download")
    key = name.lower() if isinstance(name, str) else None
    if key in DATASETS:
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: {key} has only the splits {', '.join(map(repr, SPLITS))}")
        return _load_named(key, split, root=root, download=download)
    if isinstance(name, (str, os.PathLike)) and Path(name).expanduser().is_dir():
        folder = Path(name).expanduser()
        return _load_folder(folder, split, folder.resolve().name)
    raise ValueError(
        f"unknown dataset name {name!r}; expected one of {', '.join(map(repr, DATASETS))} "
        "or the path of an ImageFolder directory"
    )


def _load_named(name: str, split: str, *, root: str | os.PathLike[str] | None, download: bool) -> ImageDataset:
    roots = _search_roots(root)
    for directory in roots:
        found = _load_from_root(name, split, directory)
        if found is not None:
            return found
    tv_root = cache_dir() / "torchvision"
    looked = ", ".join(str(d) for d in [*roots, tv_root])
    found = _load_from_cache(name, split, tv_root)
    if found is not None:
        return found
    status = "download=False"
    if download:
        status = _download_once(name, tv_root)
        found = _load_from_cache(name, split, tv_root) if status == "downloaded" else None
        if found is not None:
            return found
    if name == "mnist":
        warnings.warn(
            f"MNIST: no full copy found (looked in {looked}; {status}); using the sample bundled "
            f"with bandguard ({SAMPLE_SIZES['train']:,} train / {SAMPLE_SIZES['test']:,} test images). "
            f"For the full set, set BANDGUARD_DATA (or root=) to a folder holding {MNIST_PICKLE}.",
            SampleDataWarning,
            stacklevel=3,
        )
        return _load_sample(split)
    raise FileNotFoundError(
        f"no {name} data found (looked in {looked}; {status}); set BANDGUARD_DATA or root to a "
        f"folder holding {CIFAR_ARCHIVE}, {CIFAR_FOLDER}/ or cifar-10-batches-py/"
    )


def _search_roots(root: str | os.PathLike[str] | None) -> list[Path]:
    """``[root]`` if given (it must exist), else ``[$BANDGUARD_DATA]`` if set, else ``[]``."""
    if root is not None:
        root_path = Path(root).expanduser()
        if not root_path.is_dir():
            raise ValueError(f"root must be an existing directory, got {str(root)!r}")
        return [root_path]
    env = os.environ.get("BANDGUARD_DATA")
    if not env:
        return []
    env_path = Path(env).expanduser()
    if not env_path.is_dir():
        logger.warning("BANDGUARD_DATA=%s is not a directory; ignoring it", env_path)
        return []
    return [env_path]


def _load_from_root(name: str, split: str, directory: Path) -> ImageDataset | None:
    """The split from the first source for ``name`` found in ``directory``, else ``None``."""
    if name == "mnist":
        if (directory / MNIST_PICKLE).is_file():
            return cached(directory / MNIST_PICKLE, "mnist", split, decode_mnist_pickle)
        if (directory / "MNIST" / "raw").is_dir():
            return _torchvision(name, split, directory, directory / "MNIST" / "raw")
        return None
    if (directory / CIFAR_ARCHIVE).is_file():
        return cached(directory / CIFAR_ARCHIVE, "cifar10", split, decode_image_tar)
    if (directory / CIFAR_FOLDER).is_dir():
        return _load_folder(directory / CIFAR_FOLDER, split, "cifar10")
    if (directory / "cifar-10-batches-py").is_dir():
        return _torchvision(name, split, directory, directory / "cifar-10-batches-py")
    return None


def _load_from_cache(name: str, split: str, directory: Path) -> ImageDataset | None:
    """Like :func:`_load_from_root`, but what torchvision left there may be half a download."""
    try:
        return _load_from_root(name, split, directory)
    except ValueError as err:
        logger.warning("ignoring %s in the cache: %s", name, err)
        return None


def _load_folder(folder: Path, split: str, name: str) -> ImageDataset:
    """An ImageFolder directory, with or without ``train``/``test`` sub-folders."""
    source = split_folder(folder, split)
    return cached(source, name, split, lambda src: decode_folder(src, split))


def _torchvision(name: str, split: str, directory: Path, source: Path) -> ImageDataset:
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.CIFAR10
    try:
        tv = cls(str(directory), train=split == "train", download=False)
    except Exception as err:
        raise ValueError(f"{source}: cannot read torchvision's {name} files: {err}") from err
    images = torch.as_tensor(np.asarray(tv.data), dtype=torch.uint8)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(tv.targets), dtype=torch.int64)
    classes = MNIST_CLASSES if name == "mnist" else tuple(tv.classes)
    return ImageDataset(images.contiguous(), labels, classes, name, split, str(source))


def _load_sample(split: str) -> ImageDataset:
    asset = resources.files("bandguard") / "assets" / SAMPLE_ASSET
    with asset.open("rb") as f, np.load(f, allow_pickle=False) as npz:
        images = torch.from_numpy(npz[f"{split}_images"].astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(npz[f"{split}_labels"].astype(np.int64))
    return ImageDataset(images, labels, MNIST_CLASSES, "mnist", split, "bundled sample")


# --------------------------------------------------------------------------- download


def failed_download_marker(name: str, directory: Path) -> Path:
    """The file that remembers a failed download of ``name`` into ``directory``.

    Args:
        name: ``"mnist"`` or ``"cifar10"``.
        directory: the download's target folder.

    Returns:
        A hidden JSON file in ``directory`` (it may not exist).
    """
    return directory / f".{name}-download-failed.json"


def _download_once(name: str, directory: Path) -> str:
    """Download ``name`` unless a recent failure is remembered; a one-line status either way.

    Returns ``"downloaded"`` on success, else ``"download failed at <time>: <reason>; next try
    after <time>"`` (the same words on every load until the marker expires).
    """
    marker = failed_download_marker(name, directory)
    remembered = _read_marker(marker)
    if remembered is None:
        try:
            download(name, directory)
        except Exception as err:  # any network or disk failure means "not available"
            remembered = {"time": time.time(), "reason": _first_line(err)}
            with contextlib.suppress(OSError):
                write_json_atomic(marker, remembered)
            logger.info("could not download %s into %s: %s", name, directory, remembered["reason"])
        else:
            marker.unlink(missing_ok=True)
            return "downloaded"
    when = float(remembered["time"])
    return (
        f"download failed at {_utc(when)}: {remembered['reason']}; next try after "
        f"{_utc(when + RETRY_AFTER_S)} (or delete {marker})"
    )


def _read_marker(marker: Path) -> dict | None:
    """The remembered failure, if ``marker`` holds one younger than :data:`RETRY_AFTER_S`."""
    try:
        remembered = json.loads(marker.read_text())
        when = float(remembered["time"])
        str(remembered["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return remembered if 0 <= time.time() - when < RETRY_AFTER_S else None


def download(name: str, directory: Path) -> None:
    """Download MNIST or CIFAR-10 with torchvision into ``directory``; raises on any failure.

    A mirror that accepts no connection within :data:`CONNECT_TIMEOUT_S` counts as down, so an
    offline machine fails in seconds instead of waiting on torchvision's own retries.
    torchvision's progress output is swallowed: the library does not print.

    Args:
        name: ``"mnist"`` or ``"cifar10"``.
        directory: where torchvision writes the data set (created if missing).

    Raises:
        OSError: no mirror is reachable (else whatever torchvision raises when the download fails).
    """
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.CIFAR10
    urls = list(cls.mirrors) if name == "mnist" else [cls.url]
    _check_reachable(urls)
    directory.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s with torchvision into %s", name, directory)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cls(str(directory), train=False, download=True)


def _check_reachable(urls: list[str]) -> None:
    """Raise ``OSError`` if no http(s) host among ``urls`` accepts a connection."""
    errors = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return  # a local or unusual URL: let torchvision try it
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
            return
        except OSError as err:
            errors.append(f"{parts.hostname}: {err}")
    raise OSError(f"no download mirror reachable ({'; '.join(errors)})")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))
