"""Models people use (bandguard.models): any state-dict checkpoint into a registered arch with any
number of classes, torchvision classifiers behind ImageNet normalization, RobustBench's own loader
reading a local model directory. All offline: weights are written here, never downloaded."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bandguard.bench import ModelSpec, SpecError, parse_spec
from bandguard.bench.loading import load_model as load_spec_model
from bandguard.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    _robustbench_loader,
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


def _robustbench_zoo() -> Any:
    """RobustBench's model table, imported through bandguard's loader (which stands PyPI's
    ``pyautoattack`` in for the ``autoattack`` robustbench 1.1.1 imports), or skip."""
    try:
        _robustbench_loader()
    except ImportError as err:
        pytest.skip(f"robustbench cannot be imported here ({err})")
    return importlib.import_module("robustbench.model_zoo")


def _write_robustbench_checkpoint(model_dir: Path) -> nn.Module:
    """Ding2020MMA (a WideResNet-28-4, 5.8 M parameters, RobustBench's smallest CIFAR-10 Linf entry)
    with random weights, saved where and as RobustBench saves it: ``{"state_dict": ...}`` with
    DataParallel's ``module.`` prefix at ``model_dir/cifar10/Linf/Ding2020MMA.pt``."""
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    zoo = _robustbench_zoo()
    torch.manual_seed(2)
    source = zoo.model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf]["Ding2020MMA"]["model"]().eval()
    folder = model_dir / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}},
               folder / "Ding2020MMA.pt")
    return source


def test_robustbench_loader_reads_robustbenchs_own_layout_offline(tmp_path: Path) -> None:
    _robustbench_zoo()
    source = _write_robustbench_checkpoint(tmp_path)
    model = robustbench_model("Ding2020MMA", dataset="cifar10", threat_model="Linf", model_dir=tmp_path)
    assert type(model) is type(source) and not model.training
    assert _same_outputs(model, source, torch.rand(2, 3, 32, 32))
    assert "autoattack" not in sys.modules or importlib.util.find_spec("autoattack") is not None  # restored
    with pytest.raises(FileNotFoundError, match="never downloads"):
        robustbench_model("Wong2020Fast", model_dir=tmp_path)
    # The same through a bench spec: robustbench = "Name", its data set the spec's, the folder beside it.
    spec = parse_spec({"dataset": "cifar10", "models": [{"robustbench": "Ding2020MMA", "model_dir": "."}],
                       "attacks": [{"attack": "fgsm", "eps": [0.01]}]}, base_dir=tmp_path)
    assert spec.models[0] == ModelSpec(name="Ding2020MMA", robustbench="Ding2020MMA", dataset="cifar10",
                                       model_dir=str(tmp_path / "."))
    assert _same_outputs(load_spec_model(spec.models[0], torch.device("cpu")), source, torch.rand(2, 3, 32, 32))
    assert spec.models[0].identity()["weights"] is not None  # the cell keys follow the weights


def test_robustbench_loader_without_robustbench_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "robustbench.utils", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"bandguard\[robustbench\]"):
        robustbench_model("Standard")


def test_bench_specs_build_torchvision_code_and_any_checkpoint_models(tmp_path: Path) -> None:
    torch.manual_seed(3)
    cpu, x = torch.device("cpu"), torch.rand(2, 3, 32, 32)
    tv = torchvision_model("resnet18", num_classes=7)
    torch.save(tv[1].state_dict(), tmp_path / "r18.pth")
    net = create_model("cifar_small", num_classes=100)
    torch.save({"model": {f"module.{k}": v for k, v in net[1].state_dict().items()}}, tmp_path / "c100.pt")
    spec = parse_spec({"dataset": "cifar10", "attacks": [{"attack": "fgsm", "eps": [0.01]}], "models": [
        {"name": "tv", "torchvision": "resnet18", "num_classes": 7, "checkpoint": "r18.pth"},
        {"name": "any", "checkpoint": "c100.pt", "arch": "cifar_small", "num_classes": 100},
        {"name": "code", "code": "bandguard.models:create_model",
         "kwargs": {"name": "cifar_small", "num_classes": 100}, "checkpoint": "c100.pt"},
    ]}, base_dir=tmp_path)
    tv_spec, any_spec, code_spec = spec.models
    assert code_spec.kwargs == (("name", "cifar_small"), ("num_classes", 100))
    assert _same_outputs(load_spec_model(tv_spec, cpu), tv, x)
    assert isinstance(load_spec_model(tv_spec, cpu)[0], Normalize)  # inputs in [0, 1], normalization inside
    assert _same_outputs(load_spec_model(any_spec, cpu), net, x)
    assert _same_outputs(load_spec_model(code_spec, cpu), net, x)
    # Unset new fields stay out of the identity, so the cell keys of existing stores stay valid.
    assert set(ModelSpec(name="m", reference="mnist_cnn").identity()) == {"name", "reference", "checkpoint", "arch",
                                                                          "code"}


@pytest.mark.parametrize(("fields", "message"), [
    ({"torchvision": "resnet51"}, r"^torchvision: unknown torchvision model 'resnet51'"),
    ({"torchvision": "resnet18", "kwargs": {"a": 1}}, r"^kwargs: not a setting of a 'torchvision' model"),
    ({"code": "m:f", "num_classes": 3}, r"^num_classes: not a setting of a 'code' model"),
    ({"checkpoint": "x.pt", "num_classes": 3}, r"^num_classes: a checkpoint with num_classes needs 'arch'"),
    ({"robustbench": "Standard"}, r"^dataset: a robustbench model needs its data set"),
    ({"robustbench": "Standard", "dataset": "mnist"}, r"^dataset: expected one of 'cifar10'"),
    ({"robustbench": "Standard", "dataset": "cifar10", "threat_model": "linf"},
     r"^threat_model: expected one of 'Linf', 'L2', 'corruptions', got 'linf'"),
    ({"robustbench": "Standard", "torchvision": "resnet18"}, r"^expected exactly one of reference, robustbench"),
    ({"torchvision": "resnet18", "num_classes": 0}, r"^num_classes: expected an integer >= 1"),
    ({"code": "m:f", "kwargs": (("1x", 2),)}, r"^kwargs: expected a table of keyword arguments"),
])
def test_model_spec_errors_name_the_field(fields: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        ModelSpec(name="m", **fields)


def test_load_weights_fills_any_module_in_place(tmp_path: Path) -> None:
    src, dst = nn.Linear(3, 2), nn.Linear(3, 2)
    torch.save({"model_state_dict": src.state_dict()}, tmp_path / "w.pt")
    assert load_weights(dst, tmp_path / "w.pt") is dst and torch.equal(dst.weight, src.weight)
