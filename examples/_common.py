"""What every example shares: its command line, its models and test images, and its summary.

An example is a short script: it asks :func:`setup` for its settings, :func:`reference` for the
models it compares (the zoo's recipes, cached, so the examples train each model once between them),
:func:`test_images` for a fixed test subset, computes with bandguard's public API, and records
what it measured in a :class:`Summary`. The summary writes ``results.json`` (every number) and
``summary.md`` rendered from those same numbers, so no number is typed into a summary by hand:
``tests/test_examples.py`` re-renders the Markdown from the JSON and compares.

``--quick`` runs at laptop scale (each script <= 10 minutes on 2 CPU cores, models trained on a fixed
random :data:`QUICK_TRAIN_IMAGES` training images); without it the scale is the papers' (a GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bandguard._io import write_bytes_atomic, write_json_atomic
from bandguard.bench.loading import resolve_device
from bandguard.bench.zoo import reference_model
from bandguard.data import load_dataset
from bandguard.training import subset

QUICK_TRAIN_IMAGES = 10_000
"""Training images of every model in ``--quick`` mode (a fixed random subset of the training split)."""

RESULTS_DIR = Path(__file__).resolve().parent / "results"
"""Where the committed runs live, one folder per script (``--out`` default)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """The command line of an example: scale, where to write, device and seed."""

    name: str
    quick: bool
    out: Path
    device: torch.device
    seed: int

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` in ``--quick`` mode, else ``full`` (a scale setting in one line)."""
        return quick if self.quick else full


def setup(script: str, doc: str, argv: list[str] | None = None) -> Settings:
    """Parse the example's command line (``--quick``, ``--out``, ``--device``, ``--seed``).

    Args:
        script: the script's ``__file__``; its stem names the results folder.
        doc: the script's docstring (its first line is the ``--help`` description).
    """
    name = Path(script).stem
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="laptop scale (<= 10 min on 2 CPU cores)")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default examples/results/{name})")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu', 'cuda', ...")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else RESULTS_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    return Settings(name, args.quick, out, resolve_device(args.device), args.seed)


def reference(name: str, settings: Settings) -> tuple[nn.Module, dict[str, Any]]:
    """The zoo's reference net ``name`` on the example's device (quick: a random subset of the training images)."""
    limit = QUICK_TRAIN_IMAGES if settings.quick else None
    model, meta = reference_model(name, limit=limit, device=settings.device)
    return model.eval(), meta


def test_images(dataset: str, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` test images of ``dataset`` (a fixed random subset drawn with ``seed``), as float [0, 1]."""
    x, y = load_dataset(dataset, "test").tensors()
    return subset(x, y, n, seed=seed)


@dataclasses.dataclass
class Summary:
    """The measured numbers of one run and the findings they support, written as JSON + Markdown.

    Numbers go in with :meth:`number` (or :meth:`table`); findings with :meth:`finding`, whose
    ``measured`` text is a ``str.format`` template over the recorded numbers. :meth:`write`
    renders ``summary.md`` from the JSON, the same way :func:`render` does for the test.
    """

    settings: Settings
    title: str
    intro: str
    numbers: dict[str, float] = dataclasses.field(default_factory=dict)
    tables: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    findings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    figures: list[dict[str, str]] = dataclasses.field(default_factory=list)
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def number(self, key: str, value: float | torch.Tensor) -> float:
        """Record ``value`` under ``key`` (a Python identifier) and return it as a float."""
        if not key.isidentifier():
            raise ValueError(f"key must be an identifier, got {key!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{key} is not finite: {value}")
        self.numbers[key] = value
        return value

    def table(self, caption: str, header: list[str], rows: list[list[Any]], fmt: str = "{:.1%}") -> None:
        """A table: text cells as given, numeric cells formatted with ``fmt`` (recorded as numbers)."""
        clean = [[c if isinstance(c, str) else float(c) for c in row] for row in rows]
        self.tables.append({"caption": caption, "header": header, "rows": clean, "fmt": fmt})

    def figure(self, path: Path, caption: str) -> None:
        """A figure written by the script into the output folder (embedded in the summary)."""
        self.figures.append({"file": Path(path).name, "caption": caption})

    def finding(self, claim: str, source: str, measured: str, agree: bool, why: str) -> None:
        """One row of the verdict table.

        Args:
            claim: what the paper says, in a sentence.
            source: the paper (arXiv id, figure or table).
            measured: a ``str.format`` template over the recorded numbers, e.g.
                ``"{err_high:.1%} error at high vs {err_low:.1%} at low frequencies"``.
            agree: whether the numbers support the claim (computed by the script, not typed).
            why: one sentence on why it agrees or not.
        """
        measured.format(**self.numbers)  # a template naming an unrecorded number fails here
        self.findings.append({"claim": claim, "source": source, "measured": measured,
                              "agree": bool(agree), "why": why})

    def write(self) -> Path:
        """Write ``results.json`` and ``summary.md`` into the output folder; returns the Markdown path."""
        out = self.settings.out
        data = {
            "example": self.settings.name, "title": self.title, "intro": self.intro,
            "mode": "quick" if self.settings.quick else "full", "device": device_name(self.settings.device),
            "seed": self.settings.seed, "seconds": round(time.perf_counter() - self.start, 1),
            "numbers": self.numbers, "tables": self.tables, "findings": self.findings, "figures": self.figures,
        }
        write_json_atomic(out / "results.json", data)
        path = write_bytes_atomic(out / "summary.md", render(data).encode())
        print(f"{self.title}: wrote {path} and its figures in {data['seconds']:.0f} s", file=sys.stderr)
        return path


def render(data: Mapping[str, Any]) -> str:
    """The Markdown summary of a ``results.json`` (the only way a summary is made)."""
    numbers = data["numbers"]
    lines = [f"# {data['title']}", "", data["intro"], "",
             f"Mode: **{data['mode']}** on {data['device']}, seed {data['seed']}, {data['seconds']:.0f} s.", ""]
    if data["findings"]:
        lines += ["| claim | source | measured | verdict | why |", "|---|---|---|---|---|"]
        lines += [f"| {finding_cells(f, numbers)} |" for f in data["findings"]]
        lines.append("")
    for t in data["tables"]:
        lines += [f"**{t['caption']}**", "", "| " + " | ".join(t["header"]) + " |",
                  "|" + "---|" * len(t["header"])]
        for row in t["rows"]:
            cells = [c if isinstance(c, str) else t["fmt"].format(c) for c in row]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for fig in data["figures"]:
        lines += [f"![{fig['caption']}]({fig['file']})", "", f"*{fig['caption']}*", ""]
    return "\n".join(lines)


def finding_cells(finding: Mapping[str, Any], numbers: Mapping[str, float]) -> str:
    """One finding as Markdown cells: claim | source | measured | verdict | why."""
    verdict = "agrees" if finding["agree"] else "disagrees"
    return (f"{finding['claim']} | {finding['source']} | {finding['measured'].format(**numbers)} | "
            f"**{verdict}** | {finding['why']}")


def device_name(device: torch.device) -> str:
    """The machine in words: the GPU's name, or the CPU's with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} ({torch.get_num_threads()} threads, CPU)"


def load_results(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``results.json`` of a run."""
    return json.loads((Path(folder) / "results.json").read_text())
