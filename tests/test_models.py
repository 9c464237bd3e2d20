"""Reference nets, the Normalize layer, the model registry and safe checkpoints."""

from __future__ import annotations

import collections
import gzip

import pytest
import torch
from torch import nn

from bandguard._registry import Registry
from bandguard.models import (
    MODELS,
    Normalize,
    create_model,
    load_checkpoint,
    load_model,
    model_info,
    save_checkpoint,
)


def test_normalize_matches_the_formula() -> None:
    layer = Normalize((0.5, 0.25), (0.5, 2.0))
    x = torch.rand(3, 2, 4, 4)
    expected = torch.stack([(x[:, 0] - 0.5) / 0.5, (x[:, 1] - 0.25) / 2.0], dim=1)
    torch.testing.assert_close(layer(x), expected)
    assert "mean=(0.5, 0.25)" in repr(layer)


def test_normalize_refuses_bad_std() -> None:
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="same non-zero length"):
        Normalize((0.5, 0.5), (1.0,))


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_net_maps_its_input_to_ten_logits(name: str) -> None:
    info = model_info(name)
    model = create_model(name).eval()
    assert isinstance(model[0], Normalize)
    out = model(torch.rand(2, *info.input_shape))
    assert out.shape == (2, info.num_classes)
    assert torch.isfinite(out).all()


def test_registry_refuses_duplicates_and_names_unknown_entries() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a")(2)
    with pytest.raises(ValueError, match="unknown widget 'b'; expected one of a"):
        reg.get("b")
    with pytest.raises(ValueError, match="unknown model 'resnet9000'"):
        create_model("resnet9000")


def _trained_like(name: str) -> nn.Module:
    torch.manual_seed(1)
    model = create_model(name)
    # Non-default BatchNorm statistics, so a round trip that lost buffers would show.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model.eval()


def test_checkpoint_round_trip_is_bit_identical(tmp_path) -> None:
    model = _trained_like("mnist_cnn")
    path = save_checkpoint(tmp_path / "m.pt", model, arch="mnist_cnn", dataset="mnist",
                           test_accuracy=0.99, recipe={"epochs": 1, "lr": 0.05})
    ckpt = load_checkpoint(path)
    assert ckpt.meta["arch"] == "mnist_cnn" and ckpt.meta["dataset"] == "mnist"
    assert ckpt.meta["bounds"] == [0.0, 1.0] and ckpt.meta["test_accuracy"] == 0.99
    assert ckpt.meta["mean"] == pytest.approx([0.1307]) and ckpt.meta["recipe"]["epochs"] == 1
    assert ckpt.meta["bandguard_version"]
    original = model.state_dict()
    assert ckpt.state_dict.keys() == original.keys()
    assert all(torch.equal(ckpt.state_dict[k], original[k]) for k in original)
    x = torch.rand(5, 1, 28, 28)
    for rebuilt in (ckpt.build(), load_model(str(path)), load_model(f"mnist_cnn:{path}")):
        assert not rebuilt.training
        assert torch.equal(rebuilt(x), model(x))


def test_load_model_from_arch_name_and_entry_point() -> None:
    assert isinstance(load_model("cifar_small"), nn.Sequential)
    assert isinstance(load_model("torch.nn:Identity"), nn.Identity)
    with pytest.raises(ValueError, match="has no callable 'Nope'"):
        load_model("torch.nn:Nope")
    with pytest.raises(ValueError, match="returned int, expected an nn.Module"):
        load_model("os:getpid")


def test_checkpoint_of_the_wrong_arch_is_refused(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", create_model("mnist_cnn"), arch="mnist_cnn")
    with pytest.raises(ValueError, match="does not fit arch 'cifar_small'"):
        load_model(f"cifar_small:{path}")


class _Payload:  # any class outside the weights_only allow-list
    pass


def test_unsafe_checkpoint_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "meta": {"x": _Payload()}}, path)
    with pytest.raises(ValueError, match="unsafe or corrupt"):
        load_checkpoint(path)


def test_corrupt_and_missing_checkpoints_are_refused(tmp_path) -> None:
    good = save_checkpoint(tmp_path / "m.pt", create_model("mnist_cnn"), arch="mnist_cnn")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated\.pt.*(corrupt|unsafe)"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(gzip.compress(b"not a checkpoint"))
    with pytest.raises(ValueError, match="garbage.pt"):
        load_checkpoint(garbage)
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_checkpoint(tmp_path / "nothere.pt")
    not_tensors = tmp_path / "list.pt"
    torch.save(collections.OrderedDict(a=[1, 2]), not_tensors)
    with pytest.raises(ValueError, match="no state dict of tensors"):
        load_checkpoint(not_tensors)
