"""Attacks: one protocol, ``attack(model, x, y) -> AttackResult``, and a registry by name.

White-box: :class:`PGD` (Linf/L2, restarts, EOT, targeted), :class:`FGSM`, :class:`FGM`.
Black-box in the Fourier basis: :class:`FourierAttack` (Yin et al. 1906.08988) and
:class:`FourierGreedy` (SimBA-style, Guo et al. 1905.07121). Any foolbox 3 attack through
:class:`FoolboxAttack`. Adversarial training hooks: :func:`adversarial_example_fn`. Robust
accuracy over a data set: :func:`evaluate_attack`.

``create_attack("pgd", eps=0.3, steps=40)`` builds any registered attack by name; names are
``ATTACKS.names()`` plus ``"foolbox:<Name>"`` for ``foolbox.attacks.<Name>``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bandguard._registry import Registry
from bandguard.attacks.adversarial import Adversary, AdvKind, adversarial_example_fn
from bandguard.attacks.base import (
    BPDA,
    Attack,
    AttackResult,
    Loss,
    Norm,
    is_non_differentiable,
    is_randomized,
    perturbation_norm,
)
from bandguard.attacks.evaluate import EvalResult, evaluate_attack
from bandguard.attacks.fgsm import FGM, FGSM, fgm, fgsm
from bandguard.attacks.foolbox_adapter import FoolboxAttack, foolbox_attack
from bandguard.attacks.fourier_basis import (
    FourierAttack,
    FourierGreedy,
    Order,
    fourier_attack,
    fourier_greedy,
    frequency_order,
)
from bandguard.attacks.pgd import PGD, pgd

__all__ = [
    "ATTACKS",
    "BPDA",
    "FGM",
    "FGSM",
    "PGD",
    "AdvKind",
    "Adversary",
    "Attack",
    "AttackResult",
    "EvalResult",
    "FoolboxAttack",
    "FourierAttack",
    "FourierGreedy",
    "Loss",
    "Norm",
    "Order",
    "adversarial_example_fn",
    "create_attack",
    "evaluate_attack",
    "fgm",
    "fgsm",
    "foolbox_attack",
    "fourier_attack",
    "fourier_greedy",
    "frequency_order",
    "is_non_differentiable",
    "is_randomized",
    "perturbation_norm",
    "pgd",
]

ATTACKS: Registry[type[Attack]] = Registry("attack")
for _cls in (PGD, FGSM, FGM, FourierAttack, FourierGreedy):
    ATTACKS.register(_cls.name)(_cls)
del _cls

FOOLBOX_PREFIX = "foolbox:"


def create_attack(name: str, *, eps: float | tuple[float, ...], **kwargs: Any) -> Attack:
    """Build an attack by registry name, e.g. ``create_attack("pgd", eps=0.3, norm="l2")``.

    ``"foolbox:<Name>"`` wraps ``foolbox.attacks.<Name>(**kwargs)`` in :class:`FoolboxAttack`
    (``bounds`` goes to the wrapper, everything else to the foolbox attack).
    """
    if isinstance(name, str) and name.startswith(FOOLBOX_PREFIX):
        bounds = kwargs.pop("bounds", (0.0, 1.0))
        try:
            inner = foolbox_attack(name[len(FOOLBOX_PREFIX):], **kwargs)
        except TypeError as err:
            raise ValueError(f"attack {name!r}: {err}") from None
        return FoolboxAttack(attack=inner, eps=eps, bounds=bounds)
    cls = ATTACKS.get(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(
            f"attack {name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(sorted(known - {'eps'}))}"
        )
    return cls(eps=eps, **kwargs)
