"""The README's Python tour runs as written (against a real trained MNIST CNN saved as ``mnist.pt``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from bandguard.attacks import AttackResults
from bandguard.models import save_checkpoint

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_block() -> str:
    """The first ``python`` block after '## What it does'."""
    text = README.read_text()
    section = text[text.index("## What it does"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README has no python block under 'What it does'"
    return match.group(1)


@pytest.mark.slow  # PGD-40 over 200 images, EOT through post-averaging, the ensemble: minutes on 2 cores
def test_readme_tour_runs_as_written(tmp_path, monkeypatch, mnist_model) -> None:
    save_checkpoint(tmp_path / "mnist.pt", mnist_model, arch="mnist_cnn", dataset="mnist")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    before = [p.detach().clone() for p in mnist_model.parameters()]
    exec(compile(tour_block(), str(README), "exec"), namespace)
    results = namespace["results"]
    assert isinstance(results, AttackResults) and len(results) == 3
    robust = namespace["robust"]
    assert list(robust) == sorted(robust, reverse=True)  # never more robust at a larger eps
    assert namespace["x_adv"].shape == (200, 1, 28, 28)
    assert namespace["heat"].heatmap.shape == (28, 28)
    worst, adaptive = namespace["worst"], namespace["adaptive"]
    assert worst.robust_accuracy[0] < worst.clean_accuracy - 0.1  # the ensemble breaks a natural CNN at 0.1
    assert adaptive[0].gradients.max() >= 10 * 10  # EOT: 10 samples per step, 10 steps
    # The tour never changes the model it wraps (smooth_kernels returns a new one).
    assert all(torch.equal(a, b) for a, b in zip(before, mnist_model.parameters()))


def test_readme_tour_names_only_public_api() -> None:
    """Every ``bg.X`` and every name imported from bandguard in the tour exists."""
    import importlib

    import bandguard

    block = tour_block()
    for name in re.findall(r"\bbg\.(\w+)", block):
        assert hasattr(bandguard, name), f"bandguard.{name} used in the README does not exist"
    for module, names in re.findall(r"from (bandguard[\w.]*) import ([\w, ]+)", block):
        mod = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(mod, name), f"{module}.{name} used in the README does not exist"
