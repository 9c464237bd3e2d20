"""Images from an ImageFolder directory or a ``.tar.gz`` of one, decoded into uint8 tensors.

The layout is torchvision's ImageFolder: one sub-folder per class, classes sorted by name, so
the CIFAR-10 JPEG copy (``cifar10-jpeg/{train,test}/{airplane,...,truck}/NNNN.jpg``) gets the
standard label order. Images are then ordered class by class in turn (the first image of every
class, then the second of every class, ...), so that the first ``n`` images of a split are a
class-balanced sample, as they are in CIFAR-10's original binary release; sorted by folder, the
first 1,000 CIFAR-10 test images would all be airplanes. A tarball is read member by member,
never extracted, so a member named ``../../x`` or a link cannot write anywhere; every member must
be ``<split>/<class>/<image>``.
"""

from __future__ import annotations

import io
import tarfile
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bandguard.data.dataset import FOLDER_SPLITS, SPLITS

__all__ = [
    "IMAGE_SUFFIXES",
    "Decoded",
    "decode_folder",
    "decode_image_tar",
    "image_files",
    "interleave_classes",
    "split_folder",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

# What a decoder returns: {split: (images uint8 [N, C, H, W], labels int64 [N])} and the class
# names; the decoded cache stores every split it returns, so the other split is free next time.
Decoded = tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], tuple[str, ...]]


def image_files(folder: Path) -> list[Path]:
    """The image files one level below ``folder``'s class sub-folders, sorted by path.

    Args:
        folder: a folder of ``<class>/<image>`` files.

    Returns:
        The paths of the files with an image suffix (:data:`IMAGE_SUFFIXES`), sorted.
    """
    return sorted(p for p in folder.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def split_folder(folder: Path, split: str) -> Path:
    """The folder holding ``split``'s class sub-folders: ``folder/split``, or ``folder`` itself.

    A folder with split sub-folders (any of :data:`~bandguard.data.dataset.FOLDER_SPLITS`) must
    hold ``split``; a folder without any is one split, used whole for whichever is asked.

    Args:
        folder: an ImageFolder directory, with or without ``train``/``val``/``test`` sub-folders.
        split: the split wanted.

    Returns:
        ``folder / split`` or ``folder``.

    Raises:
        ValueError: ``folder`` has split sub-folders, but not ``split``.
    """
    found = [s for s in FOLDER_SPLITS if (folder / s).is_dir()]
    if found and split not in found:
        raise ValueError(f"{folder}: has no {split!r} sub-folder (found {found})")
    return folder / split if found else folder


def interleave_classes(labels: torch.Tensor) -> torch.Tensor:
    """The order that takes each class in turn: int64 ``[N]`` indices into ``labels``.

    Within a class the given order is kept; position ``r`` of every class comes before position
    ``r + 1`` of any class, classes in label order. Any prefix of the result is as
    class-balanced as the class sizes allow.

    Args:
        labels: int64 ``[N]``, grouped or not.

    Returns:
        int64 ``[N]``, a permutation: ``labels[result]`` cycles through the classes.
    """
    n = labels.numel()
    order = torch.argsort(labels, stable=True)  # grouped by class, given order kept within
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = torch.arange(n) - starts[labels[order]]  # position of each image in its class
    return torch.argsort(rank * (int(labels.max()) + 1) + labels, stable=True)


def decode_folder(folder: Path, split: str) -> Decoded:
    """Decode ``folder/<class>/<image>`` as the split ``split``.

    Args:
        folder: one sub-folder per class (the sorted folder names are the classes).
        split: the name the decoded split gets, e.g. ``"test"``.

    Returns:
        ``({split: (images, labels)}, classes)``: images uint8 ``[N, C, H, W]`` and labels int64
        ``[N]``, interleaved by class (:func:`interleave_classes`).

    Raises:
        ValueError: no images, an unreadable image, or images of different sizes.
    """
    files = image_files(folder)
    if not files:
        raise ValueError(
            f"{folder}: no images found; expected one sub-folder per class holding "
            f"{', '.join(IMAGE_SUFFIXES)} files"
        )
    classes = tuple(sorted({p.parent.name for p in files}))
    index = {c: k for k, c in enumerate(classes)}
    images = decode_images([(str(p), p.read_bytes()) for p in files], folder)
    labels = torch.tensor([index[p.parent.name] for p in files], dtype=torch.int64)
    order = interleave_classes(labels)
    return {split: (images[order], labels[order])}, classes


def decode_image_tar(source: Path) -> Decoded:
    """Decode a ``.tar.gz`` of ``<top>/{train,test}/<class>/<image>`` files, both splits at once.

    Args:
        source: the archive.

    Returns:
        ``({"train": (images, labels), "test": (images, labels)}, classes)``: images uint8
        ``[N, C, H, W]`` and labels int64 ``[N]`` per split, interleaved by class.

    Raises:
        ValueError: a corrupt or truncated archive, a member outside the layout, a split with
            no images, or an unreadable image (the message names the member).
    """
    members: dict[str, list[tuple[str, str, bytes]]] = {s: [] for s in SPLITS}
    try:
        with tarfile.open(source, "r:*") as tf:
            for m in tf:
                parts = m.name.split("/")
                if not m.isfile() or Path(m.name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if len(parts) < 3 or parts[-3] not in SPLITS:
                    raise ValueError(
                        f"{source}: member {m.name!r} is not <split>/<class>/<image> with split in {SPLITS}"
                    )
                f = tf.extractfile(m)
                data = f.read() if f is not None else b""
                if len(data) != m.size:
                    raise ValueError(f"{source}: member {m.name!r} is truncated")
                members[parts[-3]].append((parts[-2], m.name, data))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{source}: corrupt or truncated archive: {err!r}") from err
    empty = [s for s in SPLITS if not members[s]]
    if empty:
        raise ValueError(f"{source}: no images for split(s) {empty}; the archive is incomplete")
    classes = tuple(sorted({c for items in members.values() for c, _, _ in items}))
    index = {c: k for k, c in enumerate(classes)}
    out = {}
    for s, items in members.items():
        items.sort(key=lambda t: (t[0], t[1]))
        images = decode_images([(f"{source}:{n}", d) for _, n, d in items], source)
        labels = torch.tensor([index[c] for c, _, _ in items], dtype=torch.int64)
        order = interleave_classes(labels)
        out[s] = (images[order], labels[order])
    return out, classes


def decode_images(blobs: Sequence[tuple[str, bytes]], source: Path) -> torch.Tensor:
    """Decode encoded images (JPEG, PNG, ...) into uint8 ``[N, C, H, W]``.

    JPEGs go through torchvision's batched ``decode_jpeg`` (about 4 s for the 60,000 CIFAR-10
    images, against 13 s one by one in Pillow); everything else, and every JPEG that fails
    there, through Pillow, which names a bad file. Grey images give one channel, unless the
    set mixes them with colour ones.

    Args:
        blobs: ``(name, encoded bytes)`` per image; the name appears in errors.
        source: the folder or archive, named in errors.
    """
    arrays: list[np.ndarray | None] = [None] * len(blobs)
    jpeg = [i for i, (name, raw) in enumerate(blobs) if raw and name.lower().endswith((".jpg", ".jpeg"))]
    for i, img in zip(jpeg, _decode_jpegs([blobs[i][1] for i in jpeg])):
        if img.shape[0] in (1, 3):
            arrays[i] = img.permute(1, 2, 0).squeeze(2).numpy()
    decoded = [a if a is not None else _decode_pil(name, raw) for a, (name, raw) in zip(arrays, blobs)]
    sizes = {a.shape[:2] for a in decoded}
    if len(sizes) != 1:
        raise ValueError(f"{source}: images must all have one size, found {sorted(sizes)[:4]}")
    if any(a.ndim == 3 for a in decoded):
        decoded = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in decoded]
    images = torch.from_numpy(np.stack(decoded))
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
