"""Benchmarks: a TOML spec of models x defenses x attacks x eps, run by one harness.

``bandguard.bench.run(spec)`` (or ``bandguard bench SPEC.toml``) evaluates the grid with a
per-sample worst case, gradient-masking checks and a resumable SQLite store;
``bandguard.bench.evaluate_robustness(model, x, y, attacks, defenses=...)`` runs the same cells on
tensors and modules in memory (``bandguard attack`` is argument parsing around it). See
:mod:`bandguard.bench.harness`.
"""

from __future__ import annotations

from typing import Any

from bandguard.bench.results import BenchResult, Cell, Flag, ResultStore, Row
from bandguard.bench.spec import AttackSpec, BenchSpec, ModelSpec, SpecError, load_spec, parse_spec

__all__ = [
    "AttackSpec",
    "BenchResult",
    "BenchSpec",
    "Cell",
    "Flag",
    "ModelSpec",
    "ResultStore",
    "Row",
    "SpecError",
    "evaluate_robustness",
    "load_spec",
    "parse_spec",
    "run",
]


def __getattr__(name: str) -> Any:
    """The entry points load the harness on first use: the checks and the store import alone."""
    if name in ("evaluate_robustness", "run"):
        from bandguard.bench import harness

        return getattr(harness, name)
    raise AttributeError(f"module 'bandguard.bench' has no attribute {name!r}")
