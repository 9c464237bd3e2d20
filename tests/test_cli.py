"""The command line: number parsing and clean errors (the demo and bench: test_bench_cli.py)."""

from __future__ import annotations

import argparse

import pytest

from bandguard.cli import main, parse_number, parse_numbers


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
