"""The one cascade: attacks in order, each only on the samples every earlier one left robust.

Robust accuracy under several attacks is a per-sample worst case (Croce and Hein 2003.01690): a
sample counts as robust only if no attack broke it. Run as a cascade, each attack sees, eps by eps,
only the samples still alive there (the protocol's ``alive`` ``[E, N]``), so a later attack spends
nothing where an earlier one already succeeded. :class:`~bandguard.attacks.ensemble.Ensemble` runs
its members through :func:`cascade`; the benchmark harness runs one :func:`cascade_stage` per cell
(it stores each attack's cell before the next one starts), so both compute the same thing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import nn

from bandguard.attacks.protocol import Attack, check_alive
from bandguard.attacks.results import AttackResults

__all__ = ["Stage", "cascade", "cascade_stage"]


@dataclasses.dataclass(frozen=True)
class Stage:
    """What one attack of a cascade did.

    Attributes:
        results: its :class:`~bandguard.attacks.results.AttackResults` (one per eps).
        alive: bool ``[E, N]`` the samples it was given.
        robust: bool ``[E, N]`` alive and not broken by it: the next attack's ``alive``.
    """

    results: AttackResults
    alive: torch.Tensor
    robust: torch.Tensor


def cascade_stage(
    attack: Attack,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    alive: torch.Tensor | None = None,
    *,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clean_logits: torch.Tensor | None = None,
) -> Stage:
    """Run ``attack`` on ``x`` ``[N, C, H, W]`` where ``alive`` ``[E, N]`` says, one step of a cascade.

    Args:
        attack: any :class:`~bandguard.attacks.protocol.Attack`, run at its own eps.
        model, x, y, target, generator: as in ``attack(model, x, y, ...)``.
        alive: bool ``[E, N]`` (rows in the order of ``attack.epsilons``); ``None``: every sample.
        clean_logits: ``[N, K]`` of a clean forward the caller already spent and counted; then the
            call is trusted (inputs checked and the model's mode set by the caller).

    Returns:
        :class:`Stage`; ``robust = alive & ~success``.
    """
    if clean_logits is None:
        results = attack(model, x, y, target=target, generator=generator, alive=alive)
        alive = check_alive(alive, len(attack.epsilons), x.shape[0], x.device)
    else:
        alive = check_alive(alive, len(attack.epsilons), x.shape[0], x.device)
        results = attack._drive(model, x, y, target, generator, alive, clean_logits)
    return Stage(results, alive, alive & ~results.success.to(alive.device))


def cascade(
    attacks: Sequence[Attack],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    alive: torch.Tensor | None = None,
    *,
    target: torch.Tensor | None = None,
    generator_for: Callable[[Attack], torch.Generator | None] | None = None,
    clean_logits: torch.Tensor | None = None,
) -> list[Stage]:
    """Run ``attacks`` in order, each on what every earlier one left robust; one :class:`Stage` each.

    Every attack must have the same number of budgets (row ``e`` of ``alive`` is budget ``e`` of
    each). ``generator_for(attack)`` gives each attack's randomness (default: its own seed), so an
    attack's result is the one it gives when run alone on the samples left. A stage after which
    no sample is alive ends the cascade early.
    """
    stages: list[Stage] = []
    for attack in attacks:
        generator = generator_for(attack) if generator_for is not None else attack._generator(x.device)
        stage = cascade_stage(attack, model, x, y, alive, target=target, generator=generator,
                              clean_logits=clean_logits)
        stages.append(stage)
        alive = stage.robust
        if not bool(alive.any()):
            break
    return stages
