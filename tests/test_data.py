"""Contracts of bandguard.data: counts, dtypes, the resolution order, the cache and every error.

The full data sets come from ``$BANDGUARD_DATA`` (CI: ``../shared/data``); tests that need them
skip when it is unset or absent. Every test points ``XDG_CACHE_HOME`` into a temporary folder;
the decoded data sets are cached once per session in a shared temporary folder.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bandguard.data import ImageDataset, SampleDataWarning, load_dataset, make_loader

CIFAR_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


class _Evil:
    """Pickles as a call to ``print``: the unpickler must refuse it before anything runs."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return print, ("this must never run",)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get("BANDGUARD_DATA")
    if not value or not Path(value).is_dir():
        pytest.skip("BANDGUARD_DATA is unset or not a directory")
    # Absolute: CI sets a relative path (../shared/data), and the tests link files into tmp dirs.
    return Path(value).resolve()


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bandguard-cache")


@pytest.fixture
def shared_cache(_session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the cache at one folder for the whole session, so each archive is decoded once."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_session_cache))
    return _session_cache


def _need(data_dir: Path, name: str) -> Path:
    path = data_dir / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture
def sample(tmp_path: Path) -> ImageDataset:
    """The bundled MNIST sample's test split (1,000 images): needs no external data."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(SampleDataWarning):
        return load_dataset("mnist", "test", root=empty, download=False)


# --------------------------------------------------------------------------- full data sets


@pytest.mark.parametrize(("split", "n"), [("train", 60_000), ("test", 10_000)])
def test_mnist_counts_shapes_dtypes(data_dir: Path, shared_cache: Path, split: str, n: int) -> None:
    _need(data_dir, "mnist.pkl.gz")
    ds = load_dataset("mnist", split, root=data_dir, download=False)
    assert (len(ds), ds.shape, ds.num_classes, ds.name, ds.split) == (n, (1, 28, 28), 10, "mnist", split)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (n, 1, 28, 28)
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,)
    assert ds.classes == tuple("0123456789")
    counts = torch.bincount(ds.labels, minlength=10)
    assert counts.numel() == 10 and int(counts.min()) > n // 20
    assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0


def test_mnist_standard_order(data_dir: Path, shared_cache: Path) -> None:
    _need(data_dir, "mnist.pkl.gz")
    train = load_dataset("mnist", "train", root=data_dir, download=False)
    test = load_dataset("mnist", "test", root=data_dir, download=False)
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]


@pytest.mark.parametrize(("split", "per_class"), [("train", 5_000), ("test", 1_000)])
def test_cifar_counts_shapes_dtypes(
    data_dir: Path, shared_cache: Path, split: str, per_class: int
) -> None:
    _need(data_dir, "cifar10-jpeg.tar.gz")
    ds = load_dataset("cifar10", split, root=data_dir, download=False)
    assert (len(ds), ds.shape, ds.num_classes) == (10 * per_class, (3, 32, 32), 10)
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert ds.classes == CIFAR_CLASSES
    assert torch.bincount(ds.labels, minlength=10).tolist() == [per_class] * 10


def test_cifar_second_load_is_fast(data_dir: Path, shared_cache: Path) -> None:
    _need(data_dir, "cifar10-jpeg.tar.gz")
    first = load_dataset("cifar10", "train", root=data_dir, download=False)
    start = time.perf_counter()
    again = load_dataset("cifar10", "train", root=data_dir, download=False)
    assert time.perf_counter() - start < 2.0
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    leftovers = [p for p in (shared_cache / "bandguard" / "decoded").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # atomic writes leave no temp files behind


def test_bandguard_data_env_is_used(
    data_dir: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need(data_dir, "mnist.pkl.gz")
    monkeypatch.setenv("BANDGUARD_DATA", str(data_dir))
    assert len(load_dataset("MNIST", "test", download=False)) == 10_000


def test_checksum_verified_and_cached_under_new_key(data_dir: Path, tmp_path: Path) -> None:
    """A good SHA256SUMS passes; a changed one is a new cache key, so it is checked again."""
    source = _need(data_dir, "mnist.pkl.gz")
    root = tmp_path / "root"
    root.mkdir()
    (root / "mnist.pkl.gz").symlink_to(source)
    digest = (data_dir / "SHA256SUMS").read_text().split("mnist.pkl.gz")[0].split()[-1]
    (root / "SHA256SUMS").write_text(f"{digest}  mnist.pkl.gz\n")
    assert len(load_dataset("mnist", "test", root=root, download=False)) == 10_000
    (root / "SHA256SUMS").write_text(f"{'0' * 64}  mnist.pkl.gz\n")
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: SHA-256 checksum mismatch"):
        load_dataset("mnist", "test", root=root, download=False)


def test_wrong_checksum_on_cifar_archive(data_dir: Path, tmp_path: Path) -> None:
    source = _need(data_dir, "cifar10-jpeg.tar.gz")
    (tmp_path / "cifar10-jpeg.tar.gz").symlink_to(source)
    (tmp_path / "SHA256SUMS").write_text(f"{'ab' * 32}  cifar10-jpeg.tar.gz\n")
    with pytest.raises(ValueError, match=r"cifar10-jpeg\.tar\.gz: SHA-256 checksum mismatch"):
        load_dataset("cifar10", "test", root=tmp_path, download=False)


# --------------------------------------------------------------------------- bundled sample


@pytest.mark.parametrize(("split", "n"), [("train", 5_000), ("test", 1_000)])
def test_bundled_sample_used_with_warning(tmp_path: Path, split: str, n: int) -> None:
    with pytest.warns(SampleDataWarning, match="bundled"):
        ds = load_dataset("mnist", split, root=tmp_path, download=False)
    assert (len(ds), ds.shape, ds.num_classes) == (n, (1, 28, 28), 10)
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert set(ds.labels.tolist()) == set(range(10))


def test_bundled_sample_is_small() -> None:
    asset = Path(__file__).parents[1] / "bandguard" / "assets" / "mnist_sample.npz"
    assert asset.stat().st_size <= 2 * 1024 * 1024


def test_sample_matches_full_mnist(data_dir: Path, shared_cache: Path, sample: ImageDataset) -> None:
    _need(data_dir, "mnist.pkl.gz")
    full = load_dataset("mnist", "test", root=data_dir, download=False)
    assert torch.equal(sample.images, full.images[:1000])
    assert torch.equal(sample.labels, full.labels[:1000])


def test_cifar_found_nowhere(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no cifar10 data found"):
        load_dataset("cifar10", "test", root=tmp_path, download=False)


# --------------------------------------------------------------------------- the data set API


def test_getitem_getitems_tensors(sample: ImageDataset) -> None:
    x, y = sample[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(x, sample.images[3].float() / 255)
    xb, yb = sample.__getitems__([3, 0, 7])
    assert xb.shape == (3, 1, 28, 28) and torch.equal(xb[0], x) and yb.tolist()[0] == y
    xs, ys = sample.tensors(10, dtype=torch.float64)
    assert xs.shape == (10, 1, 28, 28) and xs.dtype == torch.float64 and ys.shape == (10,)
    assert torch.equal(xs[3].float(), x) and torch.equal(ys, sample.labels[:10])
    ys[0] = 99  # a copy: the data set is untouched
    assert int(sample.labels[0]) != 99
    xa, _ = sample.tensors()
    assert xa.shape[0] == len(sample)
    assert sample[-1][1] == int(sample.labels[-1])


def test_subset_and_repr(sample: ImageDataset) -> None:
    sub = sample.subset([5, 1])
    assert len(sub) == 2 and torch.equal(sub.images[0], sample.images[5])
    assert (sub.classes, sub.name, sub.split) == (sample.classes, "mnist", "test")
    assert len(sample.subset(slice(0, 100))) == 100
    assert "n=1000" in repr(sample) and "shape=(1, 28, 28)" in repr(sample)


def test_make_loader_batches(sample: ImageDataset) -> None:
    batches = list(make_loader(sample, 300))
    assert [len(y) for _, y in batches] == [300, 300, 300, 100]
    x, y = batches[0]
    assert x.shape == (300, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(torch.cat([y for _, y in batches]), sample.labels)
    assert [len(y) for _, y in make_loader(sample, 300, drop_last=True)] == [300] * 3


def test_make_loader_seeded_shuffle(sample: ImageDataset) -> None:
    def order(seed: int) -> torch.Tensor:
        return torch.cat([y for _, y in make_loader(sample, 128, shuffle=True, seed=seed)])

    first, again, other = order(0), order(0), order(1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(first.sort().values, sample.labels.sort().values)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"num_workers": -1}, ValueError, "num_workers must be >= 0"),
        ({"batch_size": 1.5}, TypeError, "batch_size must be an int"),
    ],
)
def test_make_loader_errors(sample: ImageDataset, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make_loader(sample, **kwargs)


def test_tensors_errors(sample: ImageDataset) -> None:
    with pytest.raises(ValueError, match="n must be <= 1000"):
        sample.tensors(1001)
    with pytest.raises(ValueError, match="n must be >= 1"):
        sample.tensors(0)
    with pytest.raises(ValueError, match="dtype must be a floating"):
        sample.tensors(4, dtype=torch.int32)


def test_dataset_validates_its_tensors() -> None:
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="images must be a uint8 tensor"):
        ImageDataset(images.float(), torch.zeros(4, dtype=torch.int64), ("a",), "x", "test")
    with pytest.raises(ValueError, match="got 4 images but 3 labels"):
        ImageDataset(images, torch.zeros(3, dtype=torch.int64), ("a",), "x", "test")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\)"):
        ImageDataset(images, torch.ones(4, dtype=torch.int64), ("a",), "x", "test")


# --------------------------------------------------------------------------- image folders


def _image(seed: int, channels: int) -> torch.Tensor:
    return torch.randint(0, 256, (channels, 8, 8), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def _encode(img: torch.Tensor, fmt: str) -> bytes:
    array = img.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buf, format=fmt)
    return buf.getvalue()


def test_image_folder_with_splits(tmp_path: Path) -> None:
    folder = tmp_path / "shapes"
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("square", "circle"):
            (folder / split / cls).mkdir(parents=True)
            for i in range(n):
                img = _image(i, 3)
                (folder / split / cls / f"{i}.png").write_bytes(_encode(img, "PNG"))
    ds = load_dataset(str(folder), "train", download=False)
    assert (len(ds), ds.shape, ds.classes, ds.name) == (6, (3, 8, 8), ("circle", "square"), "shapes")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(ds.images[0], _image(0, 3))  # PNG is lossless
    assert len(load_dataset(folder, "test")) == 4


def test_image_folder_without_splits_grey_jpeg(tmp_path: Path) -> None:
    for cls in ("a", "b", "c"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "0.jpg").write_bytes(_encode(_image(1, 1), "JPEG"))
    ds = load_dataset(tmp_path, "test")
    assert (len(ds), ds.shape, ds.num_classes) == (3, (1, 8, 8), 3)


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="has no 'test' sub-folder"):
        load_dataset(tmp_path, "test")
    with pytest.raises(ValueError, match="no images found"):
        load_dataset(tmp_path, "train")
    (tmp_path / "train" / "a" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"0\.png: not a readable image"):
        load_dataset(tmp_path, "train")


def test_extracted_cifar_folder_in_root(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for k, cls in enumerate(CIFAR_CLASSES[:2]):
            (tmp_path / "cifar10-jpeg" / split / cls).mkdir(parents=True)
            jpeg = _encode(_image(k, 3), "JPEG")
            (tmp_path / "cifar10-jpeg" / split / cls / "0000.jpg").write_bytes(jpeg)
    ds = load_dataset("cifar10", "test", root=tmp_path, download=False)
    assert (len(ds), ds.shape, ds.name, ds.classes) == (2, (3, 8, 8), "cifar10", CIFAR_CLASSES[:2])


# --------------------------------------------------------------------------- bad input


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown dataset name 'imagenet'"):
        load_dataset("imagenet")


@pytest.mark.parametrize("split", ["valid", "Training", 3])
def test_bad_split(split: object) -> None:
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("mnist", split)  # type: ignore[arg-type]


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="root must be an existing directory"):
        load_dataset("mnist", root=tmp_path / "missing", download=False)


def test_truncated_mnist_gzip(data_dir: Path, tmp_path: Path) -> None:
    source = _need(data_dir, "mnist.pkl.gz")
    with source.open("rb") as f:
        (tmp_path / "mnist.pkl.gz").write_bytes(f.read(1 << 20))
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: corrupt or truncated MNIST pickle"):
        load_dataset("mnist", "test", root=tmp_path, download=False)
    assert not (tmp_path / "xdg-cache" / "bandguard" / "decoded").exists() or not any(
        (tmp_path / "xdg-cache" / "bandguard" / "decoded").iterdir()
    )


def test_not_gzip_at_all(tmp_path: Path) -> None:
    (tmp_path / "mnist.pkl.gz").write_bytes(b"plain text, no gzip header")
    with pytest.raises(ValueError, match="corrupt or truncated MNIST pickle"):
        load_dataset("mnist", "test", root=tmp_path, download=False)


@pytest.mark.parametrize(
    ("payload", "refused"), [(os.system, r"(posix|nt)\.system"), (_Evil(), r"builtins\.print")]
)
def test_pickle_with_other_global_is_refused(tmp_path: Path, payload: object, refused: str) -> None:
    (tmp_path / "mnist.pkl.gz").write_bytes(gzip.compress(pickle.dumps(payload)))
    with pytest.raises(ValueError, match=rf"mnist\.pkl\.gz: refusing to unpickle global {refused}"):
        load_dataset("mnist", "test", root=tmp_path, download=False)


def test_pickle_with_wrong_shapes(tmp_path: Path) -> None:
    part = (np.zeros((5, 783), np.float32), np.zeros(5, np.int64))
    (tmp_path / "mnist.pkl.gz").write_bytes(gzip.compress(pickle.dumps((part, part, part))))
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: train images must be a float array"):
        load_dataset("mnist", "test", root=tmp_path, download=False)
    (tmp_path / "mnist.pkl.gz").write_bytes(gzip.compress(pickle.dumps([1, 2])))
    with pytest.raises(ValueError, match=r"expected a \(train, valid, test\) tuple"):
        load_dataset("mnist", "test", root=tmp_path, download=False)


def test_truncated_cifar_tar(data_dir: Path, tmp_path: Path) -> None:
    source = _need(data_dir, "cifar10-jpeg.tar.gz")
    with source.open("rb") as f:
        (tmp_path / "cifar10-jpeg.tar.gz").write_bytes(f.read(200_000))
    with pytest.raises(ValueError, match=r"cifar10-jpeg\.tar\.gz: corrupt or truncated archive"):
        load_dataset("cifar10", "train", root=tmp_path, download=False)


def _write_tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_corrupt_tar_and_bad_jpeg(tmp_path: Path) -> None:
    archive = tmp_path / "cifar10-jpeg.tar.gz"
    archive.write_bytes(b"\x1f\x8b garbage that is no archive")
    with pytest.raises(ValueError, match="corrupt or truncated archive"):
        load_dataset("cifar10", "test", root=tmp_path, download=False)
    good = _encode(_image(0, 3), "JPEG")
    _write_tar(archive, {
        "cifar10-jpeg/train/cat/0000.jpg": good,
        "cifar10-jpeg/test/cat/0000.jpg": good,
        "cifar10-jpeg/test/dog/0000.jpg": b"\xff\xd8 not really a jpeg",
    })
    with pytest.raises(ValueError, match=r"test/dog/0000\.jpg: not a readable image"):
        load_dataset("cifar10", "test", root=tmp_path, download=False)
    _write_tar(archive, {"cifar10-jpeg/train/cat/0000.jpg": good})
    with pytest.raises(ValueError, match=r"no images for split\(s\) \['test'\]"):
        load_dataset("cifar10", "train", root=tmp_path, download=False)
