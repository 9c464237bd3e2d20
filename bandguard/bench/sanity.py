"""Gradient-masking sanity checks: flags, each with a one-line reason, for the table and the JSON.

The checks follow Carlini et al. (1902.06705, "On evaluating adversarial robustness"), Athalye et
al. (1802.00420, obfuscated gradients) and AutoAttack's own warnings (Croce & Hein 2003.01690).
Each is a small function returning a :class:`~bandguard.bench.results.Flag` or ``None``; the
harness runs them per model and defense on ``sanity_n`` samples and stores the outcome with the
cells, so a resumed run does not repeat them.

- ``non_monotone``: robust accuracy rises with eps.
- ``large_eps``: accuracy above chance under PGD at an eps that spans the whole input range.
- ``blackbox_beats_whitebox``: a black-box attack breaks > 1 % of samples the gradient attacks
  before it left robust.
- ``zero_gradients``: zero or non-finite input gradients on > 1 % of samples.
- ``loss_not_increasing``: a few gradient steps do not raise the attack loss.
- ``more_steps_help``: the first gradient attack with twice the steps and one more restart
  lowers robust accuracy by more than a point (and more than one sample).
- ``randomized_without_eot``: two forwards differ but a gradient attack used one sample per step.
- ``probabilities``: outputs look like probabilities, not logits.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bandguard._modes import model_mode
from bandguard.bench.results import Cell, Flag
from bandguard.bench.spec import NO_DEFENSE, settings_hash

__all__ = [
    "check_blackbox",
    "check_gradients",
    "check_large_eps",
    "check_loss_increase",
    "check_monotone",
    "check_more_steps",
    "check_probabilities",
    "check_randomized_without_eot",
    "differs_between_forwards",
    "run_checks",
]

THRESHOLD = 0.01
"""Fraction of samples above which a per-sample symptom is flagged (1 %)."""


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Best wrong logit minus the true one, ``[N]``: its gradient does not vanish on confident
    samples the way cross-entropy's does once the softmax rounds to one."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return other - true


def check_monotone(cell: Cell) -> Flag | None:
    """Robust accuracy of one cell must not increase with eps."""
    acc = cell.robust_accuracy
    for e in range(1, len(acc)):
        if acc[e] > acc[e - 1]:
            return Flag("non_monotone", cell.model, cell.defense,
                        f"{cell.mode} robust accuracy rises from {acc[e - 1]:.1%} at eps {cell.epsilons[e - 1]:g} "
                        f"to {acc[e]:.1%} at eps {cell.epsilons[e]:g}", cell.attack)
    return None


def check_blackbox(cells: Sequence[Cell]) -> Flag | None:
    """In one cascade, a gradient-free attack breaking > 1 % of what gradient attacks left robust."""
    seen_gradient = False
    for prev, cell in itertools.pairwise(cells):
        seen_gradient = seen_gradient or int(prev.gradients.sum()) > 0
        if not seen_gradient or int(cell.gradients.sum()) > 0:
            continue
        broken = (prev.robust & ~cell.robust).float().mean(1)
        worst = int(broken.argmax())
        if float(broken[worst]) > THRESHOLD:
            return Flag("blackbox_beats_whitebox", cell.model, cell.defense,
                        f"black-box {cell.attack} broke {float(broken[worst]):.1%} of samples the gradient "
                        f"attacks left robust at eps {cell.epsilons[worst]:g} ({cell.mode})", cell.attack)
    return None


def differs_between_forwards(model: nn.Module, x: torch.Tensor) -> bool:
    """``True`` if two forwards of ``model`` on the same ``x`` give different outputs."""
    with model_mode(model), torch.no_grad():
        return not torch.equal(model(x), model(x))


def check_randomized_without_eot(cells: Sequence[Cell], randomized: bool) -> Flag | None:
    """A randomized forward attacked by a gradient attack with one gradient sample per step."""
    if not randomized:
        return None
    for c in cells:
        if c.mode in ("white-box", "adaptive") and int(c.gradients.sum()) > 0 and c.eot_samples <= 1:
            return Flag("randomized_without_eot", c.model, c.defense,
                        f"two forwards differ but {c.attack} used 1 gradient sample per step (no EOT)", c.attack)
    return None


def check_probabilities(model: nn.Module, x: torch.Tensor, *, where: tuple[str, str]) -> Flag | None:
    """Outputs in ``[0, 1]`` summing to one: cross-entropy on them is nearly flat for attacks.

    Log-probabilities (post-averaging's output) are not flagged: they are valid logits.
    """
    with model_mode(model), torch.no_grad():
        out = model(x).float()
    ones = torch.ones(out.shape[0], device=out.device)
    if out.min() >= 0 and out.max() <= 1 and torch.allclose(out.sum(1), ones, atol=1e-3):
        return Flag("probabilities", *where, "outputs lie in [0, 1] and sum to 1: probabilities, not logits")
    return None


def check_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, where: tuple[str, str]) -> Flag | None:
    """Zero or non-finite input gradients of the margin loss on more than 1 % of samples."""
    with model_mode(model, requires_grad=False):
        xg = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(_margin(model(xg).float(), y).sum(), xg)
    flat = grad.flatten(1)
    bad = ~torch.isfinite(flat).all(1) | (flat.abs().amax(1) == 0)
    share = float(bad.float().mean())
    if share > THRESHOLD:
        return Flag("zero_gradients", *where, f"input gradient is zero or non-finite on {share:.0%} of samples")
    return None


def _mean_margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: int) -> float:
    with model_mode(model), torch.no_grad():
        return float(torch.stack([_margin(model(x).float(), y) for _ in range(draws)]).mean())


def check_loss_increase(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str,
                        eot: int, where: tuple[str, str]) -> Flag | None:
    """Five PGD steps from ``x`` (no random start) must raise the mean margin loss."""
    from bandguard.attacks import PGD

    attack = PGD(eps=(eps,), norm=norm, steps=5, random_start=False, loss="margin", eot_samples=eot, seed=0)
    x_adv = attack(model, x, y)[0].x_adv
    draws = 4 if eot > 1 else 1
    before, after = _mean_margin(model, x, y, draws), _mean_margin(model, x_adv, y, draws)
    if not after > before:
        return Flag("loss_not_increasing", *where,
                    f"5 PGD steps at eps {eps:g} moved the mean margin loss from {before:.4g} to {after:.4g}")
    return None


def check_large_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, eot: int,
                    where: tuple[str, str]) -> Flag | None:
    """PGD (Linf) at eps 1 (the whole ``[0, 1]`` range) must bring accuracy to chance or below."""
    from bandguard.attacks import PGD

    attack = PGD(eps=(1.0,), steps=10, loss="margin", eot_samples=eot, seed=0)
    acc = attack(model, x, y)[0].robust_accuracy
    chance = 1.0 / num_classes
    if acc > chance:
        return Flag("large_eps", *where,
                    f"accuracy {acc:.1%} above chance ({chance:.1%}) under PGD at Linf eps 1 (the whole range)")
    return None


def check_more_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Any, *,
                     where: tuple[str, str]) -> Flag | None:
    """The attack at its smallest eps against twice the steps and one more restart."""

    fields = {f.name for f in dataclasses.fields(attack)} if dataclasses.is_dataclass(attack) else set()
    if not {"steps", "restarts"} <= fields:
        return None
    base = dataclasses.replace(attack, eps=(attack.epsilons[0],))
    stronger = dataclasses.replace(base, steps=2 * attack.steps, restarts=attack.restarts + 1)
    a0 = base(model, x, y)[0].robust_accuracy
    a1 = stronger(model, x, y)[0].robust_accuracy
    if a0 - a1 > max(0.01, 1.5 / len(y)):
        return Flag("more_steps_help", *where,
                    f"{2 * attack.steps} steps and {attack.restarts + 1} restarts lower robust accuracy from "
                    f"{a0:.1%} to {a1:.1%} at eps {attack.epsilons[0]:g}: the attack has not converged")
    return None


def _first_gradient_cell(cells: Sequence[Cell]) -> Cell | None:
    for c in cells:
        if c.mode in ("white-box", "adaptive") and int(c.gradients.sum()) > 0:
            return c
    return None


def _checks_for(module: nn.Module, d: str, cells: Sequence[Cell], x: torch.Tensor, y: torch.Tensor,
                num_classes: int, attacks: Any = None) -> list[Flag]:
    model_name = cells[0].model if cells else ""
    where = (model_name, d)
    flags: list[Flag | None] = [check_monotone(c) for c in cells if c.mode != "clean"]
    chains: dict[tuple[str, str, tuple[float, ...]], list[Cell]] = {}
    for c in cells:
        if c.mode != "clean":
            chains.setdefault((c.mode, c.norm, c.epsilons), []).append(c)
    flags += [check_blackbox(chain) for chain in chains.values()]
    randomized = differs_between_forwards(module, x)
    flags.append(check_randomized_without_eot(cells, randomized))
    flags.append(check_probabilities(module, x, where=where))
    flags.append(check_gradients(module, x, y, where=where))
    eot = 2 if randomized else 1
    first = _first_gradient_cell(cells)
    eps, norm = (first.epsilons[0], first.norm) if first is not None else (0.1, "linf")
    if norm in ("linf", "l2") and eps > 0:
        flags.append(check_loss_increase(module, x, y, eps=eps, norm=norm, eot=eot, where=where))
    flags.append(check_large_eps(module, x, y, num_classes=num_classes, eot=eot, where=where))
    if first is not None and attacks is not None and first.attack in attacks:
        from bandguard.bench.harness import _attack_for

        attack, _ = _attack_for(attacks[first.attack], bool(first.randomized), max(1, first.eot_samples))
        if getattr(attack, "eot_samples", None) is not None:
            # Both runs share the EOT setting, so capping it keeps the comparison fair and cheap.
            attack = dataclasses.replace(attack, eot_samples=min(attack.eot_samples, 2))
        flags.append(check_more_steps(module, x, y, attack, where=where))
    return [f for f in flags if f is not None]


def run_checks(ctx: Any, model_spec: Any, model: nn.Module, cells: Sequence[Cell], num_classes: int) -> list[Flag]:
    """Every check for one model and each of its defenses (rank 0 computes, the store remembers)."""
    from bandguard.bench.harness import build_defense

    spec = ctx.spec
    key = settings_hash({"sanity": 3, "cells": sorted(c.key for c in cells), "n": spec.sanity_n})
    flags = None
    if ctx.shard.is_main:
        if ctx.store is not None and not ctx.force:
            flags = ctx.store.get_flags(key)
        if flags is None:
            m = min(spec.sanity_n, len(ctx.y))
            x, y = ctx.x[:m].to(ctx.device), ctx.y[:m].to(ctx.device)
            flags = []
            with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
                torch.manual_seed(int(key[:8], 16))
                for d in spec.defenses:
                    module = model if d == NO_DEFENSE else build_defense(d, model).to(ctx.device)
                    own = [c for c in cells if c.defense == d]
                    flags += _checks_for(module, d, own, x, y, num_classes, {a.name: a for a in spec.attacks})
            if ctx.store is not None:
                ctx.store.put_flags(key, flags)
    flags = ctx.shard.broadcast(flags)
    return list(flags)

