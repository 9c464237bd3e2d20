"""The result store (SQLite, one transaction per put, resumable) and the table built from cells:
worst case per sample within one threat model, the per-channel convention named in the table."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from pathlib import Path

import pytest
import torch

from bandguard.bench.results import WORST, BenchResult, Cell, Flag, ResultStore, table_rows, write_reports

R3 = math.sqrt(3)


def _cell(attack: str, robust: list[list[bool]], *, norm: str = "l2", eps: tuple[float, ...] = (0.5, 1.0),
          ball: str = "l2", ball_eps: tuple[float, ...] = (0.5, 1.0), mode: str = "white-box",
          forwards: int = 3) -> Cell:
    r = torch.tensor(robust)
    return Cell(key=f"{mode}-{attack}", model="m", defense="none", mode=mode, attack=attack, norm=norm,
                attack_repr=f"{attack}()", epsilons=eps, robust=r, forwards=torch.full(r.shape, forwards),
                gradients=torch.zeros(r.shape, dtype=torch.long), eot_samples=1, randomized=False, forward_cost=1,
                seconds=0.5, norms=torch.rand(r.shape), ball=ball, ball_eps=ball_eps)


def _clean(robust: list[bool]) -> Cell:
    n = len(robust)
    return Cell(key="clean", model="m", defense="none", mode="clean", attack="", norm="", attack_repr="",
                epsilons=(), robust=torch.tensor([robust]), forwards=torch.ones(1, n, dtype=torch.long),
                gradients=torch.zeros(1, n, dtype=torch.long), eot_samples=0, randomized=False, forward_cost=1,
                seconds=0.1, norms=torch.zeros(1, n))


def test_store_round_trip_replace_flags_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "results.sqlite"
    store = ResultStore(path)
    a = _cell("pgd", [[True, False, True], [False, False, True]])
    b = _cell("fourier", [[True, False, False], [False, False, False]], norm="l2/channel", eps=(0.5 / R3, 1 / R3))
    assert store.get(a.key) is None and store.get_flags("k") is None
    store.put([a, b])
    got = store.get(b.key)
    assert got is not None and got.ball == "l2" and got.ball_eps == (0.5, 1.0) and got.epsilons == b.epsilons
    for field in ("robust", "forwards", "gradients", "norms"):
        assert torch.equal(getattr(got, field), getattr(b, field)), field
    assert got.meta() == b.meta()
    # Same key replaces; flags are stored per key ([] means "ran, nothing fired").
    store.put([_cell("pgd", [[False] * 3, [False] * 3])])
    store.put_flags("k", [Flag("zero_gradients", "m", "none", "zero_gradients: ...", "pgd")])
    store.put_flags("empty", [])
    store.close()
    again = ResultStore(path)
    assert again.keys() == sorted([a.key, b.key])
    assert not bool(again.get(a.key).robust.any())  # type: ignore[union-attr]
    assert again.get_flags("k") == [Flag("zero_gradients", "m", "none", "zero_gradients: ...", "pgd")]
    assert again.get_flags("empty") == []
    again.close()


def test_a_failed_put_stores_nothing(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    good = _cell("pgd", [[True], [True]])
    bad = Cell(**{**{f: getattr(good, f) for f in ("model", "defense", "mode", "attack", "norm", "attack_repr",
                                                    "epsilons", "robust", "forwards", "gradients", "eot_samples",
                                                    "randomized", "forward_cost", "seconds")},
                  "key": ["not", "a", "string"]})  # type: ignore[arg-type]  # sqlite cannot bind it
    with pytest.raises(sqlite3.Error):
        store.put([good, bad])
    assert store.keys() == []  # one transaction: the good cell is not kept either
    store.close()


def test_worst_case_is_per_sample_within_one_ball() -> None:
    clean = _clean([True, True, True, False])
    pgd = _cell("pgd", [[True, True, False, False], [True, False, False, False]], forwards=4)
    # Fourier at eps / sqrt(3) per channel joined the L2 cascade (its whole-image norm fits).
    fourier = _cell("fourier", [[False, True, False, False], [False, False, False, False]], norm="l2/channel",
                    eps=(0.5 / R3, 1 / R3), forwards=2)
    other = _cell("pgd-linf", [[True, True, True, False]], norm="linf", eps=(0.1,), ball="linf", ball_eps=(0.1,))
    rows = table_rows([clean, pgd, fourier, other], [Flag("zero_gradients", "m", "none", "r")])
    worst = [r for r in rows if r.attack == WORST]
    # Only the L2 group has two attacks: one worst-case row per eps, at the ball's eps.
    assert [(r.norm, r.eps) for r in worst] == [("l2", 0.5), ("l2", 1.0)]
    assert [r.robust_accuracy for r in worst] == [0.25, 0.0]  # sample 1 survives both at 0.5, none at 1.0
    assert [r.forwards_per_sample for r in worst] == [6.0, 6.0]
    four = [r for r in rows if r.attack == "fourier"]
    assert [(r.norm, r.eps) for r in four] == [("l2/channel", 0.5 / R3), ("l2/channel", 1 / R3)]
    assert {r.clean_accuracy for r in rows} == {0.75} and all(r.flags == "zero_gradients" for r in rows)
    # The same cells with the Fourier one in its own ball: no worst case mixes them.
    alone = _cell("fourier", fourier.robust.tolist(), norm="l2/channel", eps=(0.5, 1.0), ball="l2/channel",
                  ball_eps=(0.5, 1.0))
    assert [r for r in table_rows([clean, pgd, alone]) if r.attack == WORST] == []


def test_markdown_and_reports_name_the_convention(tmp_path: Path) -> None:
    clean = _clean([True, True])
    pgd = _cell("pgd", [[True, False], [False, False]], eps=(R3,), ball_eps=(R3,))
    pgd = Cell(**{**pgd.__dict__, "robust": pgd.robust[:1], "forwards": pgd.forwards[:1],
                  "gradients": pgd.gradients[:1], "norms": pgd.norms[:1]})  # type: ignore[union-attr]
    fourier = Cell(**{**pgd.__dict__, "key": "f", "attack": "fourier", "norm": "l2/channel", "epsilons": (1.0,)})
    result = BenchResult.from_cells(None, [clean, pgd, fourier], [], seconds=1.0, device="cpu", computed=3,
                                    reused=0)
    md = result.to_markdown()
    assert "| m | none | white-box | pgd | l2 1.732 |" in md  # the first of its cascade: not cumulative
    assert "| m | none | white-box | fourier (cumulative) | l2/channel 1 |" in md
    assert "| m | none | white-box | worst case | l2 1.732 |" in md
    paths = write_reports(result, tmp_path)
    report = paths["markdown"].read_text()
    assert "`l2/channel` is the L2 norm of each channel" in report and "No sanity check fired." in report
    assert "`(cumulative)`: a cascade row after the first" in report
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: no temporary left behind


def _two_modes() -> tuple[list[Cell], Cell]:
    """A bare model's clean and white-box cells and a defense's transfer and adaptive ones."""
    clean = _clean([True, True, True, True])
    cells = [clean]
    for mode, defense in (("white-box", "none"), ("transfer", "d"), ("adaptive", "d")):
        for attack, robust in (("pgd", [[True, True, False, False], [True, False, False, False]]),
                               ("fourier", [[True, False, False, False], [False, False, False, False]])):
            c = _cell(attack, robust, mode=mode)
            cells.append(Cell(**{**c.__dict__, "defense": defense, "key": f"{defense}-{mode}-{attack}"}))
    d_clean = Cell(**{**clean.__dict__, "defense": "d", "key": "clean-d"})
    return [*cells, d_clean], d_clean


def test_flags_sit_only_on_the_rows_of_the_mode_and_attack_they_were_measured_on() -> None:
    cells, _ = _two_modes()
    flags = [Flag("non_monotone", "m", "d", "rises", "fourier", "transfer"),
             Flag("zero_gradients", "m", "d", "probe of the defense", "", "adaptive")]
    rows = table_rows(cells, flags)
    flagged = {(r.mode, r.attack): r.flags for r in rows if r.defense == "d"}
    assert flagged[("transfer", "fourier")] == "non_monotone"
    assert flagged[("transfer", "pgd")] == "" and flagged[("transfer", WORST)] == ""
    assert flagged[("adaptive", "pgd")] == "zero_gradients" and flagged[("adaptive", WORST)] == "zero_gradients"
    assert "non_monotone" not in flagged[("adaptive", "fourier")]
    assert all(r.flags == "" for r in rows if r.defense == "none")
    # A flag stored before modes were recorded (mode "") still lands on every mode, as it used to.
    old = table_rows(cells, [Flag("large_eps", "m", "d", "old")])
    assert {r.flags for r in old if r.defense == "d"} == {"large_eps"}


def test_cascade_rows_after_the_first_say_they_are_cumulative() -> None:
    cells, _ = _two_modes()
    rows = table_rows(cells)
    assert {(r.attack, r.cumulative) for r in rows} == {("pgd", False), ("fourier", True), (WORST, False)}
    assert {r.label for r in rows if r.attack == "fourier"} == {"fourier (cumulative)"}
    assert not any(r.cumulative for r in table_rows(cells, cascade=False))
    result = BenchResult.from_cells({"cascade": False, "seed": 3}, cells, [], seconds=1.0, device="cpu",
                                    computed=len(cells), reused=0)
    assert not any(r.cumulative for r in result.rows) and result.settings["seed"] == 3


def test_summary_has_one_line_per_defense_and_mode_with_the_worst_case() -> None:
    cells, _ = _two_modes()
    result = BenchResult.from_cells(None, cells, [Flag("zero_gradients", "m", "d", "r", "", "adaptive")],
                                    seconds=1.0, device="cpu", computed=len(cells), reused=0)
    lines = result.summary_rows()
    assert [(rows[0].defense, rows[0].mode) for rows in lines] == [("none", "white-box"), ("d", "transfer"),
                                                                    ("d", "adaptive")]
    assert all(r.attack == WORST for rows in lines for r in rows)
    md = result.summary_markdown().splitlines()
    assert md[0] == "| defense | mode | clean % | worst-case robust %, l2 eps 0.5 / 1 | flags |"
    assert md[2] == "| none | white-box | 100 | 25 / 0 |  |"
    assert md[4] == "| d | adaptive | 100 | 25 / 0 | zero_gradients |"
    assert md[3] == "| d | transfer | 100 | 25 / 0 |  |"  # the adaptive probe's flag is not the transfer line's
    cell_flag = BenchResult.from_cells(None, cells, [Flag("non_monotone", "m", "d", "r", "pgd", "transfer")],
                                       seconds=1.0, device="cpu", computed=len(cells), reused=0)
    assert cell_flag.summary_markdown().splitlines()[3] == "| d | transfer | 100 | 25 / 0 | non_monotone |"
    assert len(md) == 2 + 3  # the full table (12 rows) stays in report.md


def test_csv_is_rounded_and_json_keeps_full_precision_with_settings_and_versions(tmp_path: Path) -> None:
    clean = _clean([True] * 3)
    pgd = _cell("pgd", [[True, True, False]], eps=(8 / 255,), ball_eps=(8 / 255,))
    spec = {"cascade": True, "seed": 7, "n": 3}
    result = BenchResult.from_cells(spec, [clean, pgd], [], seconds=1.0, device="cpu", computed=2, reused=0)
    paths = write_reports(result, tmp_path)
    (row,) = list(csv.DictReader(paths["csv"].open()))
    assert row["robust_accuracy"] == "0.6667" and row["eps"] == "0.0313725" and row["cumulative"] == "False"
    data = json.loads(paths["json"].read_text())
    # full precision: the float32 mean as computed (0.6666666865...), not the CSV's 0.6667
    assert data["rows"][0]["robust_accuracy"] == result.rows[0].robust_accuracy != 0.6667
    assert data["rows"][0]["eps"] == 8 / 255
    assert data["settings"] == spec and data["seed"] == 7
    env = data["environment"]
    import numpy

    from bandguard import __version__

    assert env["versions"]["bandguard"] == __version__
    assert env["versions"]["torch"] in (torch.__version__, torch.__version__.split("+")[0])
    assert env["versions"]["numpy"] == numpy.__version__ and "foolbox" in env["versions"]
    assert env["platform"] and env["cpu"] and env["gpu"] is None
    report = paths["markdown"].read_text()
    assert "## Summary" in report and f"seed 7; bandguard {__version__}" in report
