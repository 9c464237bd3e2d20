"""Shared fixtures: real data through ``$BANDGUARD_DATA`` and small trained reference nets.

Trained models are cached on disk (``$BANDGUARD_TEST_CACHE``, default
``~/.cache/bandguard/test-models``) under a key that hashes the model definitions, the recipe, the
data source and :data:`FIXTURE_VERSION`. Training code is not hashed (every edit of it would retrain
both nets, minutes each on 2 cores): bump ``FIXTURE_VERSION`` when a change alters what natural
training produces.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

import pytest
import torch

import bandguard
from bandguard.models import create_model, load_checkpoint, save_checkpoint
from bandguard.training import TrainConfig, train

PACKAGE = Path(bandguard.__file__).parent
FIXTURE_VERSION = 2

# Recipes of the shared reference models (one epoch of MNIST; a short CIFAR run).
MNIST_RECIPE = TrainConfig(epochs=1, batch_size=128, lr=0.05, seed=0, arch="mnist_cnn", dataset="mnist")
CIFAR_RECIPE = TrainConfig(
    epochs=3, batch_size=128, lr=0.1, seed=0, augment=True, arch="cifar_small", dataset="cifar10"
)


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
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bandguard" / "test-models"


def trained_model(recipe: TrainConfig, train_set, test_set) -> tuple[torch.nn.Module, float]:
    """Train ``recipe.arch`` on ``train_set`` (or load the cached result); returns (model, test accuracy)."""
    digest = hashlib.sha256()
    digest.update((PACKAGE / "models.py").read_bytes())
    digest.update(f"fixture-{FIXTURE_VERSION}".encode())
    digest.update(repr(recipe.recipe()).encode())
    digest.update(f"{len(train_set)}:{int(train_set.labels[:1000].sum())}".encode())
    path = _cache_dir() / f"{recipe.arch}-{digest.hexdigest()[:16]}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    # One process trains, concurrent ones (pytest-xdist, parallel runs) wait and then load.
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            ckpt = load_checkpoint(path)
            return ckpt.build(), float(ckpt.meta["test_accuracy"])
        with torch.random.fork_rng():
            torch.manual_seed(recipe.seed)
            model = create_model(recipe.arch)
        result = train(model, train_set, recipe, test_data=test_set, progress=False)
        save_checkpoint(path, model, arch=recipe.arch, dataset=recipe.dataset,
                        test_accuracy=result.test_accuracy, recipe=recipe.recipe())
    return model.eval(), float(result.test_accuracy)


@pytest.fixture(scope="session")
def mnist_trained(mnist_train, mnist_test_set) -> tuple[torch.nn.Module, float]:
    """``mnist_cnn`` after one epoch, with its accuracy on the full test set."""
    return trained_model(MNIST_RECIPE, mnist_train, mnist_test_set)


@pytest.fixture(scope="session")
def mnist_model(mnist_trained) -> torch.nn.Module:
    """``mnist_cnn`` trained one epoch on MNIST (eval mode). Do not modify it: it is shared."""
    return mnist_trained[0]


@pytest.fixture(scope="session")
def cifar_trained(cifar_train, cifar_test_set) -> tuple[torch.nn.Module, float]:
    """``cifar_small`` after a short CPU run, with its accuracy on the full test set."""
    return trained_model(CIFAR_RECIPE, cifar_train, cifar_test_set)


@pytest.fixture(scope="session")
def cifar_model(cifar_trained) -> torch.nn.Module:
    """``cifar_small`` after a short CPU run (eval mode). Do not modify it: it is shared."""
    return cifar_trained[0]
