"""One version number: the package's equals the one pyproject.toml declares."""

from __future__ import annotations

from pathlib import Path

import tomllib

import bandguard
from bandguard._version import __version__


def test_version_matches_pyproject() -> None:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"] == bandguard.__version__
