"""Losses of the gradient attacks (bandguard/attacks/losses.py) on exact values."""

from __future__ import annotations

import torch

from bandguard.attacks.losses import Loss, is_adversarial, per_sample_loss, sum_loss


def test_losses_exact() -> None:
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    labels = torch.tensor([0, 2])
    assert per_sample_loss(logits, labels, Loss.MARGIN, False).tolist() == [-1.0, 3.0]
    assert per_sample_loss(logits, labels, Loss.MARGIN, True).tolist() == [1.0, -3.0]
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(per_sample_loss(logits, labels, Loss.CE, False), ce)
    torch.testing.assert_close(sum_loss(logits, labels, Loss.CE, True), -ce.sum())
    torch.testing.assert_close(sum_loss(logits, labels, Loss.MARGIN, False), torch.tensor(2.0))
    pred = logits.argmax(1)
    assert is_adversarial(pred, labels, False).tolist() == [False, True]
    assert is_adversarial(pred, labels, True).tolist() == [True, False]
