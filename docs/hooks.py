"""mkdocs hooks for bandguard's site (``hooks:`` in ``mkdocs.yml``; not part of the package).

``on_files`` serves two folders of the repository as they are, without a copy under ``docs/``:
``examples/`` (the findings: its README, each run's ``summary.md`` and figures, the scripts the
README links to) and ``benchmarks/`` (``RESULTS.md``). Their relative links then resolve as they
do on the repository's own pages, and ``--strict`` checks them.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
SERVED = {
    "examples": {".md", ".png", ".py", ".toml", ".json", ".csv"},
    "benchmarks": {".md", ".py"},
}
SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints"}


def on_files(files: Files, config) -> Files:
    for folder, suffixes in SERVED.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(ROOT)
            if not path.is_file() or path.suffix not in suffixes or SKIP_PARTS & set(rel.parts):
                continue
            files.append(File.generated(config, rel.as_posix(), abs_src_path=str(path)))
    return files

