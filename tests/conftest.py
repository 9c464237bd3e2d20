"""Shared fixtures: real data through ``$BANDGUARD_DATA`` and small trained reference nets.

The trained nets are the reference models of :mod:`bandguard.bench.zoo` (the demo's recipe), on
the full data sets when ``$BANDGUARD_DATA`` holds them, else on the bundled MNIST sample. They are
cached on disk (``$BANDGUARD_TEST_CACHE``, default ``~/.cache/bandguard/test-models``) under a key
that hashes the recipe and the training and test images; the zoo's ``RECIPE_VERSION`` and the
:data:`FIXTURE_VERSION` below (hashed into the folder name) retrain them when training changes.
A cached net that no longer loads (a changed architecture) is retrained.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
import torch

from bandguard.bench.zoo import reference_model

FIXTURE_VERSION = 3


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def data_dir() -> Path | None:
    """``$BANDGUARD_DATA`` if set and present (CI sets it to ``../shared/data``)."""
    root = os.environ.get("BANDGUARD_DATA")
    return Path(root).resolve() if root and Path(root).is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = data_dir()
    if root is None:
        pytest.skip("BANDGUARD_DATA is not set or missing: real data unavailable")
    return root


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread beats two that spin against a busy machine (restored)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mnist_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """Environment for code that loads MNIST by name (the CLI): the real set through
    ``$BANDGUARD_DATA`` when present, else the bundled sample with a fresh, empty cache."""
    root = data_dir()
    if root is not None:
        monkeypatch.setenv("BANDGUARD_DATA", str(root))
    else:
        monkeypatch.delenv("BANDGUARD_DATA", raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    return root


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Runs a test on the CPU and, where CUDA exists, on the GPU."""
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


def _dataset(name: str, split: str):
    from bandguard.data import load_dataset

    root = data_dir()
    if root is None and name != "mnist":
        pytest.skip(f"{name} needs BANDGUARD_DATA")
    return load_dataset(name, split, root=root, download=False)


@pytest.fixture(scope="session")
def mnist_train():
    return _dataset("mnist", "train")


@pytest.fixture(scope="session")
def mnist_test_set():
    return _dataset("mnist", "test")


@pytest.fixture(scope="session")
def mnist_test(mnist_test_set) -> tuple[torch.Tensor, torch.Tensor]:
    """First 1,000 MNIST test images ``[1000, 1, 28, 28]`` in [0, 1] and labels ``[1000]``."""
    return mnist_test_set.tensors(1000)


@pytest.fixture(scope="session")
def cifar_train():
    return _dataset("cifar10", "train")


@pytest.fixture(scope="session")
def cifar_test_set():
    return _dataset("cifar10", "test")


@pytest.fixture(scope="session")
def cifar_test(cifar_test_set) -> tuple[torch.Tensor, torch.Tensor]:
    """First 1,000 CIFAR-10 test images ``[1000, 3, 32, 32]`` in [0, 1] and labels ``[1000]``."""
    return cifar_test_set.tensors(1000)


def _cache_dir() -> Path:
    base = os.environ.get("BANDGUARD_TEST_CACHE")
    if base:
        return Path(base) / f"v{FIXTURE_VERSION}"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bandguard" / "test-models" / f"v{FIXTURE_VERSION}"


def reference_options() -> dict:
    """How the fixtures call ``reference_model``: local data only, the test-model cache."""
    return {"root": data_dir(), "download": False, "cache_dir": _cache_dir()}


def trained_model(arch: str, dataset: str) -> tuple[torch.nn.Module, float]:
    """The zoo's reference ``arch`` trained on ``dataset`` (cached); returns (model, test accuracy)."""
    if data_dir() is None and dataset != "mnist":
        pytest.skip(f"{arch} trains on {dataset}, which needs BANDGUARD_DATA")
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # One process trains, concurrent ones (pytest-xdist, parallel runs) wait and then load.
    with open(folder / f"{arch}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        model, meta = reference_model(arch, dataset=dataset, **reference_options())
    return model, float(meta["test_accuracy"])


@pytest.fixture(scope="session")
def zoo_options() -> dict:
    """Keyword arguments that make ``reference_model`` serve the fixtures' cached nets."""
    return reference_options()


@pytest.fixture(scope="session")
def mnist_trained() -> tuple[torch.nn.Module, float]:
    """The zoo's ``mnist_cnn`` (the demo's model), with its accuracy on the whole test split."""
    return trained_model("mnist_cnn", "mnist")


@pytest.fixture(scope="session")
def mnist_model(mnist_trained) -> torch.nn.Module:
    """The zoo's ``mnist_cnn`` trained on MNIST (eval mode). Do not modify it: it is shared."""
    return mnist_trained[0]


@pytest.fixture(scope="session")
def cifar_trained() -> tuple[torch.nn.Module, float]:
    """The zoo's ``cifar_small`` after a short CPU run, with its accuracy on the full test set."""
    return trained_model("cifar_small", "cifar10")


@pytest.fixture(scope="session")
def cifar_model(cifar_trained) -> torch.nn.Module:
    """``cifar_small`` after a short CPU run (eval mode). Do not modify it: it is shared."""
    return cifar_trained[0]


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points ``XDG_CACHE_HOME`` (the decoded cache, download markers) into a fresh folder."""
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / "bandguard"


@pytest.fixture
def bundled_sample(tmp_path: Path, private_cache: Path):
    """The bundled MNIST sample's test split, loaded where nothing else can be found."""
    from bandguard.data import SampleDataWarning, load_dataset

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(SampleDataWarning):
        return load_dataset("mnist", "test", root=empty, download=False)
