"""bandguard.data.folders: ImageFolder directories and tarballs of them, decoded to uint8 tensors."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bandguard.data.folders import decode_folder, decode_image_tar, decode_images, image_files


def image(seed: int, channels: int, size: int = 8) -> torch.Tensor:
    """A random uint8 image ``[channels, size, size]``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (channels, size, size), generator=g, dtype=torch.uint8)


def encode(img: torch.Tensor, fmt: str) -> bytes:
    array = img.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buf, format=fmt)
    return buf.getvalue()


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_folder_png_is_exact_and_classes_sort(tmp_path: Path) -> None:
    for k, cls in enumerate(("square", "circle")):
        (tmp_path / cls).mkdir()
        for i in range(2):
            (tmp_path / cls / f"{i}.png").write_bytes(encode(image(10 * k + i, 3), "PNG"))
    (tmp_path / "circle" / "notes.txt").write_text("not an image")
    assert [p.name for p in image_files(tmp_path)] == ["0.png", "1.png", "0.png", "1.png"]
    splits, classes = decode_folder(tmp_path, "train")
    images, labels = splits["train"]
    assert classes == ("circle", "square") and labels.tolist() == [0, 1, 0, 1]  # classes in turn
    assert images.shape == (4, 3, 8, 8) and images.dtype == torch.uint8
    # PNG is lossless: circle (k=1) 0, square (k=0) 0, circle 1, square 1.
    assert torch.equal(images[0], image(10, 3)) and torch.equal(images[3], image(1, 3))
    assert torch.equal(images[1], image(0, 3)) and torch.equal(images[2], image(11, 3))


def test_grey_jpegs_give_one_channel_and_mixed_sets_three(tmp_path: Path) -> None:
    grey = [(f"{i}.jpg", encode(image(i, 1), "JPEG")) for i in range(2)]
    out = decode_images(grey, tmp_path)
    assert out.shape == (2, 1, 8, 8)
    # JPEG is lossy, but a decode must stay close to the original pixels.
    assert float((out[0].float() - image(0, 1).float()).abs().mean()) < 40
    mixed = decode_images([*grey, ("c.png", encode(image(5, 3), "PNG"))], tmp_path)
    assert mixed.shape == (3, 3, 8, 8)
    assert torch.equal(mixed[0, 0], mixed[0, 1]) and torch.equal(mixed[2], image(5, 3))


def test_jpeg_decode_agrees_with_pillow(tmp_path: Path) -> None:
    raw = encode(image(3, 3, 16), "JPEG")
    ours = decode_images([("a.jpg", raw)], tmp_path)[0]
    with Image.open(io.BytesIO(raw)) as im:
        pil = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
    assert int((ours.int() - pil.int()).abs().max()) <= 2  # decoders may round differently


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no images found"):
        decode_folder(tmp_path, "test")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"0\.png: not a readable image"):
        decode_folder(tmp_path, "test")
    (tmp_path / "a" / "0.png").write_bytes(encode(image(0, 1, 8), "PNG"))
    (tmp_path / "a" / "1.png").write_bytes(encode(image(0, 1, 9), "PNG"))
    with pytest.raises(ValueError, match="images must all have one size"):
        decode_folder(tmp_path, "test")


def test_tar_both_splits_in_order(tmp_path: Path) -> None:
    files = {
        f"top/{split}/{cls}/{i}.png": encode(image(100 * s + 10 * k + i, 3), "PNG")
        for s, split in enumerate(("train", "test"))
        for k, cls in enumerate(("dog", "cat"))
        for i in range(2)
    }
    splits, classes = decode_image_tar(write_tar(tmp_path / "set.tar.gz", files))
    assert classes == ("cat", "dog")
    images, labels = splits["test"]
    assert labels.tolist() == [0, 1, 0, 1]  # cat 0, dog 0, cat 1, dog 1
    assert torch.equal(images[0], image(100 + 10 + 0, 3)) and torch.equal(images[1], image(100 + 0, 3))
    assert splits["train"][0].shape == (4, 3, 8, 8)


def test_tar_refuses_members_outside_the_layout(tmp_path: Path) -> None:
    good = encode(image(0, 3), "PNG")
    for name in ("../../evil/cat/0.png", "top/valid/cat/0.png", "cat.png"):
        archive = write_tar(tmp_path / "set.tar.gz", {"top/train/cat/0.png": good, name: good})
        with pytest.raises(ValueError, match="is not <split>/<class>/<image>"):
            decode_image_tar(archive)
    assert not (tmp_path.parent / "evil").exists()


def test_tar_corrupt_truncated_incomplete(tmp_path: Path) -> None:
    archive = tmp_path / "set.tar.gz"
    archive.write_bytes(b"\x1f\x8b garbage that is no archive")
    with pytest.raises(ValueError, match=r"set\.tar\.gz: corrupt or truncated archive"):
        decode_image_tar(archive)
    good = encode(image(0, 3, 32), "PNG")
    write_tar(archive, {f"t/{s}/c/{i}.png": good for s in ("train", "test") for i in range(20)})
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ValueError, match="corrupt or truncated archive"):
        decode_image_tar(archive)
    write_tar(archive, {"t/train/c/0.png": good})
    with pytest.raises(ValueError, match=r"no images for split\(s\) \['test'\]"):
        decode_image_tar(archive)
    write_tar(archive, {"t/train/c/0.jpg": good[:30], "t/test/c/0.png": good})
    with pytest.raises(ValueError, match=r"t/train/c/0\.jpg: not a readable image"):
        decode_image_tar(archive)


def test_interleave_classes_takes_each_class_in_turn() -> None:
    from bandguard.data.folders import interleave_classes

    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    order = interleave_classes(labels)
    assert order.tolist() == [0, 3, 5, 1, 4, 6, 2, 7, 8]
    assert labels[order].tolist() == [0, 1, 2, 0, 1, 2, 0, 2, 2]
    shuffled = labels[torch.randperm(9, generator=torch.Generator().manual_seed(0))]
    again = shuffled[interleave_classes(shuffled)]
    assert again[:6].sort().values.tolist() == [0, 0, 1, 1, 2, 2]  # grouping not required


def test_real_cifar_prefix_is_class_balanced(data_root) -> None:
    """Sorted by folder, the first 1,000 CIFAR-10 test images were all airplanes."""
    from bandguard.data import load_dataset

    test = load_dataset("cifar10", "test", root=data_root, download=False)
    assert test.labels[:1000].bincount(minlength=10).tolist() == [100] * 10
    assert test.labels[:10].tolist() == list(range(10))
