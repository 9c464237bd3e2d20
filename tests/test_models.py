"""Reference nets, the Normalize layer, the model registry and safe checkpoints."""

from __future__ import annotations

import collections
import gzip

import pytest
import torch
from torch import nn

import bandguard
from bandguard.models import (
    MODELS,
    Normalize,
    check_input_shape,
    create_model,
    load_checkpoint,
    load_model,
    model_from_code,
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
    assert ckpt.meta["bandguard_version"] == bandguard.__version__
    original = model.state_dict()
    assert ckpt.state_dict.keys() == original.keys()
    assert all(torch.equal(ckpt.state_dict[k], original[k]) for k in original)
    x = torch.rand(5, 1, 28, 28)
    for rebuilt in (ckpt.build(), load_model(str(path)), load_model(path), load_model(f"mnist_cnn:{path}"),
                    load_model(path, arch="mnist_cnn")):
        assert not rebuilt.training
        assert torch.equal(rebuilt(x), model(x))


def test_load_model_never_runs_code(tmp_path, monkeypatch) -> None:
    # A module in the working directory that would leave a trace if it were ever imported.
    (tmp_path / "evilmod.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\ndef build(): pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("evilmod:build", "os:getcwd", "os:abort"):
        with pytest.raises(FileNotFoundError, match=f"no such checkpoint '{spec}'.*model_from_code"):
            load_model(spec)
    assert not (tmp_path / "ran").exists()
    with pytest.raises(FileNotFoundError, match=r"^no such checkpoint 'model:v2.pt'$"):
        load_model("model:v2.pt")
    with pytest.raises(FileNotFoundError, match="'cifar_small' is an architecture name.*create_model"):
        load_model("cifar_small")
    with pytest.raises(ValueError, match="is a folder"):
        load_model(tmp_path)
    with pytest.raises(TypeError, match=r"path must be a path \(str or os.PathLike\), got int"):
        load_model(3)  # type: ignore[arg-type]


def test_model_from_code_is_explicit_and_reports_plainly(tmp_path, monkeypatch) -> None:
    layer = model_from_code("torch.nn:Linear", in_features=2, out_features=3)
    assert isinstance(layer, nn.Linear) and layer.out_features == 3 and not layer.training
    with pytest.raises(ValueError, match="no module named 'nosuchpkg'"):
        model_from_code("nosuchpkg.nets:build")
    with pytest.raises(ValueError, match="module 'torch.nn' has no attribute 'Nope'"):
        model_from_code("torch.nn:Nope")
    with pytest.raises(TypeError, match="'sep' is a str, not a callable"):
        model_from_code("os:sep")
    with pytest.raises(TypeError, match="returned int, expected an nn.Module"):
        model_from_code("os:getpid")
    for bad in ("os.path.join", "os:path.join", "a:b; import os", "/tmp/x.py:build", ":f", "m:"):
        with pytest.raises(ValueError, match="form 'package.module:function'"):
            model_from_code(bad)
    # A module beside the user's code is found when its folder is on the path (as with `python -m`).
    (tmp_path / "mynets.py").write_text("import torch\ndef build(width=4):\n    return torch.nn.Linear(width, 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert model_from_code("mynets:build", width=5).in_features == 5


def test_input_shape_of_an_arch_is_checked_against_the_data() -> None:
    check_input_shape("mnist_cnn", (1, 28, 28))
    check_input_shape("cifar_small", torch.Size([3, 32, 32]))
    with pytest.raises(ValueError, match=r"arch .cifar_small. takes 3x32x32 .* has 1x28x28.*mnist_cnn \(1x28x28\)"):
        check_input_shape("cifar_small", (1, 28, 28), source="data set 'mnist'")
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        check_input_shape("nope", (1, 28, 28))


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


# --------------------------------------------------------------------------- cifar_fast


def test_patch_whitening_whitens_the_patches_it_was_fitted_on() -> None:
    """After fit, the first half of the channels has covariance diag(l / (l + eps)) over the patches
    (eigenvalues l of the patch covariance); the second half is its negative."""
    from bandguard.models import PatchWhitening

    g = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=g)
    x = torch.einsum("dc,nchw->ndhw", mix, torch.randn(64, 3, 12, 12, generator=g))  # correlated channels
    layer = PatchWhitening(3, 2, eps=1e-3)
    assert not bool(layer.fitted) and [n for n, _ in layer.named_parameters()] == ["bias"]
    layer.fit(x)
    out = layer(x)  # [64, 24, 11, 11]
    assert out.shape == (64, 24, 11, 11) and bool(layer.fitted)
    torch.testing.assert_close(out[:, 12:], -out[:, :12])
    feats = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = feats.T @ feats / len(feats)
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    eig = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).flip(0)
    torch.testing.assert_close(cov, torch.diag(eig / (eig + 1e-3)), atol=2e-4, rtol=1e-3)


def test_patch_whitening_stays_float32_under_bf16_autocast() -> None:
    """The whitening filters amplify the smallest-eigenvalue patch components by up to
    1/sqrt(eps); under bf16 autocast the layer must still compute in float32 (and float64 for
    float64 inputs), or its high-frequency channels carry percent-level rounding noise."""
    from bandguard.models import PatchWhitening

    g = torch.Generator().manual_seed(1)
    smooth = torch.nn.functional.interpolate(torch.rand(16, 3, 4, 4, generator=g), size=16, mode="bilinear")
    x = smooth + 0.005 * torch.randn(16, 3, 16, 16, generator=g)  # natural images: little high frequency
    layer = PatchWhitening(3, 2, eps=5e-4)
    layer.fit(x)
    exact = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = layer(x)
        rounded = layer(x.bfloat16().float())  # what a bf16 conv would have seen
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, exact)
    worst = ((rounded - exact).pow(2).mean((0, 2, 3)).sqrt() / exact.std((0, 2, 3))).max()
    assert worst > 0.01  # the rounding this guards against is not negligible here
    assert layer.double()(x.double()).dtype == torch.float64


def test_fit_whitening_sees_the_normalized_images_and_runs_once() -> None:
    from bandguard.models import PatchWhitening, fit_whitening

    torch.manual_seed(0)
    net = create_model("cifar_fast")
    x = torch.rand(32, 3, 32, 32)
    assert fit_whitening(net, x) == 1 and fit_whitening(net, x) == 0  # fitted layers are left alone
    direct = PatchWhitening(3, 2)
    direct.fit(net[0](x))  # net[0] is the Normalize layer
    whitening = next(m for m in net.modules() if isinstance(m, PatchWhitening))
    torch.testing.assert_close(whitening.weight, direct.weight)
    assert fit_whitening(create_model("cifar_small"), x) == 0


def test_cifar_fast_shape_and_what_trains() -> None:
    """airbench's class: about 2 M parameters, frozen whitening filters and BatchNorm scales,
    identity-initialised convs; kernel smoothing's first conv is the first trainable one."""
    from bandguard.defenses._layers import select_convs

    torch.manual_seed(0)
    net = create_model("cifar_fast")
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert 1.9e6 < trainable < 2.1e6
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6 and all(not m.weight.requires_grad and m.bias.requires_grad for m in bns)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    first = convs[0]
    assert first.weight.shape == (64, 24, 3, 3)
    eye = torch.zeros(24, 24, 3, 3)
    eye[torch.arange(24), torch.arange(24), 1, 1] = 1
    assert torch.equal(first.weight[:24].detach(), eye)
    assert [m for _, m in select_convs(net, "first")] == [first]
