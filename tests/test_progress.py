"""The one progress mechanism: bars on a terminal only (or when asked), estimates from forward costs."""

from __future__ import annotations

import io
import logging

import pytest
import torch
from torch import nn

from bandguard._progress import LONG_RUN_SECONDS, Bars, announce_estimate, bar, enabled, format_seconds
from bandguard.attacks import APGD, PGD, FourierAttack, Square, standard_ensemble
from bandguard.bench.cost import BACKWARD_FORWARDS, attack_forwards, estimate_grid_seconds
from bandguard.defenses import PostAveraging


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does in an interactive shell."""

    def isatty(self) -> bool:
        return True


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))


def test_bars_are_drawn_on_a_terminal_only_unless_asked() -> None:
    tty, pipe = _Terminal(), io.StringIO()
    assert enabled(None, tty) and not enabled(None, pipe)
    assert enabled(True, pipe) and not enabled(False, tty)
    for stream in (tty, pipe):
        bars = Bars(10, stream=stream)
        bars("cell a", 4)
        bars("cell a", 6)
        bars("cell b", 10)  # a new description: a new bar
        bars.close()
    assert "cell a:" in tty.getvalue() and "cell b:" in tty.getvalue() and "/10 [" in tty.getvalue()
    assert pipe.getvalue() == ""
    forced = io.StringIO()
    with Bars(5, progress=True, stream=forced) as bars:
        bars("x", 5)
    assert "x:" in forced.getvalue() and "/5 [" in forced.getvalue()
    quiet = _Terminal()
    b = bar(3, "q", progress=False, stream=quiet)
    b.update(3)
    b.close()
    assert quiet.getvalue() == ""
    with pytest.raises(TypeError, match="progress must be True, False or None, got str 'yes'"):
        enabled("yes")  # type: ignore[arg-type]


def test_estimates_are_information_below_ten_minutes_and_a_warning_above(caplog: pytest.LogCaptureFixture) -> None:
    assert format_seconds(0.2) == "1 s" and format_seconds(59.5) == "60 s"
    assert format_seconds(61) == "about 2 min" and format_seconds(2 * 3600 + 1) == "about 2.1 h"
    with caplog.at_level(logging.INFO, logger="bandguard.progress"):
        short = announce_estimate(30.0, "a small grid")
        long = announce_estimate(LONG_RUN_SECONDS + 1, "a big grid", hint="use -n")
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert levels == [(logging.INFO, short), (logging.WARNING, long)]
    assert "30 s" in short and "about 11 min" in long and long.endswith("this is long: use -n")


def test_forwards_follow_steps_restarts_eot_queries_and_members() -> None:
    shape = (3, 8, 8)
    per_step = 1 + BACKWARD_FORWARDS
    assert attack_forwards(PGD(eps=0.1, steps=10), shape) == 10 * per_step
    assert attack_forwards(PGD(eps=0.1, steps=10, restarts=2), shape, eot=5) == 10 * 2 * 5 * per_step
    assert attack_forwards(APGD(eps=0.1, steps=4, loss="dlr", target_classes=3), shape) == 4 * 3 * per_step
    assert attack_forwards(Square(eps=0.1, queries=300), shape) == 300
    assert attack_forwards(FourierAttack(eps=1.0, max_queries=64), shape) == 64
    assert attack_forwards(FourierAttack(eps=1.0), shape) == 8 * 8  # every frequency at most
    ensemble = standard_ensemble(0.1, steps=5, target_classes=2, fourier_queries=10, square_queries=20)
    assert attack_forwards(ensemble, shape) == 5 * per_step + 5 * 2 * per_step + 10 + 20


def test_grid_estimate_scales_with_images_and_a_defense_forward_cost() -> None:
    net = _net()
    x = torch.rand(16, 3, 8, 8)
    attacks = [PGD(eps=0.1, steps=5)]
    bare = estimate_grid_seconds(net, {"none": net}, attacks, x, n=100, eot=10)
    assert bare > 0
    averaged = PostAveraging(net, K=3, radius_l2=0.5)  # randomized: EOT 10, and forward_cost forwards each
    both = estimate_grid_seconds(net, {"none": net, "pa": averaged}, attacks, x, n=100, eot=10)
    # The defended part costs forward_cost * (EOT 10 x 5 steps x 3 + 1 transfer) + 1 clean forwards per image,
    # against 5 x 3 + 1 for the bare model: far more than the bare grid (timing noise aside).
    assert both > 10 * bare


def test_train_and_the_harness_draw_bars_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    from bandguard.bench import evaluate_robustness
    from bandguard.training import TrainConfig, train

    x = torch.rand(32, 3, 8, 8)
    y = torch.randint(0, 10, (32,))
    config = TrainConfig(epochs=1, batch_size=16, lr=0.01)
    train(_net(), (x, y), config, progress=None)  # captured stderr is no terminal: no bar
    assert "epoch 1/1" not in capsys.readouterr().err
    train(_net(), (x, y), config, progress=True)
    assert "epoch 1/1" in capsys.readouterr().err
    attacks = {"pgd": PGD(eps=0.1, steps=2)}
    evaluate_robustness(_net(), x, y, attacks, scale_invariant=False)
    assert capsys.readouterr().err == ""
    evaluate_robustness(_net(), x, y, attacks, scale_invariant=False, progress=True)
    assert "model | pgd:" in capsys.readouterr().err
