"""examples/: every script runs in --quick mode, and every summary's numbers are the computed ones.

A summary (``summary.md``) and the README's findings table are rendered from ``results.json``
by one function each (``examples/_common.render``, ``examples/collect.findings_table``); these
tests re-render them and compare, so a number typed into a summary by hand fails.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.stem for p in EXAMPLES_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem != "collect")
# The findings examples (issue 14); spectral_tour is the MNIST tour that draws docs/images.
FINDINGS = ("corruption_spectra", "filtered_data", "fourier_attack", "fourier_heatmaps", "frequency_principle",
            "kernel_smoothing", "perturbation_spectra", "post_averaging", "training_seeds")
# The examples rerun on the cifar_fast family with intervals, pre-stated criteria and the papers' words
# (results.json format 2): all of them.
REVIEWED = ("corruption_spectra", "filtered_data", "fourier_attack", "fourier_heatmaps", "frequency_principle",
            "kernel_smoothing", "perturbation_spectra", "post_averaging", "training_seeds")


def _load(name: str):
    """Import ``examples/<name>.py`` as a module (``examples/`` on the path, as a script has it)."""
    sys.path.insert(0, str(EXAMPLES_DIR))
    try:
        spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module
    finally:
        sys.path.remove(str(EXAMPLES_DIR))


common = _load("_common")
collect = _load("collect")


def _check_run(folder: Path) -> dict:
    """The run in ``folder`` is complete and its summary is its JSON rendered; returns the JSON."""
    data = common.load_results(folder)
    assert data["numbers"], f"{folder}: no numbers recorded"
    assert data["findings"], f"{folder}: no finding stated"
    for f in data["findings"]:
        f["measured"].format(**data["numbers"])  # every number a finding shows was recorded
        assert any(ch.isdigit() for ch in f["measured"].format(**data["numbers"])), f["measured"]
    assert (folder / "summary.md").read_text() == common.render(data), f"{folder}/summary.md was edited by hand"
    for fig in data["figures"]:
        png = (folder / fig["file"]).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", fig["file"]
    return data


def test_summary_is_rendered_from_the_recorded_numbers(tmp_path: Path) -> None:
    settings = common.Settings("demo", True, tmp_path, common.resolve_device("cpu"), 0)
    s = common.Summary(settings, "Demo", "Intro.")
    s.number("err_high", 0.625)
    s.number("err_low", 0.125)
    s.table("Errors", ["band", "error"], [["high", 0.625], ["low", 0.125]])
    s.finding("High frequencies hurt more", "paper", "{err_high:.1%} vs {err_low:.1%}", True, "ratio 5")
    with pytest.raises(KeyError, match="err_mid"):
        s.finding("x", "y", "{err_mid:.1%}", True, "z")
    with pytest.raises(ValueError, match="not finite"):
        s.number("bad", float("nan"))
    s.write()
    data = _check_run(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "| High frequencies hurt more | paper | 62.5% vs 12.5% | **agrees** | ratio 5 |" in text
    assert "| high | 62.5% |" in text and data["mode"] == "quick"
    (tmp_path / "summary.md").write_text(text.replace("62.5%", "70.0%"))
    with pytest.raises(AssertionError, match="edited by hand"):
        _check_run(tmp_path)


def _check_reviewed(data: dict) -> None:
    """A format-2 run: every finding quotes its paper, states its criterion, carries an interval that
    holds its estimate, and names models whose accuracies were recorded; its row shows them."""
    assert data.get("format") == common.FORMAT, f"{data['example']}: results.json is not format {common.FORMAT}"
    assert data["models"], "no model recorded"
    for label, m in data["models"].items():
        assert m["recipe"].startswith("cifar_fast") and 0.1 < m["clean"] <= 1, (label, m)
    for f in data["findings"]:
        images = f.get("sample", "images") == "images"  # else a toy's seeds: no images, no CIFAR model
        assert f.get("quote") and f.get("criterion") and (f.get("models") or not images), f["claim"]
        ci = f["interval"]
        assert ci["low"] <= ci["estimate"] <= ci["high"] and ci["n"] >= (500 if images else 5), (f["claim"], ci)
        row = common.finding_cells(f, data["numbers"], data["models"])
        assert "95% CI [" in row and all(f"{m} " in row and "clean" in row for m in f["models"]), row


def test_every_finding_has_its_script() -> None:
    assert set(FINDINGS) <= set(SCRIPTS), sorted(set(FINDINGS) - set(SCRIPTS))


@pytest.mark.parametrize("name", FINDINGS)
def test_committed_results_render_to_their_summaries(name: str) -> None:
    data = _check_run(common.RESULTS_DIR / name)
    if name in REVIEWED:
        _check_reviewed(data)


def test_a_reviewed_finding_without_its_interval_or_models_fails(tmp_path: Path) -> None:
    import torch

    from bandguard.bench.stats import mean_interval

    settings = common.Settings("demo", True, tmp_path, common.resolve_device("cpu"), 0)
    s = common.Summary(settings, "Demo", "Intro.")
    s.model("natural", {"name": "cifar_fast", "test_accuracy": 0.9})
    s.number("err", 0.25)
    ci = mean_interval((torch.arange(600) % 4 == 0).float())
    s.finding("c", "paper", "{err:.1%}", True, "w", quote="q", criterion="k", interval=ci, models=("natural",))
    with pytest.raises(KeyError, match="not recorded"):
        s.finding("c", "paper", "{err:.1%}", True, "w", quote="q", criterion="k", interval=ci, models=("gaussian",))
    s.write()
    data = _check_run(tmp_path)
    _check_reviewed(data)
    assert "25.0% (95% CI [+21.7%, +28.5%], n = 600)" in (tmp_path / "summary.md").read_text()
    data["findings"][0]["interval"] = None
    with pytest.raises(TypeError):
        _check_reviewed(data)


def test_readme_table_is_built_from_the_committed_results() -> None:
    text = collect.README.read_text()
    assert collect.with_table(text, collect.findings_table()) == text, "run python examples/collect.py"
    for name in FINDINGS:
        assert f"results/{name}/summary.md" in text


@pytest.mark.slow  # each script up to 12 minutes on 2 CPU cores in --quick mode (committed weights, no training)
@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs_quick(name: str, tmp_path: Path, data_root: Path) -> None:
    env = {**os.environ, "BANDGUARD_DATA": str(data_root)}
    proc = subprocess.run([sys.executable, str(EXAMPLES_DIR / f"{name}.py"), "--quick", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if name in FINDINGS:
        data = _check_run(tmp_path)
        assert data["mode"] == "quick"
