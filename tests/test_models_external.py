"""Models people use (bandguard.models): any state-dict checkpoint into a registered arch with any
number of classes, torchvision classifiers behind ImageNet normalization, RobustBench's own loader
reading a local model directory. All offline: weights are written here, never downloaded."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bandguard.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    create_model,
    load_pretrained,
    load_weights,
    robustbench_model,
    save_checkpoint,
    torchvision_model,
)


def _same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_any_state_dict_layout_loads_into_an_arch_with_num_classes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_model("cifar_small", num_classes=100)
    full, net = source.state_dict(), source[1].state_dict()
    layouts = {
        "bare.pt": net,  # the net alone, as papers and torchvision save it
        "dataparallel.pt": {f"module.{k}": v for k, v in full.items()},
        "trainer.pt": {"model": {f"_orig_mod.{k}": v for k, v in net.items()}, "epoch": 7},
        "lightning.pt": {"state_dict": net, "optimizer_states": []},
    }
    x = torch.rand(3, 3, 32, 32)
    for name, payload in layouts.items():
        torch.save(payload, tmp_path / name)
        model = load_pretrained("cifar_small", tmp_path / name, num_classes=100)
        assert not model.training and _same_outputs(model, source, x), name
        assert model(x).shape == (3, 100)
    save_checkpoint(tmp_path / "ours.pt", source, arch="cifar_small")
    assert _same_outputs(load_pretrained("cifar_small", tmp_path / "ours.pt", num_classes=100), source, x)
    assert load_pretrained("cifar_small", num_classes=7)(x).shape == (3, 7)  # fresh weights
    with pytest.raises(ValueError, match="size mismatch"):  # 100-class weights into a 10-class head
        load_pretrained("cifar_small", tmp_path / "bare.pt")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"does not fit .*missing keys \['0\.weight'"):
        load_pretrained("cifar_small", tmp_path / "other.pt")
    with pytest.raises(ValueError, match="unknown model 'vit'"):
        load_pretrained("vit")
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        load_pretrained("cifar_small", num_classes=0)


def test_torchvision_model_normalizes_inside_and_reads_a_local_weights_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = torchvision_model("resnet18", num_classes=5)
    assert isinstance(model[0], Normalize) and not model.training
    torch.testing.assert_close(model[0].mean.flatten(), torch.tensor(IMAGENET_MEAN))
    torch.testing.assert_close(model[0].std.flatten(), torch.tensor(IMAGENET_STD))
    torch.save(model[1].state_dict(), tmp_path / "resnet18.pth")  # torchvision's own format: the bare net
    loaded = torchvision_model("resnet18", num_classes=5, weights=tmp_path / "resnet18.pth")
    x = torch.rand(2, 3, 32, 32)
    assert _same_outputs(loaded, model, x)
    with torch.no_grad():  # inputs in [0, 1]: the normalization is the model's first step
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        expected = model[1]((x - mean) / std)
    torch.testing.assert_close(loaded(x), expected)
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet51'"):
        torchvision_model("resnet51")


def _import_robustbench(monkeypatch: pytest.MonkeyPatch) -> None:
    """Import robustbench or skip. robustbench 1.1.1 on PyPI imports ``autoattack``, which its PyPI
    dependency ships as ``pyautoattack``; the test aliases it (the loader never runs AutoAttack)."""
    try:
        importlib.import_module("robustbench.utils")
        return
    except ImportError as err:
        missing = err.name
    if missing != "autoattack" or importlib.util.find_spec("pyautoattack") is None:
        pytest.skip(f"robustbench cannot be imported here (missing {missing!r}); pip install 'bandguard[robustbench]'")
    for name in [m for m in sys.modules if m.startswith("robustbench")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "autoattack", importlib.import_module("pyautoattack"))
    monkeypatch.setitem(sys.modules, "autoattack.state", importlib.import_module("pyautoattack.state"))
    importlib.import_module("robustbench.utils")


def test_robustbench_loader_reads_robustbenchs_own_layout_offline(tmp_path: Path, monkeypatch) -> None:
    _import_robustbench(monkeypatch)
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    # Ding2020MMA: a WideResNet-28-4 (5.8 M parameters), RobustBench's smallest CIFAR-10 Linf entry.
    torch.manual_seed(2)
    source = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf]["Ding2020MMA"]["model"]().eval()
    folder = tmp_path / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    # RobustBench's checkpoint format: {"state_dict": ...} with DataParallel's "module." prefix.
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}},
               folder / "Ding2020MMA.pt")
    model = robustbench_model("Ding2020MMA", dataset="cifar10", threat_model="Linf", model_dir=tmp_path)
    assert type(model) is type(source) and not model.training
    assert _same_outputs(model, source, torch.rand(2, 3, 32, 32))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        robustbench_model("Wong2020Fast", model_dir=tmp_path)


def test_robustbench_loader_without_robustbench_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "robustbench.utils", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"bandguard\[robustbench\]"):
        robustbench_model("Standard")


def test_load_weights_fills_any_module_in_place(tmp_path: Path) -> None:
    src, dst = nn.Linear(3, 2), nn.Linear(3, 2)
    torch.save({"model_state_dict": src.state_dict()}, tmp_path / "w.pt")
    assert load_weights(dst, tmp_path / "w.pt") is dst and torch.equal(dst.weight, src.weight)
