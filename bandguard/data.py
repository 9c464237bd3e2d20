"""Image data sets as compact uint8 tensors: MNIST, CIFAR-10 and any ImageFolder directory.

``load_dataset(name, split)`` returns an :class:`ImageDataset` holding every image of one split
as a uint8 tensor ``[N, C, H, W]`` and the labels as int64 ``[N]``; it hands out float images in
``[0, 1]`` (the bounds every model here expects) one at a time, batched, or all at once
(:meth:`ImageDataset.tensors`). :func:`make_loader` batches by indexing the uint8 tensor, with no
per-image Python collation.

Where the data comes from, first match wins:

1. ``root`` if given, else the directory named by ``$BANDGUARD_DATA``. A directory may hold
   ``mnist.pkl.gz`` (the classic pickle), ``cifar10-jpeg.tar.gz`` or its extracted folder
   ``cifar10-jpeg/{train,test}/{class}/*.jpg``, or torchvision's own folders (``MNIST/raw``,
   ``cifar-10-batches-py``).
2. torchvision's folders in the user cache (``$XDG_CACHE_HOME/bandguard`` or
   ``~/.cache/bandguard``), downloading them there first when ``download=True`` (network errors
   are logged, not raised).
3. For MNIST only: a small sample bundled with the package (``bandguard/assets/mnist_sample.npz``),
   with a :class:`SampleDataWarning`. It holds the first 5,000 training and the first 1,000 test
   images of the standard MNIST set (Yann LeCun and Corinna Cortes, CC BY-SA 3.0), cut from
   ``mnist.pkl.gz`` with this module's reader and saved with ``numpy.savez_compressed`` as
   ``train_images``/``test_images`` (uint8 ``[N, 28, 28]``) and ``train_labels``/``test_labels``.

Archives are decoded once and the result cached in the user cache under ``decoded/``, keyed by
the source's path, size and modification time (and the expected checksum, when a
``SHA256SUMS`` file beside the archive lists one: the archive is verified before its first
decode). A later load reads the cache with ``torch.load(weights_only=True)``. The MNIST pickle is
read only through an unpickler that accepts numpy arrays and nothing else. Corrupt or
truncated archives, a wrong checksum, a refused pickle global, a bad split or an unknown name
raise ``ValueError`` naming the file or argument; nothing returns part of a data set.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import gzip
import hashlib
import io
import logging
import operator
import os
import pickle
import tarfile
import types
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from bandguard._checks import check_bool, check_choice, check_int
from bandguard._io import torch_save_atomic

__all__ = [
    "ImageDataset",
    "SampleDataWarning",
    "load_dataset",
    "make_loader",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
DATASETS = ("mnist", "cifar10")
MNIST_CLASSES = tuple(str(d) for d in range(10))
MNIST_PICKLE = "mnist.pkl.gz"
CIFAR_ARCHIVE = "cifar10-jpeg.tar.gz"
CIFAR_FOLDER = "cifar10-jpeg"
SAMPLE_ASSET = "mnist_sample.npz"
CHECKSUM_FILE = "SHA256SUMS"
# Bumped whenever the cached tensors' layout changes, so stale caches are never read.
CACHE_FORMAT = "bandguard-decoded/1"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class SampleDataWarning(UserWarning):
    """Warned when MNIST falls back to the small sample bundled with the package."""


# --------------------------------------------------------------------------- the data set


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ImageDataset(Dataset):
    """One split of an image data set, held compactly as uint8 tensors.

    Args:
        images: uint8 ``[N, C, H, W]``.
        labels: int64 ``[N]``, class indices into ``classes``.
        classes: the class names, index ``k`` naming label ``k``.
        name: the data set's name (``"mnist"``, ``"cifar10"``, a folder's name).
        split: ``"train"`` or ``"test"``.

    Indexing gives ``(image, label)`` with a float32 image ``[C, H, W]`` in ``[0, 1]``;
    ``__getitems__`` (used by :func:`make_loader`) gives a batch ``([B, C, H, W], [B])``.

    Example:
        >>> ds = load_dataset("mnist", "test")
        >>> x, y = ds.tensors(256)          # [256, 1, 28, 28] float32 in [0, 1], [256] int64
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    split: str

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 tensor [N, C, H, W], got {_describe(images)}")
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
            raise ValueError(f"labels must be an int64 tensor [N], got {_describe(labels)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {labels.shape[0]} labels")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.classes)):
            raise ValueError(
                f"labels must lie in [0, {len(self.classes)}) for {len(self.classes)} classes, "
                f"got [{int(labels.min())}, {int(labels.max())}]"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        i = operator.index(index)
        return self.images[i].to(torch.float32).div_(255), int(self.labels[i])

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch ``(images [B, C, H, W] float32 in [0, 1], labels [B] int64)``.

        A plain ``DataLoader`` must then be given ``collate_fn=lambda batch: batch`` (the default
        collate would try to stack the pair); :func:`make_loader` does this for you.
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx].to(torch.float32).div_(255), self.labels[idx]

    def tensors(
        self,
        n: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` images and labels as tensors ready for a model.

        Args:
            n: how many (from the start, in the data set's order); ``None`` for all.
            device: where to put them (default: CPU); the uint8 images move before conversion.
            dtype: a floating dtype for the images.

        Returns:
            ``(x, y)``: ``x`` of shape ``[n, C, H, W]`` in ``[0, 1]``, ``y`` int64 ``[n]``.
        """
        if n is None:
            n = len(self)
        n = check_int(n, "n", minimum=1)
        if n > len(self):
            raise ValueError(f"n must be <= {len(self)} (the {self.split} split's size), got {n}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        x = self.images[:n].to(device=device).to(dtype).div_(255)
        y = self.labels[:n].to(device=device, copy=True)
        return x, y

    def subset(self, indices: Sequence[int] | torch.Tensor | slice) -> ImageDataset:
        """A new data set with the images at ``indices`` (a slice, ints or an int tensor)."""
        idx = indices if isinstance(indices, slice) else torch.as_tensor(indices, dtype=torch.long)
        return dataclasses.replace(self, images=self.images[idx], labels=self.labels[idx])

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape={self.shape}, num_classes={self.num_classes})"
        )


def make_loader(
    dataset: ImageDataset,
    batch_size: int = 128,
    *,
    shuffle: bool = False,
    seed: int | None = None,
    drop_last: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A ``DataLoader`` yielding ``(x [B, C, H, W] float32 in [0, 1], y [B] int64)`` batches.

    Each batch is one index into the uint8 tensor (``ImageDataset.__getitems__``), not ``B``
    item fetches and a collate.

    Args:
        dataset: the data set.
        batch_size: images per batch.
        shuffle: draw a fresh random order each epoch.
        seed: seeds the shuffling generator, so the order of every epoch is reproducible.
        drop_last: drop a last, smaller batch.
        num_workers: worker processes (0 loads in the calling process).
    """
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be an ImageDataset, got {type(dataset).__name__}")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    num_workers = check_int(num_workers, "num_workers", minimum=0)
    generator = None
    if seed is not None:
        generator = torch.Generator().manual_seed(check_int(seed, "seed"))
    sampler = (
        RandomSampler(dataset, generator=generator) if check_bool(shuffle, "shuffle") else SequentialSampler(dataset)
    )
    return DataLoader(
        dataset,
        batch_sampler=BatchSampler(sampler, batch_size, drop_last),
        collate_fn=_passthrough,
        num_workers=num_workers,
    )


def _passthrough(batch: Any) -> Any:
    return batch


# --------------------------------------------------------------------------- resolution


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
        split: ``"train"`` or ``"test"``. MNIST train is the standard 60,000 images (the
            pickle's train + valid), test 10,000; CIFAR-10 has 50,000 and 10,000. A folder with
            no split sub-folders is used whole for either split.
        root: a directory to look in first (instead of ``$BANDGUARD_DATA``).
        download: let torchvision download MNIST/CIFAR-10 into the user cache if nothing local
            is found.

    Returns:
        An :class:`ImageDataset`: uint8 images ``[N, C, H, W]``, int64 labels ``[N]``.

    Raises:
        ValueError: unknown name or split, a missing ``root``, or a corrupt, truncated or
            mis-checksummed source (the message names the file).
        FileNotFoundError: CIFAR-10 found nowhere.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a data set name or a folder path, got {type(name).__name__} {name!r}")
    split, download = check_choice(split, SPLITS, "split"), check_bool(download, "download")
    key = name.lower() if isinstance(name, str) else None
    if key in DATASETS:
        return _load_named(key, split, root=root, download=download)
    if isinstance(name, (str, os.PathLike)) and Path(name).expanduser().is_dir():
        folder = Path(name).expanduser()
        return _load_folder(folder, split, folder.resolve().name)
    raise ValueError(
        f"unknown dataset name {name!r}; expected one of {', '.join(map(repr, DATASETS))} "
        "or the path of an ImageFolder directory"
    )


def _load_named(name: str, split: str, *, root: Any, download: bool) -> ImageDataset:
    roots: list[Path] = []
    if root is not None:
        root_path = Path(root).expanduser()
        if not root_path.is_dir():
            raise ValueError(f"root must be an existing directory, got {str(root)!r}")
        roots.append(root_path)
    elif os.environ.get("BANDGUARD_DATA"):
        env = Path(os.environ["BANDGUARD_DATA"]).expanduser()
        if env.is_dir():
            roots.append(env)
        else:
            logger.warning("BANDGUARD_DATA=%s is not a directory; ignoring it", env)
    tv_root = _cache_dir() / "torchvision"
    roots.append(tv_root)

    for directory in roots[:-1]:
        found = _load_from_root(name, split, directory)
        if found is not None:
            return found
    # What torchvision left in our cache may be a half-finished download: not fatal there.
    for attempt in (False, True):
        if attempt and not (download and _download(name, tv_root)):
            break
        try:
            found = _load_from_root(name, split, tv_root)
        except ValueError as err:
            logger.warning("ignoring %s in the cache: %s", name, err)
            found = None
        if found is not None:
            return found
    looked = ", ".join(str(d) for d in roots)
    if name == "mnist":
        warnings.warn(
            f"no MNIST data found (looked in {looked}; download={download}); using the small "
            "sample bundled with bandguard (5,000 train / 1,000 test images). Set BANDGUARD_DATA "
            "or root to a folder holding mnist.pkl.gz for the full set.",
            SampleDataWarning,
            stacklevel=3,
        )
        return _load_sample(split)
    raise FileNotFoundError(
        f"no {name} data found (looked in {looked}; download={download}); set BANDGUARD_DATA or "
        f"root to a folder holding {CIFAR_ARCHIVE}, {CIFAR_FOLDER}/ or cifar-10-batches-py/"
    )


def _load_from_root(name: str, split: str, directory: Path) -> ImageDataset | None:
    """The split from the first source for ``name`` found in ``directory``, else ``None``."""
    if name == "mnist":
        if (directory / MNIST_PICKLE).is_file():
            return _cached(directory / MNIST_PICKLE, "mnist", split, _decode_mnist_pickle)
        if (directory / "MNIST" / "raw").is_dir():
            return _torchvision(name, split, directory, directory / "MNIST" / "raw")
        return None
    if (directory / CIFAR_ARCHIVE).is_file():
        return _cached(directory / CIFAR_ARCHIVE, "cifar10", split, _decode_image_tar)
    if (directory / CIFAR_FOLDER).is_dir():
        return _load_folder(directory / CIFAR_FOLDER, split, "cifar10")
    if (directory / "cifar-10-batches-py").is_dir():
        return _torchvision(name, split, directory, directory / "cifar-10-batches-py")
    return None


def _download(name: str, directory: Path) -> bool:
    """Let torchvision download ``name`` into ``directory``; ``False`` (logged) on failure."""
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.CIFAR10
    logger.info("downloading %s with torchvision into %s", name, directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # torchvision reports progress with print; the library stays quiet.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cls(str(directory), train=False, download=True)
    except Exception as err:  # any network or disk failure means "not available"
        logger.warning("could not download %s into %s: %s", name, directory, err)
        return False
    return True


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
    return ImageDataset(images.contiguous(), labels, classes, name, split)


def _load_sample(split: str) -> ImageDataset:
    asset = resources.files("bandguard") / "assets" / SAMPLE_ASSET
    with asset.open("rb") as f, np.load(f, allow_pickle=False) as npz:
        images = torch.from_numpy(npz[f"{split}_images"].astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(npz[f"{split}_labels"].astype(np.int64))
    return ImageDataset(images, labels, MNIST_CLASSES, "mnist", split)


# --------------------------------------------------------------------------- decoded cache

# A decoder maps a source path to {split: (images uint8 [N, C, H, W], labels int64 [N])} plus
# the class names; every split it returns is cached, so the other split is free next time.
Decoded = tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], tuple[str, ...]]


def _cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bandguard``, else ``~/.cache/bandguard`` (read at call time)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "bandguard"


def _cached(source: Path, name: str, split: str, decode: Any) -> ImageDataset:
    """Load ``split`` of ``source`` from the decoded cache, decoding (and caching) it if needed."""
    expected = _expected_checksum(source)
    key = _source_key(source, expected)
    entry = _cache_dir() / "decoded"
    path = entry / f"{name}-{split}-{key}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            return ImageDataset(blob["images"], blob["labels"], tuple(blob["classes"]), name, split)
        except Exception as err:  # a cache is disposable: rebuild it
            logger.warning("ignoring unreadable cache %s: %s", path, err)
    if expected is not None:
        _verify_checksum(source, expected)
    logger.info("decoding %s (cached in %s)", source, entry)
    splits, classes = decode(source)
    if split not in splits:
        raise ValueError(f"{source}: holds no {split!r} split (found {sorted(splits)})")
    for s, (images, labels) in splits.items():
        blob = {"format": CACHE_FORMAT, "images": images, "labels": labels, "classes": list(classes)}
        try:
            torch_save_atomic(blob, entry / f"{name}-{s}-{key}.pt")
        except OSError as err:
            logger.warning("could not write the decoded cache in %s: %s", entry, err)
    images, labels = splits[split]
    return ImageDataset(images, labels, classes, name, split)


def _source_key(source: Path, expected: str | None) -> str:
    """Hex digest naming one version of ``source`` (a file, or a folder's image listing)."""
    h = hashlib.sha256(CACHE_FORMAT.encode())
    h.update(str(source.resolve()).encode())
    if source.is_dir():
        for p in _image_files(source):
            st = p.stat()
            h.update(f"\0{p.relative_to(source)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    else:
        st = source.stat()
        h.update(f"\0{st.st_size}\0{st.st_mtime_ns}\0{expected}".encode())
    return h.hexdigest()[:20]


def _expected_checksum(source: Path) -> str | None:
    """The SHA-256 that a ``SHA256SUMS`` file beside ``source`` lists for it, if any."""
    sums = source.parent / CHECKSUM_FILE
    if not sums.is_file():
        return None
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[1].lstrip("*") == source.name:
            return parts[0].lower()
    return None


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


# --------------------------------------------------------------------------- MNIST pickle


# Both numpy spellings map to the function numpy itself pickles arrays with, found without
# importing the deprecated ``numpy.core`` alias. Read-only: no mutable module state.
_PICKLE_ALLOWED: Mapping[tuple[str, str], Any] = types.MappingProxyType({
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # protocol 2 pickles bytes (the array data) through it
})


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def _decode_mnist_pickle(source: Path) -> Decoded:
    """Read ``mnist.pkl.gz``: ``(train, valid, test)`` pairs of float ``[N, 784]`` and labels."""
    try:
        with gzip.open(source, "rb") as f:
            parts = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except _RefusedGlobal as err:
        raise ValueError(
            f"{source}: refusing to unpickle global {err}; an MNIST pickle may only hold numpy "
            "arrays (numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype)"
        ) from None
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, MemoryError) as err:
        raise ValueError(f"{source}: corrupt or truncated MNIST pickle: {err!r}") from err
    if not (isinstance(parts, tuple) and len(parts) == 3):
        raise ValueError(f"{source}: expected a (train, valid, test) tuple, got {_describe(parts)}")
    arrays = [_mnist_part(source, part, k) for k, part in enumerate(parts)]
    train = (torch.cat([arrays[0][0], arrays[1][0]]), torch.cat([arrays[0][1], arrays[1][1]]))
    return {"train": train, "test": arrays[2]}, MNIST_CLASSES


def _mnist_part(source: Path, part: object, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    what = ("train", "valid", "test")[k]
    if not (isinstance(part, tuple) and len(part) == 2):
        raise ValueError(f"{source}: {what} must be an (images, labels) pair, got {_describe(part)}")
    x, y = part
    if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == 784 and x.dtype.kind == "f"):
        raise ValueError(f"{source}: {what} images must be a float array [N, 784], got {_describe(x)}")
    if not (isinstance(y, np.ndarray) and y.shape == (x.shape[0],) and y.dtype.kind in "iu"):
        raise ValueError(
            f"{source}: {what} labels must be an int array [{x.shape[0]}], got {_describe(y)}"
        )
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError(f"{source}: {what} images must be finite and in [0, 1]")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{source}: {what} labels must lie in 0..9")
    # The classic pickle stores pixel / 256 (maximum 255/256); recover the exact bytes then.
    scale = 256.0 if np.array_equal(x * 256, np.rint(x * 256)) and x.max() < 1 else 255.0
    pixels = np.clip(np.rint(x * scale), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return torch.from_numpy(pixels), torch.from_numpy(y.astype(np.int64))


# --------------------------------------------------------------------------- image folders


def _load_folder(folder: Path, split: str, name: str) -> ImageDataset:
    """An ImageFolder directory, with or without ``train``/``test`` sub-folders."""
    split_dirs = [s for s in SPLITS if (folder / s).is_dir()]
    if split_dirs:
        if split not in split_dirs:
            raise ValueError(f"{folder}: has no {split!r} sub-folder (found {split_dirs})")
        source = folder / split
    else:
        source = folder
    return _cached(source, name, split, lambda src: _decode_folder(src, split))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def _decode_folder(folder: Path, split: str) -> Decoded:
    files = _image_files(folder)
    if not files:
        raise ValueError(
            f"{folder}: no images found; expected one sub-folder per class holding "
            f"{', '.join(IMAGE_SUFFIXES)} files"
        )
    classes = tuple(sorted({p.parent.name for p in files}))
    index = {c: k for k, c in enumerate(classes)}
    blobs = [(str(p), p.read_bytes()) for p in files]
    images = _decode_images(blobs, folder)
    labels = torch.tensor([index[p.parent.name] for p in files], dtype=torch.int64)
    return {split: (images, labels)}, classes


def _decode_image_tar(source: Path) -> Decoded:
    """A ``.tar.gz`` of ``<top>/{train,test}/<class>/<image>`` files, both splits at once."""
    members: dict[str, list[tuple[str, str, bytes]]] = {s: [] for s in SPLITS}
    try:
        with tarfile.open(source, "r:*") as tf:
            for m in tf:
                parts = m.name.split("/")
                if not m.isfile() or Path(m.name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if len(parts) < 3 or parts[-3] not in SPLITS:
                    raise ValueError(
                        f"{source}: member {m.name!r} is not <split>/<class>/<image> "
                        f"with split in {SPLITS}"
                    )
                f = tf.extractfile(m)
                data = f.read() if f is not None else b""
                if len(data) != m.size:
                    raise ValueError(f"{source}: member {m.name!r} is truncated")
                members[parts[-3]].append((parts[-2], m.name, data))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{source}: corrupt or truncated archive: {err!r}") from err
    if not all(members.values()):
        empty = [s for s in SPLITS if not members[s]]
        raise ValueError(f"{source}: no images for split(s) {empty}; the archive is incomplete")
    classes = tuple(sorted({c for items in members.values() for c, _, _ in items}))
    index = {c: k for k, c in enumerate(classes)}
    out = {}
    for s, items in members.items():
        items.sort(key=lambda t: (t[0], t[1]))
        images = _decode_images([(f"{source}:{n}", d) for _, n, d in items], source)
        out[s] = (images, torch.tensor([index[c] for c, _, _ in items], dtype=torch.int64))
    return out, classes


def _decode_images(blobs: Sequence[tuple[str, bytes]], source: Path) -> torch.Tensor:
    """Decode encoded images (JPEG, PNG, ...) into uint8 ``[N, C, H, W]``.

    JPEGs go through torchvision's batched ``decode_jpeg`` (about 4 s for the 60,000 CIFAR-10
    images, against 13 s one by one in Pillow); everything else, and every JPEG that fails
    there, through Pillow, which names a bad file. Grey images give one channel, unless the
    set mixes them with colour ones.
    """
    arrays: list[np.ndarray | None] = [None] * len(blobs)
    jpeg = [i for i, (name, _) in enumerate(blobs) if name.lower().endswith((".jpg", ".jpeg"))]
    for i, img in zip(jpeg, _decode_jpegs([blobs[i][1] for i in jpeg])):
        if img.shape[0] in (1, 3):
            arrays[i] = img.permute(1, 2, 0).squeeze(2).numpy()
    for i, (name, raw) in enumerate(blobs):
        if arrays[i] is None:
            arrays[i] = _decode_pil(name, raw)
    sizes = {a.shape[:2] for a in arrays}  # type: ignore[union-attr]
    if len(sizes) != 1:
        raise ValueError(f"{source}: images must all have one size, found {sorted(sizes)[:4]}")
    if any(a.ndim == 3 for a in arrays):  # type: ignore[union-attr]
        arrays = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays]  # type: ignore[union-attr,index]
    images = torch.from_numpy(np.stack(arrays))  # type: ignore[arg-type]
    return (images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)).contiguous()


def _decode_jpegs(raws: Sequence[bytes]) -> list[torch.Tensor]:
    """Batched torchvision JPEG decoding; ``[]`` when torchvision cannot (Pillow then decodes)."""
    if not raws:
        return []
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return []
    data = [torch.frombuffer(bytearray(raw), dtype=torch.uint8) for raw in raws]
    try:
        # torchvision >= 0.29 warns on every call that its decoders are deprecated; the user
        # can do nothing about it, and Pillow takes over once they are gone.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return list(decode_jpeg(data, mode=ImageReadMode.UNCHANGED))
    except RuntimeError:
        return []


def _decode_pil(name: str, raw: bytes) -> np.ndarray:
    """One image as uint8 ``[H, W]`` (grey) or ``[H, W, 3]``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as im:
            grey = im.mode in ("1", "L", "LA", "I", "I;16", "F")
            return np.asarray(im.convert("L" if grey else "RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{name}: not a readable image: {err}") from err


def _describe(obj: object) -> str:
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return f"{type(obj).__name__} of shape {tuple(obj.shape)} and dtype {obj.dtype}"
    if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        return f"{type(obj).__name__} of length {len(obj) if hasattr(obj, '__len__') else '?'}"
    return type(obj).__name__
