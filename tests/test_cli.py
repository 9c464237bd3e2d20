"""The command line: the demo tour end to end, number parsing and clean errors."""

from __future__ import annotations

import argparse
import json

import pytest

from bandguard.cli import main, parse_number, parse_numbers


def test_demo_runs_the_tour_from_a_cached_model(tmp_path, monkeypatch, capsys, mnist_trained, zoo_options) -> None:
    """On the full set when BANDGUARD_DATA holds it, else offline on the bundled sample."""
    import shutil

    import torchvision

    from bandguard.bench.zoo import reference_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # No network in tests: a download, if the demo tried one, fails at once on an empty local mirror.
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [(tmp_path / "mirror").as_uri() + "/"])
    # The demo's model is the zoo's, as the fixture's is: its cached file can stand in.
    _, meta = reference_model("mnist_cnn", **zoo_options)
    models = tmp_path / "cache" / "bandguard" / "models"
    models.mkdir(parents=True)
    shutil.copy(meta["path"], models)
    out = tmp_path / "demo"
    assert main(["demo", "-n", "64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"loaded the cached mnist_cnn from {models}" in text
    assert f"clean test accuracy of mnist_cnn: {meta['test_accuracy']:.2%}" in text
    if zoo_options["root"] is None:
        assert "10,000 training images (from bundled sample), 2,000 test images" in text
        [note] = [line for line in text.splitlines() if "note:" in line]  # one line on the sample
        assert "MNIST: no full copy found" in note and "BANDGUARD_DATA" in note
    else:
        assert "60,000 training images" in text and "note:" not in text
    summary = json.loads((out / "demo.json").read_text())
    assert summary["clean_accuracy"] == meta["test_accuracy"] >= 0.98
    robust = summary["pgd"]["robust_accuracy"]
    assert robust == sorted(robust, reverse=True) and robust[-1] <= 0.05  # eps 0.3 breaks the natural net
    rows = {r["name"]: r for r in summary["defenses"]["rows"]}
    assert rows["lowpass:10"]["adaptive_accuracy"][0] <= rows["lowpass:10"]["transfer_accuracy"][0]
    assert (out / "heatmap.png").stat().st_size > 10_000


def test_numbers_parse_like_papers_write_them() -> None:
    assert parse_number("8/255") == pytest.approx(8 / 255)
    assert parse_numbers("0.1, 0.2,8/255") == pytest.approx([0.1, 0.2, 8 / 255])
    with pytest.raises(argparse.ArgumentTypeError, match="expected a number like 0.03 or 8/255, got 'x'"):
        parse_number("x")


def test_errors_are_reported_without_a_traceback(tmp_path, capsys) -> None:
    code = main(["attack", "--model", str(tmp_path / "missing.pt"), "--dataset", "mnist", "--eps", "0.1", "-n", "8"])
    assert code == 2
    assert "missing.pt" in capsys.readouterr().err


def test_python_dash_m_and_help(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "train", "attack", "heatmap", "spectrum"):
        assert command in out
