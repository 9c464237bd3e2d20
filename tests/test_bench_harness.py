"""The benchmark harness (bandguard/bench/harness.py): cascade, worst case, EOT, resume, determinism,
and its in-memory entry point ``evaluate_robustness`` (the same cells as a spec run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _interrupt import Interrupted, stop_after
from attack_models import batch, tiny_model

from bandguard.attacks import FGSM, PGD, FourierAttack, FourierGreedy
from bandguard.bench import evaluate_robustness, parse_spec, run
from bandguard.bench.harness import batch_size_for, build_defense, load_samples, threat_chains
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
        "scale_invariant": False,
        "defenses": ["lowpass:10"],
        "models": [{"name": "cnn", "checkpoint": str(checkpoint)}],
        "attacks": [{"attack": "fgsm", "eps": [0.1, 0.3]},
                    {"attack": "pgd", "eps": [0.1, 0.3], "steps": 3}],
    }
    data.update(overrides)
    return parse_spec(data)


def grid_spec(checkpoint: Path, out: Path):
    """The grid with the default scale-invariant attack: FGSM and PGD ascend cross-entropy only."""
    return small_spec(checkpoint, out, defenses=["lowpass:10", "post_average:3.0,K=1"], device="cpu",
                      scale_invariant=True)


@pytest.fixture(scope="module")
def grid(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """A spec run over the bare CNN, a low-pass and a randomized post-averaging, and its folder."""
    out = tmp_path_factory.mktemp("grid")
    return run(grid_spec(checkpoint, out)), out


def test_grid_cascade_worst_case_and_eot(grid) -> None:
    result, out = grid
    cells = {(c.defense, c.mode, c.attack): c for c in result.cells}
    # Every model x defense x mode x attack x eps has a row, plus the worst case per cascade.
    modes = {("none", "white-box"), ("lowpass:10", "transfer"), ("lowpass:10", "adaptive"),
             ("post_average:3.0,K=1", "transfer"), ("post_average:3.0,K=1", "adaptive")}
    assert {(r.defense, r.mode) for r in result.rows} == modes
    # fgsm, pgd, the appended apgd-dlr (both given attacks ascend cross-entropy) and the worst case.
    assert len(result.rows) == len(modes) * 4 * 2
    fgsm, pgd = cells[("none", "white-box", "fgsm")], cells[("none", "white-box", "pgd")]
    dlr = cells[("none", "white-box", "apgd-dlr")]
    assert "APGD(" in dlr.attack_repr and "loss='dlr'" in dlr.attack_repr and dlr.epsilons == (0.1, 0.3)
    assert (dlr.robust <= pgd.robust).all() and (dlr.forwards[0, ~pgd.robust[0]] == 0).all()
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
        expect = (clean & fgsm.robust[e] & pgd.robust[e] & dlr.robust[e]).float().mean()
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
    # Per-sample perturbation norms: within the ball, 0 where nothing was attacked; stored with the cell.
    assert (pgd.norms <= torch.tensor([[0.1], [0.3]]) + 1e-6).all() and (pgd.norms[pgd.forwards == 0] == 0).all()
    store = ResultStore(out / "results.sqlite")
    stored = store.get(pgd.key)
    store.close()
    assert stored is not None and torch.equal(stored.norms, pgd.norms) and stored.mean_norm == pgd.mean_norm
    # Reports.
    for name in ("report.md", "results.csv", "results.json", "results.sqlite", "robust_cnn.png"):
        assert (out / name).is_file(), name
    assert len(json.loads((out / "results.json").read_text())["rows"]) == len(result.rows)


def test_in_memory_equals_the_spec_run(grid, checkpoint: Path, mnist_model: torch.nn.Module) -> None:
    # The same samples, seed and labels through evaluate_robustness: every cell's per-sample outcome
    # and every row equal the spec run's, with PGD's random start and post-averaging's noise drawn
    # alike (the randomness derives from the seed and the labels only).
    result, out = grid
    spec = grid_spec(checkpoint, out)
    x, y, _ = load_samples(spec)
    defenses = {d: build_defense(d, mnist_model) for d in spec.defenses[1:]}
    memory = evaluate_robustness(mnist_model, x, y, {a.name: a.build() for a in spec.attacks}, defenses=defenses,
                                 name="cnn", batch_size=spec.batch_size, sample_budget=spec.sample_budget,
                                 eot=spec.eot, seed=spec.seed)
    assert memory.rows == result.rows
    assert len(memory.cells) == len(result.cells)
    for a, b in zip(memory.cells, result.cells):
        assert (a.defense, a.mode, a.attack, a.eot_samples) == (b.defense, b.mode, b.attack, b.eot_samples)
        for field in ("robust", "forwards", "gradients", "norms"):
            assert torch.equal(getattr(a, field), getattr(b, field)), (a.defense, a.mode, a.attack, field)
    assert memory.computed == len(memory.cells) and memory.flags == ()


@pytest.mark.parametrize("attack", [FourierGreedy(eps=(0.3, 1.0), max_queries=6),
                                    PGD(eps=(0.1, 0.3), steps=3, random_start=False)], ids=["greedy", "pgd"])
def test_in_memory_equals_the_attack_run_directly(attack) -> None:
    # Deterministic attacks, so batches of 16 add up to one call on all 40 samples.
    model, (x, y) = tiny_model(), batch(40)
    seen: list[tuple[str, int]] = []
    result = evaluate_robustness(model, x, y, {"a": attack}, batch_size=16, scale_invariant=False,
                                 progress=lambda desc, k: seen.append((desc, k)))
    assert seen == [("model | a", 16), ("model | a", 16), ("model | a", 8)]
    direct = attack(model, x, y)
    clean, cell = result.cells
    assert torch.equal(clean.robust[0], direct[0].clean_pred == y)
    assert [r.robust_accuracy for r in result.rows] == list(direct.robust_accuracy)
    assert {r.clean_accuracy for r in result.rows} == {direct.clean_accuracy}
    attacked = clean.robust[0]  # the harness never attacks a sample the model already gets wrong
    assert 0 < int(attacked.sum()) < 40
    for e, res in enumerate(direct):
        assert torch.equal(cell.robust[e], res.adv_pred == y)
        assert torch.equal(cell.forwards[e][attacked], res.forwards[attacked])
        assert torch.equal(cell.gradients[e][attacked], res.gradients[attacked])
        assert (cell.forwards[e][~attacked] == 0).all()
        torch.testing.assert_close(cell.norms[e], res.norms.float())
    assert cell.mean_norm == pytest.approx(tuple(float(r.norms.double().mean()) for r in direct))
    assert cell.epsilons == attack.epsilons and cell.attack_repr.startswith(f"{type(attack).__name__}(eps=")


def test_in_memory_defenses_transfer_adaptive_and_eot() -> None:
    net, (x, _) = tiny_model(), batch(12)
    y = net(x).argmax(1)  # every sample clean-correct on the bare net
    defenses = {"lowpass:3": build_defense("lowpass:3", net), "pa": build_defense("post_average:0.3,K=1,seed=0", net)}
    attacks = {"pgd": PGD(eps=(0.0, 0.1), steps=3), "fgsm": FGSM(eps=(0.0, 0.1))}
    result = evaluate_robustness(net, x, y, attacks, defenses=defenses, eot=3, scale_invariant=False)
    cells = {(c.defense, c.mode, c.attack): c for c in result.cells}
    assert {(r.defense, r.mode) for r in result.rows} == {
        ("none", "white-box"), ("lowpass:3", "transfer"), ("lowpass:3", "adaptive"), ("pa", "transfer"),
        ("pa", "adaptive")}
    assert len(result.rows) == 5 * 3 * 2  # two attacks and their worst case, two eps
    assert cells[("none", "clean", "")].robust.all()
    assert result.row(model="model", defense="none", mode="white-box", attack="pgd", eps=0.0).robust_accuracy == 1.0
    # EOT from what the defense declares; the post-averaging's cost sizes its batches.
    assert cells[("pa", "adaptive", "pgd")].eot_samples == 3 and cells[("pa", "adaptive", "pgd")].randomized
    assert cells[("lowpass:3", "adaptive", "pgd")].eot_samples == 1
    assert cells[("pa", "clean", "")].forward_cost == 7
    assert torch.equal(cells[("pa", "transfer", "pgd")].forwards, cells[("none", "white-box", "pgd")].forwards)
    # Cascade: FGSM attacks only what PGD left robust, so the worst case is FGSM's cell.
    for d, mode in (("none", "white-box"), ("pa", "adaptive")):
        pgd, fgsm = cells[(d, mode, "pgd")], cells[(d, mode, "fgsm")]
        assert (fgsm.robust <= pgd.robust).all() and (fgsm.forwards[~pgd.robust] == 0).all()
        worst = result.row(model="model", defense=d, mode=mode, attack=WORST, eps=0.1)
        assert worst.robust_accuracy == pytest.approx(fgsm.robust_accuracy[1])


def test_in_memory_errors() -> None:
    net, (x, y) = tiny_model(), batch(4)
    pgd = {"pgd": PGD(eps=0.1, steps=1)}
    with pytest.raises(ValueError, match="'none' is reserved"):
        evaluate_robustness(net, x, y, pgd, defenses={"none": net})
    with pytest.raises(TypeError, match=r"defenses\['f'\] must be a torch.nn.Module"):
        evaluate_robustness(net, x, y, pgd, defenses={"f": lambda t: t})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"attacks\['pgd'\] must be a bandguard Attack"):
        evaluate_robustness(net, x, y, {"pgd": lambda m, a, b: a})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="attacks must be a non-empty mapping"):
        evaluate_robustness(net, x, y, PGD(eps=0.1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        evaluate_robustness(lambda t: t, x, y, pgd)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        evaluate_robustness(net, x, y, pgd, batch_size=0)
    with pytest.raises(ValueError, match="y has 3 labels but x has 4 images"):
        evaluate_robustness(net, x, y[:3], pgd)
    with pytest.raises(ValueError, match="y holds class 7 but the model has 3 classes"):
        evaluate_robustness(net, x, torch.full((4,), 7), pgd)


@pytest.mark.slow
def test_same_seed_twice_is_bit_identical(checkpoint: Path, tmp_path: Path) -> None:
    first = run(small_spec(checkpoint, tmp_path / "a"))
    second = run(small_spec(checkpoint, tmp_path / "b"))
    assert first.rows == second.rows
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()
    for c1, c2 in zip(first.cells, second.cells):
        assert c1.key == c2.key and torch.equal(c1.robust, c2.robust) and torch.equal(c1.forwards, c2.forwards)


@pytest.mark.slow
def test_resume_after_interruption_gives_the_same_table(checkpoint: Path, tmp_path: Path) -> None:
    full = run(small_spec(checkpoint, tmp_path / "full"))
    spec = small_spec(checkpoint, tmp_path / "cut")
    with pytest.raises(Interrupted):
        run(spec, progress=stop_after(5))
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
    # It spends nothing where PGD broke the sample, except an example it found at the smaller eps,
    # carried (with its counts) to the larger one.
    assert (std.robust <= pgd.robust).all()
    carried = torch.zeros_like(pgd.robust[0])
    for e in range(2):
        assert (std.forwards[e, ~pgd.robust[e] & ~carried] == 0).all()
        carried = carried | (pgd.robust[e] & ~std.robust[e])
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
    chains = threat_chains({a.name: a.build() for a in spec.attacks}, (1, 28, 28))
    assert [names for _, names in chains] == [["pgd", "fgsm"], ["pgd-l2"]]
    assert [ball.label() for ball, _ in chains] == ["linf [0.1] on 1x28x28", "l2 [1] on 1x28x28"]


SQRT3 = 3 ** 0.5


def test_fourier_and_l2_pgd_at_the_same_number_are_two_threats_on_colour_images() -> None:
    """Fourier's eps is per channel: at eps 1 on 3 channels its whole-image norm reaches sqrt(3) > 1."""
    attacks = {"pgd-l2": PGD(eps=(0.5, 1.0), norm="l2", steps=2), "fourier": FourierAttack(eps=(0.5, 1.0))}
    chains = threat_chains(attacks, (3, 8, 8))
    assert [names for _, names in chains] == [["pgd-l2"], ["fourier"]]
    assert chains[1][0].norm.value == "l2/channel"
    # On one channel the two conventions coincide.
    assert [names for _, names in threat_chains(attacks, (1, 8, 8))] == [["pgd-l2", "fourier"]]
    # At eps and eps * sqrt(3) the Fourier ball lies in the PGD one: one cascade, one worst case.
    joined = {"pgd-l2": PGD(eps=(0.5 * SQRT3, SQRT3), norm="l2", steps=2), "fourier": FourierAttack(eps=(0.5, 1.0))}
    (ball, names), = threat_chains(joined, (3, 8, 8))
    assert names == ["pgd-l2", "fourier"] and ball.epsilons == (0.5 * SQRT3, SQRT3)
    # Just below eps * sqrt(3) it no longer fits.
    apart = {"pgd-l2": PGD(eps=(0.5 * SQRT3, 0.99 * SQRT3), norm="l2", steps=2),
             "fourier": FourierAttack(eps=(0.5, 1.0))}
    assert len(threat_chains(apart, (3, 8, 8))) == 2


@pytest.mark.parametrize("pgd_eps", [(0.5, 1.0), (0.5 * SQRT3, SQRT3)], ids=["same-number", "times-sqrt3"])
def test_every_perturbation_of_a_worst_case_row_lies_in_its_ball(pgd_eps: tuple[float, float]) -> None:
    net = tiny_model(c=3, classes=4)
    x, _ = batch(24, c=3, classes=4)
    x = 0.25 + 0.5 * x  # away from the bounds, so clipping does not shrink the Fourier steps
    y = net(x).argmax(1)
    # A weak PGD first, so the Fourier attack still has samples to attack after it.
    attacks = {"pgd-l2": PGD(eps=pgd_eps, norm="l2", steps=1, step_size=0.02, random_start=False),
               "fourier": FourierAttack(eps=(0.5, 1.0), max_queries=20)}
    result = evaluate_robustness(net, x, y, attacks, scale_invariant=False)
    cells = {c.attack: c for c in result.cells if c.mode != "clean"}
    worst = [r for r in result.rows if r.attack == WORST]
    fourier = cells["fourier"]
    if pgd_eps == (0.5, 1.0):
        assert worst == []  # two threat models: no row mixes them
        assert fourier.ball == "l2/channel" and fourier.ball_eps == (0.5, 1.0)
        # Its cells measure per channel; as a whole image its perturbations leave the PGD ball of
        # the same number (up to sqrt(3) times it), which is why no worst case holds both.
        assert float(fourier.norms.max()) == pytest.approx(1.0, rel=1e-5)
        whole = attacks["fourier"](net, x, y)[1].norms
        assert float(whole.max()) > 1.5
    else:
        assert [(r.norm, r.eps) for r in worst] == [("l2", 0.5 * SQRT3), ("l2", SQRT3)]
        assert {c.ball for c in cells.values()} == {"l2"}
        for r in result.rows:
            if r.attack == "fourier":
                assert r.norm == "l2/channel"  # the table names the per-channel convention
    for c in cells.values():  # norms are of x_adv - x, measured in the cell's ball
        bound = torch.tensor(c.ball_eps)[:, None] * (1 + 1e-5)
        assert (c.norms <= bound).all(), (c.attack, c.norms.max(), c.ball_eps)
    assert int(fourier.forwards.sum()) > 0 and float(fourier.norms.max()) > 0


def test_batch_for_a_costly_defense_follows_the_budget(mnist_model: torch.nn.Module) -> None:
    assert batch_size_for(256, 700, mnist_model) == 256
    pa = build_defense("post_average:3.0,K=15", mnist_model)
    assert batch_size_for(256, 700, pa) == 700 // 91


# Peak resident memory of this process's own address space (VmHWM). Not ru_maxrss: Linux keeps
# that across fork + exec, so a child of a large pytest process starts at the parent's size.
_MEMORY_SCRIPT = """
import re, sys, torch
from torch import nn
from bandguard.attacks.threat import ThreatModel
from bandguard.bench.engine import Context, _attack_batches
from bandguard.data.stream import TensorSamples
from bandguard.defenses import build_defense
from bandguard.attacks import PGD
torch.manual_seed(0)
n = int(sys.argv[1])
net = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 28 * 28, 10))
defense = build_defense("post_average:3.0,K=15", net)
x, y = torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,))
ctx = Context(data=TensorSamples(x, y), device=torch.device("cpu"), batch_size=256, sample_budget=2048, eot=1,
              cascade=True, seed=0)
def peak_kib():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1))
before = peak_kib()
attack = PGD(eps=(0.1,), steps=1, eot_samples=1, random_start=False)
_attack_batches(ctx, "k", attack, defense, torch.ones(1, n, dtype=torch.bool), ctx.batch_size_for(defense), "",
               ThreatModel("linf", (0.1,), (1, 28, 28)))
print((peak_kib() - before) // 1024)
"""


def _peak_mib(n: int) -> int:
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(n)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    return int(out.stdout.split()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_peak_memory_does_not_grow_with_n() -> None:
    # 91 forwards per image, each with ~400 KB of activations kept for the backward pass:
    # unchunked, 256 images would hold ~9 GB of graph (8x the 32-image peak); chunked to the
    # budget the peak is that of one 22-image chunk whatever n is (measured: 506 vs 570 MiB).
    small, large = _peak_mib(32), _peak_mib(256)
    assert small > 0 and large < 1.25 * small, (small, large)


@pytest.mark.gpu
def test_cuda_grid_matches_cpu_within_one_point(checkpoint: Path, tmp_path: Path) -> None:
    cpu = run(small_spec(checkpoint, tmp_path / "cpu", n=64, batch_size=32, device="cpu"))
    for amp in ("off", "bf16"):
        gpu = run(small_spec(checkpoint, tmp_path / f"cuda-{amp}", n=64, batch_size=32, device="cuda", amp=amp))
        assert len(gpu.rows) == len(cpu.rows)
        for a, b in zip(cpu.rows, gpu.rows):
            assert (a.defense, a.mode, a.attack, a.eps) == (b.defense, b.mode, b.attack, b.eps)
            assert abs(a.robust_accuracy - b.robust_accuracy) <= 0.01 + 1 / 64, (a, b)


def test_a_scale_invariant_attack_joins_each_cross_entropy_group_only() -> None:
    from bandguard.attacks import APGD, Square
    from bandguard.bench.engine import Entry, scale_invariant_entries

    entries = [Entry("pgd", PGD(eps=0.1, steps=40), None), Entry("sq", Square(eps=0.1), None),
               Entry("l2", PGD(eps=1.0, norm="l2", loss="margin"), None),
               Entry("l2-big", PGD(eps=2.0, norm="l2", steps=5), None)]
    out = scale_invariant_entries(entries, (1, 8, 8), 10, seed=0)
    added = out[len(entries):]
    # The Linf group ascends cross-entropy only (Square takes no gradients): APGD-DLR at its ball and
    # its largest steps; the margin group gets nothing; the second L2 group its own, uniquely named.
    assert [e.name for e in added] == ["apgd-dlr", "apgd-dlr-2"]
    first, second = (e.attack for e in added)
    assert isinstance(first, APGD) and first.loss.value == "dlr" and first.epsilons == (0.1,) and first.steps == 40
    assert second.norm.value == "l2" and second.epsilons == (2.0,) and second.steps == 25  # at least MIN_STEPS
    # Two classes: DLR needs three, so margin PGD stands in.
    two = scale_invariant_entries(entries[:1], (1, 8, 8), 2, seed=0)[-1].attack
    assert isinstance(two, PGD) and two.loss.value == "margin"


def test_a_tiny_memory_budget_shrinks_the_batches_and_changes_no_outcome(caplog: pytest.LogCaptureFixture) -> None:
    net, (x, y) = tiny_model(), batch(12)
    defenses = {"lowpass:3": build_defense("lowpass:3", net), "pa": build_defense("post_average:0.3,K=1,seed=0", net)}
    attacks = {"pgd": PGD(eps=(0.05, 0.1), steps=3, random_start=False), "fgsm": FGSM(eps=(0.05, 0.1))}
    kw = {"defenses": defenses, "batch_size": 8, "scale_invariant": False, "eot": 1}
    big = evaluate_robustness(net, x, y, attacks, memory="1GiB", **kw)
    with caplog.at_level("INFO", logger="bandguard.bench.engine"):
        tiny = evaluate_robustness(net, x, y, attacks, memory=1, **kw)
    shrunk = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("none: 1 images per attack call instead of 8") for m in shrunk), shrunk
    assert any(m.startswith("lowpass:3: 1 images per attack call instead of 8") for m in shrunk), shrunk
    cells = {(c.defense, c.mode, c.attack): c for c in big.cells}
    for c in tiny.cells:  # one image per call: the deterministic cells' outcomes are the same
        if c.defense != "pa":
            assert torch.equal(c.robust, cells[(c.defense, c.mode, c.attack)].robust), (c.defense, c.mode)
            assert torch.equal(c.norms, cells[(c.defense, c.mode, c.attack)].norms)
    # The batches fix a randomized defense's draws: a shrunk cell has its own key, never another's;
    # an unshrunk one keeps the key it had before budgets existed (stores stay valid).
    assert {c.key for c in tiny.cells}.isdisjoint(c.key for c in big.cells)
    assert [c.key for c in big.cells] == [c.key for c in evaluate_robustness(net, x, y, attacks, **kw).cells]
    assert all(c.robust.shape == (2, 12) for c in tiny.cells if c.mode != "clean")


def test_memory_in_the_spec(checkpoint: Path, tmp_path: Path) -> None:
    from bandguard.bench import SpecError

    assert small_spec(checkpoint, tmp_path, memory="4GiB").memory == "4GiB"
    assert small_spec(checkpoint, tmp_path).memory is None
    with pytest.raises(SpecError, match=r"memory: unknown unit 'gigs'"):
        small_spec(checkpoint, tmp_path, memory="4 gigs")
    with pytest.raises(SpecError, match=r"memory must be a size"):
        small_spec(checkpoint, tmp_path, memory=[4])
