"""Time every command line of the README's CLI tour, as written, and the Python tour after them.

The README states a time beside each command; this script measures them on this machine, in a
fresh folder (the commands write ``mnist.pt`` and friends there; ``examples/`` is linked in for the
published weights), in the README's order, with the load average before and after each, and
prints a Markdown table for ``benchmarks/RESULTS.md``. Lines under a comment saying "GPU job" are
listed, not run. Take the figures with nothing else running.

    BANDGUARD_DATA=../shared/data python benchmarks/readme_times.py [--only attack] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli_lines(readme: str) -> list[tuple[str, bool]]:
    """``(command, runnable)`` for each command of the README's CLI block (continuations joined)."""
    block = readme.split("Command line (each writes", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    out, pending, gpu = [], "", False
    for raw in block.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            gpu = "GPU job" in line or (gpu and not line)
            continue
        if not line:
            continue
        code = re.sub(r"\s+#.*$", "", line)
        if code.endswith("\\"):
            pending += code[:-1] + " "
            continue
        out.append((pending + code, not gpu))
        pending, gpu = "", False
    return out


def python_tour(readme: str) -> str:
    """The README's first Python block (the tour)."""
    return readme.split("```python", 1)[1].split("```", 1)[0]


def run(command: list[str] | str, cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, shell=isinstance(command, str), capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode, (proc.stdout + proc.stderr)[-400:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="run only commands containing this text")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    readme = (ROOT / "README.md").read_text()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bandguard-readme-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "examples").exists():
        (work / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rows = []
    for command, runnable in cli_lines(readme):
        if args.only and args.only not in command:
            continue
        if not runnable:
            rows.append((command, None, None, os.getloadavg()[0], os.getloadavg()[0]))
            continue
        before = os.getloadavg()[0]
        seconds, rc, tail = run(command, work, env)
        rows.append((command, seconds, rc, before, os.getloadavg()[0]))
        print(f"{seconds:7.1f} s rc {rc} load {before:.2f}: {command}", file=sys.stderr, flush=True)
        if rc:
            print(tail, file=sys.stderr)
    if not args.only:
        (work / "tour.py").write_text(python_tour(readme))
        before = os.getloadavg()[0]
        seconds, rc, tail = run([sys.executable, "tour.py"], work, env)
        rows.append(("python tour (README's Python block)", seconds, rc, before, os.getloadavg()[0]))
        if rc:
            print(tail, file=sys.stderr)
    print(f"README command times ({os.uname().nodename}, {os.cpu_count()} CPUs, torch threads default)\n")
    print("| command | wall time | exit | load before / after |")
    print("|---|---|---|---|")
    for command, seconds, rc, before, after in rows:
        took = "not run (a GPU job)" if seconds is None else f"{seconds:.0f} s"
        print(f"| `{command}` | {took} | {'' if rc is None else rc} | {before:.2f} / {after:.2f} |")


if __name__ == "__main__":
    main()
