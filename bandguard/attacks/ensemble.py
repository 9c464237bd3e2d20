"""Worst case over several attacks, cascaded on the samples still robust (as AutoAttack reports).

:class:`Ensemble` runs its attacks in order, each only on the samples no earlier attack broke, and
keeps per sample the first adversarial example found: robust accuracy is the per-sample worst case
over the attacks (Croce and Hein 2003.01690). :func:`standard_ensemble` is bandguard's standard
evaluation: APGD-CE, APGD-T (targeted DLR over the top 9 classes), the Fourier-basis attack (Yin
et al. 1906.08988) and Square (Andriushchenko et al. 1912.00049).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import nn

from bandguard._checks import Bounds, check_enum, check_int
from bandguard.attacks.apgd import APGD, APGDLoss
from bandguard.attacks.fourier_basis import FourierAttack, Order
from bandguard.attacks.norms import Norm
from bandguard.attacks.protocol import Attack, Outcome
from bandguard.attacks.square import Square

__all__ = ["Ensemble", "standard_ensemble"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ensemble(Attack):
    """Run ``attacks`` in order on the still-robust samples; per sample the first success counts.

    Every member runs at the ensemble's ``eps`` (its own ``eps`` is ignored) with its own seed,
    re-seeded at each eps, so an ensemble gives the same result as its members run one after the
    other on the samples left. Counts are per sample sums over the members that attacked it (plus
    the one clean forward). A sample no member broke returns the last member's point.

    Attributes:
        attacks: the members, in order (cheap and strong first: later ones see fewer samples).
        eps: one budget or several; norm: the threat model, which every member must share.
        bounds: input domain, which every member must share.
    """

    name = "ensemble"

    attacks: tuple[Attack, ...]
    norm: Norm = Norm.LINF

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "norm", check_enum(self.norm, Norm, "norm"))
        if not isinstance(self.attacks, Sequence) or isinstance(self.attacks, str) or not self.attacks:
            raise ValueError(f"attacks must be a non-empty sequence of Attack, got {self.attacks!r}")
        attacks = tuple(self.attacks)
        for i, attack in enumerate(attacks):
            if not isinstance(attack, Attack):
                raise TypeError(f"attacks[{i}] must be an Attack, got {type(attack).__name__}")
            if Norm(attack.norm) is not self.norm:
                raise ValueError(
                    f"attacks[{i}] ({attack.name}) measures eps in {Norm(attack.norm).value}, "
                    f"the ensemble in {self.norm.value}"
                )
            if tuple(attack.bounds) != tuple(self.bounds):
                raise ValueError(
                    f"attacks[{i}] ({attack.name}) has bounds {attack.bounds}, the ensemble {self.bounds}"
                )
        object.__setattr__(self, "attacks", attacks)

    def _run_from(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
                  generator: torch.Generator | None, clean_logits: torch.Tensor) -> Outcome:
        out = Outcome.unbroken(x, labels)
        for attack in self.attacks:
            idx = (~out.success).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            # Each member gets its own seeded generator (as if run alone) and the driver's clean
            # logits, so a score-based member spends no second clean forward.
            res = attack._run_from(model, x[idx], labels[idx], targeted, eps, attack._generator(x.device),
                                   clean_logits[idx])
            out.update(idx, res)
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class _BallFourier(FourierAttack):
    """The Fourier-basis attack inside the ensemble's ball: the largest per-channel L2 norm in it.

    The Fourier attack's ``eps`` is Yin et al.'s L2 norm per channel: each channel gets
    ``eps_2 * U_ij``. In an L2 ball of radius ``eps`` that is ``eps_2 = eps / sqrt(C)``. In an Linf
    ball: a basis image of unit L2 norm has ``|U_ij| <= sqrt(2 / (H W))`` (a cosine of amplitude
    ``sqrt(2)`` over ``sqrt(H W)``), so ``eps_2 = eps * sqrt(H W / 2)`` keeps every candidate inside.
    """

    name = "fourier_in_ball"
    per_channel = False  # it scales its per-channel norm to stay in the whole-image ball
    ball: Norm = Norm.LINF

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "ball", check_enum(self.ball, Norm, "ball"))

    @property
    def norm(self) -> Norm:  # type: ignore[override]
        """The ball the candidates stay in (the ensemble's threat model)."""
        return self.ball

    def _run_from(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
                  generator: torch.Generator | None, clean_logits: torch.Tensor) -> Outcome:
        c, h, w = x.shape[1:]
        per_channel = eps * math.sqrt(h * w / 2) if self.ball is Norm.LINF else eps / math.sqrt(c)
        # The factor below 1 keeps float rounding of the basis from overshooting the ball.
        return super()._run_from(model, x, labels, targeted, per_channel * (1 - 1e-6), generator, clean_logits)


def standard_ensemble(
    eps: float | Sequence[float],
    norm: Norm | str = "linf",
    *,
    steps: int = 100,
    target_classes: int = 9,
    fourier_queries: int | None = 100,
    square_queries: int = 5001,
    bounds: Bounds = (0.0, 1.0),
    seed: int | None = 0,
) -> Ensemble:
    """bandguard's standard evaluation: APGD-CE, APGD-T, the Fourier-basis attack, then Square.

    The AutoAttack recipe (Croce and Hein 2003.01690) with FAB replaced by the Fourier-basis attack
    (Yin et al. 1906.08988), which probes the frequencies a frequency defense lets through. It runs at
    the largest per-channel L2 norm whose candidates stay in the ensemble's ball.

    Args:
        eps: one budget or several, in ``norm`` (``"linf"`` or ``"l2"``).
        steps: APGD iterations per run (AutoAttack's paper: 100; torchattacks' AutoAttack: 10).
        target_classes: APGD-T's number of target classes.
        fourier_queries: the Fourier attack's budget per image, lowest frequencies first
            (``None``: every frequency).
        square_queries: Square's forwards per image, its start included.
        bounds: input domain; seed: seeds every member.

    Returns:
        An :class:`Ensemble`; call it as ``standard_ensemble(8/255)(model, x, y)``.
    """
    norm_ = check_enum(norm, Norm, "norm")
    check_int(steps, "steps", minimum=1)
    eps_ = tuple(eps) if isinstance(eps, Sequence) else eps
    members: tuple[Attack, ...] = (
        APGD(eps=eps_, norm=norm_, steps=steps, loss=APGDLoss.CE, bounds=bounds, seed=seed),
        APGD(eps=eps_, norm=norm_, steps=steps, loss=APGDLoss.DLR, target_classes=target_classes,
             bounds=bounds, seed=seed),
        _BallFourier(eps=eps_, ball=norm_, order=Order.RADIUS, max_queries=fourier_queries, bounds=bounds,
                     seed=seed),
        Square(eps=eps_, norm=norm_, queries=square_queries, bounds=bounds, seed=seed),
    )
    return Ensemble(eps=eps_, attacks=members, norm=norm_, bounds=bounds)
