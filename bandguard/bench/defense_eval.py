"""Honest evaluation of defenses: clean, transfer and adaptive robust accuracy side by side.

Lin et al. (1905.12797) and Wang et al. (1905.13545) report robustness to adversarial examples
crafted on the *undefended* model (transfer). A defense can look strong under transfer and still
fall to an attack that goes through it (adaptive; Athalye et al. 1802.00420, Tramer et al.
2002.08347): gradients through the defense, averaged over its randomness (EOT) when it is
randomized. :func:`evaluate_defenses` reports both, per defense and per epsilon, and a per-sample
worst case of the two.

This module composes attacks and defenses (neither imports the other); it reads the defense
protocol by duck typing (``randomized``, ``forward_cost``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from bandguard._checks import check_images, check_int, check_labels
from bandguard._modes import model_mode
from bandguard.attacks.protocol import Attack
from bandguard.defenses.base import forward_cost, is_randomized

__all__ = ["DefenseRow", "DefenseTable", "evaluate_defenses"]

log = logging.getLogger(__name__)

UNDEFENDED = "none"

# Model inputs (images x forwards per image) per attack batch: bounds the autograd memory of a
# post-averaged model (91 forwards per image) to what a plain batch of this size would use.
DEFAULT_SAMPLE_BUDGET = 2048


@dataclasses.dataclass(frozen=True)
class DefenseRow:
    """One defense's line of a :class:`DefenseTable`.

    Attributes:
        name: the defense's name (``"none"`` for the undefended model).
        description: its ``repr`` on one line.
        randomized: whether it declares ``randomized`` (then the adaptive attack used EOT).
        forward_cost: model forwards per input.
        eot_samples: gradient samples per adaptive step (1 for deterministic defenses).
        clean_accuracy: accuracy on the clean images (one draw for randomized defenses).
        transfer_accuracy: per eps, accuracy on adversarial examples crafted on the undefended
            model (how Lin et al. and Wang et al. report).
        adaptive_accuracy: per eps, accuracy on adversarial examples crafted through the defense.
        worst_accuracy: per eps, fraction of images correct under both attacks.
        seconds: wall time of this row.
    """

    name: str
    description: str
    randomized: bool
    forward_cost: int
    eot_samples: int
    clean_accuracy: float
    transfer_accuracy: tuple[float, ...]
    adaptive_accuracy: tuple[float, ...]
    worst_accuracy: tuple[float, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain values."""
        out = dataclasses.asdict(self)
        for key in ("transfer_accuracy", "adaptive_accuracy", "worst_accuracy"):
            out[key] = list(out[key])
        return out


@dataclasses.dataclass(frozen=True)
class DefenseTable:
    """Clean / transfer / adaptive accuracy of several defenses under one attack.

    Attributes:
        attack: the attack's ``repr``; epsilons: its budgets; n: images evaluated.
        rows: one :class:`DefenseRow` per defense, the undefended model first.
        device: where it ran.
    """

    attack: str
    epsilons: tuple[float, ...]
    n: int
    rows: tuple[DefenseRow, ...]
    device: str

    def row(self, name: str) -> DefenseRow:
        """The row called ``name`` (``ValueError`` if none is)."""
        for r in self.rows:
            if r.name == name:
                return r
        raise ValueError(f"no defense {name!r} in the table; rows are {[r.name for r in self.rows]}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values, rows as a list of dicts."""
        return {"attack": self.attack, "epsilons": list(self.epsilons), "n": self.n,
                "device": self.device, "rows": [r.to_dict() for r in self.rows]}

    def to_markdown(self) -> str:
        """A Markdown table: one line per defense and eps, accuracies in percent."""
        lines = ["| defense | eps | clean | transfer | adaptive | worst case | EOT | forwards/input |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            for i, eps in enumerate(self.epsilons):
                lines.append(
                    f"| {r.name} | {eps:.4g} | {100 * r.clean_accuracy:.1f} | "
                    f"{100 * r.transfer_accuracy[i]:.1f} | {100 * r.adaptive_accuracy[i]:.1f} | "
                    f"{100 * r.worst_accuracy[i]:.1f} | {r.eot_samples} | {r.forward_cost} |"
                )
        return "\n".join(lines)


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Bool ``[N]``: one forward of ``model`` (in eval mode, restored) per image is right."""
    with model_mode(model), torch.no_grad():
        pred = torch.cat([model(xb).argmax(1) for xb in x.split(batch_size)])
    return pred == y


def _attack_in_batches(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       batch_size: int) -> list[torch.Tensor]:
    """``x_adv`` per eps, attacking ``batch_size`` images at a time."""
    per_eps: list[list[torch.Tensor]] = [[] for _ in attack.epsilons]
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        for i, r in enumerate(attack(model, xb, yb)):
            per_eps[i].append(r.x_adv)
    return [torch.cat(parts) for parts in per_eps]


def _adaptive_attack(attack: Attack, randomized: bool, eot_samples: int | None) -> tuple[Attack, int]:
    """The attack to run through a defense: EOT set for randomized defenses, when it has the field."""
    fields = {f.name for f in dataclasses.fields(attack)}
    if "eot_samples" not in fields:
        if randomized:
            log.warning("%s has no eot_samples setting: adaptive attack without EOT", type(attack).__name__)
        return attack, 1
    if not randomized:
        return dataclasses.replace(attack, eot_samples=1), 1
    if eot_samples is None:
        eot_samples = attack.eot_samples  # type: ignore[attr-defined]
    if eot_samples is None:
        from bandguard.attacks.pgd import DEFAULT_EOT_SAMPLES

        eot_samples = DEFAULT_EOT_SAMPLES
    return dataclasses.replace(attack, eot_samples=eot_samples), eot_samples


def evaluate_defenses(
    model: nn.Module,
    defenses: Mapping[str, nn.Module],
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eot_samples: int | None = None,
    batch_size: int = 256,
    sample_budget: int = DEFAULT_SAMPLE_BUDGET,
    callback: Callable[[str], None] | None = None,
) -> DefenseTable:
    """Clean, transfer and adaptive robust accuracy of each defense, side by side.

    For every eps of ``attack``: adversarial examples are crafted once on ``model`` (transfer) and
    classified by every defense; then ``attack`` is run through each defense (adaptive), with
    ``eot_samples`` gradient samples per step if the defense is randomized (attacks with an
    ``eot_samples`` field, e.g. :class:`~bandguard.attacks.PGD`). Robust accuracy in both columns
    is one fresh forward of the defense on the final ``x_adv``, so the columns are measured alike.
    The first row is the undefended model (its three columns are the same attack).

    Args:
        model: the undefended classifier the defenses wrap, ``[N, C, H, W] -> logits``.
        defenses: name -> defended module (e.g. from :func:`bandguard.defenses.build_defense`).
        attack: a bandguard attack (its epsilons, norm and bounds are used throughout).
        x: images ``[N, C, H, W]`` inside the attack's bounds; y: int64 labels ``[N]``.
        eot_samples: gradient samples per step against randomized defenses; ``None`` keeps the
            attack's own setting, else the attacks' default.
        batch_size: images per attack call on a defense with ``forward_cost == 1``.
        sample_budget: for costlier defenses, images per call are ``sample_budget // forward_cost``
            (at most ``batch_size``) to bound memory.
        callback: called with each row's name when it starts (progress).

    Returns:
        A :class:`DefenseTable`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(attack, Attack):
        raise TypeError(f"attack must be a bandguard Attack, got {type(attack).__name__}")
    x = check_images(x, "x", bounds=attack.bounds)
    y = check_labels(y, x, "y")
    check_int(batch_size, "batch_size", minimum=1)
    check_int(sample_budget, "sample_budget", minimum=1)
    if eot_samples is not None:
        check_int(eot_samples, "eot_samples", minimum=1)
    for name, d in defenses.items():
        if not isinstance(d, nn.Module):
            raise TypeError(f"defense {name!r} must be an nn.Module, got {type(d).__name__}")
        if name == UNDEFENDED:
            raise ValueError(f"defense name {UNDEFENDED!r} is reserved for the undefended model")

    if callback is not None:
        callback(UNDEFENDED)
    start = time.perf_counter()
    base_attack, _ = _adaptive_attack(attack, False, None)
    transfer = _attack_in_batches(base_attack, model, x, y, batch_size)
    base_clean = _correct(model, x, y, batch_size)
    base_robust = [_correct(model, xa, y, batch_size) for xa in transfer]
    base_acc = tuple(float(c.float().mean()) for c in base_robust)
    rows = [DefenseRow(UNDEFENDED, _one_line(model), False, 1, 1, float(base_clean.float().mean()),
                       base_acc, base_acc, base_acc, time.perf_counter() - start)]
    for name, defense in defenses.items():
        if callback is not None:
            callback(name)
        start = time.perf_counter()
        randomized = is_randomized(defense)
        cost = forward_cost(defense)
        size = max(1, min(batch_size, sample_budget // cost))
        adaptive_attack, eot = _adaptive_attack(attack, randomized, eot_samples)
        clean = _correct(defense, x, y, size)
        t_ok = [_correct(defense, xa, y, size) for xa in transfer]
        adaptive = _attack_in_batches(adaptive_attack, defense, x, y, size)
        a_ok = [_correct(defense, xa, y, size) for xa in adaptive]
        rows.append(DefenseRow(
            name=name, description=_one_line(defense), randomized=randomized, forward_cost=cost,
            eot_samples=eot, clean_accuracy=float(clean.float().mean()),
            transfer_accuracy=tuple(float(t.float().mean()) for t in t_ok),
            adaptive_accuracy=tuple(float(a.float().mean()) for a in a_ok),
            worst_accuracy=tuple(float((t & a).float().mean()) for t, a in zip(t_ok, a_ok)),
            seconds=time.perf_counter() - start,
        ))
    return DefenseTable(attack=repr(attack), epsilons=attack.epsilons, n=int(x.shape[0]),
                        rows=tuple(rows), device=str(x.device))


def _one_line(module: nn.Module) -> str:
    text = " ".join(repr(module).split())
    return text if len(text) <= 300 else text[:297] + "..."
