"""Reference models: train once with a fixed recipe, then load from the user cache.

Minimal stand-in (the ``harness`` branch); helper ``data`` owns the full version with the same
signature.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["reference_model"]

_RECIPES = {"mnist_cnn": {"dataset": "mnist", "epochs": 1, "batch_size": 128, "lr": 0.05}}


def _cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bandguard" / "models"


def reference_model(
    arch: str = "mnist_cnn",
    *,
    dataset: str | None = None,
    device: torch.device | str | None = None,
    retrain: bool = False,
    progress: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The reference net ``arch``, trained with its recipe or loaded from the cache, in eval mode.

    Returns:
        ``(model, meta)``; meta holds ``test_accuracy``, ``data_source``, ``train_seconds``,
        ``cached``.
    """
    from bandguard.data import load_dataset
    from bandguard.models import create_model, load_checkpoint, save_checkpoint
    from bandguard.training import TrainConfig, evaluate, train

    if arch not in _RECIPES:
        raise ValueError(f"arch must be one of {sorted(_RECIPES)}, got {arch!r}")
    recipe = dict(_RECIPES[arch])
    dataset = dataset or recipe.pop("dataset")
    recipe.pop("dataset", None)
    path = _cache_dir(cache_dir) / f"{arch}-{dataset}.pt"
    if path.exists() and not retrain:
        ckpt = load_checkpoint(path)
        meta = {"test_accuracy": ckpt.meta.get("test_accuracy"), "data_source": dataset,
                "train_seconds": 0.0, "cached": True}
        return ckpt.build().to(device).eval(), meta
    train_set, test_set = load_dataset(dataset, "train"), load_dataset(dataset, "test")
    config = TrainConfig(seed=0, arch=arch, dataset=dataset, **recipe)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model(arch)
    start = time.perf_counter()
    train(model, train_set, config, device=device, progress=progress)
    seconds = time.perf_counter() - start
    acc = evaluate(model, test_set.images, test_set.labels, device=device)
    save_checkpoint(path, model, arch=arch, dataset=dataset, recipe=config.recipe(), test_accuracy=acc)
    return model.eval(), {"test_accuracy": acc, "data_source": dataset, "train_seconds": seconds,
                          "cached": False}
