"""bandguard.data.sources: the search order, the bundled sample, downloads and every bad name.

No test reaches the network: downloads point at a local folder (``file://``) or at a stand-in
for the download function that fails as an offline machine does.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import tarfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from bandguard.data import ImageDataset, SampleDataWarning, load_dataset, sources
from bandguard.data.sources import RETRY_AFTER_S, SAMPLE_SIZES, failed_download_marker

pytestmark = pytest.mark.usefixtures("private_cache")

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ASSET = Path(__file__).parents[1] / "bandguard" / "assets" / "mnist_sample.npz"


def _need(root: Path, name: str) -> Path:
    if not (root / name).is_file():
        pytest.skip(f"{root / name} is absent")
    return root / name


def _write_idx(raw: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """torchvision's raw MNIST files (idx format, uncompressed) for ``images`` uint8 [N, 28, 28]."""
    prefix = "train" if split == "train" else "t10k"
    raw.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


def _torchvision_mnist(root: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    for split in ("train", "test"):
        _write_idx(root / "MNIST" / "raw", split, images, np.array([1, 2, 3], np.uint8))
    return images


# --------------------------------------------------------------------------- search order


def test_root_mnist_pickle(data_root: Path) -> None:
    _need(data_root, "mnist.pkl.gz")
    for split, n in (("train", 60_000), ("test", 10_000)):
        ds = load_dataset("mnist", split, root=data_root, download=False)
        assert (len(ds), ds.shape, ds.num_classes, ds.name, ds.split) == (n, (1, 28, 28), 10, "mnist", split)
        assert ds.source == str(data_root / "mnist.pkl.gz")
        assert torch.bincount(ds.labels, minlength=10).min() > n // 20


def test_bandguard_data_env_is_used_and_root_wins(data_root: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _need(data_root, "mnist.pkl.gz")
    monkeypatch.setenv("BANDGUARD_DATA", str(data_root))
    assert len(load_dataset("MNIST", "test", download=False)) == 10_000
    images = _torchvision_mnist(tmp_path)
    ds = load_dataset("mnist", "test", root=tmp_path, download=False)
    assert ds.source == str(tmp_path / "MNIST" / "raw") and ds.labels.tolist() == [1, 2, 3]
    assert np.array_equal(ds.images[:, 0].numpy(), images)


def test_missing_env_folder_is_ignored_with_a_log_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("BANDGUARD_DATA", str(tmp_path / "nowhere"))
    with caplog.at_level(logging.WARNING, logger="bandguard.data.sources"), pytest.warns(SampleDataWarning):
        ds = load_dataset("mnist", "test", download=False)
    assert ds.source == "bundled sample" and "BANDGUARD_DATA" in caplog.text and "not a directory" in caplog.text


def test_torchvision_folder_in_the_cache_is_found(private_cache: Path, tmp_path: Path) -> None:
    images = _torchvision_mnist(private_cache / "torchvision")
    empty = tmp_path / "empty"
    empty.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sample warning: the cache holds the data
        ds = load_dataset("mnist", "train", root=empty, download=True)
    assert np.array_equal(ds.images[:, 0].numpy(), images)


def test_cifar_archive_and_its_extracted_folder_agree(data_root: Path, tmp_path: Path) -> None:
    archive = _need(data_root, "cifar10-jpeg.tar.gz")
    ds = load_dataset("cifar10", "test", root=data_root, download=False)
    assert (len(ds), ds.shape, ds.classes, ds.source) == (10_000, (3, 32, 32), CIFAR_CLASSES, str(archive))
    assert torch.bincount(ds.labels).tolist() == [1000] * 10
    # Extract the first test image of the first two classes: the folder gives the same pixels.
    with tarfile.open(archive) as tf:
        names = sorted(n for n in tf.getnames() if n.split("/")[1:3] in (["test", "airplane"], ["test", "automobile"]))
        firsts = [next(n for n in names if f"/{cls}/" in n) for cls in CIFAR_CLASSES[:2]]
        for name in firsts:
            (tmp_path / name).parent.mkdir(parents=True)
            (tmp_path / name).write_bytes(tf.extractfile(name).read())
    folder = load_dataset("cifar10", "test", root=tmp_path, download=False)
    assert folder.labels.tolist() == [0, 1] and folder.source == str(tmp_path / "cifar10-jpeg" / "test")
    # Classes interleave: the first airplane is image 0, the first automobile image 1.
    assert torch.equal(folder.images[0], ds.images[0]) and torch.equal(folder.images[1], ds.images[1])
    (tmp_path / firsts[0]).write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable image"):
        load_dataset("cifar10", "test", root=tmp_path, download=False)


def test_image_folder_by_path(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("b", "a"):
            (tmp_path / "shapes" / split / cls).mkdir(parents=True)
            Image.new("L", (5, 4), color=7).save(tmp_path / "shapes" / split / cls / "0.png")
    ds = load_dataset(tmp_path / "shapes", "test")
    assert (len(ds), ds.shape, ds.classes, ds.name) == (2, (1, 4, 5), ("a", "b"), "shapes")
    assert int(ds.images.min()) == int(ds.images.max()) == 7
    with pytest.raises(ValueError, match="has no 'test' sub-folder"):
        (tmp_path / "only" / "train" / "a").mkdir(parents=True)
        load_dataset(tmp_path / "only", "test")


# --------------------------------------------------------------------------- bundled sample


@pytest.mark.parametrize("split", ["train", "test"])
def test_bundled_sample_with_one_line_warning(tmp_path: Path, split: str) -> None:
    with pytest.warns(SampleDataWarning) as record:
        ds = load_dataset("mnist", split, root=tmp_path, download=False)
    assert (len(ds), ds.shape, ds.source) == (SAMPLE_SIZES[split], (1, 28, 28), "bundled sample")
    assert ds.images.dtype == torch.uint8 and set(ds.labels.tolist()) == set(range(10))
    [warning] = record.list
    text = str(warning.message)
    assert "\n" not in text and "download=False" in text and "BANDGUARD_DATA" in text
    assert warning.filename == __file__  # points at the caller, not inside bandguard


def test_bundled_sample_is_small_and_holds_only_arrays() -> None:
    assert ASSET.stat().st_size <= 2_500_000
    with np.load(ASSET, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["test_images", "test_labels", "train_images", "train_labels"]
        assert {k: npz[k].shape[0] for k in ("train_labels", "test_labels")} == {
            "train_labels": SAMPLE_SIZES["train"], "test_labels": SAMPLE_SIZES["test"]}


def test_sample_is_the_start_of_full_mnist(data_root: Path, tmp_path: Path) -> None:
    _need(data_root, "mnist.pkl.gz")
    for split in ("train", "test"):
        full = load_dataset("mnist", split, root=data_root, download=False)
        with pytest.warns(SampleDataWarning):
            sample = load_dataset("mnist", split, root=tmp_path, download=False)
        n = SAMPLE_SIZES[split]
        assert torch.equal(sample.images, full.images[:n]) and torch.equal(sample.labels, full.labels[:n])


# --------------------------------------------------------------------------- downloads


def test_failed_download_is_remembered(tmp_path: Path, private_cache: Path,
                                       monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """torchvision's real download, pointed at an empty local folder: fails, quietly, once."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [mirror.as_uri() + "/"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(SampleDataWarning) as record:
        load_dataset("mnist", "train", root=empty)
        load_dataset("mnist", "test", root=empty)
    marker = failed_download_marker("mnist", private_cache / "torchvision")
    remembered = json.loads(marker.read_text())
    assert "Error downloading train-images-idx3-ubyte.gz" in remembered["reason"]
    assert abs(remembered["time"] - time.time()) < 600
    # One message, the same for both loads (so Python shows it once), and nothing printed.
    assert len({str(w.message) for w in record.list}) == 1
    assert "download failed at" in str(record.list[0].message) and "next try after" in str(record.list[0].message)
    assert capfd.readouterr() == ("", "")


def test_download_is_not_retried_until_the_marker_expires(tmp_path: Path, private_cache: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def offline(name: str, directory: Path) -> None:
        calls.append(name)
        raise OSError("no download mirror reachable (example.org: [Errno -3] Temporary failure)\nsecond line")

    monkeypatch.setattr(sources, "download", offline)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(SampleDataWarning):
        for _ in range(3):
            load_dataset("mnist", "test", root=empty)
    assert calls == ["mnist"]
    marker = failed_download_marker("mnist", private_cache / "torchvision")
    assert json.loads(marker.read_text())["reason"] == (
        "OSError: no download mirror reachable (example.org: [Errno -3] Temporary failure)")
    stale = time.time() - RETRY_AFTER_S - 60
    marker.write_text(json.dumps({"time": stale, "reason": "old"}))
    with pytest.warns(SampleDataWarning):
        load_dataset("mnist", "test", root=empty)
    assert calls == ["mnist", "mnist"]
    with pytest.warns(SampleDataWarning):
        load_dataset("mnist", "test", root=empty, download=False)
    assert calls == ["mnist", "mnist"]  # download=False never tries


def test_unreachable_mirror_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An http mirror that accepts no connection is refused before torchvision tries it."""
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/mnist/"])
    start = time.perf_counter()
    with pytest.raises(OSError, match=r"no download mirror reachable \(127\.0\.0\.1: "):
        sources.download("mnist", tmp_path / "tv")
    assert time.perf_counter() - start < sources.CONNECT_TIMEOUT_S + 5
    assert not (tmp_path / "tv").exists()


def test_cifar_found_nowhere(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no cifar10 data found \(looked in .*; download=False\)"):
        load_dataset("cifar10", "test", root=tmp_path, download=False)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "split", "kwargs", "error", "match"),
    [
        ("imagenet", "test", {}, ValueError, "unknown dataset name 'imagenet'"),
        (3, "test", {}, TypeError, "name must be a data set name or a folder path, got int 3"),
        ("mnist", "valid", {}, ValueError, "unknown split 'valid'"),
        ("mnist", 3, {}, ValueError, "unknown split 3"),
        ("mnist", "test", {"download": "no"}, TypeError, "download must be True or False"),
        ("mnist", "test", {"root": "/nonexistent/folder"}, ValueError, "root must be an existing directory"),
    ],
)
def test_bad_arguments(name: object, split: object, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_dataset(name, split, **kwargs)  # type: ignore[arg-type]


def test_bad_pickle_in_root_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    (tmp_path / "mnist.pkl.gz").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: corrupt or truncated MNIST pickle"):
        load_dataset("mnist", "test", root=tmp_path, download=False)


def test_returns_an_image_dataset_whatever_the_source(tmp_path: Path) -> None:
    with pytest.warns(SampleDataWarning):
        ds = load_dataset("mnist", "test", root=tmp_path, download=False)
    assert type(ds) is ImageDataset
    assert os.fspath(tmp_path) not in ds.source
