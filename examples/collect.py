"""Rebuild the findings table of ``examples/README.md`` from each example's ``results.json``.

Every row comes from a committed run (``examples/results/<example>/results.json``): the paper's
claim, the measured numbers rendered from the JSON, the verdict the script computed and why. The
table sits between two markers in the README; everything else there is prose.

    python examples/collect.py            # rewrite the table
    python examples/collect.py --check    # exit 1 if the README is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import RESULTS_DIR, finding_cells, load_results

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- findings:start -->", "<!-- findings:end -->"


def findings_table(results_dir: Path = RESULTS_DIR) -> str:
    """The Markdown table of every finding of every committed run, in example order."""
    lines = ["| example | claim | source | measured | verdict | why |", "|---|---|---|---|---|---|"]
    for folder in sorted(p for p in results_dir.iterdir() if (p / "results.json").is_file()):
        data = load_results(folder)
        link = f"[{data['example']}](results/{folder.name}/summary.md) ({data['mode']}, {data['device']})"
        lines += [f"| {link} | {finding_cells(f, data['numbers'], data.get('models'))} |" for f in data["findings"]]
    return "\n".join(lines)


def with_table(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    if START not in readme or END not in readme:
        raise ValueError(f"{README} lacks the markers {START} ... {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the README is current")
    args = parser.parse_args()
    text = README.read_text()
    new = with_table(text, findings_table())
    if args.check:
        if new != text:
            print(f"{README} is out of date: run python examples/collect.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
