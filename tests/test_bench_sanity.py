"""Gradient-masking checks: they fire on masked or misused models and stay silent on a plain CNN."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from bandguard.bench import parse_spec, run
from bandguard.bench.results import Cell
from bandguard.bench.sanity import (
    check_blackbox,
    check_gradients,
    check_large_eps,
    check_loss_increase,
    check_monotone,
    check_probabilities,
    differs_between_forwards,
)
from bandguard.models import save_checkpoint

WHERE = ("m", "d")


class RoundInput(nn.Module):
    """Input quantisation with ``round``: its gradient is zero almost everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 4) / 4


def _cell(robust: list[list[bool]], gradients: int, eps: tuple[float, ...] = (0.1, 0.2), attack: str = "a") -> Cell:
    r = torch.tensor(robust)
    return Cell(key=attack, model="m", defense="d", mode="white-box", attack=attack, norm="linf", attack_repr="",
                epsilons=eps, robust=r, forwards=torch.ones_like(r, dtype=torch.long),
                gradients=torch.full_like(r, gradients, dtype=torch.long), eot_samples=1, randomized=False,
                forward_cost=1, seconds=0.0)


def test_monotone_check() -> None:
    assert check_monotone(_cell([[True, True], [True, False]], 1)) is None
    flag = check_monotone(_cell([[True, False], [True, True]], 1))
    assert flag is not None and flag.check == "non_monotone" and "rises from 50.0% at eps 0.1" in flag.reason


def test_blackbox_beats_whitebox_check() -> None:
    white = _cell([[True] * 10] * 2, gradients=5, attack="pgd")
    weak_black = _cell([[True] * 10] * 2, gradients=0, attack="fourier")
    strong_black = _cell([[False] + [True] * 9] * 2, gradients=0, attack="fourier")
    assert check_blackbox([white, weak_black]) is None
    flag = check_blackbox([white, strong_black])
    assert flag is not None and flag.check == "blackbox_beats_whitebox" and "10.0%" in flag.reason
    # Without a gradient attack before it there is nothing to compare with.
    assert check_blackbox([weak_black, strong_black]) is None


def test_probabilities_check(mnist_model: nn.Module, mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    x = mnist_test[0][:16]
    assert check_probabilities(mnist_model, x, where=WHERE) is None
    flag = check_probabilities(nn.Sequential(mnist_model, nn.Softmax(1)), x, where=WHERE)
    assert flag is not None and flag.check == "probabilities"


def test_zero_gradient_front_end_fires(mnist_model: nn.Module, mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = mnist_test[0][:32], mnist_test[1][:32]
    masked = nn.Sequential(RoundInput(), mnist_model)
    flag = check_gradients(masked, x, y, where=WHERE)
    assert flag is not None and flag.check == "zero_gradients" and "is zero on 100%" in flag.reason
    assert "non-finite on" not in flag.reason.split("(")[0]
    flag = check_loss_increase(masked, x, y, eps=0.1, norm="linf", eot=1, where=WHERE)
    assert flag is not None and flag.check == "loss_not_increasing"
    # The same model without the rounding passes both.
    assert check_gradients(mnist_model, x, y, where=WHERE) is None
    assert check_loss_increase(mnist_model, x, y, eps=0.1, norm="linf", eot=1, where=WHERE) is None


def test_large_eps_probe(mnist_model: nn.Module, mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = mnist_test[0][:32], mnist_test[1][:32]
    assert check_large_eps(mnist_model, x, y, num_classes=10, eot=1, where=WHERE) is None
    # A model that ignores its input keeps its accuracy at any eps: flagged.
    constant = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        constant[1].weight.zero_()
        constant[1].bias.copy_(5 * torch.nn.functional.one_hot(y.mode().values, 10).float())  # logits
    flag = check_large_eps(constant, x, y, num_classes=10, eot=1, where=WHERE)
    assert flag is not None and flag.check == "large_eps"


@pytest.mark.slow
def test_harness_flags_a_randomized_model_attacked_without_eot_and_not_the_plain_cnn(
    mnist_model: nn.Module, tmp_path: Path
) -> None:
    ckpt = tmp_path / "cnn.pt"
    save_checkpoint(ckpt, mnist_model, arch="mnist_cnn", dataset="mnist")
    spec = parse_spec({
        "dataset": "mnist", "n": 16, "batch_size": 16, "sanity_n": 16, "out": str(tmp_path / "out"),
        "defenses": ["post_average:3.0,K=1"],
        "models": [{"name": "cnn", "checkpoint": str(ckpt)}],
        # 40 steps: PGD-10 has not converged on this CNN at eps 0.1 (more_steps_help fires, rightly:
        # 25 % vs 12.5 % robust on the 16 probe images with 20 steps and 2 restarts, measured).
        "attacks": [{"attack": "pgd", "eps": [0.1, 0.2], "steps": 40, "eot_samples": 1}],
    })
    result = run(spec)
    by_defense = {}
    for f in result.flags:
        by_defense.setdefault(f.defense, set()).add(f.check)
    assert "none" not in by_defense, result.flags  # the plain trained CNN: silent
    assert "randomized_without_eot" in by_defense["post_average:3.0,K=1"]
    row = result.row(model="cnn", defense="post_average:3.0,K=1", mode="adaptive", attack="pgd", eps=0.1)
    assert "randomized_without_eot" in row.flags
    assert "randomized_without_eot" in (tmp_path / "out" / "report.md").read_text()


def test_differs_between_forwards(mnist_model: nn.Module, mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    from bandguard.defenses import build_defense

    x = mnist_test[0][:4]
    assert not differs_between_forwards(mnist_model, x)
    assert differs_between_forwards(build_defense("post_average:3.0,K=1", mnist_model), x)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradients_fire(bad: float, mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = mnist_test[0][:8], mnist_test[1][:8]

    class Poisoned(nn.Module):
        """Finite logits whose input gradient is ``bad`` everywhere (a custom backward)."""

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return _Poison.apply(z.flatten(1)[:, :10], bad)

    flag = check_gradients(Poisoned(), x, y, loss="margin", where=WHERE)
    assert flag is not None and "is non-finite on 100%" in flag.reason and "zero on" not in flag.reason


class _Poison(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, bad: float) -> torch.Tensor:  # type: ignore[override]
        ctx.bad = bad
        return z.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return torch.full_like(grad, ctx.bad), None


class ScaledLogits(nn.Module):
    """Masking by scale: logits times a huge factor, so the softmax rounds to one and cross-entropy's
    input gradient vanishes on every confident sample while the predictions stay the same."""

    def __init__(self, net: nn.Module, factor: float) -> None:
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.factor


class NoisyInput(nn.Module):
    """A randomized front end that does not declare ``randomized``: attacks get no EOT."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x + 0.3 * torch.randn_like(x)).clamp(0, 1))


TRAP_EPS = (2.0, 3.0)  # L2 on MNIST: the plain CNN falls to about 1 % and 0 %


def _trap_run(model: nn.Module, mnist_test: tuple[torch.Tensor, torch.Tensor], **kw: object):
    from bandguard.attacks import PGD
    from bandguard.bench import evaluate_robustness

    x, y = mnist_test[0][:128], mnist_test[1][:128]
    return evaluate_robustness(model, x, y, {"pgd": PGD(eps=TRAP_EPS, norm="l2", steps=10)}, sanity=True,
                               sanity_n=32, **kw)  # type: ignore[arg-type]


def _worst(result) -> list[float]:
    return [result.row(model="model", defense="none", mode="white-box", attack="worst case", eps=e).robust_accuracy
            for e in TRAP_EPS]


@pytest.fixture(scope="module")
def plain_run(one_thread_module: None, mnist_model: nn.Module, mnist_test: tuple[torch.Tensor, torch.Tensor]):
    return _trap_run(mnist_model, mnist_test)


@pytest.fixture(scope="module")
def one_thread_module() -> Iterator[None]:
    """One intra-op thread for the module-scoped run (the function-scoped ``one_thread`` cannot serve it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_plain_trained_cnn_stays_unflagged(plain_run) -> None:
    assert plain_run.flags == ()
    assert [r.attack for r in plain_run.rows][:4] == ["pgd", "pgd", "apgd-dlr", "apgd-dlr"]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("trap", ["scale-1e4", "round", "noise-no-eot"])
def test_masking_traps_are_flagged_and_scale_masking_is_broken(
    trap: str, plain_run, mnist_model: nn.Module, mnist_test: tuple[torch.Tensor, torch.Tensor]
) -> None:
    model = {"scale-1e4": lambda: ScaledLogits(mnist_model, 1e4),
             "round": lambda: nn.Sequential(RoundInput(), mnist_model), "noise-no-eot": lambda: NoisyInput(mnist_model),
             }[trap]()
    result = _trap_run(model, mnist_test)
    expected = {"randomized_without_eot"} if trap == "noise-no-eot" else {"zero_gradients", "loss_not_increasing"}
    assert expected <= {f.check for f in result.flags}, result.flags
    for f in result.flags:  # one line, naming its check
        assert f.reason.startswith(f"{f.check}: ") and "\n" not in f.reason
    if trap.startswith("scale"):
        # The cross-entropy PGD alone reads the masked model as robust...
        pgd = [result.row(model="model", defense="none", mode="white-box", attack="pgd", eps=e).robust_accuracy
               for e in TRAP_EPS]
        assert min(pgd) > 0.9
        # ...the appended APGD-DLR brings the worst case to the unmasked model's, within 2 points.
        for masked, plain in zip(_worst(result), _worst(plain_run)):
            assert abs(masked - plain) <= 0.02, (masked, plain)
        flag = next(f for f in result.flags if f.check == "zero_gradients")
        assert "ce loss" in flag.reason and "(margin loss: non-finite on 0%, zero on 0%)" in flag.reason
        # Opting out of the scale-invariant attack leaves only the masked reading.
        opted_out = _trap_run(model, mnist_test, scale_invariant=False)
        assert "apgd-dlr" not in {r.attack for r in opted_out.rows} and min(r.robust_accuracy
                                                                           for r in opted_out.rows) > 0.9


@pytest.mark.slow
def test_more_steps_check(mnist_model: nn.Module, mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    from bandguard.attacks import PGD
    from bandguard.bench.sanity import check_more_steps

    x, y = mnist_test[0][:32], mnist_test[1][:32]
    # Two short steps cannot reach the ball's surface: doubling them breaks more samples.
    weak = PGD(eps=(0.2,), steps=2, step_size=0.05, random_start=False)
    flag = check_more_steps(mnist_model, x, y, weak, where=WHERE)
    assert flag is not None and flag.check == "more_steps_help"
    converged = PGD(eps=(0.2,), steps=20)
    assert check_more_steps(mnist_model, x, y, converged, where=WHERE) is None
