"""Published attack settings by name, so a paper's recipe is one keyword away.

bandguard's PGD default step is ``2.5 * eps / steps``; the settings Madry et al. (1706.06083)
published for adversarial training differ, and so do Wong et al.'s (2001.03994) for fast
adversarial training. ``attack_preset("madry_mnist")`` returns them as a ready
:class:`~bandguard.attacks.protocol.Attack`; ``bandguard train --adv-preset madry_mnist`` uses
the same table.

======================  ===========================================================
name                    settings
======================  ===========================================================
``madry_mnist``         PGD Linf, eps 0.3, 40 steps of 0.01, random start
``madry_cifar10``       PGD Linf, eps 8/255, 7 steps of 2/255, random start
``wong_fast_mnist``     FGSM with random start, eps 0.3, step 0.375 (1.25 eps)
``wong_fast_cifar10``   FGSM with random start, eps 8/255, step 10/255 (1.25 eps)
======================  ===========================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bandguard.attacks.fgsm import FGSM
from bandguard.attacks.pgd import PGD
from bandguard.attacks.protocol import Attack

__all__ = ["ATTACK_PRESETS", "attack_preset"]

ATTACK_PRESETS: Mapping[str, Attack] = MappingProxyType({
    "madry_mnist": PGD(eps=0.3, steps=40, step_size=0.01, random_start=True),
    "madry_cifar10": PGD(eps=8 / 255, steps=7, step_size=2 / 255, random_start=True),
    "wong_fast_mnist": FGSM(eps=0.3, random_start=True, step_size=0.375),
    "wong_fast_cifar10": FGSM(eps=8 / 255, random_start=True, step_size=10 / 255),
})
"""Name -> frozen attack with the published settings (immutable)."""


def attack_preset(name: str, **overrides: Any) -> Attack:
    """The attack of preset ``name``, with any setting replaced (e.g. ``seed=1``).

    Args:
        name: a key of :data:`ATTACK_PRESETS`, e.g. ``"madry_mnist"`` (PGD, 40 x 0.01, Madry et al.
            1706.06083) or ``"wong_fast_cifar10"`` (FGSM with a random start, Wong et al. 2001.03994).
        **overrides: settings of the preset's attack to replace.

    Returns:
        A frozen :class:`~bandguard.attacks.protocol.Attack` (a new instance when overridden).

    Raises:
        ValueError: an unknown name (the message lists the known ones) or setting.
    """
    if name not in ATTACK_PRESETS:
        raise ValueError(f"unknown attack preset {name!r}; expected one of {', '.join(sorted(ATTACK_PRESETS))}")
    attack = ATTACK_PRESETS[name]
    known = {f.name for f in dataclasses.fields(attack)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"preset {name!r} ({type(attack).__name__}) takes no setting {', '.join(map(repr, unknown))}")
    return dataclasses.replace(attack, **overrides)
