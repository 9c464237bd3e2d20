"""Streaming data: an ImageFolder read image by image, and batches of any data source on demand.

A split decoded whole (:func:`~bandguard.data.load_dataset`) suits MNIST and CIFAR-10; ImageNet's
50,000 validation images of many sizes do not (7 GiB as uint8, more while decoding). Here:

- :class:`FolderSource`: a torch ``Dataset`` over ``root/[split/]<class>/<image>`` that decodes
  one image per item, resizes its shorter side and centre-crops it as torchvision's ImageNet
  evaluation transform does (``Resize(256)``, ``CenterCrop(224)``), and can follow an index list
  (RobustBench's 5,000-image ImageNet subset is such a list).
- :class:`TensorSamples` and :class:`StreamSamples`: the two kinds of :class:`Samples` the
  benchmark engine reads, a fixed and ordered set of ``n`` samples that hands out any batches
  ``[start, stop)`` asked for, in order. Tensors are sliced; a stream decodes each batch when it
  is asked for (in ``num_workers`` processes through a ``DataLoader``), so at most a few batches
  are alive at a time, whatever ``n``. :func:`as_samples` makes one from what a user has.

Both kinds give bit-identical batches for the same images, so a table computed from a stream is the
table computed from the same images in memory.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler
from torch.utils.data._utils.collate import default_collate

from bandguard._checks import check_bool, check_choice, check_images, check_int, check_labels
from bandguard.data.dataset import FOLDER_SPLITS, describe
from bandguard.data.folders import IMAGE_SUFFIXES, decode_images, image_files, interleave_classes, split_folder

__all__ = [
    "FolderSource",
    "Samples",
    "StreamSamples",
    "TensorSamples",
    "as_samples",
    "check_sizes",
    "read_index_list",
]

Size = int | tuple[int, int]


# --------------------------------------------------------------------------- the folder reader


class FolderSource(Dataset):
    """An ImageFolder read lazily: ``(float32 [C, H, W] in [0, 1], label)`` per item.

    The layout is torchvision's ImageFolder (one sub-folder per class, classes sorted by name, the
    labels ImageNet's usual order when the classes are its WordNet ids), optionally below
    ``train``/``val``/``test`` split folders. Each item is decoded when it is read (JPEGs through
    torchvision's decoder, the rest through Pillow, as :func:`~bandguard.data.load_dataset` does),
    then ``resize`` and ``center_crop`` apply torchvision's own
    ``transforms.v2.functional.resize`` (bilinear, antialiased) and ``center_crop`` to the uint8
    image: ``FolderSource(root, "val", resize=256, center_crop=224)`` is the standard ImageNet
    evaluation transform.

    The order: the index list's when one is given, else the order of
    :func:`~bandguard.data.load_dataset` (each class in turn), so that a folder whose images share
    one size yields exactly the images ``load_dataset`` decodes, in the same order.

    Args:
        root: the ImageFolder directory.
        split: ``"train"``, ``"val"`` or ``"test"``: the sub-folder ``root/split``; a ``root``
            without split sub-folders is used whole. ``None``: ``root`` holds the classes.
        resize: the shorter side after resizing (an int, as ``torchvision.transforms.Resize(256)``)
            or ``(height, width)``; ``None`` keeps each image's size.
        center_crop: the centre crop's side (an int) or ``(height, width)``, taken after
            ``resize``; no larger than the resized image.
        index: a text file selecting and ordering the images, one per line: integers (positions
            in torchvision's ``ImageFolder`` order, the files sorted by class folder then name) or
            paths relative to the split folder (``n01440764/ILSVRC2012_val_00000293.JPEG``, as
            RobustBench's list has them); blank lines and ``#`` comments are skipped.
        n: keep the first ``n`` images (of the index list, or of the order above); ``None``: all.
        channels: 3 (RGB; grey images repeated) or 1 (grey); ``None``: 1 if the first image is
            grey, else 3.

    Raises:
        ValueError: a missing folder or split, no images, a bad index list (the message names the
            file and line), ``resize``/``center_crop`` that are not positive sizes or a crop larger
            than the resized image, ``n`` larger than the images found.

    Example:
        >>> val = FolderSource("~/data/imagenet", "val", resize=256, center_crop=224,  # doctest: +SKIP
        ...                    index="imagenet_test_image_ids.txt", n=5000)
        >>> result = evaluate_robustness(model, val, attacks={"apgd": APGD(eps=4 / 255)})  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = None,
        *,
        resize: Size | None = None,
        center_crop: Size | None = None,
        index: str | os.PathLike[str] | None = None,
        n: int | None = None,
        channels: int | None = None,
    ) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a folder path, got {type(root).__name__}")
        top = Path(root).expanduser()
        if not top.is_dir():
            raise ValueError(f"root must be an existing ImageFolder directory, got {str(root)!r}")
        if split is None:
            found = [s for s in FOLDER_SPLITS if (top / s).is_dir()]
            if found:
                raise ValueError(f"{top}: holds split sub-folders {found}; pass split= one of them")
            folder = top
        else:
            folder = split_folder(top, check_choice(split, FOLDER_SPLITS, "split"))
        self.resize, self.center_crop = check_sizes(resize, center_crop)
        self.channels = None if channels is None else check_int(channels, "channels", minimum=1)
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None, got {channels}")
        files = image_files(folder)
        if not files:
            raise ValueError(f"{folder}: no images found; expected one sub-folder per class holding "
                             f"{', '.join(IMAGE_SUFFIXES)} files")
        self.root = folder
        self.classes = tuple(sorted({p.parent.name for p in files}))
        lookup = {c: k for k, c in enumerate(self.classes)}
        labels = torch.tensor([lookup[p.parent.name] for p in files], dtype=torch.int64)
        if index is not None:
            order = read_index_list(index, folder, files)
        else:
            order = interleave_classes(labels).tolist()
        if n is not None:
            n = check_int(n, "n", minimum=1)
            if n > len(order):
                raise ValueError(f"n must be <= {len(order)} (the images {'listed' if index else 'found'}), got {n}")
            order = order[:n]
        self.files = tuple(files[i] for i in order)
        self.labels = labels[torch.tensor(order, dtype=torch.long)]
        if self.channels is None:
            self.channels = int(self._decode(0).shape[0])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self._decode(index)
        if self.channels == 3 and img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        elif self.channels == 1 and img.shape[0] == 3:
            from torchvision.transforms.v2 import functional as F

            img = F.rgb_to_grayscale(img)
        img = _transform(img, self.resize, self.center_crop)
        return img.to(torch.float32).div_(255), int(self.labels[index])

    def _decode(self, index: int) -> torch.Tensor:
        path = self.files[index]
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise ValueError(f"{path}: cannot read the image: {err}") from err
        return decode_images([(str(path), raw)], path)[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the first item (of every item when ``center_crop`` or a
        ``(height, width)`` ``resize`` fixes the size)."""
        c, h, w = self[0][0].shape
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        """Number of classes (class folders, whether the index list uses them all or not)."""
        return len(self.classes)

    def subset(self, positions: Sequence[int] | torch.Tensor) -> FolderSource:
        """A source of the items at ``positions`` (in this source's order), in that order."""
        idx = torch.as_tensor(positions, dtype=torch.long)
        if idx.ndim != 1 or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self))):
            raise ValueError(f"positions must be a 1-D list of indices in [0, {len(self)}), got {describe(positions)}")
        out = object.__new__(FolderSource)
        out.__dict__.update(self.__dict__)
        out.files = tuple(self.files[i] for i in idx.tolist())
        out.labels = self.labels[idx]
        return out

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every item decoded into memory: ``(x [N, C, H, W] float32 in [0, 1], y [N] int64)``.

        For small sets (and for checking a stream against the in-memory harness); the images must
        then have one size after ``resize``/``center_crop``.
        """
        return _collate([self[i] for i in range(len(self))])

    def __repr__(self) -> str:
        return (f"FolderSource(root={str(self.root)!r}, n={len(self)}, num_classes={self.num_classes}, "
                f"resize={self.resize}, center_crop={self.center_crop}, channels={self.channels})")


def read_index_list(path: str | os.PathLike[str], folder: Path, files: Sequence[Path]) -> list[int]:
    """Positions into ``files`` that an index list names, in the list's order.

    Args:
        path: a text file, one entry per line: all integers (positions in ``files``, which is
            sorted as torchvision's ``ImageFolder`` sorts) or all paths of images relative to
            ``folder`` (``<class>/<image>``; a leading ``<split>/`` equal to ``folder``'s name is
            allowed). Blank lines and lines starting with ``#`` are skipped.
        folder: the split folder the paths are relative to.
        files: the folder's images, sorted by path.

    Returns:
        The positions, one per entry.

    Raises:
        ValueError: a missing or empty file, a mix of integers and paths, an integer out of range,
            a path that names no image of ``folder``, or an entry listed twice (the message names
            the file and line).
    """
    where = Path(path).expanduser()
    if not where.is_file():
        raise ValueError(f"index must be an existing text file, got {str(path)!r}")
    try:
        lines = where.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{where}: not a readable text file: {err}") from err
    entries = [(k + 1, line.strip()) for k, line in enumerate(lines)]
    entries = [(k, e) for k, e in entries if e and not e.startswith("#")]
    if not entries:
        raise ValueError(f"{where}: lists no images; expected one integer or relative path per line")
    numeric = [e.lstrip("-").isdigit() for _, e in entries]
    if any(numeric) and not all(numeric):
        k, e = entries[numeric.index(not numeric[0])]
        raise ValueError(f"{where}:{k}: {e!r} mixes with the entries above; use only integers or only paths")
    if all(numeric):
        out = []
        for k, e in entries:
            i = int(e)
            if not 0 <= i < len(files):
                raise ValueError(f"{where}:{k}: index {i} out of range; {folder} has {len(files)} images "
                                 f"(0..{len(files) - 1})")
            out.append(i)
    else:
        position = {p.relative_to(folder).as_posix(): i for i, p in enumerate(files)}
        out = []
        for k, e in entries:
            rel = e.replace("\\", "/")
            if rel not in position and rel.startswith(folder.name + "/"):
                rel = rel[len(folder.name) + 1:]
            if rel not in position:
                raise ValueError(f"{where}:{k}: {e!r} is no image of {folder} (expected <class>/<image>)")
            out.append(position[rel])
    seen: dict[int, int] = {}
    for (k, e), i in zip(entries, out):
        if i in seen:
            raise ValueError(f"{where}:{k}: {e!r} is listed twice (first on line {seen[i]})")
        seen[i] = k
    return out


def check_sizes(resize: object, center_crop: object) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """Check ``resize`` and ``center_crop`` as :class:`FolderSource` takes them.

    Args:
        resize: ``None``, the shorter side (an int >= 1) or ``(height, width)``.
        center_crop: ``None``, a side or ``(height, width)``; with ``resize``, no larger than
            the resized image (torchvision would pad it with zeros: black borders).

    Returns:
        Each as ``None``, ``(side,)`` or ``(height, width)``.

    Raises:
        ValueError: a size that is no positive int or pair, or a crop larger than ``resize``.
    """
    r, c = _size(resize, "resize"), _size(center_crop, "center_crop")
    if r is not None and c is not None:
        crop = c * 2 if len(c) == 1 else c
        limit = (min(r),) * 2 if len(r) == 1 else r
        if crop[0] > limit[0] or crop[1] > limit[1]:
            raise ValueError(f"center_crop {center_crop!r} is larger than the resized image (resize={resize!r}); "
                             "torchvision would pad it with zeros")
    return r, c


def _size(value: object, name: str) -> tuple[int, ...] | None:
    """``None``, ``(side,)`` for an int or ``(height, width)`` for a pair, each >= 1."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a (height, width) pair, got {value!r}")
        return tuple(check_int(v, f"{name}[{k}]", minimum=1) for k, v in enumerate(value))
    return (check_int(value, name, minimum=1),)


def _transform(img: torch.Tensor, resize: tuple[int, ...] | None, crop: tuple[int, ...] | None) -> torch.Tensor:
    """torchvision's resize (shorter side or exact size, bilinear, antialiased), then its centre crop."""
    if resize is None and crop is None:
        return img
    from torchvision.transforms.v2 import functional as F

    if resize is not None:
        img = F.resize(img, list(resize), antialias=True)
    if crop is not None:
        crop = crop * 2 if len(crop) == 1 else crop
        if img.shape[-2] < crop[0] or img.shape[-1] < crop[1]:
            raise ValueError(f"center_crop {crop} is larger than an image of size {tuple(img.shape[-2:])}; "
                             "give resize= too, or a smaller crop")
        img = F.center_crop(img, list(crop))
    return img


# --------------------------------------------------------------------------- samples for the engine


class Samples(Protocol):
    """A fixed, ordered set of ``n`` samples that hands out batches on demand.

    ``batches(slices)`` yields ``(x [B, C, H, W] float in [0, 1], y [B] int64)`` for each slice
    ``[start, stop)`` (increasing, not overlapping), in order; the same slices give the same
    tensors every time.
    """

    def __len__(self) -> int: ...

    @property
    def shape(self) -> tuple[int, int, int]: ...

    def batches(self, slices: Sequence[slice]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def head(self, m: int) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclasses.dataclass(frozen=True)
class TensorSamples:
    """Samples held in memory, sliced for each batch (checked by the caller, not here).

    Attributes:
        x: images ``[N, C, H, W]`` in the model's bounds.
        y: int64 labels ``[N]``.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def batches(self, slices: Sequence[slice]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x[s], y[s])`` per slice (views, no copy)."""
        for s in slices:
            yield self.x[s], self.y[s]

    def head(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``m`` samples."""
        return self.x[:m], self.y[:m]


@dataclasses.dataclass(frozen=True)
class StreamSamples:
    """Samples read from a data source each time a batch is asked for.

    Built by :func:`as_samples`. A map-style ``Dataset`` (a :class:`FolderSource`, a torchvision
    ``ImageFolder`` with a ``ToTensor`` transform, ...) is read through a ``DataLoader`` whose
    batches are exactly the slices asked for, decoded in ``num_workers`` processes, each holding at
    most ``prefetch`` batches; an iterable (an ``IterableDataset`` or a ``DataLoader`` over one)
    is read in its own order and cut into the slices asked for, holding at most one slice and one
    of its batches.

    Every batch is checked as it arrives: floating images ``[B, C, H, W]`` of one shape inside
    ``bounds``, integer labels ``[B]`` below ``num_classes`` (when set).

    Attributes:
        source: the dataset or iterable.
        n: the number of samples.
        shape: ``(C, H, W)`` of the first sample.
        num_workers: worker processes of a map-style source's loader (0: read in this process).
        collate_fn: turns a list of items into a batch (default: torch's ``default_collate``; a
            dataset with ``__getitems__`` returning a batch is passed through).
        pin_memory: pin the batches (for a CUDA device).
        prefetch: batches each worker reads ahead.
        bounds: ``(lo, hi)`` every image value must lie in, or ``None``.
        num_classes: labels must be below it, or ``None``.
    """

    source: Dataset | Iterable[Any]
    n: int
    shape: tuple[int, int, int]
    num_workers: int = 0
    collate_fn: Callable[[Any], Any] | None = None
    pin_memory: bool = False
    prefetch: int = 2
    bounds: tuple[float, float] | None = (0.0, 1.0)
    num_classes: int | None = None

    def __len__(self) -> int:
        return self.n

    @property
    def map_style(self) -> bool:
        """Whether the source is indexed (read by slices) rather than iterated in its own order."""
        return _is_map_style(self.source)

    def batches(self, slices: Sequence[slice], *, workers: int | None = None) -> Iterator[tuple[torch.Tensor,
                                                                                                 torch.Tensor]]:
        """``(x, y)`` per slice, decoded as it is asked for (``workers`` overrides ``num_workers``)."""
        slices = list(slices)
        if not slices:
            return
        if self.map_style:
            w = self.num_workers if workers is None else workers
            loader = DataLoader(self.source, batch_sampler=[range(s.start, s.stop) for s in slices],  # type: ignore[arg-type]
                                collate_fn=self.collate_fn or _collate, num_workers=w, pin_memory=self.pin_memory,
                                prefetch_factor=self.prefetch if w > 0 else None)
            parts: Iterable[Any] = loader
        else:
            parts = _rechunk(_pairs(self.source), slices)
        for s, batch in zip(slices, parts):
            x, y = _pair(batch)
            yield self._checked(x, y, s)

    def head(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``m`` samples (read in this process)."""
        return next(iter(self.batches([slice(0, min(m, self.n))], workers=0)))

    def _checked(self, x: torch.Tensor, y: torch.Tensor, s: slice) -> tuple[torch.Tensor, torch.Tensor]:
        where = f"data batch [{s.start}:{s.stop}]"
        if y.dtype != torch.int64 and not y.is_floating_point() and y.dtype != torch.bool:
            y = y.long()
        check_images(x, f"{where} images", bounds=self.bounds)
        check_labels(y, x, f"{where} labels", num_classes=self.num_classes)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"{where} images have shape {tuple(x.shape[1:])}, the first {self.shape}; every image "
                             "must have one size (for a FolderSource give resize= and center_crop=)")
        if x.shape[0] != s.stop - s.start:
            raise ValueError(f"{where}: got {x.shape[0]} samples, expected {s.stop - s.start}; the data source "
                             "must give the same samples on every pass")
        return x, y


def as_samples(data: object, y: object = None, *, num_workers: int = 0,
               pin_memory: bool = False) -> TensorSamples | StreamSamples:
    """The :class:`Samples` of what a user gives: tensors, a ``Dataset`` or a ``DataLoader``.

    Args:
        data: images ``[N, C, H, W]`` (with labels ``y``), a map-style ``Dataset`` of
            ``(image [C, H, W], label)`` items (e.g. a :class:`FolderSource`), an
            ``IterableDataset`` of such items, or a ``DataLoader`` yielding ``(x [B, C, H, W],
            y [B])`` in the same order on every pass (no shuffling).
        y: int64 labels ``[N]`` with tensors; ``None`` with a data source.
        num_workers: loader processes for a ``Dataset`` (a ``DataLoader`` keeps its own).
        pin_memory: pin the streamed batches.

    Returns:
        :class:`TensorSamples` for tensors (not checked here), else :class:`StreamSamples`. A
        source without a length (an iterable) is read once here to count it.

    Raises:
        TypeError: ``data`` is none of these, or ``y`` is given with a data source (or missing with
            tensors).
        ValueError: a shuffling ``DataLoader``, or an empty source.
    """
    num_workers = check_int(num_workers, "num_workers", minimum=0)
    pin_memory = check_bool(pin_memory, "pin_memory")
    if isinstance(data, torch.Tensor):
        if y is None:
            raise TypeError("y (int64 labels [N]) is required with images given as a tensor")
        return TensorSamples(data, y)  # type: ignore[arg-type]
    if y is not None:
        raise TypeError(f"y must be None when the data is a {type(data).__name__}: its items carry the labels")
    kw: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}
    source: Any = data
    if isinstance(data, DataLoader):
        if _is_map_style(data.dataset):
            sampler = data.batch_sampler.sampler if data.batch_sampler is not None else data.sampler
            if not isinstance(sampler, SequentialSampler):
                raise ValueError(f"the DataLoader must read its dataset in order (shuffle=False, no sampler), got "
                                 f"{type(sampler).__name__}: every cell reads the data again and needs the same "
                                 "samples in the same order")
            if data.batch_size is None and data.batch_sampler is None:
                raise ValueError("the DataLoader must batch (batch_size=None yields single samples)")
            source = data.dataset
            kw.update(num_workers=data.num_workers, collate_fn=data.collate_fn,
                      pin_memory=data.pin_memory or pin_memory)
        # a loader over an IterableDataset is iterated as it is
    elif isinstance(data, IterableDataset):
        source = DataLoader(data, batch_size=64)
    elif not isinstance(data, Dataset):
        raise TypeError(f"data must be images [N, C, H, W] with labels y, a torch Dataset or a DataLoader, "
                        f"got {describe(data)}")
    if _is_map_style(source):
        n = len(source)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError(f"the data source {type(data).__name__} holds no samples")
        first = DataLoader(source, batch_sampler=[[0]], collate_fn=kw.get("collate_fn") or _collate)
        x, _ = _pair(next(iter(first)))
    else:
        n, x = _count(source)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"the data source must give images [B, C, H, W] (items [C, H, W]), got {describe(x)}")
    return StreamSamples(source, n, tuple(int(s) for s in x.shape[1:]), **kw)  # type: ignore[arg-type]


def _is_map_style(source: object) -> bool:
    return isinstance(source, Dataset) and not isinstance(source, IterableDataset) and hasattr(source, "__len__")


def _collate(items: Any) -> Any:
    """A list of ``(image, label)`` items stacked into a batch; a batch (from ``__getitems__``) as is."""
    if isinstance(items, (tuple, list)) and len(items) == 2 and all(isinstance(t, torch.Tensor) for t in items) \
            and items[0].ndim == 4:
        return items
    try:
        return default_collate(items)
    except RuntimeError as err:  # torch.stack of images of different sizes
        sizes = sorted({tuple(it[0].shape) for it in items if isinstance(it, (tuple, list))})
        raise ValueError(f"images of different sizes in one batch ({sizes[:3]}); resize and centre-crop them "
                         f"(FolderSource(..., resize=, center_crop=)): {err}") from None


def _pair(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"the data source must give (images, labels) pairs, got {describe(batch)}")
    x, y = batch
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    return x, y


def _pairs(source: Iterable[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for batch in source:
        yield _pair(batch)


def _count(source: Iterable[Any]) -> tuple[int, torch.Tensor]:
    """One pass over an iterable source: its number of samples and its first batch's images."""
    n, first = 0, None
    for x, y in _pairs(source):
        first = x if first is None else first
        n += int(y.shape[0]) if y.ndim else 1
    if first is None:
        raise ValueError(f"the data source {type(source).__name__} yields no samples")
    return n, first[:1]


def _rechunk(parts: Iterator[tuple[torch.Tensor, torch.Tensor]],
             slices: Sequence[slice]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The samples of ``slices`` cut from a stream of batches of any sizes, holding at most one
    slice plus one incoming batch."""
    px = py = None
    p0 = p1 = 0  # the buffer holds samples [p0, p1)
    for s in slices:
        while p1 < s.stop:
            try:
                xb, yb = next(parts)
            except StopIteration:
                raise ValueError(f"the data source ended after {p1} samples, expected at least {s.stop}; it must "
                                 "give the same samples on every pass") from None
            if px is None or p1 <= s.start:
                px, py, p0 = xb, yb, p1
            else:
                keep = max(s.start - p0, 0)
                px, py, p0 = torch.cat([px[keep:], xb]), torch.cat([py[keep:], yb]), p0 + keep
            p1 += int(yb.shape[0])
        assert px is not None and py is not None
        yield px[s.start - p0:s.stop - p0], py[s.start - p0:s.stop - p0]

