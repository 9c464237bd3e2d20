"""Every bad input gets a clear error naming the argument; the valid forms a user tries work.

A table of rows ``(id, call, expected exception type, substring)``: the call must raise exactly
that type (or a subclass) and the message must contain the substring, which names the argument
and, where it helps, what was expected. Checks that need the model's output (labels in range,
logits rather than probabilities or tuples) are exercised through every entry point that runs a
model.

Sections: attacks, defenses, spectral functions, data, models, training, the command line; then
the valid inputs that used to be refused.
"""

from __future__ import annotations

import gzip
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from bandguard import attacks, defenses, spectral
from bandguard.bench import evaluate_robustness
from bandguard.cli import main
from bandguard.data import ImageDataset, load_dataset, make_loader
from bandguard.fourier import FrequencyFilter, frequency_filter
from bandguard.models import (
    Normalize,
    accuracy,
    check_input_shape,
    create_model,
    load_checkpoint,
    load_model,
    model_from_code,
    predict,
    save_checkpoint,
)
from bandguard.training import TrainConfig, evaluate, train

# --------------------------------------------------------------------------- tiny fixtures

N, C, H, W, K = 4, 1, 8, 8, 10


def _x(*shape: int) -> torch.Tensor:
    return torch.rand(*(shape or (N, C, H, W)), generator=torch.Generator().manual_seed(0))


def _y(value: int | None = None) -> torch.Tensor:
    return torch.full((N,), value, dtype=torch.long) if value is not None else torch.arange(N) % K


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, K))


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(C, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * H * W, K))


class _Tuple(nn.Module):  # logits plus features, as many research nets return
    def __init__(self) -> None:
        super().__init__()
        self.net = _linear()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x), x


def _softmax() -> nn.Module:
    return nn.Sequential(_linear(), nn.Softmax(dim=1))


def _vector() -> nn.Module:
    return nn.Sequential(_linear(), nn.Flatten(0))  # [N * K]: one long vector


def _nan() -> torch.Tensor:
    x = _x()
    x[0, 0, 0, 0] = float("nan")
    return x


def _cl() -> torch.Tensor:  # channels-last MNIST-like batch [N, H, W, 1]
    return torch.rand(N, 28, 28, 1)


Row = tuple[str, Callable[[], Any], type[BaseException], str]
ROWS: list[Any] = []


def row(id_: str, call: Callable[[], Any], error: type[BaseException], says: str) -> None:
    ROWS.append(pytest.param(call, error, says, id=id_))


# --------------------------------------------------------------------------- attacks

ATTACK_FUNCTIONS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "pgd": (attacks.pgd, {"steps": 1}),
    "fgsm": (attacks.fgsm, {}),
    "fgm": (attacks.fgm, {}),
    "fourier_attack": (attacks.fourier_attack, {"max_queries": 4}),
    "fourier_greedy": (attacks.fourier_greedy, {"max_queries": 4}),
}

for name, (fn, extra) in ATTACK_FUNCTIONS.items():
    def call(model: Any = None, x: Any = None, y: Any = None, fn: Any = fn, extra: Any = extra, **kw: Any) -> Any:
        return fn(_linear() if model is None else model, _x() if x is None else x, _y() if y is None else y,
                  **{"eps": 0.1, **extra, **kw})

    row(f"{name}-model-not-module", lambda call=call: call(model=lambda t: t), TypeError, "model must be",
        )
    row(f"{name}-x-channels-last", lambda call=call: call(x=_cl()), ValueError, "x looks channels-last")
    row(f"{name}-x-nan", lambda call=call: call(x=_nan()), ValueError, "x contains NaN")
    row(f"{name}-x-uint8", lambda call=call: call(x=torch.zeros(N, C, H, W, dtype=torch.uint8)), TypeError,
        "x must be a floating tensor")
    row(f"{name}-x-out-of-bounds", lambda call=call: call(x=_x() + 1), ValueError, "x must lie inside")
    row(f"{name}-y-float", lambda call=call: call(y=_y().float()), ValueError, "y must be an int64")
    row(f"{name}-y-wrong-length", lambda call=call: call(y=_y()[:2]), ValueError, "y has 2 labels")
    row(f"{name}-y-out-of-range", lambda call=call: call(y=_y(K)), ValueError, "y holds class 10",
        )
    row(f"{name}-target-out-of-range", lambda call=call: call(target=_y(K)), ValueError, "target holds class 10",
        )
    row(f"{name}-eps-negative", lambda call=call: call(eps=-0.1), ValueError, "eps must be >= 0")
    row(f"{name}-eps-not-a-number", lambda call=call: call(eps="zero"), ValueError,
        "eps must be a number like 0.03, 1e-3 or 8/255, got 'zero'")
    row(f"{name}-eps-list", lambda call=call: call(eps=[[0.1]]), TypeError, "eps must be a real number")
    row(f"{name}-eps-nan", lambda call=call: call(eps=float("nan")), ValueError, "eps must be finite")
    row(f"{name}-bounds-reversed", lambda call=call: call(bounds=(1, 0)), ValueError, "bounds must have lo < hi")
    row(f"{name}-output-tuple", lambda call=call: call(model=_Tuple()), TypeError, "model output must be a tensor",
        )
    row(f"{name}-output-softmax", lambda call=call: call(model=_softmax()), ValueError, "looks like probabilities",
        )
    row(f"{name}-output-1d", lambda call=call: call(model=_vector()), ValueError, "model output must have shape",
        )
    row(f"{name}-x-float64-model-float32", lambda call=call: call(x=_x().double()), TypeError, "x has dtype",
        )
    if name != "fgm":
        row(f"{name}-generator-int", lambda call=call: call(generator=3), TypeError, "generator must be")

for id_, kw, error, says in [
    ("steps-float", {"steps": 1.5}, TypeError, "steps must be an int"),
    ("steps-negative", {"steps": -1}, ValueError, "steps must be >= 0"),
    ("restarts-zero", {"restarts": 0}, ValueError, "restarts must be >= 1"),
    ("norm-unknown", {"norm": "l3"}, ValueError, "unknown norm 'l3'"),
    ("loss-unknown", {"loss": "xent"}, ValueError, "unknown loss 'xent'"),
    ("step-size-zero", {"step_size": 0}, ValueError, "step_size must be > 0"),
    ("rel-step-size-negative", {"rel_step_size": -1}, ValueError, "rel_step_size must be > 0"),
    ("eot-zero", {"eot_samples": 0}, ValueError, "eot_samples must be >= 1"),
    ("seed-float", {"seed": 1.5}, TypeError, "seed must be an int"),
    ("seed-huge", {"seed": 2**70}, ValueError, "seed must be an integer in [0, 2**64 - 1]"),
    ("random-start-string", {"random_start": "no"}, TypeError, "random_start must be True or False"),
    ("early-stop-string", {"early_stop": "yes"}, TypeError, "early_stop must be True or False"),
    ("eps-empty", {"eps": ()}, ValueError, "eps must hold at least one value"),
    ("eps-one-negative", {"eps": (0.1, -0.2)}, ValueError, "eps must be >= 0"),
    ("bounds-string", {"bounds": "01"}, ValueError, "bounds must be a pair"),
]:
    row(f"PGD-{id_}", lambda kw=kw: attacks.PGD(**{"eps": 0.1, **kw}), error, says)

row("FGSM-random-start-string", lambda: attacks.FGSM(eps=0.1, random_start="no"), TypeError,
    "random_start must be True or False")
row("FGSM-seed-float", lambda: attacks.FGSM(eps=0.1, seed=1.5), TypeError, "seed must be an int")
row("FGSM-step-size-negative", lambda: attacks.FGSM(eps=0.1, step_size=-1), ValueError, "step_size must be > 0")
row("FGM-loss-unknown", lambda: attacks.FGM(eps=0.1, loss="hinge"), ValueError, "unknown loss 'hinge'")

row("FourierAttack-order-unknown", lambda: attacks.FourierAttack(eps=0.1, order="spiral"), ValueError,
    "unknown order 'spiral'")
row("FourierAttack-max-queries-zero", lambda: attacks.FourierAttack(eps=0.1, max_queries=0), ValueError,
    "max_queries must be >= 1")
row("FourierAttack-batch-size-zero", lambda: attacks.FourierAttack(eps=0.1, batch_size=0), ValueError,
    "batch_size must be >= 1")
row("FourierAttack-radii-reversed", lambda: attacks.FourierAttack(eps=0.1, radii=(5, 3)), ValueError, "radii")
row("FourierAttack-radii-select-nothing",
    lambda: attacks.fourier_attack(_linear(), _x(), _y(), eps=0.1, radii=(100, 200)), ValueError, "radii")
row("FourierGreedy-step-size-negative", lambda: attacks.FourierGreedy(eps=0.1, step_size=-1), ValueError,
    "step_size must be > 0")
row("FourierGreedy-seed-float", lambda: attacks.FourierGreedy(eps=0.1, seed=0.5), TypeError, "seed must be an int")
row("create-attack-unknown", lambda: attacks.create_attack("pgdx", eps=0.1), ValueError, "unknown attack 'pgdx'")
row("create-attack-bad-option", lambda: attacks.create_attack("pgd", eps=0.1, stepz=3), ValueError,
    "takes no option 'stepz'")
row("create-attack-foolbox-unknown", lambda: attacks.create_attack("foolbox:NoSuchAttack", eps=0.1), ValueError,
    "NoSuchAttack")
row("create-attack-foolbox-wrong-type",
    lambda: attacks.create_attack("foolbox:LinfPGD", eps=0.1, steps="ten")(_linear(), _x(), _y()), TypeError,
    "steps")
row("evaluate-robustness-not-attack",
    lambda: evaluate_robustness(_linear(), _x(), _y(), {"pgd": "pgd"}), TypeError,
    "attacks['pgd'] must be a bandguard Attack, got str")
row("evaluate-robustness-batch-size-zero",
    lambda: evaluate_robustness(_linear(), _x(), _y(), {"fgsm": attacks.FGSM(eps=0.1)}, batch_size=0), ValueError,
    "batch_size must be >= 1")
row("evaluate-robustness-device-unknown",
    lambda: evaluate_robustness(_linear(), _x(), _y(), {"fgsm": attacks.FGSM(eps=0.1)}, device="gpu"), ValueError,
    "unknown device 'gpu'")
row("evaluate-robustness-defense-reserved",
    lambda: evaluate_robustness(_linear(), _x(), _y(), {"fgsm": attacks.FGSM(eps=0.1)}, defenses={"none": _linear()}),
    ValueError, "defense name 'none' is reserved")
row("PGD-call-y-out-of-range", lambda: attacks.PGD(eps=0.1, steps=1)(_linear(), _x(), _y(K)), ValueError,
    "y holds class 10", )
row("PGD-call-softmax", lambda: attacks.PGD(eps=0.1, steps=1)(_softmax(), _x(), _y()), ValueError,
    "looks like probabilities", )

# --------------------------------------------------------------------------- defenses

for cls in (defenses.LowPass, defenses.HighPass):
    nm = cls.__name__
    row(f"{nm}-radius-negative", lambda cls=cls: cls(-1), ValueError, "radius must be >= 0")
    row(f"{nm}-radius-string", lambda cls=cls: cls("3"), TypeError, "radius must be a real number")
    row(f"{nm}-radius-inf", lambda cls=cls: cls(float("inf")), ValueError, "radius must be finite")
    row(f"{nm}-radius-overflow", lambda cls=cls: cls(10**400), ValueError, "radius must be finite")
    row(f"{nm}-profile-unknown", lambda cls=cls: cls(3, profile="box"), ValueError, "unknown profile 'box'")
    row(f"{nm}-order-float", lambda cls=cls: cls(3, order=1.5), TypeError, "order must be an int")
    row(f"{nm}-rescale-string", lambda cls=cls: cls(3, rescale="yes"), TypeError, "rescale must be")
    row(f"{nm}-x-empty", lambda cls=cls: cls(3)(torch.rand(0, C, H, W)), ValueError, "x must hold at least one")
    row(f"{nm}-x-channels-last", lambda cls=cls: cls(3)(_cl()), ValueError, "x looks channels-last")
    row(f"{nm}-x-2d", lambda cls=cls: cls(3)(torch.rand(H, W)), ValueError, "x must have shape [N, C, H, W]")

for id_, kw, error, says in [
    ("radius-negative", {"radius_l2": -1}, ValueError, "radius_l2 must be >= 0"),
    ("K-zero", {"K": 0}, ValueError, "K must be >= 1"),
    ("K-float", {"K": 1.5}, TypeError, "K must be an int"),
    ("radii-negative", {"radii_l2": [-1.0]}, ValueError, "radii_l2 must be >= 0"),
    ("reduce-unknown", {"reduce": "median"}, ValueError, "unknown reduce 'median'"),
    ("bounds-reversed", {"bounds": (1, 0)}, ValueError, "bounds must have lo < hi"),
    ("max-batch-zero", {"max_batch": 0}, ValueError, "max_batch must be >= 1"),
    ("antithetic-string", {"antithetic": "no"}, TypeError, "antithetic"),
    ("generator-int", {"generator": 3}, TypeError, "generator must be a torch.Generator"),
]:
    row(f"PostAveraging-{id_}", lambda kw=kw: defenses.PostAveraging(_linear(), **{"radius_l2": 1.0, **kw}),
        error, says)
row("PostAveraging-model-not-module", lambda: defenses.PostAveraging(lambda t: t, radius_l2=1.0), TypeError, "model")
row("PostAveraging-K-huge-memory",  # 4 CIFAR images x 1e8 directions: 4.9 TB, refused before allocating
    lambda: defenses.PostAveraging(nn.Sequential(nn.Flatten(), nn.Linear(3072, K)), radius_l2=1.0, K=100_000_000)(
        torch.rand(N, 3, 32, 32)),
    ValueError, "K too large")
row("PostAveraging-x-nan", lambda: defenses.PostAveraging(_linear(), radius_l2=1.0)(_nan()), ValueError,
    "x contains NaN")  # the first forward on a shape checks the values
row("PostAveraging-x-channels-last",
    lambda: defenses.PostAveraging(nn.Sequential(nn.Flatten(), nn.Linear(784, K)), radius_l2=1.0)(_cl()), ValueError,
    "x looks channels-last")

for id_, spec, error, says in [
    ("unknown-name", "median:3", ValueError, "unknown defense 'median'"),
    ("empty", "", ValueError, "defense spec must be a non-empty string"),
    ("not-a-string", 3, TypeError, "defense spec must be"),
    ("lowpass-negative", "lowpass:-1", ValueError, "radius must be >= 0"),
    ("lowpass-missing-radius", "lowpass", ValueError, "radius"),
    ("lowpass-word", "lowpass:big", ValueError, "radius"),
    ("post-average-K-zero", "post_average:1,K=0", ValueError, "K must be >= 1"),
    ("post-average-K-word", "post_average:1,K=many", ValueError, "K"),
    ("post-average-seed-float", "post_average:1,K=3,seed=1.5", TypeError, "seed must be an int"),
    ("bad-option", "lowpass:3,=4", ValueError, "bad option"),
    ("positional-after-option", "lowpass:smooth=ideal,3", ValueError, "positional value '3' after options"),
]:
    row(f"build-defense-{id_}", lambda spec=spec: defenses.build_defense(spec, _linear()), error, says)
row("build-defense-model-not-module", lambda: defenses.build_defense("lowpass:3", lambda t: t), TypeError, "model")
row("defend-model-not-module", lambda: defenses.defend(lambda t: t, lowpass=3), TypeError, "model")
row("defend-lowpass-negative", lambda: defenses.defend(_linear(), lowpass=-1), ValueError, "radius must be >= 0")
row("defend-post-average-K-zero", lambda: defenses.defend(_linear(), post_average={"radius_l2": 1, "K": 0}), ValueError,
    "K must be >= 1")
row("defend-smooth-negative", lambda: defenses.defend(_conv(), smooth=-1), ValueError, "rho must be >= 0")
row("defend-generator-int", lambda: defenses.defend(_linear(), post_average=1.0, generator=3), TypeError,
    "generator must be")
row("smooth-kernels-model-not-module", lambda: defenses.smooth_kernels(lambda t: t, 0.5), TypeError, "model")
row("smooth-kernels-rho-negative", lambda: defenses.smooth_kernels(_conv(), -1), ValueError, "rho must be >= 0")
row("smooth-kernels-layers-unknown", lambda: defenses.smooth_kernels(_conv(), 0.5, layers="nope"), ValueError,
    "layers")
row("filter-kernels-radius-negative", lambda: defenses.filter_kernels(_conv(), -1), ValueError, "radius must be >= 0")
row("filter-kernels-layers-empty", lambda: defenses.filter_kernels(_conv(), 1, layers=[]), ValueError,
    "layers must name at least one, got []")

# --------------------------------------------------------------------------- spectral



def _heatmap(model: Any = None, x: Any = None, y: Any = None, **kw: Any) -> Any:
    return spectral.fourier_heatmap(_linear() if model is None else model, _x() if x is None else x,
                                    _y() if y is None else y, **{"eps": 1.0, **kw})


for id_, call, error, says in [
    ("model-not-module", lambda: _heatmap(model=lambda t: t), TypeError, "model must be"),
    ("x-channels-last", lambda: _heatmap(x=_cl(), y=_y()), ValueError, "x looks channels-last"),
    ("x-nan", lambda: _heatmap(x=_nan()), ValueError, "x contains NaN"),
    ("y-out-of-range", lambda: _heatmap(y=_y(K)), ValueError, "y holds class 10"),
    ("eps-negative", lambda: _heatmap(eps=-1), ValueError, "eps must be >= 0"),
    ("eps-not-a-number", lambda: _heatmap(eps="four"), ValueError, "eps must be a number like 0.03"),
    ("eps-list", lambda: _heatmap(eps=[4.0]), TypeError, "eps must be a real number"),
    ("sign-unknown", lambda: _heatmap(sign="negative"), ValueError, "unknown sign 'negative'"),
    ("metric-unknown", lambda: _heatmap(metric="f1"), ValueError, "metric"),
    ("layer-unknown", lambda: _heatmap(layer="conv9"), ValueError, "conv9"),
    ("max-batch-zero", lambda: _heatmap(max_batch=0), ValueError, "max_batch must be >= 1"),
    ("generator-int", lambda: _heatmap(generator=3), TypeError, "generator must be"),
    ("output-softmax", lambda: _heatmap(model=_softmax()), ValueError, "looks like probabilities"),
    ("output-tuple", lambda: _heatmap(model=_Tuple()), TypeError, "model output must be a tensor"),
    ("bounds-reversed", lambda: _heatmap(bounds=(1, 0)), ValueError, "bounds must have lo < hi"),
]:
    row(f"heatmap-{id_}", call, error, says)


def _filtered(model: Any = None, y: Any = None, radii: Any = (2.0,), **kw: Any) -> Any:
    return spectral.filtered_accuracy(_linear() if model is None else model, _x(), _y() if y is None else y,
                                      radii, **kw)


for id_, call, error, says in [
    ("model-not-module", lambda: _filtered(model=lambda t: t), TypeError, "model must be"),
    ("radii-negative", lambda: _filtered(radii=[-1]), ValueError, "radii must be >= 0"),
    ("radii-string", lambda: _filtered(radii="3"), TypeError, "radii must be a real number"),
    ("radii-empty", lambda: _filtered(radii=[]), ValueError, "radii"),
    ("kind-unknown", lambda: _filtered(kind="mid"), ValueError, "unknown kind 'mid'"),
    ("batch-size-zero", lambda: _filtered(batch_size=0), ValueError, "batch_size must be >= 1"),
    ("y-out-of-range", lambda: _filtered(y=_y(K)), ValueError, "y holds class 10"),
    ("rescale-string", lambda: _filtered(rescale="yes"), TypeError, "rescale must be True or False"),
    ("output-softmax", lambda: _filtered(model=_softmax()), ValueError, "looks like probabilities"),
    ("frequency-filter-radius-negative", lambda: frequency_filter(_x(), -1), ValueError, "radius must be >= 0"),
    ("frequency-filter-kind-unknown", lambda: frequency_filter(_x(), 2, kind="mid"), ValueError, "unknown kind"),
    ("frequency-filter-radius-overflow", lambda: FrequencyFilter(10**400), ValueError, "radius must be finite"),
    ("x-nan", lambda: spectral.filtered_accuracy(_linear(), _nan(), _y(), [2.0]), ValueError, "x contains NaN"),
]:
    row(f"filtered-{id_}", call, error, says)

for id_, call, error, says in [
    ("name-unknown", lambda: spectral.corrupt(_x(), "rain", 1), ValueError, "rain"),
    ("severity-zero", lambda: spectral.corrupt(_x(), "contrast", 0), ValueError, "severity must be >= 1"),
    ("severity-six", lambda: spectral.corrupt(_x(), "contrast", 6), ValueError, "severity"),
    ("severity-float", lambda: spectral.corrupt(_x(), "contrast", 1.5), TypeError, "severity must be an int"),
    ("x-nan", lambda: spectral.corrupt(_nan(), "contrast", 1), ValueError, "x contains NaN"),
    ("x-channels-last", lambda: spectral.corrupt(_cl(), "contrast", 1), ValueError, "x looks channels-last"),
    ("generator-int", lambda: spectral.corrupt(_x(), "gaussian_noise", 1, generator=3), TypeError,
     "generator must be"),
    ("spectrum-names-unknown", lambda: spectral.corruption_spectrum(_linear(), _x(), _y(), ["rain"]), ValueError,
     "rain"),
    ("spectrum-model-not-module", lambda: spectral.corruption_spectrum(lambda t: t, _x(), _y(), ["contrast"]),
     TypeError, "model must be"),
    ("spectrum-y-out-of-range", lambda: spectral.corruption_spectrum(_linear(), _x(), _y(K), ["contrast"]),
     ValueError, "y holds class 10"),
]:
    row(f"corrupt-{id_}", call, error, says)

for id_, call, error, says in [
    ("perturbation-delta-3d", lambda: spectral.perturbation_spectrum(torch.rand(C, H, W)), ValueError,
     "delta must have shape"),
    ("perturbation-radius-negative", lambda: spectral.perturbation_spectrum(_x(), radius=-1), ValueError,
     "radius must be >= 0"),
    ("perturbation-delta-nan", lambda: spectral.perturbation_spectrum(_nan()), ValueError, "delta contains NaN"),
    ("perturbation-delta-list", lambda: spectral.perturbation_spectrum([[0.0]]), TypeError,
     "delta must be a torch.Tensor"),
    ("attack-spectrum-model-not-module", lambda: spectral.attack_spectrum(lambda t: t, attacks.FGSM(eps=0.1), _x(),
                                                                          _y()), TypeError, "model must be"),
    ("attack-spectrum-attack-string", lambda: spectral.attack_spectrum(_linear(), "pgd", _x(), _y()), TypeError,
     "attack"),
    ("attack-spectrum-radius-negative", lambda: spectral.attack_spectrum(_linear(), attacks.FGSM(eps=0.1), _x(), _y(),
                                                                         radius=-1), ValueError, "radius must be >= 0"),
    ("kernel-spectrum-model-not-module", lambda: spectral.kernel_spectrum(lambda t: t), TypeError, "model must be"),
    ("kernel-spectrum-kernel-too-large", lambda: spectral.kernel_spectrum(nn.Conv2d(1, 1, 33)), ValueError,
     "kernels must be at most 32 x 32"),
    ("kernel-spectrum-no-convs", lambda: spectral.kernel_spectrum(_linear()), ValueError, "Conv2d"),
    ("fprinciple-deltas-zero", lambda: spectral.FPrincipleMonitor(_x(), _y(), deltas=[0.0]), ValueError,
     "deltas must be > 0"),
    ("fprinciple-num-classes-one", lambda: spectral.FPrincipleMonitor(_x(), _y(), num_classes=1), ValueError,
     "num_classes must be >= 2"),
    ("fprinciple-labels-above-classes", lambda: spectral.FPrincipleMonitor(_x(), _y(), num_classes=2), ValueError,
     "y holds class 3"),
    ("fprinciple-batch-size-zero", lambda: spectral.FPrincipleMonitor(_x(), _y(), batch_size=0), ValueError,
     "batch_size must be >= 1"),
]:
    row(f"spectral-{id_}", call, error, says)

# --------------------------------------------------------------------------- data



def _dataset() -> ImageDataset:
    return ImageDataset(images=torch.zeros(6, 1, 8, 8, dtype=torch.uint8), labels=torch.arange(6) % 2,
                        classes=("a", "b"), name="tiny", split="test")


for id_, call, error, says in [
    ("name-unknown", lambda: load_dataset("imagenet"), ValueError, "unknown dataset name 'imagenet'"),
    ("name-int", lambda: load_dataset(3), TypeError, "name"),
    ("split-unknown", lambda: load_dataset("mnist", "valid"), ValueError, "unknown split 'valid'"),
    ("split-val-of-mnist", lambda: load_dataset("mnist", "val"), ValueError,
     "split 'val': mnist has only the splits 'train', 'test'"),
    ("root-missing", lambda: load_dataset("mnist", root="/nonexistent/bandguard"), ValueError, "root"),
    ("download-string", lambda: load_dataset("mnist", download="no"), TypeError,
     "download must be True or False"),
    ("loader-batch-size-zero", lambda: make_loader(_dataset(), 0), ValueError, "batch_size must be >= 1"),
    ("loader-seed-float", lambda: make_loader(_dataset(), 2, shuffle=True, seed=1.5), TypeError,
     "seed must be an int"),
    ("loader-shuffle-string", lambda: make_loader(_dataset(), 2, shuffle="yes"), TypeError,
     "shuffle must be True or False"),
    ("loader-not-dataset", lambda: make_loader("mnist"), TypeError, "dataset"),
    ("dataset-images-float", lambda: ImageDataset(images=torch.zeros(2, 1, 4, 4), labels=torch.arange(2),
                                                 classes=("a", "b"), name="t", split="test"), ValueError,
     "images must be a uint8 tensor"),
    ("dataset-labels-out-of-classes", lambda: ImageDataset(images=torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
                                                          labels=torch.tensor([0, 5]), classes=("a", "b"),
                                                          name="t", split="test"), ValueError, "labels"),
    ("tensors-negative", lambda: _dataset().tensors(-1), ValueError, "n"),
]:
    row(f"data-{id_}", call, error, says)

# --------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Checkpoint files for the model rows: good, wrong arch, truncated, unsafe, a folder."""
    d = tmp_path_factory.mktemp("models")
    good = save_checkpoint(d / "mnist.pt", create_model("mnist_cnn"), arch="mnist_cnn", dataset="mnist")
    bare = d / "bare.pt"
    torch.save(create_model("mnist_cnn").state_dict(), bare)
    (d / "truncated.pt").write_bytes(good.read_bytes()[:1000])
    with open(d / "unsafe.pt", "wb") as f:
        pickle.dump({"state_dict": {}, "meta": {"x": Path("/")}}, f, protocol=2)  # a global outside the allow-list
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": [1, 2]}, d / "badmeta.pt")
    (d / "folder.pt").mkdir()
    return {"good": good, "bare": bare, "dir": d}


MODEL_ROWS: list[Any] = []


def mrow(id_: str, call: Callable[[dict[str, Path]], Any], error: type[BaseException], says: str) -> None:
    MODEL_ROWS.append(pytest.param(call, error, says, id=id_))


mrow("load-module-spec-os-getcwd", lambda f: load_model("os:getcwd"), FileNotFoundError,
     "no such checkpoint 'os:getcwd'")
mrow("load-module-spec-os-abort", lambda f: load_model("os:abort"), FileNotFoundError, "model_from_code('os:abort')")
mrow("load-mistyped-arch-prefix", lambda f: load_model("model:v2.pt"), FileNotFoundError,
     "no such checkpoint 'model:v2.pt'")
mrow("load-arch-name", lambda f: load_model("mnist_cnn"), FileNotFoundError, "'mnist_cnn' is an architecture name")
mrow("load-int", lambda f: load_model(3), TypeError, "path must be a path")
mrow("load-none", lambda f: load_model(None), TypeError, "path must be a path")
mrow("load-empty", lambda f: load_model(""), ValueError, "path must be a non-empty path")
mrow("load-folder", lambda f: load_model(f["dir"] / "folder.pt"), ValueError, "is a folder")
mrow("load-truncated", lambda f: load_model(f["dir"] / "truncated.pt"), ValueError, "truncated.pt' is corrupt")
mrow("load-unsafe", lambda f: load_model(f["dir"] / "unsafe.pt"), ValueError, "unsafe.pt' is unsafe or corrupt")
mrow("load-meta-not-dict", lambda f: load_checkpoint(f["dir"] / "badmeta.pt"), ValueError, "metadata of type list")
mrow("load-arch-unknown", lambda f: load_model(f["good"], arch="resnet9000"), ValueError, "unknown model 'resnet9000'")
mrow("load-arch-mismatch", lambda f: load_model(f["good"], arch="cifar_small"), ValueError,
     "does not fit arch 'cifar_small'")
mrow("load-bare-needs-arch", lambda f: load_model(f["bare"]), ValueError, "checkpoint names no arch")
mrow("load-prefix-and-arch-disagree", lambda f: load_model(f"cifar_small:{f['good']}", arch="mnist_cnn"), ValueError,
     "names arch 'cifar_small' but arch='mnist_cnn'")
mrow("code-no-module", lambda f: model_from_code("nosuchpkg.nets:build"), ValueError, "no module named 'nosuchpkg'")
mrow("code-no-attribute", lambda f: model_from_code("torch.nn:Nope"), ValueError, "has no attribute 'Nope'")
mrow("code-not-callable", lambda f: model_from_code("os:sep"), TypeError, "'sep' is a str, not a callable")
mrow("code-not-module", lambda f: model_from_code("os:getcwd"), TypeError, "returned str, expected an nn.Module")
mrow("code-path-form", lambda f: model_from_code("/tmp/evil.py:build"), ValueError, "form 'package.module:function'")
mrow("code-injection", lambda f: model_from_code("os:system('x')"), ValueError, "form 'package.module:function'")
mrow("code-not-string", lambda f: model_from_code(Path("os:getcwd")), TypeError, "target must be a str")
mrow("create-unknown", lambda f: create_model("resnet9000"), ValueError, "unknown model 'resnet9000'")
mrow("input-shape-mismatch", lambda f: check_input_shape("cifar_small", (1, 28, 28)), ValueError,
     "arch 'cifar_small' takes 3x32x32")
mrow("normalize-std-zero", lambda f: Normalize((0.5,), (0.0,)), ValueError, "std must be > 0")
mrow("save-model-not-module", lambda f: save_checkpoint(f["dir"] / "x.pt", lambda t: t), TypeError, "model must be")
mrow("save-onto-folder", lambda f: save_checkpoint(f["dir"] / "folder.pt", _linear()), IsADirectoryError,
     "folder.pt' : it is a folder".replace(" :", ":"))
mrow("save-bounds-reversed", lambda f: save_checkpoint(f["dir"] / "y.pt", _linear(), bounds=(1, 0)), ValueError,
     "bounds must have lo < hi")
mrow("predict-model-not-module", lambda f: predict(lambda t: t, _x()), TypeError, "model must be")
mrow("predict-x-list", lambda f: predict(_linear(), [[0.0]]), TypeError, "x must be a torch.Tensor")
mrow("predict-x-channels-last", lambda f: predict(_linear(), _cl()), ValueError, "x looks channels-last")
mrow("predict-batch-size-zero", lambda f: predict(_linear(), _x(), batch_size=0), ValueError, "batch_size must be >= 1")
mrow("predict-x-float64", lambda f: predict(_linear(), _x().double()), TypeError, "x has dtype torch.float64")
mrow("predict-output-tuple", lambda f: predict(_Tuple(), _x()), TypeError, "model output must be a tensor")
mrow("accuracy-y-out-of-range", lambda f: accuracy(_linear(), _x(), _y(K)), ValueError, "y holds class 10")
mrow("accuracy-y-wrong-length", lambda f: accuracy(_linear(), _x(), _y()[:1]), ValueError, "y has 1 labels")

# --------------------------------------------------------------------------- training

for id_, kw, error, says in [
    ("lr-zero", {"lr": 0}, ValueError, "lr must be > 0"),
    ("lr-string", {"lr": "0.1"}, TypeError, "lr must be a real number"),
    ("epochs-float", {"epochs": 1.5}, TypeError, "epochs must be an int"),
    ("batch-size-zero", {"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ("schedule-unknown", {"schedule": "step"}, ValueError, "unknown schedule 'step'"),
    ("mode-unknown", {"mode": "adversarial"}, ValueError, "unknown mode 'adversarial'"),
    ("seed-huge", {"seed": 2**70}, ValueError, "seed must be an integer in [0, 2**64 - 1]"),
    ("augment-string", {"augment": "no"}, TypeError, "augment must be True or False"),
    ("nesterov-int", {"nesterov": 1}, TypeError, "nesterov must be True or False"),
    ("resume-without-checkpoint", {"resume": True}, ValueError, "resume=True needs a checkpoint"),
    ("checkpoint-int", {"checkpoint": 3}, TypeError, "checkpoint must be a path"),
]:
    row(f"TrainConfig-{id_}", lambda kw=kw: TrainConfig(**kw), error, says)

_DATA_PAIR = (torch.zeros(N, C, H, W, dtype=torch.uint8), torch.arange(N) % K)
row("train-device-unknown", lambda: train(_linear(), _DATA_PAIR, TrainConfig(), device="gpu", progress=False),
    ValueError, "unknown device 'gpu'")
row("train-data-not-pair", lambda: train(_linear(), "mnist", TrainConfig(), progress=False), TypeError, "data")
row("evaluate-device-unknown", lambda: evaluate(_linear(), *_DATA_PAIR, device="cuda:x"), ValueError,
    "unknown device 'cuda:x'")

# --------------------------------------------------------------------------- the command line

CLI_ROWS: list[Any] = []


def crow(id_: str, argv: list[str], code: int, says: str) -> None:
    CLI_ROWS.append(pytest.param(argv, code, says, id=id_))


_ATTACK = ["attack", "--dataset", "mnist", "-n", "4", "--device", "cpu"]
crow("model-os-abort-is-a-path", [*_ATTACK, "--model", "os:abort", "--eps", "0.1"], 2,
     "--model: no such checkpoint 'os:abort'")
crow("model-mistyped", [*_ATTACK, "--model", "model:v2.pt", "--eps", "0.1"], 2, "no such checkpoint 'model:v2.pt'")
crow("model-code-missing-module", [*_ATTACK, "--model-code", "nosuchpkg:build", "--eps", "0.1"], 2,
     "--model-code: target 'nosuchpkg:build': no module named 'nosuchpkg'")
crow("model-code-bad-form", [*_ATTACK, "--model-code", "x.py", "--eps", "0.1"], 2, "form 'package.module:function'")
crow("model-and-model-code", [*_ATTACK, "--model", "m.pt", "--model-code", "a:b", "--eps", "0.1"], 2,
     "not allowed with argument")
crow("no-model", [*_ATTACK, "--eps", "0.1"], 2,
     "one of the arguments --model --model-code --robustbench --torchvision is required")
crow("eps-negative", [*_ATTACK, "--model", "m.pt", "--eps", "-1"], 2, "argument --eps: expected a number >= 0")
crow("eps-word", [*_ATTACK, "--model", "m.pt", "--eps", "big"], 2, "argument --eps")
crow("eps-zero-division", [*_ATTACK, "--model", "m.pt", "--eps", "8/0"], 2, "argument --eps")
crow("steps-zero", [*_ATTACK, "--model", "m.pt", "--eps", "0.1", "--steps", "0"], 2, "argument --steps")
crow("restarts-zero", [*_ATTACK, "--model", "m.pt", "--eps", "0.1", "--restarts", "0"], 2, "argument --restarts")
crow("batch-size-zero", [*_ATTACK, "--model", "m.pt", "--eps", "0.1", "--batch-size", "0"], 2,
     "argument --batch-size")
crow("seed-float", [*_ATTACK, "--model", "m.pt", "--eps", "0.1", "--seed", "1.5"], 2, "argument --seed")
crow("seed-huge", [*_ATTACK, "--model", "m.pt", "--eps", "0.1", "--seed", str(2**70)], 2, "argument --seed")
crow("device-unknown", [*_ATTACK, "--model", "m.pt", "--eps", "0.1", "--device", "gpu"], 2, "unknown --device 'gpu'")
crow("out-is-folder", [*_ATTACK, "--model", "m.pt", "--eps", "0.1", "--out", "."], 2, "argument --out")
crow("loss-unknown", [*_ATTACK, "--model", "m.pt", "--eps", "0.1", "--loss", "hinge"], 2, "argument --loss")
crow("train-lr-zero", ["train", "--lr", "0", "--out", "m.pt"], 2, "argument --lr: expected a number > 0")
crow("train-lr-negative", ["train", "--lr", "-0.1", "--out", "m.pt"], 2, "argument --lr")
crow("train-epochs-zero", ["train", "--epochs", "0", "--out", "m.pt"], 2, "argument --epochs")
crow("train-weight-decay-negative", ["train", "--weight-decay", "-1", "--out", "m.pt"], 2, "argument --weight-decay")
crow("train-sigma-negative", ["train", "--sigma", "-1", "--out", "m.pt"], 2, "argument --sigma")
crow("train-arch-unknown", ["train", "--arch", "vit", "--out", "m.pt"], 2, "argument --arch")
crow("train-out-missing", ["train"], 2, "the following arguments are required: --out")
crow("train-out-folder", ["train", "--out", "."], 2, "argument --out")
crow("heatmap-out-json", ["heatmap", "--model", "m.pt", "--out", "hm.json"], 2, "argument --out: expected a .png")
crow("heatmap-eps-negative", ["heatmap", "--model", "m.pt", "--eps", "-4"], 2, "argument --eps")
crow("heatmap-max-batch-zero", ["heatmap", "--model", "m.pt", "--max-batch", "0"], 2, "argument --max-batch")
crow("spectrum-out-json", ["spectrum", "--model", "m.pt", "--eps", "0.1", "--out", "s.json"], 2, "argument --out")
crow("spectrum-radius-negative", ["spectrum", "--model", "m.pt", "--eps", "0.1", "--radius", "-2"], 2,
     "argument --radius")
crow("demo-n-zero", ["demo", "-n", "0"], 2, "argument -n")
crow("unknown-command", ["frobnicate"], 2, "invalid choice")
crow("unknown-flag", ["attack", "--model", "m.pt", "--eps", "0.1", "--epz", "3"], 2, "unrecognized arguments: --epz")


# --------------------------------------------------------------------------- valid inputs

VALID: list[Any] = []


def valid(id_: str, call: Callable[..., Any]) -> None:
    VALID.append(pytest.param(call, id=id_))


valid("pgd-numpy-eps-and-steps", lambda: attacks.pgd(_linear(), _x(), _y(), eps=np.float32(0.1), steps=np.int64(2)))
valid("PGD-0d-tensor-eps", lambda: attacks.PGD(eps=torch.tensor(0.1), steps=1)(_linear(), _x(), _y()))
valid("PGD-0d-array-eps", lambda: attacks.PGD(eps=np.array(0.1), steps=1)(_linear(), _x(), _y()))
valid("PGD-numpy-eps-array", lambda: attacks.PGD(eps=np.array([0.05, 0.1]), steps=1)(_linear(), _x(), _y()))
valid("fgsm-numpy-eps", lambda: attacks.fgsm(_linear(), _x(), _y(), eps=np.float64(0.1)))
valid("LowPass-numpy-radius", lambda: defenses.LowPass(np.float32(3.0))(_x()))
valid("PostAveraging-numpy-K-radius", lambda: defenses.PostAveraging(_linear(), K=np.int64(3),
                                                                     radius_l2=np.float32(1.0))(_x()))
valid("filtered-numpy-radii", lambda: spectral.filtered_accuracy(_linear(), _x(), _y(), np.array([1.0, 2.0])))
valid("filtered-numpy-radius-scalar", lambda: spectral.filtered_accuracy(_linear(), _x(), _y(), np.float32(2.0)))
valid("heatmap-numpy-eps", lambda: spectral.fourier_heatmap(_linear(), _x(), _y(), eps=np.float32(1.0),
                                                            generator=torch.Generator().manual_seed(0)))
valid("fprinciple-numpy-delta", lambda: spectral.FPrincipleMonitor(_x(), _y(), deltas=np.float32(3.0)))
valid("train-config-numpy-numbers", lambda: TrainConfig(lr=np.float32(0.1), epochs=np.int64(2), seed=np.uint64(7)))
valid("train-config-pathlib-checkpoint", lambda: TrainConfig(checkpoint=Path("run/ckpt.pt"), resume=True))
valid("corrupt-numpy-severity", lambda: spectral.corrupt(_x(), "contrast", np.int64(2)))
valid("defense-spec-radii-plus", lambda: defenses.build_defense("post_average:1,K=3,radii_l2=1+2", _linear())(_x()))


# --------------------------------------------------------------------------- second round (issue 22)
# One row group per class of the issue; each class is fixed by one check in bandguard/_checks.py.

_BIG = 3e38  # inside float32's range: what overflows now is the computation, not the setting
_FGSM = {"fgsm": attacks.FGSM(eps=0.1)}


def _pa(model: Any = None, **kw: Any) -> Any:
    return defenses.PostAveraging(_linear() if model is None else model, **{"radius_l2": 1.0, "K": 2, **kw})


def _plots() -> Any:
    from bandguard.spectral import plots  # loads matplotlib: only when a row needs it

    return plots


def _run_demo(**kw: Any) -> Any:
    import tempfile

    from bandguard.bench.demo import run_demo

    with tempfile.TemporaryDirectory() as d:  # refused before anything is written or trained
        return run_demo(Path(d) / "demo", **kw)


def _big_linear() -> nn.Module:  # every weight 1: a neighbour 3e38 away overflows its logits
    model = _linear()
    with torch.no_grad():
        model[1].weight.fill_(1.0)
    return model


# 1. dtype inside defenses: the attacks' error, not torch's "Unsupported dtype" / "mat1 and mat2"
for id_, call, says in [
    ("LowPass-x-half", lambda: defenses.LowPass(3)(_x().half()), "x has dtype torch.float16; expected one of"),
    ("LowPass-x-bfloat16", lambda: defenses.LowPass(3)(_x().bfloat16()), "x has dtype torch.bfloat16; expected"),
    ("HighPass-x-half", lambda: defenses.HighPass(3)(_x().half()), "x has dtype torch.float16; expected one of"),
    ("defend-lowpass-x-double", lambda: defenses.defend(_linear(), lowpass=3)(_x().double()),
     "x has dtype torch.float64 but the model's parameters are torch.float32"),
    ("defend-lowpass-x-half", lambda: defenses.defend(_linear(), lowpass=3)(_x().half()),
     "x has dtype torch.float16 but the model's parameters are torch.float32"),
    ("defend-smooth-x-double", lambda: defenses.defend(_conv(), smooth=0.1)(_x().double()),
     "x has dtype torch.float64 but the model's"),
    ("build-defense-lowpass-x-double", lambda: defenses.build_defense("lowpass:3", _linear())(_x().double()),
     "x has dtype torch.float64 but the model's"),
    ("build-defense-highpass-x-half", lambda: defenses.build_defense("highpass:3", _linear())(_x().half()),
     "x has dtype torch.float16 but the model's"),
    ("PostAveraging-x-double", lambda: _pa()(_x().double()), "x has dtype torch.float64 but the model's"),
    ("PostAveraging-x-half", lambda: _pa()(_x().half()), "x has dtype torch.float16 but the model's"),
    ("defend-lowpass-post-average-x-double",
     lambda: defenses.defend(_linear(), lowpass=3, post_average=1.0)(_x().double()), "x has dtype torch.float64"),
]:
    row(f"r2-dtype-{id_}", call, TypeError, says)

# 2. what a wrapped model returns: which module returned what, and what was expected
for id_, call, error, says in [
    ("PostAveraging-model-tuple", lambda: _pa(_Tuple())(_x()), TypeError,
     "output of the model inside PostAveraging (_Tuple) must be a tensor of logits [N, classes], got a tuple"),
    ("PostAveraging-around-a-filter", lambda: _pa(defenses.LowPass(3))(_x()), ValueError,
     "output of the model inside PostAveraging (LowPass) must have shape [N, classes] (logits), got (52, 1, 8, 8)"),
    ("defend-post-average-model-tuple", lambda: defenses.defend(_Tuple(), post_average=1.0)(_x()), TypeError,
     "output of the model inside PostAveraging (_Tuple)"),
    ("pgd-through-PostAveraging-model-tuple", lambda: attacks.pgd(_pa(_Tuple()), _x(), _y(), eps=0.1, steps=1),
     TypeError, "output of the model inside PostAveraging (_Tuple)"),
    ("evaluate-robustness-defense-images",
     lambda: evaluate_robustness(_linear(), _x(), _y(), _FGSM, defenses={"lp": defenses.LowPass(3)}), ValueError,
     "defenses['lp'] output must have shape [N, classes] (logits), got (1, 1, 8, 8)"),
    ("evaluate-robustness-defense-images-hint",
     lambda: evaluate_robustness(_linear(), _x(), _y(), _FGSM, defenses={"lp": defenses.LowPass(3)}), ValueError,
     "it returned images: a defense must wrap the classifier"),
    ("evaluate-robustness-defense-tuple",
     lambda: evaluate_robustness(_linear(), _x(), _y(), _FGSM, defenses={"t": _Tuple()}), TypeError,
     "defenses['t'] output must be a tensor of logits [N, classes], got a tuple of 2 items"),
    ("evaluate-robustness-defense-softmax",
     lambda: evaluate_robustness(_linear(), _x(), _y(), _FGSM, defenses={"s": _softmax()}), ValueError,
     "defenses['s'] output looks like probabilities"),
]:
    row(f"r2-output-{id_}", call, error, says)

# 4. numbers at the edge: beyond float32's range refused; an overflowing computation refused
_TOO_BIG = "must be at most 3.403e+38 in magnitude (float32's range"
for id_, call, says in [
    ("smooth-kernels-rho-1e308", lambda: defenses.smooth_kernels(_conv(), 1e308), f"rho {_TOO_BIG}"),
    ("defend-smooth-1e308", lambda: defenses.defend(_conv(), smooth=1e308), f"rho {_TOO_BIG}"),
    ("PostAveraging-radius-1e300", lambda: _pa(radius_l2=1e300), f"radius_l2 {_TOO_BIG}"),
    ("PostAveraging-radii-1e300", lambda: _pa(radii_l2=[1.0, 1e300]), f"radii_l2 {_TOO_BIG}"),
    ("build-defense-post-average-1e300", lambda: defenses.build_defense("post_average:1e300", _linear()),
     f"radius_l2 {_TOO_BIG}"),
    ("LowPass-gaussian-radius-1e200", lambda: defenses.LowPass(1e200, profile="gaussian"), f"radius {_TOO_BIG}"),
    ("frequency-filter-gaussian-1e200", lambda: frequency_filter(_x(), 1e200, profile="gaussian"),
     f"radius {_TOO_BIG}"),
    ("pgd-eps-1e300", lambda: attacks.pgd(_linear(), _x(), _y(), eps=1e300, steps=1), f"eps {_TOO_BIG}"),
    ("PGD-step-size-1e300", lambda: attacks.PGD(eps=0.1, step_size=1e300), f"step_size {_TOO_BIG}"),
    ("heatmap-eps-1e300", lambda: _heatmap(eps=1e300), f"eps {_TOO_BIG}"),
    ("TrainConfig-lr-1e300", lambda: TrainConfig(lr=1e300), f"lr {_TOO_BIG}"),
    ("smooth-kernels-rho-overflows-weights", lambda: defenses.smooth_kernels(_conv(), _BIG),
     "the new kernels of layer '0' contains NaN or infinite values; rho=3e+38 is too large"),
    ("PostAveraging-output-overflows", lambda: _pa(_big_linear(), radius_l2=_BIG)(_x()),
     "PostAveraging output contains NaN or infinite values; the model overflows at L2 radius 3e+38"),
]:
    row(f"r2-edge-{id_}", call, ValueError, says)

# 5. types strictly, both ways: "yes"/"no" is no bool anywhere; names: a string is one name
for id_, call, says in [
    ("evaluate-robustness-cascade", lambda: evaluate_robustness(_linear(), _x(), _y(), _FGSM, cascade="no"),
     "cascade must be True or False, got str 'no'"),
    ("heatmap-progress", lambda: _heatmap(progress="no"), "progress must be True or False, got str 'no'"),
    ("corrupt-progress", lambda: spectral.corrupt(_x(), "contrast", 1, progress="no"),
     "progress must be True or False, got str 'no'"),
    ("train-progress", lambda: train(_linear(), _DATA_PAIR, TrainConfig(), progress="no"),
     "progress must be True or False, got str 'no'"),
    ("make-loader-drop-last", lambda: make_loader(_dataset(), 2, drop_last="yes"),
     "drop_last must be True or False, got str 'yes'"),
    ("plot-radial-profiles-log", lambda: _plots().plot_radial_profiles({"a": torch.ones(3)}, log="no"),
     "log must be True or False, got str 'no'"),
    ("plot-radial-profiles-write-data", lambda: _plots().plot_radial_profiles({"a": torch.ones(3)},
                                                                             write_data="yes"),
     "write_data must be True or False, got str 'yes'"),
    ("corruption-spectrum-names-not-strings", lambda: spectral.corruption_spectrum(_linear(), _x(), _y(), [3]),
     "names must hold non-empty strings, got int 3"),
    ("corruption-spectrum-names-empty-string", lambda: spectral.corruption_spectrum(_linear(), _x(), _y(), ""),
     "names must hold non-empty strings, got str ''"),
    ("compare-spectra-names-int", lambda: spectral.compare_attack_spectra([_linear()], attacks.FGSM(eps=0.1), _x(),
                                                                          _y(), names=5),
     "names must be a name or a list of names, got int 5"),
    ("smooth-kernels-layers-int-list", lambda: defenses.smooth_kernels(_conv(), 0.1, layers=[None]),
     "layers must be 'first', 'all' or module names"),
    ("run-demo-retrain", lambda: _run_demo(retrain="no"), "retrain must be True or False, got str 'no'"),
    ("post-average-include-original", lambda: defenses.post_average(_linear(), _x(), torch.ones(N, 1, C, H, W),
                                                                    [1.0], include_original="no"),
     "include_original must be True or False, got str 'no'"),
    ("frequency-filter-rescale", lambda: frequency_filter(_x(), 3, rescale="no"),
     "rescale must be True or False, got str 'no'"),
    ("dataset-classes-not-names", lambda: ImageDataset(images=torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
                                                      labels=torch.zeros(2, dtype=torch.long), classes=3,
                                                      name="t", split="test"),
     "classes must be a name or a list of names, got int 3"),
]:
    row(f"r2-types-{id_}", call, TypeError, says)

# 6. empty or degenerate requests
_NO_FREQUENCY = "holds no frequency of a 8x8 image"
for id_, call, says in [
    ("corruption-spectrum-names-empty", lambda: spectral.corruption_spectrum(_linear(), _x(), _y(), []),
     "names must name at least one, got []"),
    ("pgd-band-beyond-the-corner", lambda: attacks.pgd(_linear(), _x(), _y(), eps=0.1, steps=2,
                                                       band=attacks.Band(low=100)), _NO_FREQUENCY),
    ("PGD-band-between-grid-points", lambda: attacks.PGD(eps=0.1, steps=2, band=attacks.Band(low=0.2, high=0.9))(
        _linear(), _x(), _y()), _NO_FREQUENCY),
    ("APGD-band-beyond-the-corner", lambda: attacks.APGD(eps=0.1, steps=2, band=attacks.Band(low=6))(
        _linear(), _x(), _y()), _NO_FREQUENCY),
    ("band-project-eps-negative", lambda: attacks.band_project(_x(), _x(), eps=-0.1, norm="linf",
                                                               band=attacks.Band(high=3)), "eps must be >= 0"),
    ("band-project-norm-unknown", lambda: attacks.band_project(_x(), _x(), eps=0.1, norm="l1",
                                                               band=attacks.Band(high=3)), "unknown norm 'l1'"),
    ("band-project-bounds-reversed", lambda: attacks.band_project(_x(), _x(), eps=0.1, norm="linf",
                                                                  band=attacks.Band(high=3), bounds=(1, 0)),
     "bounds must have lo < hi"),
    ("frequency-filter-clip-reversed", lambda: frequency_filter(_x(), 3, clip=(1, 0)), "clip must have lo < hi"),
    ("FrequencyFilter-clip-reversed", lambda: FrequencyFilter(3, clip=(1, 0)), "clip must have lo < hi"),
    ("LowPass-clip-reversed", lambda: defenses.LowPass(3, clip=(1, 0)), "clip must have lo < hi"),
    ("defend-lowpass-clip-reversed", lambda: defenses.defend(_linear(), lowpass={"radius": 3, "clip": (1, 0)}),
     "clip must have lo < hi"),
    ("frequency-filter-clip-nan", lambda: frequency_filter(_x(), 3, clip=(0, float("nan"))), "clip must be finite"),
    ("dataset-zero-images", lambda: ImageDataset(images=torch.zeros(0, 1, 4, 4, dtype=torch.uint8),
                                                labels=torch.zeros(0, dtype=torch.long), classes=("a",),
                                                name="tiny", split="test", source="/data/tiny.pkl"),
     "/data/tiny.pkl: the tiny 'test' split holds no images"),
]:
    row(f"r2-empty-{id_}", call, ValueError, says)

# 7. callables and devices, checked up front
row("r2-callables-evaluate-robustness-progress-int",
    lambda: evaluate_robustness(_linear(), _x(), _y(), _FGSM, progress=3), TypeError,
    "progress must be a callable progress(description, images_done), True, False or None, got int 3")
row("r2-callables-evaluate-robustness-progress-string",
    lambda: evaluate_robustness(_linear(), _x(), _y(), _FGSM, progress="tqdm"), TypeError,
    "progress must be a callable")
row("r2-callables-heatmap-metric-one-value", lambda: _heatmap(metric=lambda logits, y: logits.sum()), ValueError,
    "metric '<lambda>' must return one value per sample, a tensor of shape [4], got shape ()")
row("r2-callables-heatmap-metric-float", lambda: _heatmap(metric=lambda logits, y: 0.5), ValueError,
    "metric '<lambda>' must return one value per sample, a tensor of shape [4], got float")
row("r2-callables-heatmap-metric-per-class", lambda: _heatmap(metric=lambda logits, y: logits), ValueError,
    "got shape (4, 10)")
row("r2-devices-tensors-unknown", lambda: _dataset().tensors(2, device="gpu"), ValueError, "unknown device 'gpu'")
if not torch.cuda.is_available():
    row("r2-devices-tensors-cuda-without-gpu", lambda: _dataset().tensors(2, device="cuda"), ValueError,
        "device 'cuda' asks for a GPU but CUDA is not available here")
    row("r2-devices-tensors-cuda-index-without-gpu", lambda: _dataset().tensors(2, device=torch.device("cuda", 1)),
        ValueError, "device 'cuda:1' asks for a GPU")

# 5. the valid forms: numpy scalars everywhere a number goes, a single string as one name
valid("r2-defend-numpy-lowpass", lambda: defenses.defend(_linear(), lowpass=np.float32(3))(_x()))
valid("r2-defend-numpy-post-average", lambda: defenses.defend(_linear(), post_average=np.float64(1.0))(_x()))
valid("r2-defend-numpy-smooth", lambda: defenses.defend(_conv(), smooth=np.float32(0.1))(_x()))
valid("r2-defend-0d-tensor-lowpass", lambda: defenses.defend(_linear(), lowpass=torch.tensor(3.0))(_x()))
valid("r2-frequency-filter-numpy-order", lambda: frequency_filter(_x(), 3, profile="butterworth", order=np.int64(2)))
valid("r2-evaluate-robustness-numpy", lambda: evaluate_robustness(_linear(), _x(), _y(), _FGSM, batch_size=np.int64(2),
                                                                  seed=np.uint32(3), eot=np.int64(1)))
valid("r2-tensors-numpy-n", lambda: _dataset().tensors(np.int64(2)))
valid("r2-make-loader-numpy-batch", lambda: make_loader(_dataset(), np.int32(2), shuffle=np.bool_(True)))
valid("r2-band-numpy-radii", lambda: attacks.pgd(_linear(), _x(), _y(), eps=0.1, steps=1,
                                                 band=attacks.Band(low=np.float32(1), high=np.int64(3))))
valid("r2-smooth-kernels-one-layer-name", lambda: defenses.smooth_kernels(_conv(), 0.1, layers="0"))
valid("r2-filter-kernels-one-layer-name", lambda: defenses.filter_kernels(_conv(), 2, layers="0"))
valid("r2-heatmap-progress-numpy-bool", lambda: _heatmap(progress=np.bool_(False)))


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize(("call", "error", "says"), ROWS)
def test_bad_input_gets_a_clear_error(call: Callable[[], Any], error: type[BaseException], says: str) -> None:
    with pytest.raises(error) as info:
        call()
    assert says in str(info.value), f"{type(info.value).__name__}: {info.value}"


@pytest.mark.parametrize(("call", "error", "says"), MODEL_ROWS)
def test_bad_model_input_gets_a_clear_error(call, error, says, files) -> None:
    with pytest.raises(error) as info:
        call(files)
    assert says in str(info.value), f"{type(info.value).__name__}: {info.value}"


@pytest.mark.parametrize(("argv", "code", "says"), CLI_ROWS)
def test_bad_command_line_is_one_line_with_its_exit_code(argv, code, says, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    got = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert says in lines[0], err
    assert list(tmp_path.iterdir()) == []  # refused before any output was written


@pytest.mark.parametrize("call", VALID)
def test_valid_input_is_accepted(call: Callable[[], Any]) -> None:
    out = call()
    assert out is not None


def test_valid_pathlib_checkpoint_and_arch_keyword(files) -> None:
    x = torch.rand(2, 1, 28, 28)
    reference = load_model(str(files["good"]))
    assert torch.equal(load_model(files["good"])(x), reference(x))
    # A bare state dict with arch=: exactly the saved weights (other random ones than "good").
    bare = load_model(files["bare"], arch="mnist_cnn")
    state = torch.load(files["bare"], weights_only=True)
    assert bare.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in bare.state_dict().items())
    assert not torch.equal(bare(x), reference(x))


def _mnist_pickle(folder: Path, sizes: tuple[int, int, int]) -> Path:
    """A protocol-2 ``mnist.pkl.gz`` with (train, valid, test) parts of these sizes."""
    rng = np.random.default_rng(0)

    def part(n: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n).astype(np.int64)

    with gzip.open(folder / "mnist.pkl.gz", "wb") as f:
        pickle.dump(tuple(part(n) for n in sizes), f, protocol=2)
    return folder / "mnist.pkl.gz"


def test_valid_mnist_pickle_of_protocol_2(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _mnist_pickle(tmp_path, (6, 2, 3))
    test = load_dataset("mnist", "test", root=tmp_path, download=False)
    assert test.images.shape == (3, 1, 28, 28) and len(load_dataset("mnist", "train", root=tmp_path)) == 8


def test_the_table_is_large_enough() -> None:
    total = len(ROWS) + len(MODEL_ROWS) + len(CLI_ROWS)
    assert total >= 150, total
    print(f"{total} bad-input rows, {len(VALID)} valid-input rows", file=sys.stderr)


# --------------------------------------------------------------------------- second round: files and the CLI


def _spec(folder: Path, checkpoint: Path, out: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.toml"
    spec.write_text(f'dataset = "mnist"\nn = 4\nbatch_size = 4\nout = "{out}"\nsanity = false\n\n'
                    f'[[models]]\nname = "cnn"\ncheckpoint = "{checkpoint}"\n\n'
                    f'[[attacks]]\nattack = "fgsm"\neps = [0.1]\n')
    return spec


def _out_file(d: Path) -> str:  # 3. an existing file
    (d / "taken").write_text("a report")
    return "taken"


def _out_under_file(d: Path) -> str:  # 3. a folder below a file
    (d / "taken").write_text("a report")
    return "taken/bench"


OUT_ROWS = [
    pytest.param(_out_file, "out '", "is a file; expected a folder", id="out-is-a-file"),
    pytest.param(_out_under_file, "out '", "cannot be created: ", id="out-under-a-file"),
]


@pytest.mark.parametrize(("make_out", "names", "says"), OUT_ROWS)
def test_a_spec_out_that_cannot_be_written_is_refused_before_any_work(make_out, names, says, files, tmp_path,
                                                                     capsys) -> None:
    """3. The library (``run``, ``run_demo``) and ``bandguard bench`` refuse before a cell runs, naming
    ``out``; the CLI with exit code 2 and one line, as ``--out`` already is."""
    from bandguard.bench import run
    from bandguard.bench.demo import run_demo

    d = tmp_path / "specs"
    d.mkdir()
    spec = _spec(d, files["good"], make_out(d))
    before = sorted(p.name for p in d.rglob("*"))
    with pytest.raises(ValueError) as info:
        run(spec)
    assert names in str(info.value) and says in str(info.value), info.value
    with pytest.raises(ValueError, match="out '.*(is a file|cannot be created)"):
        run_demo(d / make_out(d))  # before the reference model is trained or loaded
    assert main(["bench", str(spec), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bandguard bench: error: out '") and says in err[0], err
    assert sorted(p.name for p in d.rglob("*")) == before  # nothing written, no results.sqlite


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root writes anywhere")
def test_a_spec_out_in_a_read_only_folder_is_refused(files, tmp_path) -> None:
    from bandguard.bench import run

    locked = tmp_path / "locked"
    locked.mkdir()
    spec = _spec(tmp_path, files["good"], "locked/bench")
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="out '.*' cannot be written: no write permission"):
            run(spec)
    finally:
        locked.chmod(0o700)


def test_a_progress_that_is_not_callable_is_refused_before_the_spec_runs(files, tmp_path) -> None:
    from bandguard.bench import run

    spec = _spec(tmp_path, files["good"], "bench")
    with pytest.raises(TypeError, match="progress must be a callable .*, True, False or None, got int 3"):
        run(spec, progress=3)  # True (bars) and None/False (silent) are the other accepted values
    with pytest.raises(TypeError, match="force must be True or False, got str 'no'"):
        run(spec, force="no")
    assert not (tmp_path / "bench").exists()


def _cli(files: dict[str, Path], *extra: str, attack: str = "fgsm") -> list[str]:
    return ["attack", "--model", str(files["good"]), "--dataset", "mnist", "-n", "4", "--device", "cpu",
            "--attack", attack, "--eps", "0.1", *extra]


CLI_R2 = [  # (argv from the files, exit code, what the one line says)
    pytest.param(lambda f: _cli(f, "--loss", "dlr", "--steps", "1", attack="apgd"), 0, "", id="apgd-loss-dlr"),
    pytest.param(lambda f: _cli(f, "--loss", "ce", "--steps", "1", attack="apgd"), 0, "", id="apgd-loss-ce"),
    pytest.param(lambda f: _cli(f, "--loss", "margin", "--steps", "1", attack="pgd"), 0, "", id="pgd-loss-margin"),
    pytest.param(lambda f: _cli(f, "--loss", "dlr", "--steps", "1", attack="pgd"), 2,
                 "unknown loss 'dlr'; expected one of 'ce', 'margin'", id="pgd-loss-dlr"),
    pytest.param(lambda f: _cli(f, "--loss", "hinge"), 2, "invalid choice: 'hinge' (choose from 'ce', 'margin', 'dlr')",
                 id="loss-unknown-lists-every-loss"),
    pytest.param(lambda f: _cli(f, "--norm", "l1"), 2, "invalid choice: 'l1' (choose from 'linf', 'l2')",
                 id="norm-unknown"),
    pytest.param(lambda f: _cli(f, "--defense", "post_average:1e300"), 2, "radius_l2 must be at most 3.403e+38",
                 id="defense-radius-1e300"),
    pytest.param(lambda f: _cli(f, "--defense", "smooth:1e308"), 2, "rho must be at most 3.403e+38",
                 id="defense-rho-1e308"),
    pytest.param(lambda f: _cli(f, "--defense", "lowpass:1e200,profile=gaussian"), 2, "radius must be at most",
                 id="defense-gaussian-radius-1e200"),
    pytest.param(lambda f: ["attack", "--model-code", "torch.nn:Identity", "--dataset", "mnist", "-n", "4",
                            "--device", "cpu", "--eps", "0.1"], 2,
                 "--model output must have shape [N, classes] (logits), got (1, 1, 28, 28)", id="model-returns-images"),
    pytest.param(lambda f: ["attack", "--model-code", "torch.nn:Identity", "--dataset", "mnist", "-n", "4",
                            "--device", "cpu", "--eps", "0.1"], 2, "it returned images",
                 id="model-returns-images-hint"),
    pytest.param(lambda f: _cli(f, "--device", "cuda"), 2, "--device 'cuda' asks for a GPU but CUDA is not available",
                 id="device-cuda-without-gpu", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")),
    pytest.param(lambda f: ["heatmap", "--model", str(f["good"]), "--sign", "negative"], 2,
                 "invalid choice: 'negative' (choose from 'random', 'positive')", id="heatmap-sign-unknown"),
    pytest.param(lambda f: ["train", "--amp", "fp16", "--out", "m.pt"], 2,
                 "invalid choice: 'fp16' (choose from 'auto', 'off', 'bf16')", id="train-amp-unknown"),
]


@pytest.mark.parametrize(("argv", "code", "says"), CLI_R2)
def test_the_command_line_speaks_the_library_vocabulary(argv, code, says, files, tmp_path, monkeypatch,
                                                        capsys) -> None:
    """8. The CLI's choices come from the library's enums; each attack refuses the losses it does not
    take with the library's own error. Classes 2, 4 and 7 through the CLI too: one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    got = main(argv(files))
    captured = capsys.readouterr()
    assert got == code, captured.err
    if code:
        lines = [line for line in captured.err.splitlines() if line.strip() and ": note: " not in line]
        assert len(lines) == 1 and says in lines[0], captured.err  # the offline data note aside
        assert list(tmp_path.iterdir()) == []
    else:
        assert "robust acc" in captured.out and "Traceback" not in captured.err


def test_the_cli_choices_are_the_library_enums() -> None:
    """8. Every value of the loss, norm, sign and amp vocabularies is a CLI choice, and nothing else."""
    from bandguard.attacks import APGDLoss, Loss, Norm
    from bandguard.cli import build_parser
    from bandguard.spectral.heatmap import Sign
    from bandguard.training import AMP_CHOICES

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    choices = {(cmd, a.dest): set(a.choices) for cmd, p in sub.items() for a in p._actions if a.choices}
    assert choices[("attack", "loss")] == {m.value for m in Loss} | {m.value for m in APGDLoss}
    assert choices[("attack", "norm")] == choices[("spectrum", "norm")] == choices[("train", "norm")] == {
        m.value for m in Norm}
    assert choices[("heatmap", "sign")] == {m.value for m in Sign}
    assert choices[("train", "amp")] == set(AMP_CHOICES)


def test_a_data_file_holding_zero_images_is_refused(tmp_path, monkeypatch) -> None:
    """6. An MNIST pickle whose test part is empty: a clear error naming the file, not a failure at
    the first batch; the other split of the same file still loads."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _mnist_pickle(tmp_path, (6, 2, 0))
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: the mnist 'test' split holds no images"):
        load_dataset("mnist", "test", root=tmp_path, download=False)
    assert len(load_dataset("mnist", "train", root=tmp_path, download=False)) == 8


def test_edge_numbers_in_range_give_finite_results() -> None:
    """4. Settings inside float32's range but far beyond any sensible one: a finite result that means
    what the setting says, never inf or NaN."""
    x, y = _x(), _y()
    # A Gaussian low-pass that wide keeps everything; one that narrow keeps only the mean (DC).
    wide = frequency_filter(x, _BIG, profile="gaussian")
    assert torch.allclose(wide, x, atol=1e-5)
    for radius in (1e-30, 1e-300):
        narrow = frequency_filter(x, radius, profile="gaussian")
        assert torch.isfinite(narrow).all()
        assert torch.allclose(narrow, x.mean((-2, -1), keepdim=True).expand_as(x), atol=1e-5)
        assert torch.isfinite(frequency_filter(x, radius, profile="butterworth", kind="high")).all()
    # An eps (or step) beyond the box's diameter reaches exactly the box: finite, in bounds, and the
    # same as the diameter itself (Linf: 1 for bounds (0, 1)).
    for norm in ("linf", "l2"):
        for attack in (attacks.PGD(eps=_BIG, steps=3, norm=norm), attacks.PGD(eps=0.1, step_size=_BIG, norm=norm),
                       attacks.APGD(eps=_BIG, steps=3, norm=norm)):
            r = attack(_linear(), x, y)[0]
            assert torch.isfinite(r.x_adv).all() and float(r.x_adv.min()) >= 0 and float(r.x_adv.max()) <= 1
    huge = attacks.PGD(eps=_BIG, step_size=_BIG, steps=3)(_linear(), x, y)[0].x_adv
    assert torch.equal(huge, attacks.PGD(eps=1.0, step_size=1.0, steps=3)(_linear(), x, y)[0].x_adv)
    smoothed = defenses.smooth_kernels(_conv(), 1e30)  # large but representable weights
    assert all(torch.isfinite(p).all() for p in smoothed.parameters())


def test_a_single_string_is_one_name_everywhere() -> None:
    """5. ``"contrast"`` where a list of names belongs is one name, never seven letters."""
    one = spectral.corruption_spectrum(_linear(), _x(), _y(), "contrast")
    assert [r.name for r in one.results] == ["contrast"]
    assert [r.name for r in spectral.corruption_spectrum(_linear(), _x(), _y(), ("contrast",)).results] == ["contrast"]
    pair = spectral.compare_attack_spectra([_linear()], attacks.FGSM(eps=0.1), _x(), _y(), names="natural")
    assert pair.names == ("natural",)
    ds = ImageDataset(images=torch.zeros(2, 1, 4, 4, dtype=torch.uint8), labels=torch.zeros(2, dtype=torch.long),
                      classes="digit", name="t", split="test")
    assert ds.classes == ("digit",)
    named = defenses.smooth_kernels(_conv(), 0.5, layers="0")
    first = defenses.smooth_kernels(_conv(), 0.5, layers="first")
    assert torch.equal(named[0].weight, first[0].weight)
    assert defenses.SmoothSettings(0.5, layers="0").layers == ("0",)
