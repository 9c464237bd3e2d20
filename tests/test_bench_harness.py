"""The benchmark harness on the trained MNIST fixture: cascade, worst case, EOT, resume, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bandguard.bench import parse_spec, run
from bandguard.bench.harness import batch_size_for, build_defense, sample_indices, threat_chains
from bandguard.bench.results import WORST, ResultStore
from bandguard.models import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, mnist_model: torch.nn.Module) -> Path:
    path = tmp_path_factory.mktemp("bench") / "cnn.pt"
    save_checkpoint(path, mnist_model, arch="mnist_cnn", dataset="mnist")
    return path


def small_spec(checkpoint: Path, out: Path, **overrides: object):
    data = {
        "dataset": "mnist", "n": 16, "batch_size": 8, "seed": 3, "out": str(out), "sanity": False, "eot": 2,
        "defenses": ["lowpass:10"],
        "models": [{"name": "cnn", "checkpoint": str(checkpoint)}],
        "attacks": [{"attack": "fgsm", "eps": [0.1, 0.3]},
                    {"attack": "pgd", "eps": [0.1, 0.3], "steps": 3}],
    }
    data.update(overrides)
    return parse_spec(data)


def test_sample_indices_fixed_by_seed() -> None:
    a, b, c = sample_indices(100, 10, 0), sample_indices(100, 10, 0), sample_indices(100, 10, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 10
    assert torch.equal(sample_indices(5, 0, 0), torch.arange(5))


def test_grid_cascade_worst_case_and_eot(checkpoint: Path, tmp_path: Path) -> None:
    result = run(small_spec(checkpoint, tmp_path / "a", defenses=["lowpass:10", "post_average:3.0,K=1"]))
    cells = {(c.defense, c.mode, c.attack): c for c in result.cells}
    # Every model x defense x mode x attack x eps has a row, plus the worst case per cascade.
    modes = {("none", "white-box"), ("lowpass:10", "transfer"), ("lowpass:10", "adaptive"),
             ("post_average:3.0,K=1", "transfer"), ("post_average:3.0,K=1", "adaptive")}
    assert {(r.defense, r.mode) for r in result.rows} == modes
    assert len(result.rows) == len(modes) * 3 * 2
    fgsm, pgd = cells[("none", "white-box", "fgsm")], cells[("none", "white-box", "pgd")]
    clean = cells[("none", "clean", "")].robust[0]
    # Cascade, eps by eps: PGD spent nothing at an eps where FGSM broke the sample (or the model
    # missed it), and attacked every other sample. A sample PGD broke at a smaller eps keeps that
    # adversarial example, and its counts, at the larger one (it lies in that ball too).
    carried = torch.zeros_like(fgsm.robust[0])
    for e in range(2):
        skipped = ~fgsm.robust[e]
        assert skipped.any() and (pgd.forwards[e, skipped & ~carried] == 0).all()
        assert (pgd.forwards[e, ~skipped] > 1).all()
        assert torch.equal(pgd.forwards[e, carried], pgd.forwards[e - 1, carried])
        carried = carried | (fgsm.robust[e] & ~pgd.robust[e])  # broken by PGD at this eps
    # A sample is robust in the worst case only if no attack broke it.
    for e, eps in enumerate((0.1, 0.3)):
        worst = result.row(model="cnn", defense="none", mode="white-box", attack=WORST, eps=eps)
        expect = (clean & fgsm.robust[e] & pgd.robust[e]).float().mean()
        assert worst.robust_accuracy == pytest.approx(float(expect))
        assert worst.robust_accuracy <= result.row(model="cnn", defense="none", mode="white-box",
                                                   attack="fgsm", eps=eps).robust_accuracy
    # Robust accuracy falls with eps for the bare model.
    accs = [result.row(model="cnn", defense="none", mode="white-box", attack=WORST, eps=e).robust_accuracy
            for e in (0.1, 0.3)]
    assert accs[1] < accs[0]
    # EOT from what the defense declares: the randomized one gets the spec's eot, the others 1.
    assert cells[("post_average:3.0,K=1", "adaptive", "pgd")].eot_samples == 2
    assert cells[("lowpass:10", "adaptive", "pgd")].eot_samples == 1
    assert cells[("post_average:3.0,K=1", "adaptive", "pgd")].randomized
    # Transfer cells reuse the bare model's queries (crafted there).
    assert torch.equal(cells[("lowpass:10", "transfer", "pgd")].forwards, pgd.forwards)
    # Reports.
    out = tmp_path / "a"
    for name in ("report.md", "results.csv", "results.json", "results.sqlite", "robust_cnn_none.png"):
        assert (out / name).is_file(), name
    assert len(json.loads((out / "results.json").read_text())["rows"]) == len(result.rows)


@pytest.mark.slow
def test_same_seed_twice_is_bit_identical(checkpoint: Path, tmp_path: Path) -> None:
    first = run(small_spec(checkpoint, tmp_path / "a"))
    second = run(small_spec(checkpoint, tmp_path / "b"))
    assert first.rows == second.rows
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()
    for c1, c2 in zip(first.cells, second.cells):
        assert c1.key == c2.key and torch.equal(c1.robust, c2.robust) and torch.equal(c1.forwards, c2.forwards)


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_resume_after_interruption_gives_the_same_table(checkpoint: Path, tmp_path: Path) -> None:
    full = run(small_spec(checkpoint, tmp_path / "full"))
    spec = small_spec(checkpoint, tmp_path / "cut")
    batches = 0

    def stop_midway(desc: str, images: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 5:
            raise _Stop

    with pytest.raises(_Stop):
        run(spec, progress=stop_midway)
    store = ResultStore(tmp_path / "cut" / "results.sqlite")
    stored = len(store.keys())
    store.close()
    assert 0 < stored < len(full.cells)
    resumed = run(spec)
    assert resumed.reused == stored and resumed.computed == len(full.cells) - stored
    assert resumed.rows == full.rows
    again = run(spec)
    assert again.computed == 0 and again.rows == full.rows
    forced = run(spec, force=True)
    assert forced.reused == 0 and forced.computed == len(full.cells) and forced.rows == full.rows


@pytest.mark.slow  # APGD 100 steps and Square 5001 queries: the ensemble's own budgets
def test_standard_ensemble_key_runs_end_to_end(checkpoint: Path, tmp_path: Path) -> None:
    spec = small_spec(checkpoint, tmp_path, n=8, ensemble="standard",
                      attacks=[{"attack": "pgd", "eps": [0.05, 0.3], "steps": 3}])
    result = run(spec)
    cells = {(c.defense, c.mode, c.attack): c for c in result.cells}
    pgd, std = cells[("none", "white-box", "pgd")], cells[("none", "white-box", "standard")]
    assert "Ensemble(" in std.attack_repr and "Square(" in std.attack_repr and std.epsilons == (0.05, 0.3)
    # The ensemble runs after PGD in the cascade: only on what PGD left robust, never more robust.
    assert (std.robust <= pgd.robust).all() and (std.forwards[~pgd.robust] == 0).all()
    assert int(std.forwards.sum()) > 0  # it attacked what PGD left at the small eps
    assert ("lowpass:10", "adaptive", "standard") in cells and ("lowpass:10", "transfer", "standard") in cells
    worst = result.row(model="cnn", defense="none", mode="white-box", attack=WORST, eps=0.05)
    assert worst.robust_accuracy == pytest.approx(float(std.robust[0].float().mean()))


def test_threat_models_cascade_separately(checkpoint: Path, tmp_path: Path) -> None:
    spec = small_spec(checkpoint, tmp_path, attacks=[
        {"attack": "pgd", "eps": [0.1], "steps": 2},
        {"attack": "pgd", "name": "pgd-l2", "norm": "l2", "eps": [1.0], "steps": 2},
        {"attack": "fgsm", "eps": [0.1]},
    ])
    chains = threat_chains(spec.attacks)
    assert [[a.name for a in c] for c in chains] == [["pgd", "fgsm"], ["pgd-l2"]]


def test_batch_for_a_costly_defense_follows_the_budget(checkpoint: Path, tmp_path: Path,
                                                      mnist_model: torch.nn.Module) -> None:
    spec = small_spec(checkpoint, tmp_path, batch_size=256, sample_budget=700)
    assert batch_size_for(spec, mnist_model) == 256
    pa = build_defense("post_average:3.0,K=15", mnist_model)
    assert batch_size_for(spec, pa) == 700 // 91


_MEMORY_SCRIPT = """
import resource, sys, torch
from torch import nn
from bandguard.bench.harness import _attack_batches, _Context
from bandguard.bench.distributed import Shard
from bandguard.defenses import build_defense
from bandguard.attacks import PGD
torch.manual_seed(0)
n = int(sys.argv[1])
net = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 28 * 28, 10))
defense = build_defense("post_average:3.0,K=15", net)
x, y = torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,))
ctx = _Context(spec=None, device=torch.device("cpu"), shard=Shard(), store=None, force=False, x=x, y=y,
               progress=None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
attack = PGD(eps=(0.1,), steps=1, eot_samples=1, random_start=False)
_attack_batches(ctx, "k", attack, defense, torch.ones(n, dtype=torch.bool), max(1, 2048 // 91), "")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def _peak_mib(n: int) -> int:
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(n)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    return int(out.stdout.split()[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_n() -> None:
    # 91 forwards per image, each with ~400 KB of activations kept for the backward pass:
    # unchunked, 256 images would hold ~9 GB of graph (8x the 32-image peak); chunked to the
    # budget the peak is that of one 22-image chunk whatever n is (measured: 506 vs 570 MiB).
    small, large = _peak_mib(32), _peak_mib(256)
    assert large < 1.25 * small, (small, large)


@pytest.mark.gpu
def test_cuda_grid_matches_cpu_within_one_point(checkpoint: Path, tmp_path: Path) -> None:
    cpu = run(small_spec(checkpoint, tmp_path / "cpu", n=64, batch_size=32, device="cpu"))
    for amp in ("off", "bf16"):
        gpu = run(small_spec(checkpoint, tmp_path / f"cuda-{amp}", n=64, batch_size=32, device="cuda", amp=amp))
        assert len(gpu.rows) == len(cpu.rows)
        for a, b in zip(cpu.rows, gpu.rows):
            assert (a.defense, a.mode, a.attack, a.eps) == (b.defense, b.mode, b.attack, b.eps)
            assert abs(a.robust_accuracy - b.robust_accuracy) <= 0.01 + 1 / 64, (a, b)
