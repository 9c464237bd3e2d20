"""Run-time estimates before a run: forwards per image from what attacks and defenses declare.

A gradient attack spends ``steps x restarts x EOT samples`` forward-and-backward passes per image
and eps (a backward counted as two forwards), a query attack its query budget; every pass costs
the model's declared ``forward_cost`` (post-averaging: ``K`` forwards per radius, plus one).
Multiplied by the measured time of one forward of the bare model, that is an upper bound: a
cascade attacks only the samples still robust, and early stopping ends sooner.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from bandguard._modes import model_mode
from bandguard.attacks.protocol import Attack, resolve_eot
from bandguard.defenses.base import forward_cost

__all__ = ["attack_forwards", "estimate_grid_seconds", "seconds_per_forward"]

BACKWARD_FORWARDS = 2.0
"""A backward pass counted as this many forwards (the usual rule of thumb for conv nets)."""


def attack_forwards(attack: Attack, shape: Sequence[int], eot: int = 1) -> float:
    """Forward passes per image and eps an attack may spend, at most (one forward of cost 1 each).

    Args:
        attack: the attack (an ensemble counts its members; foolbox attacks their ``steps``).
        shape: ``(C, H, W)`` of the images (a Fourier search without a budget tries every frequency).
        eot: gradient samples per step (from :func:`bandguard.attacks.resolve_eot`).

    Returns:
        The count, backward passes as :data:`BACKWARD_FORWARDS` forwards each.
    """
    members = getattr(attack, "attacks", None)
    if isinstance(members, (tuple, list)) and members and all(isinstance(m, Attack) for m in members):
        return float(sum(attack_forwards(m, shape, eot) for m in members))
    inner = getattr(attack, "attack", None)  # foolbox: its own settings
    source = inner if inner is not None and not isinstance(inner, str) else attack
    queries = getattr(source, "max_queries", None) or getattr(source, "queries", None)
    if queries is None and getattr(attack, "per_channel", False):
        queries = int(shape[-1]) * int(shape[-2])  # every frequency, both signs at most
    if queries:
        return float(queries)
    steps = int(getattr(source, "steps", 1) or 1)
    restarts = int(getattr(source, "restarts", 1) or 1)
    targets = max(1, int(getattr(source, "target_classes", 1) or 1))
    return steps * restarts * targets * eot * (1.0 + BACKWARD_FORWARDS)


def seconds_per_forward(model: nn.Module, x: torch.Tensor, *, repeats: int = 2) -> float:
    """Wall time of one image's forward through ``model``, measured on the batch ``x`` (no graph).

    Args:
        model: the bare classifier.
        x: a small batch ``[B, C, H, W]`` on the model's device.
        repeats: forwards timed (the fastest counts; the first also warms caches up).

    Returns:
        Seconds per image.
    """
    best = float("inf")
    with model_mode(model), torch.no_grad():
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            model(x)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            best = min(best, time.perf_counter() - start)
    return best / x.shape[0]


def estimate_grid_seconds(bare: nn.Module, defended: Mapping[str, nn.Module], attacks: Sequence[Attack],
                          x: torch.Tensor, n: int, eot: int) -> float:
    """An upper bound on the harness's time for one model: clean, white-box, transfer, adaptive.

    Args:
        bare: the undefended model.
        defended: label -> module, the bare model included (under any label).
        attacks: the grid's attacks, the appended scale-invariant one included.
        x: a small batch ``[B, C, H, W]`` on the device the run uses, for the timing.
        n: images evaluated.
        eot: the harness's EOT samples for randomized defenses.

    Returns:
        Seconds (0 for an empty grid).
    """
    per_forward = seconds_per_forward(bare, x)
    shape = tuple(x.shape[1:])
    forwards = 0.0
    for module in defended.values():
        cost = forward_cost(module)
        forwards += cost  # the clean cell
        for a in attacks:
            samples = resolve_eot(module, getattr(a, "eot_samples", None), default=eot) \
                if hasattr(a, "eot_samples") else 1
            if module is bare:
                forwards += len(a.epsilons) * attack_forwards(a, shape, samples)
            else:  # adaptive, plus classifying the transferred examples
                forwards += len(a.epsilons) * cost * (attack_forwards(a, shape, samples) + 1)
    return forwards * n * per_forward
