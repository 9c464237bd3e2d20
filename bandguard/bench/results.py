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
        attack: the attack's label.
        norm: its own threat norm (``"linf"``, ``"l2"``, or ``"l2/channel"`` where eps is an L2
            norm per channel, the Fourier tools' convention).
        attack_repr: every setting.
        epsilons: the attack's budgets ``(E,)`` in ``norm`` (empty for a clean cell).
        robust: bool ``[E, N]``: correct after this attack and every earlier one of its cascade
            (a clean cell: ``[1, N]`` clean correctness).
        forwards, gradients: int64 ``[E, N]`` model evaluations / input gradients spent per sample.
        eot_samples: gradient samples per step.
        randomized: whether the model declares a randomized forward.
        forward_cost: model forwards per input the model declares.
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
    """A sanity check that fired, and the rows it was measured on.

    Args:
        check: the check's name (``"non_monotone"``, ``"zero_gradients"``, ...).
        model: the model's label.
        defense: the defense's label (``"none"``: the bare model).
        reason: one line saying what was measured.
        attack: the attack whose cell it was measured on; ``""``: a probe of the module itself.
        mode: the mode of the rows it was measured on (``"white-box"``, ``"adaptive"``,
            ``"transfer"``); ``""`` (flags stored before modes were recorded): every mode.
    """

    check: str
    model: str
    defense: str
    reason: str
    attack: str = ""
    mode: str = ""

    def to_dict(self) -> dict[str, str]:
        """Plain values."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: a model / defense / mode / attack at one eps.

    ``norm`` and ``eps`` are the attack's own (``"l2/channel"``: L2 norm of each channel, the
    Fourier tools' convention); a worst-case row gives its whole-image ball, which holds every
    perturbation of the attacks it combines.

    Args:
        model, defense, mode: where it was measured (``mode``: ``"white-box"``, ``"transfer"`` or
            ``"adaptive"``).
        norm, eps: the threat (see above).
        attack: the attack's label, or ``"worst case"``.
        n: samples evaluated.
        clean_accuracy, robust_accuracy: fractions in [0, 1].
        forwards_per_sample, gradients_per_sample: mean counts over all ``n`` samples, 0 for
            samples this attack did not have to attack (broken before, or at a smaller eps).
        eot_samples: gradient samples per step.
        forward_cost: model forwards per prediction.
        flags: the sanity checks that fired on this row's cells, comma-separated.
        cumulative: a cascade row after the first: robust after this attack and every earlier
            attack of its threat model (the cascade runs each attack only on the samples the
            earlier ones left robust), so it is the worst case over the attacks up to this one.
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
    cumulative: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain values."""
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        """The attack as the tables name it: ``"fourier (cumulative)"`` for a cascade row after the
        first (robust after this attack and every earlier one), ``"worst case"`` for the worst case."""
        return f"{self.attack} (cumulative)" if self.cumulative else self.attack

    def rounded(self) -> dict[str, Any]:
        """:meth:`to_dict` with the floats rounded for people (CSV): accuracies to 4 decimals
        (0.01 %), counts per image to 1 decimal, eps to 6 significant digits."""
        out = self.to_dict()
        out["eps"] = float(f"{self.eps:.6g}")
        for key in ("clean_accuracy", "robust_accuracy"):
            out[key] = round(out[key], 4)
        for key in ("forwards_per_sample", "gradients_per_sample"):
            out[key] = round(out[key], 1)
        return out


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """What a benchmark run produced.

    Attributes:
        rows: the table (deterministic: the same seed gives the same rows, bit for bit).
        flags: sanity checks that fired.
        cells: every cell, per-sample outcomes included.
        timings: per cell ``(model, defense, mode, attack, seconds)``.
        seconds: the whole run's wall time.
        device: where it ran.
        computed: cells computed now.
        reused: cells taken from the store.
        settings: what was run: the spec (or the in-memory grid's settings) with its seed.
        environment: package versions and the machine (:func:`environment`).
    """

    rows: tuple[Row, ...]
    flags: tuple[Flag, ...]
    cells: tuple[Cell, ...]
    timings: tuple[tuple[str, str, str, str, float], ...]
    seconds: float
    device: str
    computed: int
    reused: int
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    environment: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_cells(cls, spec: Any, cells: Sequence[Cell], flags: Sequence[Flag], *, seconds: float,
                   device: str, computed: int, reused: int) -> BenchResult:
        """Build the table from cells (worst case per sample recomputed from their outcomes).

        Args:
            spec: the :class:`~bandguard.bench.spec.BenchSpec`, or a mapping of the in-memory
                grid's settings (``cascade``, ``seed``, ...), or ``None``.
            cells: every cell of the run.
            flags: the sanity flags that fired.
            seconds: the run's wall time.
            device: where it ran.
            computed: cells computed now.
            reused: cells taken from the store.

        Returns:
            The result, with the settings and the environment recorded.
        """
        if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
            settings = dataclasses.asdict(spec)
        else:
            settings = dict(spec or {})
        cascade = bool(settings.get("cascade", True))
        return cls(rows=tuple(table_rows(cells, flags, cascade=cascade)), flags=tuple(flags), cells=tuple(cells),
                   timings=tuple((c.model, c.defense, c.mode, c.attack, c.seconds) for c in cells),
                   seconds=seconds, device=device, computed=computed, reused=reused, settings=settings,
                   environment=environment(device))

    def table(self) -> list[dict[str, Any]]:
        """The rows as plain dicts."""
        return [r.to_dict() for r in self.rows]

    def row(self, *, model: str, defense: str, mode: str, attack: str, eps: float) -> Row:
        """The row with these fields (``ValueError`` if none).

        Args:
            model, defense, mode, attack, eps: the row's fields (``attack="worst case"`` for a worst case).

        Returns:
            The :class:`Row`.
        """
        for r in self.rows:
            if (r.model, r.defense, r.mode, r.attack, r.eps) == (model, defense, mode, attack, eps):
                return r
        raise ValueError(f"no row {model}/{defense}/{mode}/{attack}/eps={eps}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values at full precision: settings (spec, seed), environment, rows, flags, timings."""
        return {
            "settings": self.settings,
            "seed": self.settings.get("seed"),
            "environment": self.environment,
            "rows": self.table(),
            "flags": [f.to_dict() for f in self.flags],
            "timings": [dict(zip(("model", "defense", "mode", "attack", "seconds"), t)) for t in self.timings],
            "seconds": self.seconds, "device": self.device,
            "cells_computed": self.computed, "cells_reused": self.reused,
        }

    def to_markdown(self) -> str:
        """The full table in Markdown, accuracies in percent (rounded to 0.1)."""
        head = ("| model | defense | mode | attack | eps | clean % | robust % | forwards/img | EOT | flags |\n"
                "|---|---|---|---|---|---|---|---|---|---|")
        lines = [head]
        for r in self.rows:
            lines.append(
                f"| {r.model} | {r.defense} | {r.mode} | {r.label} | {r.norm} {r.eps:.4g} | "
                f"{100 * r.clean_accuracy:.1f} | {100 * r.robust_accuracy:.1f} | "
                f"{r.forwards_per_sample:.1f} | {r.eot_samples} | {r.flags} |")
        return "\n".join(lines)

    def summary_rows(self) -> list[list[Row]]:
        """The summary table's lines, each a list of rows (one per eps): per model, defense and
        mode, the worst case of each threat model; where a mode has no worst case (one attack),
        that attack's rows.

        Returns:
            The lines, white-box first, then transfer, then adaptive.
        """
        has_worst = {(r.model, r.defense, r.mode) for r in self.rows if r.attack == WORST}
        out: dict[tuple[str, ...], list[Row]] = {}
        for r in self.rows:
            if r.attack == WORST or (r.model, r.defense, r.mode) not in has_worst:
                out.setdefault((r.model, r.defense, r.mode, r.norm, r.attack), []).append(r)
        order = {mode: i for i, mode in enumerate(("white-box", "transfer", "adaptive"))}
        return sorted(out.values(), key=lambda rows: (rows[0].model, order.get(rows[0].mode, 3)))

    def summary_markdown(self) -> str:
        """The summary table in Markdown: per model, defense and mode, clean and robust accuracy
        (the worst case over the attacks of each threat model) at every eps, in percent, and the
        sanity flags of the rows each line summarises."""
        groups = self.summary_rows()
        models = len({rows[0].model for rows in groups}) > 1
        threats = {(rows[0].norm, tuple(r.eps for r in rows)) for rows in groups}
        one = len(threats) == 1 and all(rows[0].attack == WORST for rows in groups)

        def eps_text(rows: Sequence[Row]) -> str:
            return " / ".join(f"{r.eps:.4g}" for r in rows)

        head = (["model"] if models else []) + ["defense", "mode", "clean %"]
        if one:
            norm, _ = next(iter(threats))
            head.append(f"worst-case robust %, {norm} eps {eps_text(groups[0])}")
        else:
            head += ["attack", "eps", "robust %"]
        head.append("flags")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for rows in groups:
            r0 = rows[0]
            key = (r0.model, r0.defense, r0.mode)
            cells = ([r0.model] if models else []) + [r0.defense, r0.mode, f"{100 * r0.clean_accuracy:.0f}"]
            robust = " / ".join(f"{100 * r.robust_accuracy:.0f}" for r in rows)
            if not one:
                cells += [r0.attack, f"{r0.norm} {eps_text(rows)}"]
            cells.append(robust)
            # the flags of every row this line summarises (same model, defense and mode), no others
            cells.append(",".join(sorted({f for r in self.rows if (r.model, r.defense, r.mode) == key
                                          for f in r.flags.split(",") if f})))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def environment(device: str = "cpu") -> dict[str, Any]:
    """The software and machine a run used: package versions, platform, CPU and GPU names.

    Args:
        device: the run's device; a CUDA one adds its GPU's name.

    Returns:
        Plain values: ``versions`` (bandguard, torch, foolbox, numpy, python), ``platform``,
        ``cpu``, ``cpu_count`` and ``gpu`` (``None`` on the CPU).
    """
    import importlib.metadata
    import os
    import platform

    versions = {}
    for package in ("bandguard", "torch", "foolbox", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    from bandguard._version import __version__

    versions["bandguard"] = __version__
    versions["python"] = platform.python_version()
    gpu = None
    if str(device).startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {"versions": versions, "platform": platform.platform(), "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(), "gpu": gpu}


def _cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _flags_for(flags: Sequence[Flag], model: str, defense: str, mode: str, attack: str) -> str:
    """The checks measured on these rows: the cell's own flags and the probes of its mode."""
    names = sorted({f.check for f in flags if f.model == model and f.defense == defense
                    and f.mode in ("", mode) and f.attack in ("", attack)})
    return ",".join(names)


def table_rows(cells: Sequence[Cell], flags: Sequence[Flag] = (), *, cascade: bool = True) -> list[Row]:
    """Table rows: each attack cell per eps, then the per-sample worst case of each cascade.

    Cells are grouped by model, defense, mode and threat model (the whole-image ball of their
    cascade), so a worst case only combines attacks whose every perturbation lies in its ball.

    Args:
        cells: the cells, clean ones included, in cascade order.
        flags: the sanity flags; each lands on the rows of the mode (and attack) it was measured on.
        cascade: whether the cells were cascaded (their rows after the first are then cumulative).

    Returns:
        The rows, in the cells' order.
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

        for i, c in enumerate(group):
            for e in range(len(c.epsilons)):
                rows.append(Row(
                    model=model, defense=defense, mode=mode, norm=c.norm, attack=c.attack, eps=c.epsilons[e], n=n,
                    clean_accuracy=clean_acc, robust_accuracy=float(c.robust[e].float().mean()),
                    forwards_per_sample=float(c.forwards[e].float().mean()),
                    gradients_per_sample=float(c.gradients[e].float().mean()), eot_samples=c.eot_samples,
                    forward_cost=c0.forward_cost, flags=_flags_for(flags, model, defense, mode, c.attack),
                    cumulative=cascade and i > 0))
        if len(group) > 1:
            worst = torch.stack([c.robust for c in group]).all(0)
            for e in range(len(ball_eps)):
                rows.append(Row(
                    model=model, defense=defense, mode=mode, norm=ball, attack=WORST, eps=ball_eps[e], n=n,
                    clean_accuracy=clean_acc, robust_accuracy=float(worst[e].float().mean()),
                    forwards_per_sample=sum(float(c.forwards[e].float().mean()) for c in group),
                    gradients_per_sample=sum(float(c.gradients[e].float().mean()) for c in group),
                    eot_samples=max(c.eot_samples for c in group), forward_cost=c0.forward_cost,
                    flags=_flags_for(flags, model, defense, mode, WORST)))
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
                writer.writerow(r.rounded())

    return atomic_write(path, write)


MODE_STYLES = {"white-box": ("-", "s"), "adaptive": ("-", "^"), "transfer": ("--", "o")}


def plot_curves(result: BenchResult, out: Path) -> list[Path]:
    """One robust-accuracy-vs-eps PNG per model, comparing its defenses.

    Each line is one defense in one mode (transfer dashed), the summary's robust accuracy (the
    worst case over the attacks of a threat model) against eps, starting from clean accuracy at
    eps 0; one panel per threat model, its norm on the x axis, ``n`` in the title.

    Args:
        result: the run.
        out: the folder; files are ``robust_<model>.png``.

    Returns:
        The paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_model: dict[str, list[list[Row]]] = {}
    for rows in result.summary_rows():
        by_model.setdefault(rows[0].model, []).append(rows)
    paths = []
    for model, groups in by_model.items():
        norms = list(dict.fromkeys(rows[0].norm for rows in groups))
        fig, axes = plt.subplots(1, len(norms), figsize=(5.5 * len(norms), 4), squeeze=False)
        defenses = list(dict.fromkeys(rows[0].defense for rows in groups))
        colours = {d: plt.get_cmap("tab10")(i % 10) for i, d in enumerate(defenses)}
        for ax, norm in zip(axes[0], norms):
            for rows in (g for g in groups if g[0].norm == norm):
                r0 = rows[0]
                what = "" if r0.attack == WORST else f", {r0.attack}"
                xs = [0.0] + [r.eps for r in rows]
                ys = [100 * r0.clean_accuracy] + [100 * r.robust_accuracy for r in rows]
                line, marker = MODE_STYLES.get(r0.mode, (":", "x"))
                bare = r0.mode == "white-box"  # drawn on top: an adaptive line that breaks a defense meets it
                ax.plot(xs, ys, line, marker=marker, color="black" if bare else colours[r0.defense],
                        linewidth=2.2 if bare else 1.5, markersize=7 if bare else 5, zorder=3 if bare else 2,
                        alpha=0.8 if bare else 1.0, label=f"{r0.defense} ({r0.mode}{what})")
            unit = {"l2/channel": "L2 norm per channel", "l2": "L2 norm", "linf": "Linf norm"}.get(norm, norm)
            ax.set_xlabel(f"eps ({unit}; 0: clean accuracy)")
            ax.set_ylabel("robust accuracy (%)")
            ax.set_ylim(-2, 102)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        n = groups[0][0].n
        fig.suptitle(f"{model}: robust accuracy (worst case over attacks), n = {n}")
        fig.tight_layout()
        path = out / f"robust_{_slug(model)}.png"

        def save(tmp: Path, fig: Any = fig) -> None:
            fig.savefig(tmp, format="png", dpi=110)

        paths.append(atomic_write(path, save))
        plt.close(fig)
    return paths


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def write_reports(result: BenchResult, out: str | Path, *, extra_md: str = "") -> dict[str, Path]:
    """Write ``results.json`` (full precision, settings and environment), ``results.csv`` (rounded),
    ``report.md`` (the summary, then every row) and the curve PNGs into ``out``.

    Args:
        result: the run.
        out: the folder (created if missing).
        extra_md: Markdown appended after the figures (the demo's spectra).

    Returns:
        ``{"json", "csv", "markdown", <figure stem>...: path}``.
    """
    out = Path(out)
    paths = {"json": write_json_atomic(out / "results.json", result.to_dict()),
             "csv": _write_csv(out / "results.csv", result.rows)}
    pngs = plot_curves(result, out)
    versions = result.environment.get("versions", {})
    md = ["# bandguard benchmark", "",
          f"{len(result.rows)} rows, device {result.device}, {result.seconds:.1f} s "
          f"({result.computed} cells computed, {result.reused} reused); seed {result.settings.get('seed')}; "
          + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".", "",
          "## Summary", "",
          "clean / robust accuracy in %; `transfer`: crafted on the bare model; `adaptive`: through "
          "the defense (EOT when it is randomized); robust: the worst case over the attacks of each "
          "threat model (a sample counts as robust only if no attack broke it).", "",
          result.summary_markdown(), "",
          "## Every attack", "",
          "`(cumulative)`: a cascade row after the first, robust after this attack *and every earlier one* "
          "of its threat model (each attack runs only on the samples the earlier ones left robust), so it is "
          "the worst case over the attacks up to this one; forwards/img counts only the samples the attack "
          "still had to attack (0 where earlier attacks or a smaller eps broke them all). eps is each attack's "
          "own: `l2/channel` is the L2 norm of each channel (the Fourier tools' convention, whole-image norm up "
          "to eps * sqrt(C)); a worst-case row gives its whole-image ball, which holds every perturbation it "
          "combines. Flags sit on the rows (mode and attack) they were measured on.", "",
          result.to_markdown(), ""]
    if result.flags:
        md += ["## Sanity flags", ""]
        md += [f"- **{f.check}** ({f.model} / {f.defense}{' / ' + f.mode if f.mode else ''}"
               f"{' / ' + f.attack if f.attack else ''}): {f.reason}" for f in result.flags]
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
