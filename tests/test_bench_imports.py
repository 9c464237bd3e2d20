"""The import structure of ``bandguard/bench``: no cycle, and the checks import nothing of the harness.

Checked twice: statically (every ``import`` statement in ``bandguard/bench``, at module level or
inside a function, as a graph that must be acyclic) and at run time (a fresh interpreter that
imports the sanity checks does not load the harness, its cell engine or its loaders).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import bandguard

BENCH = Path(bandguard.__file__).parent / "bench"
PREFIX = "bandguard.bench."


def _bench_imports() -> dict[str, set[str]]:
    """``module -> bench modules it imports`` (every import statement, lazy ones included)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(BENCH.glob("*.py")):
        name = path.stem
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith(PREFIX):
                    deps.add(node.module[len(PREFIX):].split(".")[0])
                elif node.module == "bandguard.bench":
                    deps.update(a.name for a in node.names if (BENCH / f"{a.name}.py").exists())
            elif isinstance(node, ast.Import):
                deps.update(a.name[len(PREFIX):].split(".")[0] for a in node.names if a.name.startswith(PREFIX))
        graph[name] = deps - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_bench_imports_form_no_cycle() -> None:
    graph = _bench_imports()
    assert {"harness", "engine", "loading", "sanity", "results", "spec"} <= set(graph)
    assert _cycle(graph) is None, _cycle(graph)
    # The cycle finder finds one when there is one (so the assertion above can fail).
    assert _cycle({**graph, "results": graph["results"] | {"sanity"}}) == ["results", "sanity", "results"]


def test_sanity_checks_import_nothing_of_the_harness() -> None:
    graph = _bench_imports()
    assert _closure(graph, "sanity") <= {"results"}, graph["sanity"]
    assert "sanity" in graph["harness"]  # the harness calls the checks, not the other way round


def test_importing_the_checks_alone_loads_no_harness() -> None:
    code = ("import json, sys, bandguard.bench.sanity\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('bandguard.bench.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(bandguard.__file__).parents[1]).stdout
    loaded = set(json.loads(out))
    assert "bandguard.bench.sanity" in loaded
    assert not loaded & {"bandguard.bench.harness", "bandguard.bench.engine", "bandguard.bench.loading"}, loaded
