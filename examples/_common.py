"""What every example shares: its command line, its models and test images, and its summary.

An example is a short script: it asks :func:`setup` for its settings, :func:`reference` for the
models it compares (the ``cifar_fast`` family of the zoo, trained on the full training set; the
weights committed in ``examples/models/`` are used, so no example trains them), :func:`test_images`
for a fixed test subset, computes with bandguard's public API, and records what it measured in a
:class:`Summary`. The summary writes ``results.json`` (every number) and ``summary.md`` rendered
from those same numbers, so no number is typed into a summary by hand: ``tests/test_examples.py``
re-renders the Markdown from the JSON and compares.

A finding is stated the way a reviewer checks it: the paper's own words (``quote``), a criterion
fixed in the script before anything runs (``criterion``), the measured statistic with its
bootstrap interval over images (:mod:`bandguard.bench.stats`; paired when two models or bands are
compared on the same images), and the models it rests on with their clean (and PGD) accuracy.
Statements true by construction go to :meth:`Summary.sanity`, out of the findings table.

``--quick`` keeps the models and shrinks only the number of *test* images (each script <= 15
minutes on 2 CPU cores; measured: 0.5 to 11.3); without it the scale is the papers' (a GPU).
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
from bandguard.bench.stats import Interval
from bandguard.bench.zoo import WEIGHTS_ENV, reference_model
from bandguard.data import load_dataset
from bandguard.models import predict
from bandguard.training import subset

FORMAT = 2
"""``results.json`` layout: 2 adds per-finding quote, criterion, interval and models (issue 23)."""

RESULTS_DIR = Path(__file__).resolve().parent / "results"
"""Where the committed runs live, one folder per script (``--out`` default)."""

WEIGHTS_DIR = Path(__file__).resolve().parent / "models"
"""The committed weights of the ``cifar_fast`` family (``bandguard.bench.zoo.publish_weights``)."""

FAMILY = {
    "natural": "cifar_fast",
    "gaussian": "cifar_fast_gaussian",
    "adversarial": "cifar_fast_adversarial",
    "lowpass": "cifar_fast_lowpass",
    "highpass": "cifar_fast_highpass",
}
"""The CIFAR-10 models the examples compare: one net and schedule, five kinds of training data."""


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
    parser.add_argument("--quick", action="store_true", help="fewer test images (<= 15 min on 2 CPU cores)")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default examples/results/{name})")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu', 'cuda', ...")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # Models a bench spec names by recipe (``reference = "cifar_fast"``) load through the zoo, which
    # reads published weights from $BANDGUARD_WEIGHTS: point it at the committed ones unless the
    # user chose another folder, so a spec-driven example never retrains either.
    os.environ.setdefault(WEIGHTS_ENV, str(WEIGHTS_DIR))
    out = args.out if args.out is not None else RESULTS_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    return Settings(name, args.quick, out, resolve_device(args.device), args.seed)


def reference(name: str, settings: Settings, *, seed: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The zoo's net ``name`` (full training set, committed weights when they match) on the device;
    ``seed`` picks another training seed than the recipe's (``bandguard.bench.zoo.published_name``)."""
    model, meta = reference_model(name, device=settings.device, weights=WEIGHTS_DIR, seed=seed)
    return model.eval(), {**meta, "name": name}


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, *,
            batch_size: int = 1000) -> torch.Tensor:
    """Per-image correctness ``[N]`` (float 0/1, CPU) of ``model`` on ``x``, ``y``, in batches
    (:func:`bandguard.models.predict`, on ``device``)."""
    return (predict(model, x.to(device), batch_size=batch_size).argmax(1).cpu() == y.cpu()).float()


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
    sanity_checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    models: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    figures: list[dict[str, str]] = dataclasses.field(default_factory=list)
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def model(self, label: str, meta: Mapping[str, Any], **accuracies: float) -> None:
        """Record the model a finding rests on: its recipe and clean accuracy on the whole test split
        (``meta`` from :func:`reference`), plus accuracies measured here (``pgd20=0.41``)."""
        entry = {"recipe": meta["name"], "clean": float(meta["test_accuracy"])}
        entry.update({k: float(v) for k, v in accuracies.items()})
        self.models[label] = entry

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

    def finding(self, claim: str, source: str, measured: str, agree: bool, why: str, *,
                quote: str | None = None, criterion: str | None = None, interval: Interval | None = None,
                models: tuple[str, ...] = (), interval_format: str = "+.1%", sample: str = "images") -> None:
        """One row of the verdict table.

        Args:
            claim: what the paper says, in a sentence.
            source: the paper (arXiv id, figure or table).
            measured: a ``str.format`` template over the recorded numbers, e.g.
                ``"{err_high:.1%} error at high vs {err_low:.1%} at low frequencies"``.
            agree: whether the numbers support the claim (computed by the script from
                ``criterion``, not typed).
            why: one sentence on why it agrees or not.
            quote: the paper's own sentence (or figure caption) the claim restates.
            criterion: the test, written in the script before the run (a module constant), e.g.
                ``"the paired 95 % interval of high - low band error lies above 0"``.
            interval: the statistic the criterion reads, with its bootstrap interval.
            models: labels recorded with :meth:`model` that the row measures.
            interval_format: how the interval's ends are printed (``"+.1%"``: signed percentage
                points; ``".2f"`` for a ratio or a count).
            sample: what the interval resamples: ``"images"`` (test or reference images; a CIFAR-10
                model must then be named) or ``"seeds"`` (training runs of a toy with no images).
        """
        measured.format(**self.numbers)  # a template naming an unrecorded number fails here
        unknown = [m for m in models if m not in self.models]
        if unknown:
            raise KeyError(f"models {unknown} were not recorded with Summary.model()")
        row = {"claim": claim, "source": source, "measured": measured, "agree": bool(agree), "why": why}
        if quote is not None:
            row.update(quote=quote, criterion=criterion, models=list(models),
                       interval=interval.to_dict() if interval is not None else None,
                       interval_format=interval_format, sample=sample)
        self.findings.append(row)

    def sanity(self, statement: str, measured: str, holds: bool) -> None:
        """A check that is true by construction when the code is right (a low-pass mask makes kernels
        smoother): reported apart from the findings, never counted as one."""
        measured.format(**self.numbers)
        self.sanity_checks.append({"statement": statement, "measured": measured, "holds": bool(holds)})

    def write(self) -> Path:
        """Write ``results.json`` and ``summary.md`` into the output folder; returns the Markdown path."""
        out = self.settings.out
        data = {
            "example": self.settings.name, "title": self.title, "intro": self.intro,
            "mode": "quick" if self.settings.quick else "full", "device": device_name(self.settings.device),
            "seed": self.settings.seed, "seconds": round(time.perf_counter() - self.start, 1),
            "numbers": self.numbers, "tables": self.tables, "findings": self.findings, "figures": self.figures,
        }
        if self.models or self.sanity_checks:
            data.update(format=FORMAT, models=self.models, sanity=self.sanity_checks)
        write_json_atomic(out / "results.json", data)
        path = write_bytes_atomic(out / "summary.md", render(data).encode())
        print(f"{self.title}: wrote {path} and its figures in {data['seconds']:.0f} s", file=sys.stderr)
        return path


def render(data: Mapping[str, Any]) -> str:
    """The Markdown summary of a ``results.json`` (the only way a summary is made)."""
    numbers = data["numbers"]
    lines = [f"# {data['title']}", "", data["intro"], "",
             f"Mode: **{data['mode']}** on {data['device']}, seed {data['seed']}, {data['seconds']:.0f} s.", ""]
    models = data.get("models", {})
    if models:
        lines += ["**Models** (clean accuracy on the 10,000 CIFAR-10 test images unless noted)", "",
                  "| model | recipe | accuracies |", "|---|---|---|"]
        lines += [f"| {label} | `{m['recipe']}` | {model_accuracies(m)} |" for label, m in models.items()]
        lines.append("")
    if data["findings"]:
        lines += ["| claim | source | measured | verdict | why |", "|---|---|---|---|---|"]
        lines += [f"| {finding_cells(f, numbers, models)} |" for f in data["findings"]]
        lines.append("")
        quoted = [f for f in data["findings"] if f.get("quote")]
        if quoted:
            lines += ["**The papers' words and the criteria fixed before the run**", ""]
            lines += [f"- *{f['claim']}* — {f['source']}: \"{f['quote']}\" Criterion: {f['criterion']}"
                      for f in quoted]
            lines.append("")
    if data.get("sanity"):
        lines += ["**Sanity checks** (true by construction when the code is right; not findings)", "",
                  "| check | measured | holds |", "|---|---|---|"]
        lines += [f"| {c['statement']} | {c['measured'].format(**numbers)} | {'yes' if c['holds'] else '**no**'} |"
                  for c in data["sanity"]]
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


def model_accuracies(entry: Mapping[str, Any]) -> str:
    """``"89.4% clean, 41.0% PGD-20 on these images"``: a model's recorded accuracies in words."""
    return ", ".join(f"{v:.1%} {k}" for k, v in entry.items() if k != "recipe")


def finding_cells(finding: Mapping[str, Any], numbers: Mapping[str, float],
                  models: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """One finding as Markdown cells: claim | source | measured | verdict | why.

    A format-2 finding's measured cell ends with its interval and the models' accuracies.
    """
    verdict = "agrees" if finding["agree"] else "disagrees"
    measured = finding["measured"].format(**numbers)
    ci = finding.get("interval")
    if ci is not None:
        fmt = finding.get("interval_format", ".3g")
        unit = "" if finding.get("sample", "images") == "images" else f" {finding['sample']}"
        measured += f" (95% CI [{ci['low']:{fmt}}, {ci['high']:{fmt}}], n = {ci['n']}{unit})"
    if finding.get("models") and models:
        accs = "; ".join(f"{m} {model_accuracies(models[m])}" for m in finding["models"])
        measured += f"; models: {accs}"
    return f"{finding['claim']} | {finding['source']} | {measured} | **{verdict}** | {finding['why']}"


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
