"""``bandguard bench`` and ``bandguard demo``: parsing, printing and exit codes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from bandguard.cli import main
from bandguard.models import save_checkpoint


def _write_spec(tmp_path: Path, ckpt: Path, eps: str = "[0.1, 0.2]") -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
dataset = "mnist"
n = 8
batch_size = 8
out = "out"
sanity = false

[[models]]
name = "cnn"
checkpoint = "{ckpt}"

[[attacks]]
attack = "fgsm"
eps = {eps}
""")
    return spec


def test_bench_prints_the_table_and_writes_reports(mnist_model: torch.nn.Module, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "cnn.pt"
    save_checkpoint(ckpt, mnist_model, arch="mnist_cnn", dataset="mnist")
    spec = _write_spec(tmp_path, ckpt)
    assert main(["bench", str(spec), "-q"]) == 0
    out = capsys.readouterr().out
    # The terminal gets the summary: one line per defense and mode, the worst case per eps.
    assert "| defense | mode | clean % | worst-case robust %, linf eps 0.1 / 0.2 | flags |" in out
    assert "| none | white-box |" in out and "fgsm" not in out.split("summary of")[0]
    assert "3 cells computed, 0 reused" in out
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| cnn | none | white-box | fgsm | linf 0.1 |" in report  # every attack stays in report.md
    # FGSM ascends cross-entropy only, so the cascade gets APGD-DLR, cumulative after FGSM.
    assert "| cnn | none | white-box | apgd-dlr (cumulative) | linf 0.1 |" in report
    assert main(["bench", str(spec), "-q"]) == 0
    assert "0 cells computed, 3 reused" in capsys.readouterr().out


def test_bench_n_overrides_the_spec(mnist_model: torch.nn.Module, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    import json

    ckpt = tmp_path / "cnn.pt"
    save_checkpoint(ckpt, mnist_model, arch="mnist_cnn", dataset="mnist")
    spec = _write_spec(tmp_path, ckpt)
    assert main(["bench", str(spec), "-q", "-n", "4"]) == 0
    assert "3 cells computed" in capsys.readouterr().out
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {row["n"] for row in data["rows"]} == {4} and data["settings"]["n"] == 4
    assert main(["bench", str(spec), "-q", "-n", "0"]) == 2  # refused while parsing
    assert "argument -n: expected an integer >= 1" in capsys.readouterr().err


def test_bench_spec_error_exits_2_naming_the_key(mnist_model: torch.nn.Module, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "cnn.pt"
    save_checkpoint(ckpt, mnist_model, arch="mnist_cnn", dataset="mnist")
    spec = _write_spec(tmp_path, ckpt, eps="[0.1, -0.2]")
    assert main(["bench", str(spec), "-q"]) == 2
    err = capsys.readouterr().err
    assert "attacks[0].eps[1]: expected a finite number >= 0, got -0.2" in err
    assert not (tmp_path / "out").exists()  # validated before anything ran
    assert main(["bench", str(tmp_path / "missing.toml")]) == 2


@pytest.mark.slow
def test_demo_writes_its_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "-n", "16", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "| post_average:3.0,K=1 | adaptive |" in printed
    assert "| mnist_cnn | post_average:3.0,K=1 | adaptive | pgd |" in (out / "report.md").read_text()
    for name in ("report.md", "results.csv", "results.json", "fourier_heatmap.png",
                 "perturbation_spectrum.png", "robust_mnist_cnn.png"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "fourier_heatmap.png" in report
    assert os.path.getsize(out / "perturbation_spectrum.png") > 1000
    # The heat map shows structure: its worst frequency errs well above the clean error.
    found = re.search(r"clean error ([\d.]+)%, worst frequency ([\d.]+)%", report)
    assert found is not None and float(found[2]) - float(found[1]) >= 5, found
