"""The command line: number parsing and clean errors (the demo and bench: test_bench_cli.py)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bandguard.cli import main, parse_number, parse_numbers

_REPO = str(Path(__file__).resolve().parents[1])


def test_numbers_parse_like_papers_write_them() -> None:
    assert parse_number("8/255") == pytest.approx(8 / 255)
    assert parse_numbers("0.1, 0.2,8/255") == pytest.approx([0.1, 0.2, 8 / 255])
    with pytest.raises(argparse.ArgumentTypeError, match="expected a number like 0.03 or 8/255, got 'x'"):
        parse_number("x")


def test_errors_are_reported_without_a_traceback(tmp_path, capsys) -> None:
    code = main(["attack", "--model", str(tmp_path / "missing.pt"), "--dataset", "mnist", "--eps", "0.1", "-n", "8"])
    assert code == 2
    assert "missing.pt" in capsys.readouterr().err


def test_python_dash_m_and_help(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "train", "attack", "heatmap", "spectrum"):
        assert command in out


# --------------------------------------------------------------------------- errors

_NETS = '''
import torch
from torch import nn


def linear_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def softmax_net():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(dim=1))


def broken():
    raise RuntimeError("weights server unreachable")


def buggy():
    return None.forward
'''


@pytest.fixture
def nets(tmp_path, monkeypatch) -> str:
    (tmp_path / "clinets.py").write_text(_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "clinets"


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    # The one-line note about the bundled data sample (offline runs) is not part of the error.
    lines = [line for line in err.splitlines() if line.strip() and ": note: " not in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bandguard {command}: error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("argv", "says"), [
    (["train", "--lr", "0", "--out", "m.pt"], "argument --lr: expected a number > 0, got '0'"),
    (["train", "--epochs", "0", "--out", "m.pt"], "argument --epochs: expected an integer >= 1"),
    (["train", "--seed", "1.5", "--out", "m.pt"], "argument --seed: expected a seed"),
    (["train", "--seed", str(2**70), "--out", "m.pt"], "argument --seed: expected a seed"),
    (["attack", "--model", "m.pt", "--eps", "-0.1"], "argument --eps: expected a number >= 0"),
    (["attack", "--model", "m.pt", "--eps", "0.1,nan"], "argument --eps: expected a number >= 0"),
    (["attack", "--model", "m.pt", "--eps", "0.1", "--steps", "0"], "argument --steps: expected an integer >= 1"),
    (["attack", "--model", "m.pt", "--eps", "0.1", "-n", "-3"], "argument -n: expected an integer >= 1"),
    (["attack", "--eps", "0.1"], "one of the arguments --model --model-code --robustbench --torchvision is required"),
    (["attack", "--model", "a.pt", "--model-code", "m:f", "--eps", "0.1"], "not allowed with argument"),
    (["heatmap", "--model", "m.pt", "--out", "hm.json"], "argument --out: expected a .png file"),
    (["spectrum", "--model", "m.pt", "--eps", "0.1", "--out", "s.json"], "argument --out: expected a .png file"),
    (["heatmap", "--model", "m.pt", "--eps", "inf"], "argument --eps: expected a number >= 0"),
    (["nosuchcommand"], "argument command: invalid choice"),
    (["attack", "--model", "m.pt", "--eps", "0.1", "--memory", "4gigs"],
     "argument --memory: expected a size such as 4GiB, 512MiB or 2GB, got '4gigs'"),
    (["bench", "s.toml", "--memory", "0"], "argument --memory: expected a size"),
    (["attack", "--robustbench", "Standard", "--eps", "0.1"], "--dataset is needed"),
    (["attack", "--model", "m.pt", "--weights", "w.pt", "--dataset", "mnist", "--eps", "0.1"],
     "--num-classes and --weights go with --torchvision, not --model"),
])
def test_usage_errors_are_one_line_and_exit_2_before_any_work(argv, says, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and says in line and "usage:" not in line
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_outputs_are_checked_before_the_work(tmp_path, capsys) -> None:
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "file").write_text("x")
    cases = [
        (["attack", "--model", "m.pt", "--eps", "0.1", "--out", str(tmp_path / "folder.json")], "is a folder"),
        (["attack", "--model", "m.pt", "--eps", "0.1", "--out", str(tmp_path / "file" / "r.json")], "is a file"),
        (["heatmap", "--model", "m.pt", "--out", str(tmp_path / "file" / "h.png")], "is a file"),
        (["demo", "--out", str(tmp_path / "file")], "is a file; expected a folder"),
        (["train", "--out", str(tmp_path / "folder.json")], "is a folder"),
    ]
    for argv, says in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "argument --out" in err and says in err, err


def test_a_module_spec_given_as_model_is_never_run(tmp_path, monkeypatch) -> None:
    # The reported crash: `--model os:abort` used to import os and call abort (SIGABRT).
    (tmp_path / "evilmod.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\ndef build(): pass\n")
    for spec in ("os:abort", "evilmod:build"):
        proc = subprocess.run([sys.executable, "-m", "bandguard", "attack", "--model", spec, "--dataset", "mnist",
                               "--eps", "0.1", "-n", "4", "--device", "cpu"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": _REPO})
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"bandguard attack: error: --model: no such checkpoint '{spec}'; a checkpoint path is never run as "
            f"code: to build a model from Python code use model_from_code('{spec}') (CLI: --model-code {spec})"
        ]
    assert not (tmp_path / "ran").exists()


def test_model_code_runs_only_when_asked_and_reports_plainly(nets, capsys) -> None:
    base = ["attack", "--dataset", "mnist", "--eps", "0.1", "-n", "4", "--device", "cpu"]
    assert main([*base, "--model-code", "nosuchpkg.nets:build"]) == 2
    line = _one_line_error(capsys, "attack")
    assert "--model-code: target 'nosuchpkg.nets:build': no module named 'nosuchpkg'" in line
    assert main([*base, "--model-code", f"{nets}:nope"]) == 2
    assert f"module '{nets}' has no attribute 'nope'" in _one_line_error(capsys, "attack")
    assert main([*base, "--model-code", "not a target"]) == 2
    assert "form 'package.module:function'" in _one_line_error(capsys, "attack")


def test_a_softmax_model_is_refused_before_the_attack(nets, mnist_env, monkeypatch, capsys) -> None:
    code = main(["attack", "--model-code", f"{nets}:softmax_net", "--dataset", "mnist", "--eps", "0.1", "-n", "4",
                 "--device", "cpu"])
    assert code == 2
    assert "--model output looks like probabilities" in _one_line_error(capsys, "attack")


def test_runtime_errors_exit_1_and_debug_shows_the_traceback(nets, capsys) -> None:
    base = ["attack", "--dataset", "mnist", "--eps", "0.1", "-n", "4", "--device", "cpu"]
    assert main([*base, "--model-code", f"{nets}:broken"]) == 1
    assert "RuntimeError: weights server unreachable" in _one_line_error(capsys, "attack")
    assert main([*base, "--model-code", f"{nets}:buggy"]) == 1
    line = _one_line_error(capsys, "attack")
    assert "internal error (AttributeError" in line and "--debug" in line
    with pytest.raises(RuntimeError, match="weights server unreachable"):
        main(["--debug", *base, "--model-code", f"{nets}:broken"])
    with pytest.raises(RuntimeError, match="weights server unreachable"):
        main([*base, "--debug", "--model-code", f"{nets}:broken"])  # also after the command


def test_unknown_or_missing_devices_are_usage_errors(tmp_path, capsys) -> None:
    base = ["attack", "--model", str(tmp_path / "m.pt"), "--dataset", "mnist", "--eps", "0.1"]
    assert main([*base, "--device", "gpu"]) == 2
    assert "unknown --device 'gpu'" in _one_line_error(capsys, "attack")
    if not torch.cuda.is_available():
        assert main([*base, "--device", "cuda"]) == 2
        assert "--device 'cuda' asks for a GPU but CUDA is not available" in _one_line_error(capsys, "attack")


def test_train_refuses_an_arch_made_for_other_images(tmp_path, mnist_env, monkeypatch, capsys) -> None:
    code = main(["train", "--arch", "cifar_small", "--dataset", "mnist", "--out", str(tmp_path / "m.pt")])
    assert code == 2
    line = _one_line_error(capsys, "train")
    assert "arch 'cifar_small' takes 3x32x32 images" in line and "--dataset 'mnist' has 1x28x28" in line
    assert not (tmp_path / "m.pt").exists()


def test_attack_standard_runs_the_ensemble(nets, data_root, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("BANDGUARD_DATA", str(data_root))
    out = tmp_path / "std.json"
    code = main(["attack", "--model-code", f"{nets}:linear_net", "--dataset", "mnist", "--attack", "standard",
                 "--eps", "0.05,0.3", "--steps", "2", "--max-queries", "4", "-n", "8", "--device", "cpu",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Ensemble(" in printed and "Square(" in printed and "queries=4" in printed
    rows = json.loads(out.read_text())["rows"]  # the harness's table: one row per eps
    robust = [r["robust_accuracy"] for r in rows]
    assert [(r["attack"], r["eps"]) for r in rows] == [("standard", 0.05), ("standard", 0.3)]
    assert robust[1] <= robust[0] <= rows[0]["clean_accuracy"]
    assert robust[1] == 0.0  # Linf 0.3 on an untrained linear net: every image falls


def test_attack_prints_its_table_and_with_defenses_the_harness_table(nets, mnist_env, tmp_path, capsys) -> None:
    base = ["attack", "--model-code", f"{nets}:linear_net", "--dataset", "mnist", "--attack", "fgsm",
            "--eps", "0,0.3", "-n", "100", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "bare.json")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[2].split() == ["eps", "robust", "acc", "success", "mean", "linf", "queries/img"]
    clean = float(printed[1].removeprefix("clean accuracy ").rstrip("%")) / 100
    eps0, eps3 = printed[3].split(), printed[4].split()
    # eps 0 moves nothing: robust accuracy is the clean one and the mean perturbation is 0. At 0.3
    # FGSM breaks every image; only those the net got right are attacked, each moved by Linf 0.3.
    assert clean > 0 and float(eps0[1].rstrip("%")) / 100 == pytest.approx(clean) and float(eps0[3]) == 0.0
    assert float(eps3[1].rstrip("%")) == 0.0 and float(eps3[3]) == pytest.approx(0.3 * clean, rel=1e-3)
    assert main([*base, "--defense", "lowpass:3", "--out", str(tmp_path / "lp.json")]) == 0
    assert f"| {nets}:linear_net | lowpass:3 | adaptive | fgsm | linf 0.3 |" in capsys.readouterr().out
    rows = json.loads((tmp_path / "lp.json").read_text())["rows"]
    assert {(r["defense"], r["mode"]) for r in rows} == {
        ("none", "white-box"), ("lowpass:3", "transfer"), ("lowpass:3", "adaptive")}
    assert {r["model"] for r in rows} == {f"{nets}:linear_net"}


def test_version_flag_prints_the_package_version(capsys) -> None:
    import bandguard

    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"bandguard {bandguard.__version__} (torch ")


def test_attack_on_a_torchvision_model_with_local_weights_and_a_memory_budget(data_root, tmp_path, monkeypatch,
                                                                              capsys) -> None:
    from bandguard.models import torchvision_model

    monkeypatch.setenv("BANDGUARD_DATA", str(data_root))
    torch.manual_seed(0)
    torch.save(torchvision_model("resnet18", num_classes=10)[1].state_dict(), tmp_path / "r18.pth")
    out = tmp_path / "tv.json"
    assert main(["attack", "--torchvision", "resnet18", "--num-classes", "10", "--weights", str(tmp_path / "r18.pth"),
                 "--dataset", "cifar10", "--attack", "fgsm", "--eps", "0.01", "-n", "3", "--memory", "20MiB",
                 "--device", "cpu", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["attack"], r["eps"]) for r in rows] == [("resnet18", "fgsm", 0.01)]


# --------------------------------------------------------------------------- issue 24: polish


def test_help_shows_the_defaults(capsys) -> None:
    assert main(["attack", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "test images (the first n) (default: 1000)" in out
    assert "(default: pgd)" in out and "--batch-size BATCH_SIZE (default: 256)" in out
    assert "(default: None)" not in out and "(default: False)" not in out
    assert main(["bench", "--help"]) == 0
    bench = " ".join(capsys.readouterr().out.split())
    assert "-n N override the spec's number of images" in bench


def test_eight_over_255_is_the_same_number_in_cli_toml_and_python() -> None:
    from bandguard.attacks import PGD, create_attack
    from bandguard.bench.spec import parse_spec
    from bandguard.defenses.spec import parse_value

    spec = parse_spec({"dataset": "mnist", "models": [{"reference": "mnist_cnn"}],
                       "attacks": [{"attack": "pgd", "eps": ["4/255", "8/255"]}, {"attack": "fgsm", "eps": "8/255"}]})
    cli = parse_number("8/255")
    assert cli == 8 / 255  # exactly, not approximately
    assert spec.attacks[0].eps == (4 / 255, cli) and spec.attacks[1].eps == (cli,)
    assert PGD(eps="8/255").eps == (cli,) == create_attack("pgd", eps=["8/255"]).eps
    assert parse_value("8/255") == cli


@pytest.mark.parametrize(("argv", "says"), [
    (["attack", "--attack", "pgdd", "--eps", "0.1"], "unknown attack 'pgdd' (did you mean 'pgd'?)"),
    (["attack", "--attack", "pgd", "--eps", "0.1", "--defense", "post_average:3,k=15"],
     "--defense: defense 'post_average' (spec 'post_average:3,k=15') takes no option 'k' (did you mean 'K'?)"),
    (["spectrum", "--attack", "pgd", "--eps", "0.1", "--compare", "MISSING"], "--compare: "),
])
def test_names_are_checked_before_the_model_or_any_data_loads(argv, says, tmp_path, capsys) -> None:
    # Neither the model file nor the data set exists: the name errors must come first.
    missing = str(tmp_path / "missing.pt")
    argv = [a if a != "MISSING" else str(tmp_path / "other.pt") for a in argv]
    assert main([*argv[:1], "--model", missing, "--dataset", str(tmp_path / "no-data"), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert says in err and "missing.pt" not in err and "no-data" not in err
    assert "__init__" not in err and "Settings" not in err


def test_the_sample_data_note_is_one_short_line_once_per_command(capsys) -> None:
    import warnings

    from bandguard.cli import _sample_data_note
    from bandguard.data import SampleDataWarning

    text = ("MNIST: no full copy found (looked in /a, /b/torchvision; download=False); using the sample bundled "
            "with bandguard (10,000 train / 2,000 test images). For the full set, set BANDGUARD_DATA (or root=) "
            "to a folder holding mnist.pkl.gz.")
    with warnings.catch_warnings():
        warnings.showwarning = _sample_data_note("heatmap", verbose=False)
        for _ in range(3):  # the train split, the test split, a second load
            warnings.warn(text, SampleDataWarning, stacklevel=1)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("bandguard heatmap: note: MNIST: no full copy found; using the sample")
    assert "looked in" not in err[0] and "Warning" not in err[0] and ".py:" not in err[0]
    with warnings.catch_warnings():
        warnings.showwarning = _sample_data_note("heatmap", verbose=True)
        warnings.warn(text, SampleDataWarning, stacklevel=1)
    assert "looked in /a, /b/torchvision" in capsys.readouterr().err  # -v keeps where it looked
