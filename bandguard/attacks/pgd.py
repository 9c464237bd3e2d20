"""Projected gradient descent (Madry et al. 1706.06083), Linf and L2, with restarts and EOT.

:func:`pgd` and its settings twin :class:`PGD` return the same
:class:`~bandguard.attacks.results.AttackResults`. The math is :func:`_pgd_core`, shared by FGSM and
FGM (one step) through :class:`GradientAttack`.

Step size: by default ``2.5 * eps / steps`` (Madry et al.'s rule that lets a walk cross the ball
from anywhere). That is *not* the setting Madry et al. published for adversarial training
(0.01 x 40 steps at eps 0.3 on MNIST, 2/255 x 7 steps at eps 8/255 on CIFAR-10); those are one
keyword away as presets: ``attack_preset("madry_mnist")`` (see :mod:`bandguard.attacks.presets`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from bandguard._checks import Bounds, check_bool, check_enum, check_int, check_positive
from bandguard.attacks.band import Band, band_project
from bandguard.attacks.losses import Loss, is_adversarial, per_sample_loss, sum_loss
from bandguard.attacks.norms import Norm, effective_eps, l2_normalize, l2_project
from bandguard.attacks.protocol import (
    DEFAULT_EOT_SAMPLES,
    Attack,
    Outcome,
    resolve_eot,
)
from bandguard.attacks.results import AttackResults

__all__ = ["DEFAULT_EOT_SAMPLES", "PGD", "GradientAttack", "pgd"]



def _input_gradient(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, loss: Loss, targeted: bool, eot: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed loss w.r.t. ``x`` only, summed over ``eot`` forwards, and the
    (detached) logits of the last forward."""
    grad = torch.zeros_like(x)
    for _ in range(eot):
        x_req = x.detach().requires_grad_(True)
        logits = model(x_req)
        (g,) = torch.autograd.grad(sum_loss(logits, labels, loss, targeted), x_req)
        grad.add_(g)
    # Sign steps ignore the scale, L2 steps normalise it away: no need to divide by eot.
    return grad, logits.detach()


def _random_start(
    x0: torch.Tensor, eps: float, norm: Norm, bounds: Bounds, generator: torch.Generator | None
) -> torch.Tensor:
    """A uniform draw from the eps-ball around ``x0`` (Linf cube or L2 ball), clipped to bounds."""
    if norm is Norm.LINF:
        u = torch.rand(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return (x0 + (2 * u - 1) * eps).clamp_(*bounds)
    n, d = x0.shape[0], x0[0].numel()
    direction = l2_normalize(torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype))
    radius = eps * torch.rand(n, generator=generator, device=x0.device, dtype=x0.dtype) ** (1.0 / d)
    return (x0 + direction * radius.view(-1, *([1] * (x0.ndim - 1)))).clamp_(*bounds)


def _pgd_core(
    model: nn.Module,
    x0: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    steps: int,
    step_size: float,
    random_start: bool,
    restarts: int,
    loss: Loss,
    targeted: bool,
    eot: int,
    bounds: Bounds,
    generator: torch.Generator | None,
    early_stop: bool = False,
    final_eval: bool = True,
    band: Band | None = None,
) -> Outcome:
    """PGD on trusted inputs with the model already in the wanted mode.

    Restart ``r`` runs only on the samples no earlier restart broke (their result is final); per
    sample the first success is kept, else the restart with the highest final loss.
    ``early_stop`` keeps, per sample, the first iterate the model gets wrong (each step's forward
    scores the current iterate for free) and drops the sample from the batch; it is ignored with
    EOT. ``final_eval=False`` (adversarial training: one restart) skips the forward that scores
    the final iterate; ``success`` and ``pred`` are then meaningless. ``band`` confines the
    perturbation to a frequency band: the start and every step go through :func:`band_project`.
    """
    lo, hi = bounds
    eps, step_size = effective_eps(eps, norm, bounds, x0), effective_eps(step_size, norm, bounds, x0)
    n = x0.shape[0]
    device = x0.device
    early_stop = early_stop and eot == 1  # one forward of a randomized model proves nothing
    best = x0.clone()
    best_loss = torch.full((n,), float("-inf"), device=device, dtype=x0.dtype)
    success = torch.zeros(n, dtype=torch.bool, device=device)
    pred = labels.clone()
    forwards = torch.zeros(n, dtype=torch.long, device=device)
    gradients = torch.zeros(n, dtype=torch.long, device=device)
    remaining = torch.arange(n, device=device)
    for _ in range(restarts):
        if remaining.numel() == 0:
            break
        idx = remaining  # the samples this restart still works on
        full = idx.numel() == n
        xs, ls = (x0, labels) if full else (x0[idx], labels[idx])
        if norm is Norm.LINF:
            # The eps-box intersected with the bounds, computed once: each step is one clamp.
            lower, upper = (xs - eps).clamp_(min=lo), (xs + eps).clamp_(max=hi)
        x = _random_start(xs, eps, norm, bounds, generator) if random_start else xs
        if band is not None and random_start:
            x = band_project(x, xs, eps=eps, norm=norm, band=band, bounds=bounds)
        for _ in range(steps):
            g, logits = _input_gradient(model, x, ls, loss, targeted, eot)
            forwards[idx] += eot
            gradients[idx] += eot
            if early_stop:
                p = logits.argmax(1)
                adv = is_adversarial(p, ls, targeted)
                if bool(adv.any()):
                    # The iterate just scored is adversarial: keep it, stop attacking it.
                    hit = idx[adv]
                    best[hit], pred[hit], success[hit] = x[adv].detach(), p[adv], True
                    keep = ~adv
                    idx, x, g, xs, ls = idx[keep], x[keep], g[keep], xs[keep], ls[keep]
                    if norm is Norm.LINF:
                        lower, upper = lower[keep], upper[keep]
                    if idx.numel() == 0:
                        break
            if norm is Norm.LINF:
                x = torch.clamp(x.detach().add(g.sign_(), alpha=step_size), lower, upper)
            else:
                x = l2_project(x.detach() + step_size * l2_normalize(g), xs, eps, bounds)
            if band is not None:
                x = band_project(x, xs, eps=eps, norm=norm, band=band, bounds=bounds)
        if not final_eval:
            return Outcome(x.detach(), success, pred, forwards, gradients)
        if idx.numel():
            with torch.inference_mode():
                logits = model(x)
            value = per_sample_loss(logits, ls, loss, targeted)
            p = logits.argmax(1)
            adv = is_adversarial(p, ls, targeted)
            forwards[idx] += 1
            better = adv | (value > best_loss[idx])
            chosen = idx[better]
            best[chosen] = x[better]
            best_loss[chosen] = value[better]
            pred[chosen] = p[better]
            success[idx] = adv
        remaining = remaining[~success[remaining]]
    return Outcome(best.detach(), success, pred, forwards, gradients)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GradientAttack(Attack):
    """Base of the attacks that are PGD with some settings fixed (PGD, FGSM, FGM).

    A subclass gives :meth:`_settings`, the keyword arguments of :func:`_pgd_core` at one eps.

    Attributes:
        eps: one budget or a sequence of them (each >= 0), in the subclass's norm.
        bounds: ``(lo, hi)`` of the model's input domain, default ``(0, 1)``.
    """

    def _settings(self, model: nn.Module, eps: float) -> dict[str, Any]:
        raise NotImplementedError

    def _run(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
        generator: torch.Generator | None,
    ) -> Outcome:
        return _pgd_core(model, x, labels, targeted=targeted, generator=generator, bounds=self.bounds,
                         **self._settings(model, eps))

    def _craft(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        # Training needs neither success nor predictions: one restart, no final scoring forward.
        settings = self._settings(model, eps) | {"restarts": 1, "early_stop": False}
        return _pgd_core(model, x, y, targeted=False, generator=generator, bounds=self.bounds,
                         final_eval=False, **settings).x_adv


@dataclasses.dataclass(frozen=True, kw_only=True)
class PGD(GradientAttack):
    """Projected gradient descent in the Linf or L2 ball (Madry et al. 1706.06083).

    Each step ascends the loss with the sign of the input gradient (Linf) or the gradient scaled to
    unit L2 norm (L2), then projects onto the eps-ball around ``x`` and clips to ``bounds``.
    Gradients are taken w.r.t. the input only. If a submodule declares ``randomized = True`` and
    ``eot_samples`` is ``None``, gradients are averaged over :data:`DEFAULT_EOT_SAMPLES` forwards
    (EOT, Athalye et al. 1802.00420); modules declaring ``differentiable = False`` supply their
    BPDA gradient themselves.

    Attributes:
        eps: budget(s) in ``norm``.
        norm: ``"linf"`` or ``"l2"``.
        steps: gradient steps per restart.
        step_size: absolute step. Neither this nor ``rel_step_size``: ``2.5 * eps / steps`` (not
            Madry et al.'s published settings: see the presets ``"madry_mnist"`` and
            ``"madry_cifar10"`` in :mod:`bandguard.attacks.presets`).
        rel_step_size: step as a fraction of ``eps``; give at most one of the two.
        random_start: start from a uniform point of the eps-ball.
        restarts: independent runs; per sample the first success is kept, else the highest loss.
        loss: ``"ce"`` (cross-entropy) or ``"margin"`` (best other logit minus true logit, CW).
        eot_samples: forwards averaged per gradient; ``None`` chooses from the model (see above).
        early_stop: keep, per sample, the first iterate the model misclassifies and stop attacking
            it. Each step's forward already scores the current iterate, so this costs nothing, is
            never weaker than the final iterate and is much faster once most samples are broken.
            ``False`` returns the final iterate, as Madry et al., foolbox and torchattacks do.
            Ignored with EOT (one forward of a randomized model proves nothing).
        band: confine the perturbation to a frequency band (:class:`~bandguard.attacks.band.Band`,
            e.g. ``Band(high=8)`` for the pass band of ``LowPass(8)``): low-frequency adversarial
            perturbations (Guo et al. 1809.08758); ``None`` is the full band.
        bounds: ``(lo, hi)`` of the input domain.
        seed: seeds the random start of each call; ``None`` draws from torch's global generator.

    Example:
        >>> results = PGD(eps=0.3, steps=40)(model, x, y)  # doctest: +SKIP
        >>> results[0].x_adv, results.robust_accuracy  # doctest: +SKIP
    """

    name = "pgd"

    norm: Norm = Norm.LINF
    steps: int = 40
    step_size: float | None = None
    rel_step_size: float | None = None
    random_start: bool = True
    restarts: int = 1
    loss: Loss = Loss.CE
    eot_samples: int | None = None
    early_stop: bool = False
    band: Band | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "norm", check_enum(self.norm, Norm, "norm"))
        if self.band is not None and not isinstance(self.band, Band):
            raise TypeError(f"band must be a Band or None, got {type(self.band).__name__}")
        object.__setattr__(self, "loss", check_enum(self.loss, Loss, "loss"))
        check_int(self.steps, "steps", minimum=0)
        check_int(self.restarts, "restarts", minimum=1)
        object.__setattr__(self, "random_start", check_bool(self.random_start, "random_start"))
        object.__setattr__(self, "early_stop", check_bool(self.early_stop, "early_stop"))
        if self.eot_samples is not None:
            check_int(self.eot_samples, "eot_samples", minimum=1)
        if self.step_size is not None and self.rel_step_size is not None:
            raise ValueError(
                f"give step_size or rel_step_size, not both (got {self.step_size} and {self.rel_step_size})"
            )
        if self.step_size is not None:
            check_positive(self.step_size, "step_size")
        if self.rel_step_size is not None:
            check_positive(self.rel_step_size, "rel_step_size")

    def step_for(self, eps: float) -> float:
        """The absolute step used at budget ``eps``."""
        if self.step_size is not None:
            return self.step_size
        rel = 2.5 / max(self.steps, 1) if self.rel_step_size is None else self.rel_step_size
        return rel * eps

    def _settings(self, model: nn.Module, eps: float) -> dict[str, Any]:
        return dict(
            eps=eps, norm=self.norm, steps=self.steps, step_size=self.step_for(eps),
            random_start=self.random_start, restarts=self.restarts, loss=self.loss,
            eot=resolve_eot(model, self.eot_samples), early_stop=self.early_stop, band=self.band,
        )


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | tuple[float, ...],
    norm: Norm | str = "linf",
    steps: int = 40,
    step_size: float | None = None,
    rel_step_size: float | None = None,
    random_start: bool = True,
    restarts: int = 1,
    loss: Loss | str = "ce",
    eot_samples: int | None = None,
    early_stop: bool = False,
    band: Band | None = None,
    bounds: Bounds = (0.0, 1.0),
    seed: int | None = 0,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> AttackResults:
    """Projected gradient descent (Madry et al. 1706.06083): ``PGD(...)(model, x, y)`` in one call.

    Args:
        model: maps ``[N, C, H, W]`` images in ``bounds`` to logits ``[N, K]``.
        x: clean images ``[N, C, H, W]``.
        y: int64 labels ``[N]``.
        eps: budget(s) in ``norm``; one result per value.
        norm: ``"linf"`` or ``"l2"`` (the whole image).
        steps: gradient steps per restart.
        step_size: absolute step; default ``2.5 * eps / steps``.
        rel_step_size: step as a fraction of ``eps`` (at most one of the two).
        random_start: start from a uniform point of the eps-ball.
        restarts: independent runs; per sample the first success is kept.
        loss: ``"ce"`` or ``"margin"``.
        eot_samples: forwards averaged per gradient; ``None`` chooses from the model (EOT for
            randomized defenses).
        early_stop: keep each sample's first misclassified iterate (see :class:`PGD`).
        band: confine the perturbation to a frequency band; ``None`` is the full band.
        bounds: ``(lo, hi)`` of the input domain.
        seed: seeds the random start; ``None`` draws from torch's global generator.
        target: int64 ``[N]`` target classes for a targeted attack; ``None`` is untargeted.
        generator: the randomness of this call; ``None`` seeds one from ``seed``.

    Returns:
        :class:`~bandguard.attacks.results.AttackResults`, one per eps; ``[0].x_adv`` is
        ``[N, C, H, W]``, detached, inside ``bounds`` and the eps-ball.

    Example:
        >>> x_adv = pgd(model, x, y, eps=0.3, steps=40)[0].x_adv  # doctest: +SKIP
    """
    attack = PGD(
        eps=eps, norm=norm, steps=steps, step_size=step_size, rel_step_size=rel_step_size,  # type: ignore[arg-type]
        random_start=random_start, restarts=restarts, loss=loss, eot_samples=eot_samples,  # type: ignore[arg-type]
        early_stop=early_stop, band=band, bounds=bounds, seed=seed,
    )
    return attack(model, x, y, target=target, generator=generator)
