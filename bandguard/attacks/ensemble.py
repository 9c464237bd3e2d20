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
from bandguard.attacks.cascade import cascade
from bandguard.attacks.fourier_basis import FourierAttack, Order
from bandguard.attacks.norms import Norm, perturbation_norm
from bandguard.attacks.protocol import Attack, Outcome
from bandguard.attacks.results import AttackResults
from bandguard.attacks.square import Square

__all__ = ["Ensemble", "standard_ensemble"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ensemble(Attack):
    """Run ``attacks`` in order on the still-robust samples; per sample the first success counts.

    Every member runs at the ensemble's ``eps`` (its own ``eps`` is ignored) with its own seed
    (one generator per call, as when run alone), so an ensemble gives the same result as its members run one after the
    other on the samples left. Counts are per sample sums over the members that attacked it (plus
    the one clean forward). A sample no member broke returns the last member's point.

    Attributes:
        attacks: the members, in order (cheap and strong first: later ones see fewer samples).
        eps: one budget or several.
        norm: the threat model, which every member must share.
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
            if attack.per_channel:
                raise ValueError(
                    f"attacks[{i}] ({attack.name}) measures eps as an l2 norm per channel, outside the "
                    f"ensemble's whole-image {self.norm.value} ball (standard_ensemble scales it to fit)"
                )
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

    @property
    def gradient_loss(self) -> str | None:
        """``"dlr"`` if any member ascends a scale-invariant loss (DLR, margin), else ``"ce"`` if
        any ascends cross-entropy, else ``None``."""
        losses = {a.gradient_loss for a in self.attacks} - {None}
        return "dlr" if losses - {"ce"} else ("ce" if losses else None)

    def _drive(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
               generator: torch.Generator | None, alive: torch.Tensor,
               clean_logits: torch.Tensor | None = None) -> AttackResults:
        """The members through :func:`~bandguard.attacks.cascade.cascade` at the ensemble's eps,
        sharing one clean forward; per eps and sample the first success counts."""
        clean_forwards = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        if clean_logits is None:
            clean_logits, clean_forwards = self._clean_forward(model, x, y, target, alive.any(0))
        members = [dataclasses.replace(a, eps=self.eps) for a in self.attacks]  # type: ignore[type-var]
        stages = cascade(members, model, x, y, alive, target=target, clean_logits=clean_logits)
        results = []
        for e, eps in enumerate(self.epsilons):
            first = stages[0].results[e]
            x_adv, pred = first.x_adv.clone(), first.adv_pred.clone()
            success = first.success.clone()
            forwards, gradients = clean_forwards + first.forwards, first.gradients.clone()
            for stage in stages[1:]:
                r, took = stage.results[e], stage.alive[e] & ~success
                # A member's point replaces an earlier one only where it attacked the sample: a
                # success, or the last member's point where none succeeded.
                x_adv[took], pred[took], success[took] = r.x_adv[took], r.adv_pred[took], r.success[took]
                forwards += r.forwards
                gradients += r.gradients
            delta = x_adv - x
            results.append(dataclasses.replace(
                first, eps=eps, x_adv=x_adv, success=success, adv_pred=pred, forwards=forwards, gradients=gradients,
                norms=perturbation_norm(delta, self.norm),
                channel_norms=perturbation_norm(delta, self.norm, per_channel=True)))
        return AttackResults(tuple(results), threat=self.threat(x.shape))


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
        eps: one budget or several, in ``norm`` (``"linf"`` or ``"l2"``); text such as ``"8/255"``
            is read as on the command line.
        norm: the threat model, ``"linf"`` or ``"l2"``.
        steps: APGD iterations per run (AutoAttack's paper: 100; torchattacks' AutoAttack: 10).
        target_classes: APGD-T's number of target classes.
        fourier_queries: the Fourier attack's budget per image, lowest frequencies first
            (``None``: every frequency).
        square_queries: Square's forwards per image, its start included.
        bounds: input domain.
        seed: seeds every member.

    Returns:
        An :class:`Ensemble`; call it as ``standard_ensemble(8/255)(model, x, y)``.
    """
    norm_ = check_enum(norm, Norm, "norm")
    check_int(steps, "steps", minimum=1)
    eps_ = tuple(eps) if isinstance(eps, Sequence) and not isinstance(eps, str) else eps  # "8/255" is one eps
    members: tuple[Attack, ...] = (
        APGD(eps=eps_, norm=norm_, steps=steps, loss=APGDLoss.CE, bounds=bounds, seed=seed),
        APGD(eps=eps_, norm=norm_, steps=steps, loss=APGDLoss.DLR, target_classes=target_classes,
             bounds=bounds, seed=seed),
        _BallFourier(eps=eps_, ball=norm_, order=Order.RADIUS, max_queries=fourier_queries, bounds=bounds,
                     seed=seed),
        Square(eps=eps_, norm=norm_, queries=square_queries, bounds=bounds, seed=seed),
    )
    return Ensemble(eps=eps_, attacks=members, norm=norm_, bounds=bounds)
