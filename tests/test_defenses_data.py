"""Defenses on real MNIST / CIFAR-10 with the shared reference nets (fixtures in conftest.py).

Accuracy gaps are measured against the undefended model on the same images. Heavier runs (1,000
images through 91 forwards each, CIFAR post-averaging) are marked ``slow``.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from bandguard.attacks import PGD
from bandguard.bench import evaluate_robustness
from bandguard.defenses import RECOMMENDED, LowPass, PostAveraging, build_defense, defend, smooth_kernels
from bandguard.models import accuracy

MAX_GAP = 0.015  # the bound: within 1.5 points of the undefended model


def _gap(model: nn.Module, defended: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    base, acc = accuracy(model, x, y), accuracy(defended, x, y, batch_size=64)
    print(f"undefended {100 * base:.1f} %, defended {100 * acc:.1f} % on {len(y)} images")
    return base, acc


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_recommended_lowpass_keeps_clean_accuracy(dataset: str, request: pytest.FixtureRequest) -> None:
    prefix = "mnist" if dataset == "mnist" else "cifar"
    model = request.getfixturevalue(f"{prefix}_model")
    x, y = request.getfixturevalue(f"{prefix}_test")
    radius = RECOMMENDED[dataset]["lowpass"]
    base, acc = _gap(model, nn.Sequential(LowPass(radius), model), x, y)
    assert acc >= base - MAX_GAP
    # The filter does remove something: a much smaller radius costs accuracy.
    assert accuracy(nn.Sequential(LowPass(radius / 4), model), x, y) < base - 0.05


def test_recommended_post_averaging_keeps_clean_accuracy_mnist(mnist_model, mnist_test) -> None:
    # 300 images: one image is a third of a point, finer than the 1.5-point bound (with 100 images
    # one image decided it). Measured: -0.4 points (full-data net), -1 point
    # (sample-trained net, on 100 images).
    x, y = mnist_test[0][:300], mnist_test[1][:300]
    pa = PostAveraging(mnist_model, radius_l2=RECOMMENDED["mnist"]["post_average"],
                       generator=torch.Generator().manual_seed(0))
    base, acc = _gap(mnist_model, pa, x, y)
    assert acc >= base - MAX_GAP


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_recommended_post_averaging_keeps_clean_accuracy_1000(dataset: str, request: pytest.FixtureRequest) -> None:
    prefix = "mnist" if dataset == "mnist" else "cifar"
    model = request.getfixturevalue(f"{prefix}_model")
    x, y = request.getfixturevalue(f"{prefix}_test")
    pa = PostAveraging(model, radius_l2=RECOMMENDED[dataset]["post_average"],
                       generator=torch.Generator().manual_seed(0))
    base, acc = _gap(model, pa, x, y)
    assert acc >= base - MAX_GAP


def test_kernel_smoothing_cost_grows_with_rho_and_small_rho_is_cheap(mnist_model, mnist_test) -> None:
    """Smoothing is not among the RECOMMENDED defenses: its cost depends on the trained kernels.

    Measured on 1,000 test images, cost at rho 0.1 / 0.25 in points: the net trained on all 60,000
    images 1.2 / 5.3; nets trained on the bundled sample (offline) 1.3 / 8.4 and 2.2 / 11.1 (two
    runs of the same recipe on different thread counts). What holds for all of them: the cost
    grows with rho, and rho 0.1 costs under 3 points and under half of what rho 0.25 costs.
    """
    x, y = mnist_test
    base = accuracy(mnist_model, x, y)
    rhos = (0.1, 0.25, 0.5, 1.0)
    cost = [base - accuracy(smooth_kernels(mnist_model, rho), x, y) for rho in rhos]
    print("MNIST clean accuracy lost to smoothing the first conv, per rho", dict(zip(rhos, cost)))
    assert all(a <= b + 0.005 for a, b in itertools.pairwise(cost)), cost  # more smoothing, more cost
    assert cost[0] < 0.03 and cost[0] < 0.5 * cost[1], cost
    assert cost[-1] > 0.05  # rho = 1 does change the model


def test_adaptive_eot_attack_beats_transfer_on_post_averaged_model(mnist_model, mnist_test) -> None:
    # A cheap post-averaging (K=2, 13 forwards) keeps the test fast; the mechanism is the same.
    x, y = mnist_test[0][:32], mnist_test[1][:32]
    pa = build_defense(f"post_average:{RECOMMENDED['mnist']['post_average']},K=2,seed=0", mnist_model)
    result = evaluate_robustness(mnist_model, x, y, {"pgd": PGD(eps=0.12, steps=8)}, defenses={"post_average": pa},
                                 eot=2)
    cells = {(c.defense, c.mode): c for c in result.cells}
    print(result.to_markdown())
    adaptive = cells[("post_average", "adaptive")]
    assert adaptive.eot_samples == 2 and adaptive.randomized
    assert adaptive.robust_accuracy[0] <= cells[("post_average", "transfer")].robust_accuracy[0]
    # The undefended model's own attack is real (well below its clean accuracy).
    bare = cells[("none", "white-box")].robust_accuracy[0]
    assert bare < cells[("none", "clean")].robust_accuracy[0] - 0.2


@pytest.mark.slow
def test_composed_defense_on_cifar(cifar_model, cifar_test) -> None:
    x, y = cifar_test[0][:200], cifar_test[1][:200]
    d = defend(cifar_model, lowpass=RECOMMENDED["cifar10"]["lowpass"],
               post_average=RECOMMENDED["cifar10"]["post_average"], generator=torch.Generator().manual_seed(0))
    base, acc = _gap(cifar_model, d, x, y)
    assert acc >= base - 0.03  # two defenses stacked: each within 1.5 points
