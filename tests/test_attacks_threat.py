"""ThreatModel: per-channel L2 balls sit in whole-image L2 balls sqrt(C) times larger, and no smaller."""

from __future__ import annotations

import math

import pytest
import torch

from bandguard.attacks import PGD, FourierAttack, FourierGreedy, ThreatModel, ThreatNorm


def test_whole_image_radius_of_a_per_channel_ball() -> None:
    t = ThreatModel("l2/channel", (1.0, 2.0), (3, 8, 8))
    assert t.whole_image == ThreatModel("l2", (math.sqrt(3), 2 * math.sqrt(3)), (3, 8, 8))
    assert ThreatModel("linf", (0.1,), (3, 8, 8)).whole_image.norm is ThreatNorm.LINF


@pytest.mark.parametrize(("ball", "fits"), [
    (("l2", (math.sqrt(3), 2 * math.sqrt(3))), True),
    (("l2", (2.0, 4.0)), True),
    (("l2", (1.0, 2.0)), False),  # the same numbers: outside
    (("l2", (math.sqrt(3), 1.99 * math.sqrt(3))), False),
    (("linf", (10.0, 10.0)), False),  # another norm
    (("l2", (2.0,)), False),  # another number of budgets
])
def test_fits_in(ball: tuple[str, tuple[float, ...]], fits: bool) -> None:
    fourier = ThreatModel("l2/channel", (1.0, 2.0), (3, 8, 8))
    assert fourier.fits_in(ThreatModel(ball[0], ball[1], (3, 8, 8))) is fits
    assert not fourier.fits_in(ThreatModel("l2", (9.0, 9.0), (1, 8, 8)))  # another image shape


def test_measure_matches_the_definition() -> None:
    delta = torch.zeros(2, 3, 4, 4)
    delta[0, :, 0, 0] = 1.0  # 1 per channel, sqrt(3) as a whole
    delta[1, 1, 2, 2] = -0.5
    assert ThreatModel("l2/channel", (1.0,), (3, 4, 4)).measure(delta).tolist() == [1.0, 0.5]
    torch.testing.assert_close(ThreatModel("l2", (1.0,), (3, 4, 4)).measure(delta), torch.tensor([math.sqrt(3), 0.5]))
    assert ThreatModel("linf", (1.0,), (3, 4, 4)).measure(delta).tolist() == [1.0, 0.5]


def test_attacks_report_their_threat() -> None:
    assert FourierAttack(eps=(1.0, 2.0)).threat((3, 8, 8)) == ThreatModel("l2/channel", (1.0, 2.0), (3, 8, 8))
    assert FourierGreedy(eps=1.0).threat((1, 8, 8)).norm is ThreatNorm.L2_CHANNEL
    assert PGD(eps=0.5, norm="l2").threat((3, 8, 8)) == ThreatModel("l2", (0.5,), (3, 8, 8))
    assert ThreatModel("l2", (0.5, 1.0), (3, 32, 32)).label() == "l2 [0.5, 1] on 3x32x32"
    with pytest.raises(ValueError, match=r"shape must be \(C, H, W\)"):
        ThreatModel("l2", (0.5,), (32, 32))  # type: ignore[arg-type]
