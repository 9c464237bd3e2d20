"""Benchmark results: the SQLite cell store, the table, and the JSON / CSV / Markdown / PNG reports.

Finished cells live in ``results.sqlite`` in the output folder (the standard library's
``sqlite3``): one transaction per unit of work, keyed by the hash of everything that determines
the cell, with the per-sample outcomes, so a worst case is recomputed without rerunning an attack
and a run stopped at any point resumes with only the missing cells. Reports are derived from the
cells and written atomically (:mod:`bandguard._io`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bandguard._io import atomic_write, write_json_atomic

__all__ = ["BenchResult", "Cell", "Flag", "ResultStore", "Row", "write_reports"]

WORST = "worst case"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One attack (all its eps) on one model / defense / mode, with per-sample outcomes.

    Attributes:
        key: hash of everything that determines the cell.
        model, defense, mode: ``mode`` is ``"clean"``, ``"white-box"``, ``"adaptive"`` or
            ``"transfer"``.
        attack: the attack's label; norm: its own threat norm (``"linf"``, ``"l2"``, or
            ``"l2/channel"`` where eps is an L2 norm per channel, the Fourier tools' convention);
            attack_repr: every setting.
        epsilons: the attack's budgets ``(E,)`` in ``norm`` (empty for a clean cell).
        robust: bool ``[E, N]``: correct after this attack and every earlier one of its cascade
            (a clean cell: ``[1, N]`` clean correctness).
        forwards, gradients: int64 ``[E, N]`` model evaluations / input gradients spent per sample.
        eot_samples: gradient samples per step; randomized, forward_cost: what the model declares.
        seconds: wall time.
        norms: float ``[E, N]`` norm of each sample's perturbation in the ``ball``'s norm (so
            ``norms[e] <= ball_eps[e]``), 0 where not attacked.
        ball, ball_eps: the whole-image threat model (``"linf"`` or ``"l2"`` and its budgets ``(E,)``)
            of the cascade the cell belongs to: its worst-case row's ball, which holds every
            perturbation of the cell (empty for a clean cell).
    """

    key: str
    model: str
    defense: str
    mode: str
    attack: str
    norm: str
    attack_repr: str
    epsilons: tuple[float, ...]
    robust: torch.Tensor
    forwards: torch.Tensor
    gradients: torch.Tensor
    eot_samples: int
    randomized: bool
    forward_cost: int
    seconds: float
    norms: torch.Tensor | None = None
    ball: str = ""
    ball_eps: tuple[float, ...] = ()

    @property
    def robust_accuracy(self) -> tuple[float, ...]:
        """Per eps, fraction of samples still robust."""
        return tuple(float(r.float().mean()) for r in self.robust)

    @property
    def mean_norm(self) -> tuple[float, ...]:
        """Per eps, mean perturbation norm over all samples (``nan`` where norms were not kept)."""
        if self.norms is None:
            return (float("nan"),) * len(self.epsilons)
        return tuple(float(n.double().mean()) for n in self.norms)

    def meta(self) -> dict[str, Any]:
        """The cell's plain fields (no tensors)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k in ("robust", "forwards", "gradients", "norms"):
            out.pop(k)
        out["epsilons"] = list(self.epsilons)
        out["ball_eps"] = list(self.ball_eps)
        return out


@dataclasses.dataclass(frozen=True)
class Flag:
    """A sanity check that fired: ``check`` name, where, and a one-line reason."""

    check: str
    model: str
    defense: str
    reason: str
    attack: str = ""

    def to_dict(self) -> dict[str, str]:
        """Plain values."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: a model / defense / mode / attack at one eps.

    ``norm`` and ``eps`` are the attack's own (``"l2/channel"``: L2 norm of each channel, the
    Fourier tools' convention); a worst-case row gives its whole-image ball, which holds every
    perturbation of the attacks it combines.
    """

    model: str
    defense: str
    mode: str
    norm: str
    attack: str
    eps: float
    n: int
    clean_accuracy: float
    robust_accuracy: float
    forwards_per_sample: float
    gradients_per_sample: float
    eot_samples: int
    forward_cost: int
    flags: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain values."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """What a benchmark run produced.

    Attributes:
        rows: the table (deterministic: the same seed gives the same rows, bit for bit).
        flags: sanity checks that fired.
        cells: every cell, per-sample outcomes included.
        timings: per cell ``(model, defense, mode, attack, seconds)``; seconds: the whole run.
        device: where it ran; computed / reused: cells computed now / taken from the store.
    """

    rows: tuple[Row, ...]
    flags: tuple[Flag, ...]
    cells: tuple[Cell, ...]
    timings: tuple[tuple[str, str, str, str, float], ...]
    seconds: float
    device: str
    computed: int
    reused: int

    @classmethod
    def from_cells(cls, spec: Any, cells: Sequence[Cell], flags: Sequence[Flag], *, seconds: float,
                   device: str, computed: int, reused: int) -> BenchResult:
        """Build the table from cells (worst case per sample recomputed from their outcomes)."""
        return cls(rows=tuple(table_rows(cells, flags)), flags=tuple(flags), cells=tuple(cells),
                   timings=tuple((c.model, c.defense, c.mode, c.attack, c.seconds) for c in cells),
                   seconds=seconds, device=device, computed=computed, reused=reused)

    def table(self) -> list[dict[str, Any]]:
        """The rows as plain dicts."""
        return [r.to_dict() for r in self.rows]

    def row(self, *, model: str, defense: str, mode: str, attack: str, eps: float) -> Row:
        """The row with these fields (``ValueError`` if none)."""
        for r in self.rows:
            if (r.model, r.defense, r.mode, r.attack, r.eps) == (model, defense, mode, attack, eps):
                return r
        raise ValueError(f"no row {model}/{defense}/{mode}/{attack}/eps={eps}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values: rows, flags, timings, device, counts."""
        return {
            "rows": self.table(),
            "flags": [f.to_dict() for f in self.flags],
            "timings": [dict(zip(("model", "defense", "mode", "attack", "seconds"), t)) for t in self.timings],
            "seconds": self.seconds, "device": self.device,
            "cells_computed": self.computed, "cells_reused": self.reused,
        }

    def to_markdown(self) -> str:
        """The table in Markdown, accuracies in percent."""
        head = ("| model | defense | mode | attack | eps | clean % | robust % | forwards/img | EOT | flags |\n"
                "|---|---|---|---|---|---|---|---|---|---|")
        lines = [head]
        for r in self.rows:
            lines.append(
                f"| {r.model} | {r.defense} | {r.mode} | {r.attack} | {r.norm} {r.eps:.4g} | "
                f"{100 * r.clean_accuracy:.1f} | {100 * r.robust_accuracy:.1f} | "
                f"{r.forwards_per_sample:.1f} | {r.eot_samples} | {r.flags} |")
        return "\n".join(lines)


def _flags_for(flags: Sequence[Flag], model: str, defense: str, attack: str) -> str:
    names = sorted({f.check for f in flags if f.model == model and f.defense == defense
                    and f.attack in ("", attack)})
    return ",".join(names)


def table_rows(cells: Sequence[Cell], flags: Sequence[Flag] = ()) -> list[Row]:
    """Table rows: each attack cell per eps, then the per-sample worst case of each cascade.

    Cells are grouped by model, defense, mode and threat model (the whole-image ball of their
    cascade), so a worst case only combines attacks whose every perturbation lies in its ball.
    """
    clean = {(c.model, c.defense): c for c in cells if c.mode == "clean"}
    groups: dict[tuple[str, str, str, str, tuple[float, ...]], list[Cell]] = {}
    for c in cells:
        if c.mode != "clean":
            ball = (c.ball, c.ball_eps) if c.ball else (c.norm, c.epsilons)
            groups.setdefault((c.model, c.defense, c.mode, *ball), []).append(c)  # type: ignore[arg-type]
    rows: list[Row] = []
    for (model, defense, mode, ball, ball_eps), group in groups.items():
        c0 = clean[(model, defense)]
        clean_acc = float(c0.robust.float().mean())
        n = c0.robust.shape[1]

        for c in group:
            for e in range(len(c.epsilons)):
                rows.append(Row(
                    model=model, defense=defense, mode=mode, norm=c.norm, attack=c.attack, eps=c.epsilons[e], n=n,
                    clean_accuracy=clean_acc, robust_accuracy=float(c.robust[e].float().mean()),
                    forwards_per_sample=float(c.forwards[e].float().mean()),
                    gradients_per_sample=float(c.gradients[e].float().mean()), eot_samples=c.eot_samples,
                    forward_cost=c0.forward_cost, flags=_flags_for(flags, model, defense, c.attack)))
        if len(group) > 1:
            worst = torch.stack([c.robust for c in group]).all(0)
            for e in range(len(ball_eps)):
                rows.append(Row(
                    model=model, defense=defense, mode=mode, norm=ball, attack=WORST, eps=ball_eps[e], n=n,
                    clean_accuracy=clean_acc, robust_accuracy=float(worst[e].float().mean()),
                    forwards_per_sample=sum(float(c.forwards[e].float().mean()) for c in group),
                    gradients_per_sample=sum(float(c.gradients[e].float().mean()) for c in group),
                    eot_samples=max(c.eot_samples for c in group), forward_cost=c0.forward_cost,
                    flags=_flags_for(flags, model, defense, WORST)))
    return rows


# --------------------------------------------------------------------------- the store


def _pack(cell: Cell) -> bytes:
    buf = io.BytesIO()
    tensors = {"robust": cell.robust, "forwards": cell.forwards, "gradients": cell.gradients}
    if cell.norms is not None:
        tensors["norms"] = cell.norms
    torch.save(tensors, buf)
    return buf.getvalue()


class ResultStore:
    """Finished cells in an SQLite file; each :meth:`put` is one transaction.

    Args:
        path: the database file (created with its folder if missing).
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS cells (key TEXT PRIMARY KEY, meta TEXT NOT NULL, "
                             "outcomes BLOB NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS sanity (key TEXT PRIMARY KEY, flags TEXT NOT NULL)")

    def get(self, key: str) -> Cell | None:
        """The stored cell ``key``, or ``None``."""
        row = self._db.execute("SELECT meta, outcomes FROM cells WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        meta = json.loads(row[0])
        tensors = torch.load(io.BytesIO(row[1]), weights_only=True)
        meta["epsilons"] = tuple(meta["epsilons"])
        meta["ball_eps"] = tuple(meta.get("ball_eps", ()))
        return Cell(**meta, **tensors)

    def put(self, cells: Sequence[Cell]) -> None:
        """Store ``cells`` (replacing same keys) in one transaction: all or none."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO cells (key, meta, outcomes) VALUES (?, ?, ?)",
                [(c.key, json.dumps(c.meta()), _pack(c)) for c in cells])

    def get_flags(self, key: str) -> list[Flag] | None:
        """Stored sanity flags for ``key`` (``[]`` if none fired), or ``None`` if not run yet."""
        row = self._db.execute("SELECT flags FROM sanity WHERE key = ?", (key,)).fetchone()
        return None if row is None else [Flag(**f) for f in json.loads(row[0])]

    def put_flags(self, key: str, flags: Sequence[Flag]) -> None:
        """Store the sanity outcome for ``key`` in one transaction."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO sanity (key, flags) VALUES (?, ?)",
                             (key, json.dumps([f.to_dict() for f in flags])))

    def keys(self) -> list[str]:
        """Every stored cell key."""
        return [k for (k,) in self._db.execute("SELECT key FROM cells ORDER BY key")]

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


# --------------------------------------------------------------------------- reports


def _write_csv(path: Path, rows: Sequence[Row]) -> Path:
    fields = [f.name for f in dataclasses.fields(Row)]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for r in rows:
                writer.writerow(r.to_dict())

    return atomic_write(path, write)


def plot_curves(result: BenchResult, out: Path) -> list[Path]:
    """One robust-accuracy-vs-eps PNG per model and defense (attacks and worst case as lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[Row]] = {}
    for r in result.rows:
        groups.setdefault((r.model, r.defense), []).append(r)
    paths = []
    for (model, defense), rows in groups.items():
        fig, ax = plt.subplots(figsize=(5, 3.5))
        lines: dict[tuple[str, str, str], list[Row]] = {}
        for r in rows:
            lines.setdefault((r.mode, r.norm, r.attack), []).append(r)
        for (mode, norm, attack), pts in lines.items():
            style = "--" if mode == "transfer" else "-"
            width = 2.5 if attack == WORST else 1.2
            ax.plot([p.eps for p in pts], [100 * p.robust_accuracy for p in pts], style, marker="o",
                    linewidth=width, label=f"{attack} ({mode}, {norm})")
        ax.set_xlabel("eps")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(f"{model} / {defense}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"robust_{_slug(model)}_{_slug(defense)}.png"

        def save(tmp: Path, fig: Any = fig) -> None:
            fig.savefig(tmp, format="png", dpi=110)

        paths.append(atomic_write(path, save))
        plt.close(fig)
    return paths


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def write_reports(result: BenchResult, out: str | Path, *, extra_md: str = "") -> dict[str, Path]:
    """Write ``results.json``, ``results.csv``, ``report.md`` and the curve PNGs into ``out``."""
    out = Path(out)
    paths = {"json": write_json_atomic(out / "results.json", result.to_dict()),
             "csv": _write_csv(out / "results.csv", result.rows)}
    pngs = plot_curves(result, out)
    md = ["# bandguard benchmark", "",
          f"{len(result.rows)} rows, device {result.device}, {result.seconds:.1f} s "
          f"({result.computed} cells computed, {result.reused} reused).", "",
          "clean / robust accuracy in %; `transfer`: crafted on the bare model; `adaptive`: through "
          "the defense (EOT when it is randomized); `worst case`: a sample counts as robust only if "
          "no attack of its threat model broke it. eps is each attack's own: `l2/channel` is the L2 norm "
          "of each channel (the Fourier tools' convention, whole-image norm up to eps * sqrt(C)); a "
          "worst-case row gives its whole-image ball, which holds every perturbation it combines.", "",
          result.to_markdown(), ""]
    if result.flags:
        md += ["## Sanity flags", ""]
        md += [f"- **{f.check}** ({f.model} / {f.defense}{' / ' + f.attack if f.attack else ''}): {f.reason}"
               for f in result.flags]
        md.append("")
    else:
        md += ["No sanity check fired.", ""]
    md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    if extra_md:
        md += [extra_md, ""]
    md += ["## Timings", "", "| model | defense | mode | attack | seconds |", "|---|---|---|---|---|"]
    md += [f"| {m} | {d} | {mo} | {a or '-'} | {s:.2f} |" for m, d, mo, a, s in result.timings]
    text = "\n".join(md) + "\n"
    paths["markdown"] = atomic_write(out / "report.md", lambda tmp: tmp.write_text(text))
    for p in pngs:
        paths[p.stem] = p
    return paths
