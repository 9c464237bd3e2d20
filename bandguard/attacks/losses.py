"""The objectives gradient attacks ascend and the success criterion every attack shares."""

from __future__ import annotations

import enum

import torch
import torch.nn.functional as F

__all__ = ["Loss", "dlr", "is_adversarial", "margin", "per_sample_loss", "sum_loss"]


class Loss(str, enum.Enum):
    """Cross-entropy, or the logit margin of Carlini and Wagner (1608.04644)."""

    CE = "ce"
    MARGIN = "margin"

    def __repr__(self) -> str:
        return repr(self.value)


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Best other logit minus the labelled one, ``[N]`` from logits ``[N, K]`` (Carlini and Wagner
    1608.04644): positive once another class wins. Its gradient does not vanish on confident samples
    the way cross-entropy's does once the softmax rounds to one.

    Args:
        logits: ``[N, K]``.
        labels: int64 ``[N]`` true classes.

    Returns:
        ``[N]``: the best other logit minus the labelled one.
    """
    own = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return other - own


def dlr(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Untargeted Difference of Logits Ratio, ``[N]`` from logits ``[N, K >= 3]`` (Croce and Hein
    2003.01690): :func:`margin` over ``z_pi1 - z_pi3`` (``pi`` sorts the logits in decreasing order),
    so it does not change when the logits are scaled or shifted.

    Args:
        logits: ``[N, K]`` with ``K >= 3``.
        labels: int64 ``[N]`` true classes.

    Returns:
        ``[N]``: negative while the true class wins, positive once another class does.
    """
    top = logits.topk(3, dim=1).values
    return margin(logits, labels) / (top[:, 0] - top[:, 2] + 1e-12)


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor, loss: Loss, targeted: bool) -> torch.Tensor:
    """The objective to ascend, ``[N]`` from logits ``[N, K]``: larger is closer to success.

    Untargeted, ``labels`` are the true classes and the loss grows as the model errs; targeted,
    they are the targets and the loss grows as the target wins.

    Args:
        logits: the model's outputs ``[N, K]``.
        labels: int64 ``[N]``: the true classes, or the targets when ``targeted``.
        loss: cross-entropy or the logit margin (Carlini and Wagner 1608.04644).
        targeted: whether ``labels`` are targets.

    Returns:
        Tensor ``[N]``, the per-sample objective (differentiable w.r.t. ``logits``).
    """
    if loss is Loss.CE:
        value = F.cross_entropy(logits, labels, reduction="none")
        return -value if targeted else value
    value = margin(logits, labels)
    return -value if targeted else value


def sum_loss(logits: torch.Tensor, labels: torch.Tensor, loss: Loss, targeted: bool) -> torch.Tensor:
    """Sum of :func:`per_sample_loss` over the batch: one ``autograd.grad`` serves every sample.

    The samples do not interact, so each one's input gradient is that of its own loss.

    Args:
        logits: the model's outputs ``[N, K]``.
        labels: int64 ``[N]``: the true classes, or the targets when ``targeted``.
        loss: cross-entropy or the logit margin.
        targeted: whether ``labels`` are targets.

    Returns:
        A scalar tensor.
    """
    if loss is Loss.CE:
        value = F.cross_entropy(logits, labels, reduction="sum")
        return -value if targeted else value
    return per_sample_loss(logits, labels, loss, targeted).sum()


def is_adversarial(pred: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Bool ``[N]``: untargeted, the prediction differs from the label; targeted, it is the target.

    Args:
        pred: int64 predicted classes ``[N]``.
        labels: int64 ``[N]``: the true classes, or the targets when ``targeted``.
        targeted: whether ``labels`` are targets.

    Returns:
        Bool tensor ``[N]``, True where the attack succeeded.
    """
    return pred == labels if targeted else pred != labels
