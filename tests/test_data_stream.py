"""bandguard.data.stream: FolderSource (resize, centre crop, split, index list) and the samples the
benchmark streams (tensors, datasets, loaders)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _folders import CLASSES, write_folder
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from bandguard.data import FolderSource, as_samples, load_dataset
from bandguard.data.stream import StreamSamples, TensorSamples


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_folder(tmp_path / "data", split="val")
    write_folder(tmp_path / "data", per_class=2, split="train")
    return tmp_path / "data"


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # torchvision >= 0.29
def test_resize_and_centre_crop_are_torchvisions(folder: Path) -> None:
    from torchvision.io import decode_image
    from torchvision.transforms import v2

    src = FolderSource(folder, "val", resize=36, center_crop=32)
    assert len(src) == 24 and src.num_classes == 3 and src.classes == CLASSES and src.shape == (3, 32, 32)
    # Each class in turn, as load_dataset orders a folder: the first n images are class-balanced.
    assert src.labels.tolist() == [0, 1, 2] * 8
    assert [p.parent.name for p in src.files[:3]] == list(CLASSES)
    transform = v2.Compose([v2.Resize(36, antialias=True), v2.CenterCrop(32)])
    for i in (0, 1, 5, 23):
        x, label = src[i]
        assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and label == int(src.labels[i])
        expected = transform(decode_image(str(src.files[i]))).float() / 255
        assert torch.equal(x, expected)
    # A (height, width) resize gives that size exactly, with no crop.
    assert FolderSource(folder, "val", resize=(20, 30))[1][0].shape == (3, 20, 30)


def test_a_folder_of_one_size_streams_exactly_what_load_dataset_decodes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_folder(tmp_path / "same", per_class=4, split="test", sizes=((12, 12),))
    x, y = FolderSource(tmp_path / "same", "test").tensors()
    data = load_dataset(tmp_path / "same", "test")
    xm, ym = data.tensors()
    assert torch.equal(x, xm) and torch.equal(y, ym)
    # The in-memory ImageDataset streams too (one index per batch through __getitems__).
    streamed = as_samples(data)
    assert isinstance(streamed, StreamSamples) and len(streamed) == 12
    for (bx, by), s in zip(streamed.batches([slice(0, 5), slice(5, 12)]), (slice(0, 5), slice(5, 12))):
        assert torch.equal(bx, x[s]) and torch.equal(by, y[s])


def test_index_list_selects_exactly_those_files_in_order(folder: Path, tmp_path: Path) -> None:
    every = FolderSource(folder, "val")
    files = sorted(every.files)  # torchvision ImageFolder's order: class folder, then name
    paths = tmp_path / "paths.txt"
    # RobustBench's form (<class>/<image>), a leading split folder, a comment and a blank line.
    paths.write_text("# five images\ndog/003.jpg\ncat/000.jpg\n\nval/emu/007.jpg\ncat/005.jpg\ndog/000.jpg\n")
    src = FolderSource(folder, "val", index=paths, resize=32, center_crop=32)
    names = [f"{p.parent.name}/{p.name}" for p in src.files]
    assert names == ["dog/003.jpg", "cat/000.jpg", "emu/007.jpg", "cat/005.jpg", "dog/000.jpg"]
    assert src.labels.tolist() == [1, 0, 2, 0, 1]
    assert src.classes == CLASSES  # labels from every class folder, not only the listed ones
    ints = tmp_path / "ints.txt"
    ints.write_text("17\n0\n9\n")
    by_int = FolderSource(folder, "val", index=ints, n=2)
    assert list(by_int.files) == [files[17], files[0]]
    assert by_int.labels.tolist() == [CLASSES.index(files[17].parent.name), 0]
    with pytest.raises(ValueError, match="images of different sizes"):  # no resize: (64, 48) and (40, 37)
        by_int.tensors()


def test_val_split_and_splits(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(FolderSource(folder, "train", resize=8, center_crop=8)) == 6
    assert len(FolderSource(folder / "val")) == 24  # a folder of classes, no split
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_folder(tmp_path / "small", per_class=2, split="val", sizes=((8, 8),))
    data = load_dataset(tmp_path / "small", "val")  # the in-memory path reads a val split too
    assert data.split == "val" and len(data) == 6
    with pytest.raises(ValueError, match="mnist has only the splits 'train', 'test'"):
        load_dataset("mnist", "val")


def test_errors(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="root must be an existing ImageFolder directory"):
        FolderSource(tmp_path / "nowhere", "val")
    with pytest.raises(ValueError, match=r"has no 'test' sub-folder \(found \['train', 'val'\]\)"):
        FolderSource(folder, "test")
    with pytest.raises(ValueError, match="holds split sub-folders.*pass split="):
        FolderSource(folder)
    with pytest.raises(ValueError, match="unknown split 'valid'; expected one of 'train', 'val', 'test'"):
        FolderSource(folder, "valid")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images found"):
        FolderSource(tmp_path / "empty")
    for resize, crop, match in ((0, None, "resize must be >= 1"), (1.5, None, "resize must be an int"),
                                ((8, 8, 8), None, r"resize must be an int or a \(height, width\) pair"),
                                (None, -2, "center_crop must be >= 1"),
                                (32, 40, "center_crop 40 is larger than the resized image"),
                                ((32, 20), 24, "center_crop 24 is larger than the resized image")):
        with pytest.raises((ValueError, TypeError), match=match):
            FolderSource(folder, "val", resize=resize, center_crop=crop)
    with pytest.raises(ValueError, match=r"center_crop \(45, 45\) is larger than an image of size \(40, 37\)"):
        FolderSource(folder, "val", center_crop=45)[0]
    with pytest.raises(ValueError, match=r"n must be <= 24 \(the images found\), got 25"):
        FolderSource(folder, "val", n=25)
    with pytest.raises(ValueError, match="channels must be 1, 3 or None"):
        FolderSource(folder, "val", channels=2)
    bad = {
        "missing.txt": None,
        "empty.txt": "# nothing\n\n",
        "range.txt": "3\n24\n",
        "negative.txt": "-1\n",
        "mixed.txt": "3\ncat/000.jpg\n",
        "unknown.txt": "cat/000.jpg\ncat/999.jpg\n",
        "outside.txt": "../train/cat/000.jpg\n",
        "twice.txt": "cat/000.jpg\ndog/001.jpg\ncat/000.jpg\n",
    }
    messages = {
        "missing.txt": "index must be an existing text file",
        "empty.txt": "lists no images",
        "range.txt": r"range.txt:2: index 24 out of range; .* has 24 images \(0..23\)",
        "negative.txt": r"negative.txt:1: index -1 out of range",
        "mixed.txt": r"mixed.txt:2: 'cat/000.jpg' mixes with the entries above",
        "unknown.txt": r"unknown.txt:2: 'cat/999.jpg' is no image of",
        "outside.txt": r"outside.txt:1: '../train/cat/000.jpg' is no image of",
        "twice.txt": r"twice.txt:3: 'cat/000.jpg' is listed twice \(first on line 1\)",
    }
    for name, text in bad.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=messages[name]):
            FolderSource(folder, "val", index=tmp_path / name)


def test_mixed_sizes_without_resize_fail_at_the_batch_with_a_hint(folder: Path) -> None:
    samples = as_samples(FolderSource(folder, "val"))
    with pytest.raises(ValueError, match=r"images of different sizes in one batch.*resize"):
        list(samples.batches([slice(0, 4)]))


def test_samples_from_tensors_datasets_and_loaders_agree(folder: Path) -> None:
    src = FolderSource(folder, "val", resize=20, center_crop=16)
    x, y = src.tensors()
    cut = [slice(0, 5), slice(5, 10), slice(15, 20), slice(20, 24)]  # a rank's share: 10..15 skipped
    expected = [(x[s], y[s]) for s in cut]

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(zip(x, y.tolist()))

    sources = {
        "tensors": as_samples(x, y),
        "folder": as_samples(src),
        "folder, 2 workers": as_samples(src, num_workers=2),
        "TensorDataset": as_samples(TensorDataset(x, y)),
        "DataLoader": as_samples(DataLoader(src, batch_size=7)),
        "IterableDataset": as_samples(Stream()),
        "DataLoader of an IterableDataset": as_samples(DataLoader(Stream(), batch_size=7)),
    }
    assert isinstance(sources["tensors"], TensorSamples)
    for name, samples in sources.items():
        assert len(samples) == 24 and samples.shape == (3, 16, 16), name
        got = list(samples.batches(cut))
        assert len(got) == len(cut), name
        for (gx, gy), (ex, ey) in zip(got, expected):
            assert torch.equal(gx, ex) and torch.equal(gy, ey) and gy.dtype == torch.int64, name
        hx, hy = samples.head(3)
        assert torch.equal(hx, x[:3]) and torch.equal(hy, y[:3]), name
    assert not sources["IterableDataset"].map_style and sources["DataLoader"].map_style


def test_as_samples_errors(folder: Path) -> None:
    src = FolderSource(folder, "val", resize=16, center_crop=16)
    with pytest.raises(ValueError, match="the DataLoader must read its dataset in order"):
        as_samples(DataLoader(src, batch_size=4, shuffle=True))
    with pytest.raises(TypeError, match="y must be None when the data is a FolderSource"):
        as_samples(src, torch.zeros(24, dtype=torch.long))
    with pytest.raises(TypeError, match=r"y \(int64 labels \[N\]\) is required"):
        as_samples(torch.rand(4, 3, 8, 8))
    with pytest.raises(TypeError, match="data must be images"):
        as_samples([1, 2, 3])
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        as_samples(src, num_workers=-1)
    # Each streamed batch is checked as it arrives: bounds, labels against the model's classes.
    samples = as_samples(TensorDataset(torch.rand(6, 1, 4, 4) * 2, torch.arange(6)))
    with pytest.raises(ValueError, match=r"data batch \[0:3\] images must lie inside the model's bounds"):
        list(samples.batches([slice(0, 3)]))
    samples = StreamSamples(TensorDataset(torch.rand(6, 1, 4, 4), torch.arange(6)), 6, (1, 4, 4), num_classes=4)
    with pytest.raises(ValueError, match=r"data batch \[3:6\] labels holds class 5 but the model has 4 classes"):
        list(samples.batches([slice(0, 3), slice(3, 6)]))
