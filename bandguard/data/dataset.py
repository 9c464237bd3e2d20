"""The data set container (:class:`ImageDataset`) and its batch loader (:func:`make_loader`).

One split of an image data set is held as a uint8 tensor ``[N, C, H, W]`` plus int64 labels
``[N]`` (60,000 MNIST images take 47 MB); float images in ``[0, 1]``, the bounds every model here
expects, are made only when asked for, one image, one batch or a whole prefix at a time.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from bandguard._checks import check_bool, check_device, check_int, check_names

__all__ = ["FOLDER_SPLITS", "SPLITS", "ImageDataset", "describe", "make_loader"]

SPLITS = ("train", "test")
"""The splits of MNIST and CIFAR-10 (and of a ``.tar.gz`` ImageFolder archive)."""
FOLDER_SPLITS = ("train", "val", "test")
"""The split sub-folders an ImageFolder directory may hold (ImageNet's evaluation split is ``val``)."""


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ImageDataset(Dataset):
    """One split of an image data set, held compactly as uint8 tensors.

    Args:
        images: uint8 ``[N, C, H, W]``.
        labels: int64 ``[N]``, class indices into ``classes``.
        classes: the class names, index ``k`` naming label ``k``.
        name: the data set's name (``"mnist"``, ``"cifar10"``, a folder's name).
        split: ``"train"``, ``"val"`` or ``"test"``.
        source: where the images came from (a file, a folder, ``"bundled sample"``), for
            reports; it does not take part in any computation.

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
    source: str = ""

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 tensor [N, C, H, W], got {describe(images)}")
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
            raise ValueError(f"labels must be an int64 tensor [N], got {describe(labels)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {labels.shape[0]} labels")
        if images.shape[0] == 0:  # a data file with no images: refuse it here, not at the first batch
            where = f"{self.source}: " if self.source else ""
            raise ValueError(f"{where}the {self.name} {self.split!r} split holds no images; expected at least one")
        classes = self.classes
        if isinstance(classes, Iterable) and not isinstance(classes, str):
            classes = [str(c) for c in classes]
        object.__setattr__(self, "classes", check_names(classes, "classes"))
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
        if device is not None:  # "cuda" without a GPU: our error, not the driver's
            device = check_device(device)
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

    Returns:
        A ``torch.utils.data.DataLoader`` over ``dataset``: ``x`` float32 ``[B, C, H, W]`` in
        ``[0, 1]`` and ``y`` int64 ``[B]``.

    Raises:
        TypeError: ``dataset`` is not an :class:`ImageDataset`.
    """
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be an ImageDataset, got {type(dataset).__name__}")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    num_workers = check_int(num_workers, "num_workers", minimum=0)
    generator = None
    if seed is not None:
        generator = torch.Generator().manual_seed(check_int(seed, "seed"))
    shuffle = check_bool(shuffle, "shuffle")
    drop_last = check_bool(drop_last, "drop_last")
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_sampler=BatchSampler(sampler, batch_size, drop_last),
        collate_fn=_passthrough,
        num_workers=num_workers,
    )


def _passthrough(batch: Any) -> Any:
    return batch


def describe(obj: object) -> str:
    """A short description of ``obj`` for error messages: type, and shape and dtype of arrays.

    Args:
        obj: anything a caller passed.

    Returns:
        E.g. ``"Tensor of shape (2, 3) and dtype torch.float32"``, ``"list of length 4"`` or the
        type's name.
    """
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return f"{type(obj).__name__} of shape {tuple(obj.shape)} and dtype {obj.dtype}"
    if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        return f"{type(obj).__name__} of length {len(obj) if hasattr(obj, '__len__') else '?'}"
    return type(obj).__name__
