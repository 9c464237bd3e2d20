"""The attack protocol: settings in a frozen dataclass, called as ``attack(model, x, y)``.

Every attack returns an :class:`AttackResult` per epsilon: the adversarial images (no graph,
inside the bounds and the eps-ball), a per-sample success mask, the per-sample perturbation
norm and the exact per-sample count of forward and gradient evaluations. The math lives in plain
functions (``pgd``, ``fgsm``, ...); the dataclasses only carry settings and do the bookkeeping
shared by all attacks here (validation, clean predictions, several epsilons in one call, the
model's mode).

Defenses are read by duck typing (this package never imports ``bandguard.defenses``): a module
with ``randomized = True`` makes gradient attacks average gradients over several forwards (EOT,
Athalye et al. 1802.00420); a module with ``differentiable = False`` implements BPDA in its own
forward, so gradients already flow through its declared approximation.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bandguard._checks import (
    Bounds,
    check_bounds,
    check_epsilons,
    check_images,
    check_int,
    check_labels,
    check_nonnegative,
)
from bandguard._modes import model_mode

__all__ = [
    "BPDA",
    "Attack",
    "AttackResult",
    "Loss",
    "Norm",
    "is_non_differentiable",
    "is_randomized",
    "perturbation_norm",
]

logger = logging.getLogger(__name__)


class Norm(str, enum.Enum):
    """The threat model's norm."""

    LINF = "linf"
    L2 = "l2"

    def __repr__(self) -> str:
        return repr(self.value)


class Loss(str, enum.Enum):
    """The objective gradient attacks ascend: cross-entropy or the logit margin (Carlini-Wagner)."""

    CE = "ce"
    MARGIN = "margin"

    def __repr__(self) -> str:
        return repr(self.value)


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """What one attack run at one epsilon produced.

    Attributes:
        eps: the perturbation budget.
        norm: ``"linf"`` or ``"l2"``, the norm ``eps`` and ``norms`` are measured in.
        x_adv: adversarial images ``[N, C, H, W]`` (no graph), inside bounds and eps-ball.
        success: bool ``[N]``; untargeted: the model errs on ``x_adv`` (a sample the model already
            misclassifies counts, with ``x_adv = x``); targeted: it predicts the target.
        norms: ``[N]`` perturbation norm ``|x_adv - x|`` in ``norm``.
        labels: ``[N]`` true labels; ``clean_pred`` and ``adv_pred``: ``[N]`` predictions on
            ``x`` and ``x_adv``.
        forwards: int64 ``[N]`` model evaluations spent on each sample, the clean one included.
        gradients: int64 ``[N]`` input-gradient evaluations spent on each sample.
        target: ``[N]`` target classes of a targeted run, else ``None``.
    """

    eps: float
    norm: str
    x_adv: torch.Tensor
    success: torch.Tensor
    norms: torch.Tensor
    labels: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    forwards: torch.Tensor
    gradients: torch.Tensor
    target: torch.Tensor | None = None

    @property
    def success_rate(self) -> float:
        """Fraction of samples on which the attack succeeded."""
        return float(self.success.float().mean())

    @property
    def clean_accuracy(self) -> float:
        """Fraction of samples the model classifies correctly without attack."""
        return float((self.clean_pred == self.labels).float().mean())

    @property
    def robust_accuracy(self) -> float:
        """Fraction of samples still classified correctly after the attack."""
        return float((self.adv_pred == self.labels).float().mean())

    @property
    def queries(self) -> int:
        """Total model evaluations (forwards, one per sample each) of this run."""
        return int(self.forwards.sum())

    def to_dict(self, *, per_sample: bool = False) -> dict[str, Any]:
        """Summary as plain values; ``per_sample=True`` adds per-sample lists (no images)."""
        out: dict[str, Any] = {
            "eps": self.eps,
            "norm": self.norm,
            "n": int(self.success.numel()),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": self.success_rate,
            "mean_norm": float(self.norms.float().mean()),
            "max_norm": float(self.norms.float().max()),
            "forwards": int(self.forwards.sum()),
            "gradients": int(self.gradients.sum()),
            "targeted": self.target is not None,
        }
        if per_sample:
            out.update(
                success=self.success.tolist(),
                norms=self.norms.tolist(),
                forwards_per_sample=self.forwards.tolist(),
                gradients_per_sample=self.gradients.tolist(),
                adv_pred=self.adv_pred.tolist(),
            )
        return out


@dataclasses.dataclass
class _Outcome:
    """What a core routine returns for the samples it was given (inner use)."""

    x_adv: torch.Tensor
    success: torch.Tensor
    pred: torch.Tensor
    forwards: torch.Tensor
    gradients: torch.Tensor


# --------------------------------------------------------------------------- model handling


def is_randomized(model: nn.Module) -> bool:
    """``True`` if any submodule declares ``randomized = True`` (gradient attacks then use EOT)."""
    return any(bool(getattr(m, "randomized", False)) for m in model.modules())


def is_non_differentiable(model: nn.Module) -> bool:
    """``True`` if any submodule declares ``differentiable = False`` (it implements BPDA itself)."""
    return any(getattr(m, "differentiable", True) is False for m in model.modules())


class BPDA(nn.Module):
    """Wrap a non-differentiable function with a differentiable stand-in for the backward pass.

    Backward pass differentiable approximation (Athalye et al. 1802.00420): the forward value is
    ``fn(x)``, the gradient is that of ``approx(x)`` (the identity by default). Put it in front of a
    model (``nn.Sequential(BPDA(jpeg), model)``) and every gradient attack goes through it.

    Args:
        fn: the non-differentiable map, ``[N, C, H, W] -> [N, C, H, W]``.
        approx: a differentiable approximation of ``fn``; ``None`` means the identity.
    """

    differentiable = False

    def __init__(self, fn: Any, approx: Any = None) -> None:
        super().__init__()
        self.fn = fn
        self.approx_fn = approx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        approx = x if self.approx_fn is None else self.approx_fn(x)
        with torch.no_grad():
            exact = self.fn(x)
        return approx + (exact - approx).detach()


# --------------------------------------------------------------------------- tensor helpers


def perturbation_norm(delta: torch.Tensor, norm: Norm | str) -> torch.Tensor:
    """Per-sample ``linf`` or ``l2`` norm of ``delta`` ``[N, ...]``; returns ``[N]``."""
    flat = delta.flatten(1)
    if Norm(norm) is Norm.LINF:
        return flat.abs().amax(1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    return torch.linalg.vector_norm(flat, dim=1)


def _per_sample_loss(logits: torch.Tensor, labels: torch.Tensor, loss: Loss, targeted: bool) -> torch.Tensor:
    """The objective to ascend, ``[N]``: larger means closer to (or deeper into) success."""
    if loss is Loss.CE:
        value = F.cross_entropy(logits, labels, reduction="none")
        return -value if targeted else value
    true = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    # Untargeted: raise the best wrong logit over the true one; targeted: the target over the rest.
    return true - other if targeted else other - true


def _sum_loss(logits: torch.Tensor, labels: torch.Tensor, loss: Loss, targeted: bool) -> torch.Tensor:
    """Sum of :func:`_per_sample_loss`: one ``autograd.grad`` call serves the whole batch."""
    if loss is Loss.CE:
        value = F.cross_entropy(logits, labels, reduction="sum")
        return -value if targeted else value
    return _per_sample_loss(logits, labels, loss, targeted).sum()


def _is_adversarial(pred: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    return pred == labels if targeted else pred != labels


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


def _check_target(target: object, x: torch.Tensor) -> torch.Tensor | None:
    if target is None:
        return None
    return check_labels(target, x, "target")


def _check_call(
    model: object, x: object, y: object, target: object, eps: object, bounds: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float, Bounds]:
    """Validate the arguments every functional attack takes; returns them checked, ``x`` detached."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    bounds_ = check_bounds(bounds)
    x_ = check_images(x, "x", bounds=bounds_)
    y_ = check_labels(y, x_, "y")
    return x_.detach(), y_, _check_target(target, x_), check_nonnegative(eps, "eps"), bounds_


def _as_eps(eps: object) -> float | tuple[float, ...]:
    values = check_epsilons(eps, "eps")
    if isinstance(eps, (int, float, torch.Tensor)) and not isinstance(eps, bool):
        return values[0]
    return tuple(values)


# --------------------------------------------------------------------------- the protocol


@dataclasses.dataclass(frozen=True, kw_only=True)
class Attack:
    """Base of every attack: a frozen dataclass of settings, called as ``attack(model, x, y)``.

    Subclasses implement :meth:`_run` (one epsilon, on the samples still to attack) and set
    ``name`` and the norm. Calling the attack validates the inputs, puts the model in eval mode
    (restoring every submodule's mode after), predicts the clean images once (in inference mode),
    attacks only the samples not already adversarial, and assembles one :class:`AttackResult`
    per epsilon.

    With several epsilons they are run in increasing order and a sample broken at a smaller one
    keeps that adversarial example for the larger ones (it lies in their ball too) without being
    attacked again, so success never decreases with eps. Its counts are those that found it.

    Attributes:
        eps: one budget or a sequence of them (each >= 0).
        bounds: ``(lo, hi)`` of the model's input domain, default ``(0, 1)``.
    """

    name: ClassVar[str] = "attack"
    # Subclasses also give ``norm`` (a :class:`Norm`, the norm eps is measured in) as a field or a
    # class constant; it is not declared here so that a field keeps its place after ``eps``.

    eps: float | tuple[float, ...]
    bounds: Bounds = (0.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", _as_eps(self.eps))
        object.__setattr__(self, "bounds", check_bounds(self.bounds))

    @property
    def epsilons(self) -> tuple[float, ...]:
        """The budgets as a tuple, in the order given."""
        return self.eps if isinstance(self.eps, tuple) else (self.eps,)

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None
    ) -> AttackResult | list[AttackResult]:
        """Attack ``model`` on ``x`` ``[N, C, H, W]`` with labels ``y`` ``[N]`` (int64).

        Args:
            model: any ``nn.Module`` mapping images in ``bounds`` to logits ``[N, K]``.
            x: clean images inside ``bounds``.
            y: true labels.
            target: int64 ``[N]`` target classes for a targeted attack; ``None`` is untargeted.

        Returns:
            One :class:`AttackResult` if ``eps`` is a number, else a list, one per eps in order.
        """
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        x = check_images(x, "x", bounds=self.bounds)
        y = check_labels(y, x, "y")
        target = _check_target(target, x)
        results = self._run_all(model, x.detach(), y, target)
        return results if isinstance(self.eps, tuple) else results[0]

    # -- bookkeeping shared by all attacks

    def _run_all(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> list[AttackResult]:
        targeted = target is not None
        labels = target if targeted else y
        n = x.shape[0]
        with model_mode(model):
            with torch.inference_mode():
                clean_pred = model(x).argmax(1)
            clean_pred = clean_pred.clone()  # a normal tensor, usable outside inference mode
            done = _is_adversarial(clean_pred, labels, targeted)
            x_adv = x.clone()
            adv_pred = clean_pred.clone()
            forwards = torch.ones(n, dtype=torch.long, device=x.device)
            gradients = torch.zeros(n, dtype=torch.long, device=x.device)
            generator = _generator(getattr(self, "seed", None), x.device)
            order = sorted(range(len(self.epsilons)), key=lambda i: self.epsilons[i])
            results: list[AttackResult | None] = [None] * len(order)
            todo_eps = [self.epsilons[i] for i in order]
            outcomes = self._run_many(model, x, labels, targeted, todo_eps, done, generator)
            for i, outcome_for in zip(order, outcomes):
                idx, outcome = outcome_for
                if idx.numel():
                    x_adv[idx] = outcome.x_adv.to(x.dtype)
                    adv_pred[idx] = outcome.pred
                    forwards[idx] = 1 + outcome.forwards
                    gradients[idx] = outcome.gradients
                    done[idx] = outcome.success
                results[i] = AttackResult(
                    eps=self.epsilons[i],
                    norm=self.norm.value,
                    x_adv=x_adv.clone(),
                    success=done.clone(),
                    norms=perturbation_norm(x_adv - x, self.norm),
                    labels=y,
                    clean_pred=clean_pred,
                    adv_pred=adv_pred.clone(),
                    forwards=forwards.clone(),
                    gradients=gradients.clone(),
                    target=target,
                )
        return [r for r in results if r is not None]

    def _run_many(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        targeted: bool,
        epsilons: Sequence[float],
        done: torch.Tensor,
        generator: torch.Generator | None,
    ) -> list[tuple[torch.Tensor, _Outcome]]:
        """Run each eps (ascending) on the samples not yet adversarial; ``done`` is updated."""
        done = done.clone()
        out = []
        for eps in epsilons:
            idx = (~done).nonzero().squeeze(1)
            if idx.numel() == 0 or eps == 0:
                idx = idx[:0]
                outcome = _empty_outcome(x, labels)
            else:
                # Skip the gather when every sample is attacked (the common case at one eps).
                full = idx.numel() == x.shape[0]
                xs, ls = (x, labels) if full else (x[idx], labels[idx])
                outcome = self._run(model, xs, ls, targeted, eps, generator)
                done[idx] = outcome.success
            out.append((idx, outcome))
        return out

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        targeted: bool,
        eps: float,
        generator: torch.Generator | None,
    ) -> _Outcome:
        """Attack ``x`` (model already in eval mode, inputs valid) at one ``eps``."""
        raise NotImplementedError


def _empty_outcome(x: torch.Tensor, labels: torch.Tensor) -> _Outcome:
    long = torch.zeros(0, dtype=torch.long, device=x.device)
    return _Outcome(x[:0], labels[:0].bool(), labels[:0], long, long)


def _check_positive_int(value: object, name: str) -> int:
    return check_int(value, name, minimum=1)
