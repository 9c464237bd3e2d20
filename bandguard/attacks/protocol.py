"""The attack protocol: settings in a frozen dataclass, called as ``attack(model, x, y)``.

An :class:`Attack` subclass implements one hook, :meth:`Attack._run` (one epsilon, on the samples
still to attack, inputs trusted), and returns an :class:`Outcome`; a score-based attack that
starts from the clean output implements :meth:`Attack._run_from` instead, which also receives the
driver's clean logits (so the clean forward is spent and counted once). The shared driver
(:meth:`Attack.__call__`) does the rest once for every attack: validation, the model's mode (eval,
every submodule's flag restored after), one clean forward, several epsilons in increasing order
(each only on the samples alive there, ``alive`` ``[E, N]``, that no smaller eps broke, so a cascade
calls each attack once per batch: :mod:`bandguard.attacks.cascade`), and the
:class:`~bandguard.attacks.results.AttackResults` with the attack's
:class:`~bandguard.attacks.threat.ThreatModel`.
:meth:`Attack.craft` is the adversarial-training entry: every sample, no bookkeeping, the model in
whatever mode the training loop chose (:class:`~bandguard.training.TrainConfig`'s ``adversary_mode``).

Defenses are read by duck typing (this package never imports ``bandguard.defenses``): a module
with ``randomized = True`` makes gradient attacks average gradients over several forwards (EOT,
Athalye et al. 1802.00420); a module with ``differentiable = False`` implements BPDA in its own
forward, so gradients already flow through its declared approximation.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from bandguard._checks import (
    Bounds,
    check_bounds,
    check_epsilons,
    check_generator,
    check_labels,
    check_model_input,
    check_model_output,
    check_seed,
)
from bandguard._modes import model_mode
from bandguard.attacks.losses import is_adversarial
from bandguard.attacks.norms import Norm, perturbation_norm
from bandguard.attacks.results import AttackResult, AttackResults
from bandguard.attacks.threat import ThreatModel, ThreatNorm

__all__ = ["DEFAULT_EOT_SAMPLES", "Attack", "Outcome", "check_alive", "is_non_differentiable", "is_randomized",
           "resolve_eot"]

logger = logging.getLogger(__name__)

DEFAULT_EOT_SAMPLES = 10
"""Gradient samples per step against a model that declares ``randomized`` (EOT, 1802.00420)."""


@dataclasses.dataclass
class Outcome:
    """What :meth:`Attack._run` returns for the ``M`` samples it was given.

    Attributes:
        x_adv: ``[M, C, H, W]`` inside the bounds and the eps-ball.
        success: bool ``[M]``, see :attr:`AttackResult.success`.
        pred: ``[M]`` the model's prediction on ``x_adv``.
        forwards, gradients: int64 ``[M]`` evaluations spent, the driver's clean forward excluded.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    pred: torch.Tensor
    forwards: torch.Tensor
    gradients: torch.Tensor

    @classmethod
    def empty(cls, x: torch.Tensor, labels: torch.Tensor) -> Outcome:
        """The outcome of attacking no sample."""
        long = torch.zeros(0, dtype=torch.long, device=x.device)
        return cls(x[:0], labels[:0].bool(), labels[:0], long, long)

    @classmethod
    def unbroken(cls, x: torch.Tensor, labels: torch.Tensor) -> Outcome:
        """The start of a cascade: every sample at ``x``, none broken, nothing spent."""
        zeros = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return cls(x.clone(), torch.zeros_like(zeros, dtype=torch.bool), labels.clone(), zeros, zeros.clone())

    def update(self, idx: torch.Tensor, later: Outcome) -> None:
        """Take a later run on the samples ``idx`` (in place): its points and verdicts, its counts added."""
        self.x_adv[idx] = later.x_adv.to(self.x_adv.dtype)
        self.success[idx] = later.success
        self.pred[idx] = later.pred
        self.forwards[idx] += later.forwards
        self.gradients[idx] += later.gradients


def is_randomized(model: nn.Module) -> bool:
    """Whether any submodule declares ``randomized = True`` (gradient attacks then use EOT).

    Args:
        model: the module.

    Returns:
        ``True`` if one does.
    """
    return any(bool(getattr(m, "randomized", False)) for m in model.modules())


def is_non_differentiable(model: nn.Module) -> bool:
    """Whether any submodule declares ``differentiable = False`` (it implements BPDA itself).

    Args:
        model: the module.

    Returns:
        ``True`` if one does.
    """
    return any(getattr(m, "differentiable", True) is False for m in model.modules())


def resolve_eot(model: nn.Module, eot_samples: int | None, default: int = DEFAULT_EOT_SAMPLES) -> int:
    """Gradient samples per step for ``model``: ``eot_samples`` if given, else ``default`` where the
    model declares ``randomized`` (Athalye et al. 1802.00420) and 1 where it does not.

    A model that is random but does not declare it gets 1: the sanity check
    ``randomized_without_eot`` of :mod:`bandguard.bench.sanity` exists to catch that.

    Args:
        model: the model attacked.
        eot_samples: the attack's own setting, or ``None``.
        default: samples per step for a declared-randomized model.

    Returns:
        Gradient samples per step, >= 1.
    """
    if is_non_differentiable(model):
        logger.debug("non-differentiable module found: gradients follow its BPDA approximation")
    if eot_samples is not None:
        return int(eot_samples)
    if is_randomized(model):
        logger.info("randomized module found: averaging gradients over %d forwards (EOT)", default)
        return default
    return 1


def check_alive(alive: object, epsilons: int, n: int, device: torch.device) -> torch.Tensor:
    """``alive`` as a bool ``[E, N]`` tensor on ``device`` (``None``: every sample at every eps).

    Args:
        alive: ``None`` or a bool tensor ``[E, N]``.
        epsilons: ``E``, the attack's number of budgets.
        n: ``N``, the samples.
        device: where the result goes.

    Returns:
        Bool ``[E, N]`` on ``device``.

    Raises:
        TypeError, ValueError: not a bool tensor of that shape (the message names ``alive``).
    """
    if alive is None:
        return torch.ones(epsilons, n, dtype=torch.bool, device=device)
    if not isinstance(alive, torch.Tensor) or alive.dtype != torch.bool:
        raise TypeError(f"alive must be a bool tensor [E, N], got {type(alive).__name__}"
                        f"{'' if not isinstance(alive, torch.Tensor) else ' of dtype ' + str(alive.dtype)}")
    if tuple(alive.shape) != (epsilons, n):
        raise ValueError(f"alive must have shape [E, N] = [{epsilons}, {n}] (one row per eps), "
                         f"got {list(alive.shape)}")
    return alive.to(device)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Attack:
    """Base of every attack: a frozen dataclass of settings, called as ``attack(model, x, y)``.

    Subclasses set ``name`` and ``norm`` and implement :meth:`_run`. Settings are validated once,
    in ``__post_init__``; the plain function of each attack (``pgd``, ``fgsm``, ...) builds its
    dataclass and calls it, so both take one validation path and return the same result.

    With several epsilons they are run in increasing order and a sample broken at a smaller one
    keeps that adversarial example for the larger ones (it lies in their ball too) without being
    attacked again, so success never decreases with eps. Its counts are those that found it.

    Attributes:
        eps: one budget or a sequence of them (each >= 0); stored as a tuple.
        bounds: ``(lo, hi)`` of the model's input domain, default ``(0, 1)``.
    """

    name: ClassVar[str] = "attack"
    per_channel: ClassVar[bool] = False
    """``True`` where ``eps`` is an L2 norm per channel (the Fourier tools), not of the whole image."""
    # Subclasses also give ``norm`` (a :class:`Norm`) as a field or a class constant; it is not
    # declared here so that a field keeps its place after ``eps``.

    eps: float | tuple[float, ...]
    bounds: Bounds = (0.0, 1.0)

    def __post_init__(self) -> None:
        eps = self.eps
        if isinstance(eps, torch.Tensor) and eps.ndim == 0:
            eps = eps.item()  # a 0-d tensor is one number (check_epsilons would iterate it)
        object.__setattr__(self, "eps", tuple(check_epsilons(eps, "eps")))
        object.__setattr__(self, "bounds", check_bounds(self.bounds))
        seed = getattr(self, "seed", None)
        if seed is not None:
            object.__setattr__(self, "seed", check_seed(seed))

    @property
    def epsilons(self) -> tuple[float, ...]:
        """The budgets, in the order given."""
        return self.eps  # type: ignore[return-value]

    @property
    def gradient_loss(self) -> str | None:
        """The loss this attack's input gradients come from (``"ce"``, ``"margin"``, ``"dlr"``);
        ``None`` for an attack that takes no gradients of a known loss (score- or decision-based,
        foolbox). The sanity checks probe the model with this loss."""
        loss = getattr(self, "loss", None)
        return None if loss is None else str(getattr(loss, "value", loss))

    def threat(self, shape: Sequence[int]) -> ThreatModel:
        """The threat model this attack stays in on images of ``shape`` ``(C, H, W)``."""
        norm = ThreatNorm.L2_CHANNEL if self.per_channel else ThreatNorm(Norm(self.norm).value)  # type: ignore[attr-defined]
        return ThreatModel(norm, self.epsilons, tuple(shape[-3:]))  # type: ignore[arg-type]

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        alive: torch.Tensor | None = None,
    ) -> AttackResults:
        """Attack ``model`` on ``x`` ``[N, C, H, W]`` with labels ``y`` ``[N]`` (int64).

        Args:
            model: any ``nn.Module`` mapping images in ``bounds`` to logits ``[N, K]``; it runs in
                eval mode and every submodule's mode comes back as found.
            x: clean images inside ``bounds``.
            y: true labels.
            target: int64 ``[N]`` target classes for a targeted attack; ``None`` is untargeted.
            generator: the randomness of this call (on ``x``'s device); ``None`` seeds a fresh one
                from the attack's ``seed`` (or uses torch's global generator if that is ``None``).
            alive: bool ``[E, N]`` (rows in the order of ``eps``): the samples to attack at each eps,
                e.g. those no earlier attack of a cascade broke; ``None``: all. A sample is attacked
                at an eps only where it is alive there; one alive at no eps is not even forwarded
                (its predictions read ``-1``, its counts 0). A sample dead at an eps keeps what the
                smaller eps gave it (``x`` and the clean prediction if nothing).

        Returns:
            :class:`~bandguard.attacks.results.AttackResults`, one result per eps in order.
        """
        x = check_model_input(model, x, bounds=self.bounds).detach()
        y = check_labels(y, x, "y")
        if target is not None:
            target = check_labels(target, x, "target")
        check_generator(generator)
        alive = check_alive(alive, len(self.epsilons), x.shape[0], x.device)
        if generator is None:
            generator = self._generator(x.device)
        with model_mode(model):
            return self._drive(model, x, y, target, generator, alive)

    def craft(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Adversarial examples of every sample at the (single) eps, for adversarial training.

        The training loop's entry: inputs are trusted, the model runs in the mode the caller set
        (see :class:`~bandguard.training.TrainConfig`'s ``adversary_mode``), there is no clean
        forward and every sample is attacked, also those the model already gets wrong (Madry et
        al. 1706.06083 maximise the loss of every training sample).

        Returns:
            ``x_adv`` ``[N, C, H, W]``, detached.
        """
        if len(self.epsilons) != 1:
            raise ValueError(f"an adversary for training needs one eps, got {self.epsilons}")
        return self._craft(model, x.detach(), y, self.epsilons[0], generator).detach()

    # -- what subclasses implement

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        targeted: bool,
        eps: float,
        generator: torch.Generator | None,
    ) -> Outcome:
        """Attack ``x`` (model already in eval mode, inputs valid) at one ``eps``.

        ``labels`` are the targets of a targeted run, else the true labels.
        """
        raise NotImplementedError

    def _run_from(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        targeted: bool,
        eps: float,
        generator: torch.Generator | None,
        clean_logits: torch.Tensor,
    ) -> Outcome:
        """:meth:`_run`, given the driver's clean logits ``[M, K]`` of ``x``.

        An attack that starts from the clean output (a score-based black-box attack) overrides this
        instead of :meth:`_run`, so the clean forward is spent, and counted, once.
        """
        return self._run(model, x, labels, targeted, eps, generator)

    def _craft(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """:meth:`craft`'s work; attacks that can skip scoring their final iterate override it."""
        return self._run(model, x, y, False, eps, generator).x_adv

    # -- bookkeeping shared by all attacks

    def _generator(self, device: torch.device) -> torch.Generator | None:
        seed = getattr(self, "seed", None)
        return None if seed is None else torch.Generator(device=device).manual_seed(seed)

    def _drive(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
        alive: torch.Tensor,
        clean_logits: torch.Tensor | None = None,
    ) -> AttackResults:
        """The bookkeeping of :meth:`__call__`; ``clean_logits`` ``[N, K]`` given by a cascade that
        already spent (and counted) the clean forward, else one is run on the samples alive anywhere."""
        targeted = target is not None
        labels = target if target is not None else y
        n = x.shape[0]
        anywhere = alive.any(0)
        clean_forwards = torch.zeros(n, dtype=torch.long, device=x.device)
        if clean_logits is None:
            clean_logits, clean_forwards = self._clean_forward(model, x, y, target, anywhere)
        forwards = clean_forwards.clone()
        clean_pred = torch.where(anywhere, clean_logits.argmax(1), -1) if clean_logits.shape[1] else \
            torch.full_like(y, -1)
        done = is_adversarial(clean_pred, labels, targeted) & anywhere
        x_adv, adv_pred = x.clone(), clean_pred.clone()
        gradients = torch.zeros(n, dtype=torch.long, device=x.device)
        order = sorted(range(len(self.epsilons)), key=lambda i: self.epsilons[i])
        epsilons = [self.epsilons[i] for i in order]
        outcomes = self._run_many(model, x, labels, targeted, epsilons, done, generator, clean_logits, alive[order])
        results: dict[int, AttackResult] = {}
        for i, (idx, outcome) in zip(order, outcomes):
            if idx.numel():
                x_adv[idx] = outcome.x_adv.to(x.dtype)
                adv_pred[idx] = outcome.pred
                forwards[idx] = clean_forwards[idx] + outcome.forwards
                gradients[idx] = outcome.gradients
                done[idx] = outcome.success
            delta = x_adv - x
            results[i] = AttackResult(
                eps=self.epsilons[i],
                norm=Norm(self.norm).value,  # type: ignore[attr-defined]
                x_adv=x_adv.clone(),
                success=done.clone(),
                norms=perturbation_norm(delta, self.norm),  # type: ignore[attr-defined]
                channel_norms=perturbation_norm(delta, self.norm, per_channel=True),  # type: ignore[attr-defined]
                labels=y,
                clean_pred=clean_pred,
                adv_pred=adv_pred.clone(),
                forwards=forwards.clone(),
                gradients=gradients.clone(),
                target=target,
            )
        return AttackResults(tuple(results[i] for i in range(len(order))), threat=self.threat(x.shape))

    def _clean_forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                       anywhere: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean logits ``[N, K]`` of the samples alive at some eps (zeros elsewhere) and the
        forwards ``[N]`` that spent (1 there, 0 elsewhere)."""
        idx = anywhere.nonzero().squeeze(1)
        if idx.numel() == 0:
            return x.new_zeros(x.shape[0], 0), torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        full = idx.numel() == x.shape[0]
        with torch.inference_mode():
            out = model(x if full else x[idx])
        # The classes are known only now: a label the model cannot output would make the attack
        # report success without doing anything; probabilities would hide its gradients. The
        # clone is a normal tensor, usable outside inference mode.
        sub_target = None if target is None else target[idx]
        logits = check_model_output(out, y[idx], target=sub_target).clone()
        if not full:
            logits = logits.new_zeros(x.shape[0], logits.shape[1]).index_copy_(0, idx, logits)
        return logits, anywhere.long()

    def _run_many(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        targeted: bool,
        epsilons: Sequence[float],
        done: torch.Tensor,
        generator: torch.Generator | None,
        clean_logits: torch.Tensor,
        alive: torch.Tensor,
    ) -> list[tuple[torch.Tensor, Outcome]]:
        """Run each eps (ascending; ``alive`` ``[E, N]`` in that order) on the samples alive there
        and not yet adversarial; returns (indices, outcome) per eps."""
        done = done.clone()
        out = []
        for eps, live in zip(epsilons, alive):
            idx = (live & ~done).nonzero().squeeze(1)
            if idx.numel() == 0 or eps == 0:
                idx = idx[:0]
                outcome = Outcome.empty(x, labels)
            else:
                # Skip the gather when every sample is attacked (the common case at one eps).
                full = idx.numel() == x.shape[0]
                xs, ls, zs = (x, labels, clean_logits) if full else (x[idx], labels[idx], clean_logits[idx])
                outcome = self._run_from(model, xs, ls, targeted, eps, generator, zs)
                done[idx] = outcome.success
            out.append((idx, outcome))
        return out
