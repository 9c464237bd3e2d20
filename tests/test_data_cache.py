"""bandguard.data.cache: decoded splits are cached, keyed by source and checksum, and verified."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bandguard.data.cache import CACHE_FORMAT, cache_dir, cached, entry_path, expected_checksum
from bandguard.data.mnist import decode_mnist_pickle

pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture
def small_pickle(tmp_path: Path) -> Path:
    """A 3-image MNIST pickle (train 2, valid 1, test 2) in the classic format."""
    rng = np.random.default_rng(0)

    def part(n: int) -> tuple[np.ndarray, np.ndarray]:
        return (rng.integers(0, 256, (n, 784)) / 256).astype(np.float32), rng.integers(0, 10, n)

    source = tmp_path / "src" / "mnist.pkl.gz"
    source.parent.mkdir()
    source.write_bytes(gzip.compress(pickle.dumps((part(2), part(1), part(2)))))
    return source


def test_cache_dir_follows_xdg(private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == private_cache
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "bandguard"


def test_first_load_writes_both_splits_and_later_loads_read_them(small_pickle: Path) -> None:
    first = cached(small_pickle, "mnist", "test", decode_mnist_pickle)
    train_entry, test_entry = (entry_path(small_pickle, "mnist", s) for s in ("train", "test"))
    assert train_entry.is_file() and test_entry.is_file() and train_entry.parent == cache_dir() / "decoded"
    blob = torch.load(test_entry, weights_only=True)
    assert blob["format"] == CACHE_FORMAT and torch.equal(blob["images"], first.images)
    assert (first.source, len(first), len(torch.load(train_entry, weights_only=True)["labels"])) == (
        str(small_pickle), 2, 3)
    # Prove the next load reads the entry instead of decoding: doctor the entry, then load.
    blob["labels"] = torch.tensor([9, 9])
    torch.save(blob, test_entry)
    assert cached(small_pickle, "mnist", "test", decode_mnist_pickle).labels.tolist() == [9, 9]
    assert [p for p in test_entry.parent.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_a_changed_source_is_a_new_entry(small_pickle: Path) -> None:
    before = entry_path(small_pickle, "mnist", "test")
    cached(small_pickle, "mnist", "test", decode_mnist_pickle)
    st = small_pickle.stat()
    os.utime(small_pickle, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert entry_path(small_pickle, "mnist", "test") != before


def test_unreadable_entry_is_decoded_again(small_pickle: Path, caplog: pytest.LogCaptureFixture) -> None:
    entry = entry_path(small_pickle, "mnist", "test")
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"not a torch file")
    with caplog.at_level(logging.WARNING, logger="bandguard.data.cache"):
        ds = cached(small_pickle, "mnist", "test", decode_mnist_pickle)
    assert len(ds) == 2 and "ignoring unreadable cache" in caplog.text
    assert torch.load(entry, weights_only=True)["format"] == CACHE_FORMAT


def test_checksum_listed_beside_the_source_is_verified(small_pickle: Path) -> None:
    digest = hashlib.sha256(small_pickle.read_bytes()).hexdigest()
    sums = small_pickle.parent / "SHA256SUMS"
    sums.write_text(f"{'1' * 64}  other.bin\n{digest.upper()} *mnist.pkl.gz\n")
    assert expected_checksum(small_pickle) == digest
    assert len(cached(small_pickle, "mnist", "test", decode_mnist_pickle)) == 2
    # A changed checksum is a new cache entry, so the file is verified again and refused.
    sums.write_text(f"{'0' * 64}  mnist.pkl.gz\n")
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: SHA-256 checksum mismatch: SHA256SUMS lists 0000"):
        cached(small_pickle, "mnist", "test", decode_mnist_pickle)
    sums.write_text("garbage line\n")
    assert expected_checksum(small_pickle) is None


def test_missing_split_and_decoder_errors_are_not_cached(small_pickle: Path) -> None:
    with pytest.raises(ValueError, match=r"holds no 'valid' split \(found \['test', 'train'\]\)"):
        cached(small_pickle, "mnist", "valid", decode_mnist_pickle)
    small_pickle.write_bytes(b"broken")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        cached(small_pickle, "mnist", "test", decode_mnist_pickle)
    assert not entry_path(small_pickle, "mnist", "test").exists()


def test_real_archives_verify_against_shared_sums(data_root: Path, tmp_path: Path) -> None:
    """The shared SHA256SUMS lists both archives; a wrong sum for CIFAR is refused before decoding."""
    for name in ("mnist.pkl.gz", "cifar10-jpeg.tar.gz"):
        if not (data_root / name).is_file():
            pytest.skip(f"{data_root / name} is absent")
        assert expected_checksum(data_root / name) is not None
    (tmp_path / "cifar10-jpeg.tar.gz").symlink_to(data_root / "cifar10-jpeg.tar.gz")
    (tmp_path / "SHA256SUMS").write_text(f"{'ab' * 32}  cifar10-jpeg.tar.gz\n")
    with pytest.raises(ValueError, match=r"cifar10-jpeg\.tar\.gz: SHA-256 checksum mismatch"):
        cached(tmp_path / "cifar10-jpeg.tar.gz", "cifar10", "test", lambda src: pytest.fail("decoded"))
