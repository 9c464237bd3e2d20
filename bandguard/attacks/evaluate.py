"""Robust accuracy of any model under one attack, over a data set in batches.

:func:`evaluate_attack` takes any ``nn.Module`` (a bare network or a defended one) and any
:class:`~bandguard.attacks.protocol.Attack`; the CLI's ``bandguard attack`` is argument parsing around
it. Results are an :class:`EvalResult` with ``to_dict()`` and an atomic JSON writer.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bandguard._checks import check_device, check_images, check_int, check_labels
from bandguard._io import write_json_atomic
from bandguard.attacks.norms import Norm
from bandguard.attacks.protocol import Attack

__all__ = ["EvalResult", "evaluate_attack"]


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Clean and robust accuracy of one model under one attack, per epsilon.

    Attributes:
        attack: the attack's ``repr`` (every setting); name: its registry name; norm: its norm.
        epsilons: the budgets, in the order given.
        n: images evaluated.
        clean_accuracy: fraction classified correctly without attack.
        robust_accuracy, success_rate: per eps, fractions over the ``n`` images.
        mean_norm: per eps, mean perturbation norm.
        forwards, gradients: per eps, total model evaluations and input gradients (per sample).
        seconds: wall time of the whole evaluation.
        device: where it ran.
    """

    attack: str
    name: str
    norm: str
    epsilons: tuple[float, ...]
    n: int
    clean_accuracy: float
    robust_accuracy: tuple[float, ...]
    success_rate: tuple[float, ...]
    mean_norm: tuple[float, ...]
    forwards: tuple[int, ...]
    gradients: tuple[int, ...]
    seconds: float
    device: str

    def to_dict(self) -> dict[str, Any]:
        """Plain values, with one row per eps under ``"per_eps"``."""
        out = dataclasses.asdict(self)
        out["epsilons"] = list(self.epsilons)
        out["per_eps"] = [
            {
                "eps": eps,
                "robust_accuracy": self.robust_accuracy[i],
                "success_rate": self.success_rate[i],
                "mean_norm": self.mean_norm[i],
                "forwards": self.forwards[i],
                "gradients": self.gradients[i],
            }
            for i, eps in enumerate(self.epsilons)
        ]
        for key in ("robust_accuracy", "success_rate", "mean_norm", "forwards", "gradients"):
            out[key] = list(out[key])
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` atomically."""
        return write_json_atomic(path, self.to_dict())


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return fallback


def evaluate_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    callback: Callable[[int], None] | None = None,
) -> EvalResult:
    """Run ``attack`` on ``model`` over ``x`` ``[N, C, H, W]``, ``y`` ``[N]`` in batches.

    Each batch is moved to ``device`` (default: the model's), attacked at every eps of the attack
    in one call (clean predictions shared), and the per-sample outcomes are summed. The model is
    never modified (attacks restore its modes).

    Args:
        model: any classifier ``nn.Module`` taking images in the attack's bounds.
        x: images (any device; float, inside the attack's bounds); y: int64 labels.
        attack: a bandguard attack (e.g. ``PGD(eps=(0.1, 0.2, 0.3))``).
        batch_size: images per attack call.
        device: where to run; ``None`` is the model's device.
        callback: called with the number of images finished after each batch (progress bars).

    Returns:
        An :class:`EvalResult`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(attack, Attack):
        raise TypeError(f"attack must be a bandguard Attack, got {type(attack).__name__}")
    x = check_images(x, "x", bounds=attack.bounds)
    y = check_labels(y, x, "y")
    check_int(batch_size, "batch_size", minimum=1)
    device = check_device(device) if device is not None else _model_device(model, x.device)
    k = len(attack.epsilons)
    clean = 0
    robust, success, norms = [0] * k, [0] * k, [0.0] * k
    forwards, gradients = [0] * k, [0] * k
    start = time.perf_counter()
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb, yb = xb.to(device), yb.to(device)
        results = attack(model, xb, yb)
        clean += int((results[0].clean_pred == yb).sum())
        for i, r in enumerate(results):
            robust[i] += int((r.adv_pred == yb).sum())
            success[i] += int(r.success.sum())
            norms[i] += float(r.norms.double().sum())
            forwards[i] += int(r.forwards.sum())
            gradients[i] += int(r.gradients.sum())
        if callback is not None:
            callback(len(yb))
    n = len(y)
    return EvalResult(
        attack=repr(attack),
        name=attack.name,
        norm=Norm(attack.norm).value,  # type: ignore[attr-defined]
        epsilons=attack.epsilons,
        n=n,
        clean_accuracy=clean / n,
        robust_accuracy=tuple(r / n for r in robust),
        success_rate=tuple(s / n for s in success),
        mean_norm=tuple(s / n for s in norms),
        forwards=tuple(forwards),
        gradients=tuple(gradients),
        seconds=time.perf_counter() - start,
        device=str(device),
    )
