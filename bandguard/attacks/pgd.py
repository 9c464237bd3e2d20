"""Projected gradient descent (Madry et al. 1706.06083), Linf and L2, with restarts and EOT.

:func:`pgd` is the math; :class:`PGD` carries its settings. FGSM, FGM and fast adversarial
training reuse the same core (one step, no or a random start).
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from bandguard._checks import (
    Bounds,
    check_enum,
    check_int,
    check_positive,
)
from bandguard._modes import model_mode
from bandguard.attacks.base import (
    Attack,
    Loss,
    Norm,
    _check_call,
    _is_adversarial,
    _Outcome,
    _per_sample_loss,
    _sum_loss,
    is_non_differentiable,
    is_randomized,
)

__all__ = ["DEFAULT_EOT_SAMPLES", "PGD", "pgd"]

logger = logging.getLogger(__name__)

DEFAULT_EOT_SAMPLES = 10
"""Gradient samples per step when a randomized module is detected and none are given."""


def _input_gradient(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, loss: Loss, targeted: bool, eot: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed loss w.r.t. ``x`` only, summed over ``eot`` forwards, and the
    (detached) logits of the last forward."""
    grad = None
    for _ in range(eot):
        x_req = x.detach().requires_grad_(True)
        logits = model(x_req)
        (g,) = torch.autograd.grad(_sum_loss(logits, labels, loss, targeted), x_req)
        grad = g if grad is None else grad.add_(g)
    assert grad is not None
    # Sign steps ignore the scale, L2 steps normalise it away: no need to divide by eot.
    return grad, logits.detach()


def _l2_normalize(v: torch.Tensor) -> torch.Tensor:
    norms = torch.linalg.vector_norm(v.flatten(1), dim=1).clamp_min(1e-12)
    return v / norms.view(-1, *([1] * (v.ndim - 1)))


def _l2_project(x: torch.Tensor, x0: torch.Tensor, eps: float, lo: float, hi: float) -> torch.Tensor:
    delta = x - x0
    norms = torch.linalg.vector_norm(delta.flatten(1), dim=1)
    factor = (eps / norms.clamp_min(1e-12)).clamp_max(1.0)
    # Clipping to the bounds moves each pixel towards x0, so it cannot leave the ball.
    return (x0 + delta * factor.view(-1, *([1] * (x.ndim - 1)))).clamp_(lo, hi)


def _random_start(
    x0: torch.Tensor, eps: float, norm: Norm, lo: float, hi: float, generator: torch.Generator | None
) -> torch.Tensor:
    """A uniform draw from the eps-ball around ``x0`` (Linf cube or L2 ball), clipped to bounds."""
    if norm is Norm.LINF:
        u = torch.rand(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return (x0 + (2 * u - 1) * eps).clamp_(lo, hi)
    n, d = x0.shape[0], x0[0].numel()
    direction = _l2_normalize(torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype))
    radius = eps * torch.rand(n, generator=generator, device=x0.device, dtype=x0.dtype) ** (1.0 / d)
    return (x0 + direction * radius.view(-1, *([1] * (x0.ndim - 1)))).clamp_(lo, hi)


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
) -> _Outcome:
    """PGD on trusted inputs with the model already in the wanted mode.

    Restart ``r`` runs only on the samples no earlier restart broke (their result is final); per
    sample the first success is kept, else the restart with the highest final loss.
    ``early_stop`` keeps, per sample, the first iterate the model gets wrong (each step's forward
    scores the current iterate for free) and drops the sample from the batch; it is ignored with
    EOT. ``final_eval=False`` (one restart, no early stop) skips the forward that scores the final
    iterate: ``success`` and ``pred`` are then meaningless (adversarial training needs neither).
    """
    lo, hi = bounds
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
        x = _random_start(xs, eps, norm, lo, hi, generator) if random_start else xs
        for _ in range(steps):
            g, logits = _input_gradient(model, x, ls, loss, targeted, eot)
            forwards[idx] += eot
            gradients[idx] += eot
            if early_stop:
                p = logits.argmax(1)
                adv = _is_adversarial(p, ls, targeted)
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
                x = _l2_project(x.detach() + step_size * _l2_normalize(g), xs, eps, lo, hi)
        if not final_eval:
            return _Outcome(x.detach(), success, pred, forwards, gradients)
        if idx.numel():
            with torch.inference_mode():
                logits = model(x)
            value = _per_sample_loss(logits, ls, loss, targeted)
            p = logits.argmax(1)
            adv = _is_adversarial(p, ls, targeted)
            forwards[idx] += 1
            better = adv | (value > best_loss[idx])
            chosen = idx[better]
            best[chosen] = x[better]
            best_loss[chosen] = value[better]
            pred[chosen] = p[better]
            success[idx] = adv
        remaining = remaining[~success[remaining]]
    return _Outcome(best.detach(), success, pred, forwards, gradients)


def _resolve_step(step_size: float | None, rel_step_size: float | None, eps: float, steps: int) -> float:
    if step_size is not None:
        return step_size
    # Madry et al.'s rule: 2.5 * eps / steps lets a walk reach the boundary from anywhere.
    return (2.5 / steps if rel_step_size is None else rel_step_size) * eps


def _resolve_eot(model: nn.Module, eot_samples: int | None) -> int:
    randomized = is_randomized(model)
    if is_non_differentiable(model):
        logger.debug("non-differentiable module found: gradients follow its BPDA approximation")
    if eot_samples is not None:
        return eot_samples
    if randomized:
        logger.info("randomized module found: averaging gradients over %d forwards (EOT)", DEFAULT_EOT_SAMPLES)
        return DEFAULT_EOT_SAMPLES
    return 1


def _check_step_args(step_size: float | None, rel_step_size: float | None) -> None:
    if step_size is not None and rel_step_size is not None:
        raise ValueError(
            f"give step_size or rel_step_size, not both (got {step_size} and {rel_step_size})"
        )
    if step_size is not None:
        check_positive(step_size, "step_size")
    if rel_step_size is not None:
        check_positive(rel_step_size, "rel_step_size")


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: Norm | str = "linf",
    steps: int = 40,
    step_size: float | None = None,
    rel_step_size: float | None = None,
    random_start: bool = True,
    restarts: int = 1,
    loss: Loss | str = "ce",
    target: torch.Tensor | None = None,
    eot_samples: int | None = None,
    early_stop: bool = False,
    bounds: Bounds = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent in the Linf or L2 ball (Madry et al. 1706.06083).

    Each step ascends the loss with the sign of the input gradient (Linf) or the gradient scaled to
    unit L2 norm (L2), then projects onto the eps-ball around ``x`` and clips to ``bounds``.
    Gradients are taken w.r.t. the input only; the model runs in eval mode and every submodule's
    mode is restored after. If a submodule declares ``randomized = True`` and ``eot_samples`` is
    ``None``, gradients are averaged over :data:`DEFAULT_EOT_SAMPLES` forwards (EOT, Athalye et al.
    1802.00420); modules declaring ``differentiable = False`` supply their BPDA gradient themselves.

    Args:
        model: maps ``[N, C, H, W]`` images in ``bounds`` to logits ``[N, K]``.
        x: clean images ``[N, C, H, W]``, any float dtype and device (the model's).
        y: int64 labels ``[N]``.
        eps: budget in ``norm``.
        norm: ``"linf"`` or ``"l2"``.
        steps: gradient steps per restart.
        step_size: absolute step; ``rel_step_size``: step as a fraction of ``eps``. Neither:
            ``2.5 * eps / steps``.
        random_start: start from a uniform point of the eps-ball.
        restarts: independent runs; per sample the first success is kept, else the highest loss.
        loss: ``"ce"`` (cross-entropy) or ``"margin"`` (best other logit minus true logit, CW).
        target: int64 ``[N]`` target classes for a targeted attack, else ``None``.
        eot_samples: forwards averaged per gradient; ``None`` chooses from the model (see above).
        early_stop: return, per sample, the first iterate the model misclassifies and stop
            attacking it. Each step's forward already scores the current iterate, so this costs
            nothing, is never weaker than the final iterate (the trajectories of the other
            samples are unchanged) and is much faster once most samples are broken. ``False``
            returns the final iterate, as Madry et al., foolbox and torchattacks do. Ignored
            with EOT (one forward of a randomized model proves nothing).
        bounds: ``(lo, hi)`` of the input domain.
        generator: source of the random start.

    Returns:
        ``x_adv`` ``[N, C, H, W]``, detached, inside ``bounds`` and the eps-ball.

    Example:
        >>> x_adv = pgd(model, x, y, eps=0.3, steps=40)  # doctest: +SKIP
    """
    x, y, target, eps, bounds = _check_call(model, x, y, target, eps, bounds)
    norm_ = check_enum(norm, Norm, "norm")
    loss_ = check_enum(loss, Loss, "loss")
    check_int(steps, "steps", minimum=0)
    check_int(restarts, "restarts", minimum=1)
    if eot_samples is not None:
        check_int(eot_samples, "eot_samples", minimum=1)
    _check_step_args(step_size, rel_step_size)
    with model_mode(model):
        outcome = _pgd_core(
            model, x.detach(), y if target is None else target,
            eps=eps, norm=norm_, steps=steps,
            step_size=_resolve_step(step_size, rel_step_size, eps, max(steps, 1)),
            random_start=random_start, restarts=restarts, loss=loss_, targeted=target is not None,
            eot=_resolve_eot(model, eot_samples), bounds=bounds, generator=generator,
            early_stop=early_stop,
        )
    return outcome.x_adv


@dataclasses.dataclass(frozen=True, kw_only=True)
class PGD(Attack):
    """Settings of :func:`pgd`; call as ``PGD(eps=0.3)(model, x, y) -> AttackResult``.

    Attributes:
        eps: one budget or several (one :class:`~bandguard.attacks.base.AttackResult` each).
        norm, steps, step_size, rel_step_size, random_start, restarts, loss, eot_samples,
            early_stop: as in :func:`pgd`.
        bounds: ``(lo, hi)`` of the input domain.
        seed: seeds the random start; ``None`` draws from torch's global generator.
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
    seed: int | None = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "norm", check_enum(self.norm, Norm, "norm"))
        object.__setattr__(self, "loss", check_enum(self.loss, Loss, "loss"))
        check_int(self.steps, "steps", minimum=0)
        check_int(self.restarts, "restarts", minimum=1)
        if self.eot_samples is not None:
            check_int(self.eot_samples, "eot_samples", minimum=1)
        if self.seed is not None:
            check_int(self.seed, "seed")
        _check_step_args(self.step_size, self.rel_step_size)

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        targeted: bool,
        eps: float,
        generator: torch.Generator | None,
    ) -> _Outcome:
        return _pgd_core(
            model, x, labels,
            eps=eps, norm=self.norm, steps=self.steps,
            step_size=_resolve_step(self.step_size, self.rel_step_size, eps, max(self.steps, 1)),
            random_start=self.random_start, restarts=self.restarts, loss=self.loss,
            targeted=targeted, eot=_resolve_eot(model, self.eot_samples), bounds=self.bounds,
            generator=generator, early_stop=self.early_stop,
        )

