"""Attacks: one protocol, ``attack(model, x, y) -> AttackResults``, and a registry by name.

Every attack is a frozen dataclass of settings (:class:`PGD`, :class:`FGSM`, ...) with a plain
function twin (:func:`pgd`, :func:`fgsm`, ...) taking the same settings as keywords; both return
:class:`AttackResults` (one :class:`AttackResult` per eps) whatever ``eps`` is.

White-box: :class:`PGD` (Linf/L2, restarts, EOT, targeted), :class:`FGSM`, :class:`FGM`.
Black-box in the Fourier basis, ``eps`` the L2 norm per channel as in Yin et al. (1906.08988):
:class:`FourierAttack` and :class:`FourierGreedy` (SimBA-style, Guo et al. 1905.07121). Any
foolbox 3 attack through :class:`FoolboxAttack`. Published settings by name:
:data:`ATTACK_PRESETS`. Adversarial training takes any attack: ``TrainConfig(adversary=PGD(eps=0.3))``.
Robust accuracy over a data set, with defenses and a worst case over attacks, is the benchmark
harness's job (``bandguard.bench.evaluate_robustness``).

``create_attack("pgd", eps=0.3, steps=40)`` builds any registered attack by name; names are
``ATTACKS.names()`` plus ``"foolbox:<Name>"`` for ``foolbox.attacks.<Name>``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from bandguard._checks import check_options
from bandguard._registry import Registry
from bandguard.attacks.apgd import APGD, APGDLoss, apgd
from bandguard.attacks.band import Band, band_project
from bandguard.attacks.cascade import Stage, cascade, cascade_stage
from bandguard.attacks.ensemble import Ensemble, standard_ensemble
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
from bandguard.attacks.losses import Loss
from bandguard.attacks.norms import Norm, perturbation_norm
from bandguard.attacks.pgd import PGD, pgd
from bandguard.attacks.presets import ATTACK_PRESETS, attack_preset
from bandguard.attacks.protocol import Attack, Outcome, is_non_differentiable, is_randomized, resolve_eot
from bandguard.attacks.results import AttackResult, AttackResults
from bandguard.attacks.square import Square, square
from bandguard.attacks.threat import ThreatModel, ThreatNorm

__all__ = [
    "APGD",
    "ATTACKS",
    "ATTACK_PRESETS",
    "FGM",
    "FGSM",
    "LOSSES",
    "NORMS",
    "PGD",
    "APGDLoss",
    "Attack",
    "AttackResult",
    "AttackResults",
    "Band",
    "Ensemble",
    "FoolboxAttack",
    "FourierAttack",
    "FourierGreedy",
    "Loss",
    "Norm",
    "Order",
    "Outcome",
    "Square",
    "Stage",
    "ThreatModel",
    "ThreatNorm",
    "apgd",
    "attack_preset",
    "attack_settings",
    "band_project",
    "cascade",
    "cascade_stage",
    "create_attack",
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
    "resolve_eot",
    "square",
    "standard_ensemble",
]

ATTACKS: Registry[Callable[..., Attack]] = Registry("attack")
"""Attack factories by name: the settings classes, and ``"standard"`` (:func:`standard_ensemble`)."""
for _cls in (PGD, FGSM, FGM, FourierAttack, FourierGreedy, APGD, Square):
    ATTACKS.register(_cls.name)(_cls)
del _cls
ATTACKS.register("standard")(standard_ensemble)

LOSSES: tuple[str, ...] = tuple(dict.fromkeys(m.value for kind in (Loss, APGDLoss) for m in kind))
"""Every loss name an attack takes (PGD's and FGSM's :class:`Loss`, APGD's :class:`APGDLoss`), in
order: the CLI's ``--loss`` choices; each attack refuses the names it does not take."""
NORMS: tuple[str, ...] = tuple(m.value for m in Norm)
"""Every norm name (:class:`Norm`): the CLI's ``--norm`` choices."""

FOOLBOX_PREFIX = "foolbox:"


def create_attack(name: str, *, eps: float | tuple[float, ...], **settings: Any) -> Attack:
    """Build an attack by registry name, e.g. ``create_attack("pgd", eps=0.3, norm="l2")``.

    ``"foolbox:<Name>"`` wraps ``foolbox.attacks.<Name>(**settings)`` in :class:`FoolboxAttack`
    (``bounds`` goes to the wrapper, everything else to the foolbox attack).

    Raises:
        ValueError: an unknown name or setting (the message lists the known ones).
    """
    if isinstance(name, str) and name.startswith(FOOLBOX_PREFIX):
        return FoolboxAttack.from_name(name[len(FOOLBOX_PREFIX):], eps=eps, **settings)
    factory = ATTACKS.get(name)
    if dataclasses.is_dataclass(factory):
        known = {f.name for f in dataclasses.fields(factory)}
    else:
        known = set(inspect.signature(factory).parameters)
    check_options(settings, known - {"eps"}, f"attack {name!r}")
    return factory(eps=eps, **settings)


def attack_settings(name: str, **given: Any) -> dict[str, Any]:
    """The settings of ``create_attack(name, ...)`` from generic option names (what a command line
    offers for every attack): unset (``None``) ones dropped, and ``max_queries`` renamed to the
    standard ensemble's ``square_queries`` (its query budget is Square's; its Fourier member keeps
    its own)."""
    out = {k: v for k, v in given.items() if v is not None}
    if name == "standard" and "max_queries" in out:
        out["square_queries"] = out.pop("max_queries")
    return out
