"""Run any foolbox 3 attack through bandguard's attack protocol.

``FoolboxAttack(attack=fb.attacks.LinfPGD(), eps=0.1)(model, x, y)`` builds
``fb.PyTorchModel(model, bounds=...)`` around a thin counting wrapper (so forwards and gradient
evaluations are counted exactly), runs the attack with the model in eval mode (every submodule's
mode restored after) and returns the same :class:`~bandguard.attacks.results.AttackResults` as
bandguard's own attacks. :func:`foolbox_attack` is the same in one call, and
:meth:`FoolboxAttack.from_name` builds ``foolbox.attacks.<Name>`` by name (the registry's
``"foolbox:<Name>"``).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bandguard._checks import Bounds, check_bool, check_int, check_options, check_real
from bandguard._modes import model_mode
from bandguard.attacks.losses import is_adversarial
from bandguard.attacks.norms import Norm
from bandguard.attacks.protocol import Attack, Outcome
from bandguard.attacks.results import AttackResults

__all__ = ["FoolboxAttack", "foolbox_attack"]


class _Counting(nn.Module):
    """Forwards to ``model`` and counts calls, samples and input-gradient evaluations."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0
        self.samples = 0
        self.grad_calls = 0
        self.training = False  # the wrapped model's modes are the caller's business

    def _count_grad(self, grad: torch.Tensor) -> None:
        self.grad_calls += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.samples += x.shape[0]
        if x.requires_grad:
            x.register_hook(self._count_grad)
        return self.model(x)


def _norm_of(attack: Any) -> Norm:
    p = getattr(getattr(attack, "distance", None), "p", None)
    if p == math.inf:
        return Norm.LINF
    if p == 2:
        return Norm.L2
    raise ValueError(
        f"attack {type(attack).__name__} measures distance with p={p}; bandguard supports Linf and L2"
    )


def _check_setting(found: type, name: str, key: str, value: Any) -> Any:
    """``value`` checked against the annotation of ``found.__init__``'s ``key`` (int, float, bool,
    or ``Optional`` of one), so a wrong type fails here and not deep inside foolbox's run."""
    param = inspect.signature(found.__init__).parameters.get(key)
    if param is None:
        return value  # foolbox itself reports the unknown keyword
    kind = param.annotation
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is typing.Union and len(args) == 1:
        if value is None:
            return value
        kind = args[0]
    label = f"{key} (of foolbox {name})"
    if kind is bool:
        return check_bool(value, label)
    if kind is int:
        return check_int(value, label)
    if kind is float:
        return check_real(value, label)
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class FoolboxAttack(Attack):
    """A foolbox 3 attack behind the bandguard protocol.

    Fixed-epsilon attacks (PGD, FGSM, ...) run once per eps; minimization attacks (Carlini-Wagner,
    DDN, ...) run once and foolbox clips their result to each eps, so every result of such a run
    reports the counts of that single run. ``forwards``/``gradients`` per sample are exact when
    foolbox evaluates whole batches (all its gradient attacks do); otherwise they are the batch
    average, rounded up. Foolbox draws its random starts from torch's global generator.

    Attributes:
        attack: a foolbox attack instance, e.g. ``fb.attacks.LinfPGD(steps=40)``.
        eps: one budget or several, in the attack's norm (Linf or L2).
        bounds: ``(lo, hi)`` handed to ``fb.PyTorchModel``.
    """

    name = "foolbox"

    attack: Any

    def __post_init__(self) -> None:
        super().__post_init__()
        import foolbox as fb

        if not isinstance(self.attack, fb.attacks.base.Attack):
            raise ValueError(f"attack must be a foolbox 3 attack instance, got {self.attack!r}")
        _norm_of(self.attack)

    @classmethod
    def from_name(
        cls, name: str, *, eps: float | tuple[float, ...], bounds: Bounds = (0.0, 1.0), **settings: Any
    ) -> FoolboxAttack:
        """Wrap ``foolbox.attacks.<name>(**settings)``; an unknown name or setting raises ``ValueError``."""
        import foolbox as fb

        found = getattr(fb.attacks, name, None)
        if not (isinstance(found, type) and issubclass(found, fb.attacks.base.Attack)):
            raise ValueError(f"unknown foolbox attack {name!r}; see dir(foolbox.attacks)")
        accepted = inspect.signature(found.__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
            check_options(settings, set(accepted) - {"self"}, f"foolbox attack {name!r}")
        settings = {key: _check_setting(found, name, key, value) for key, value in settings.items()}
        try:
            inner = found(**settings)
        except TypeError as err:
            raise ValueError(f"foolbox attack {name!r}: {err}") from None
        return cls(attack=inner, eps=eps, bounds=bounds)

    @property
    def norm(self) -> Norm:  # type: ignore[override]
        """The norm of the wrapped attack's distance."""
        return _norm_of(self.attack)

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
        import foolbox as fb

        if isinstance(self.attack, fb.attacks.base.FixedEpsilonAttack):
            return super()._run_many(model, x, labels, targeted, epsilons, done, generator, clean_logits, alive)
        # A minimization attack: one run on every sample the model gets right and some eps keeps
        # alive, clipped per eps (a sample dead at an eps is still clipped there: it lies in the
        # ball and the caller reads only the alive ones).
        idx = (alive.any(0) & ~done).nonzero().squeeze(1)
        if idx.numel() == 0:
            return [(idx, Outcome.empty(x, labels)) for _ in epsilons]
        xs, ls = x[idx], labels[idx]
        counter = _Counting(model)
        clipped = self._foolbox(counter, xs, ls, targeted, list(epsilons))
        out = []
        for x_adv in clipped:
            out.append((idx, self._outcome(model, counter, x_adv, ls, targeted)))
        return out

    def _run(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
        generator: torch.Generator | None,
    ) -> Outcome:
        counter = _Counting(model)
        (x_adv,) = self._foolbox(counter, x, labels, targeted, [eps])
        return self._outcome(model, counter, x_adv, labels, targeted)

    def _foolbox(
        self, counter: _Counting, x: torch.Tensor, labels: torch.Tensor, targeted: bool, epsilons: list[float]
    ) -> list[torch.Tensor]:
        import foolbox as fb

        fmodel = fb.PyTorchModel(counter, bounds=self.bounds, device=x.device)
        criterion = fb.criteria.TargetedMisclassification(labels) if targeted else labels
        # foolbox backpropagates into the parameters too (filling their .grad): freeze them for
        # the run, which also saves the weight gradients; every flag comes back after.
        with model_mode(counter.model, train=None, requires_grad=False):
            _, clipped, _ = self.attack(fmodel, x, criterion, epsilons=epsilons)
        return [c.detach() for c in clipped]

    def _outcome(
        self, model: nn.Module, counter: _Counting, x_adv: torch.Tensor, labels: torch.Tensor, targeted: bool
    ) -> Outcome:
        n = x_adv.shape[0]
        with torch.no_grad():
            pred = model(x_adv).argmax(1)
        forwards = counter.calls if counter.samples == counter.calls * n else -(-counter.samples // n)
        long = torch.ones(n, dtype=torch.long, device=x_adv.device)
        return Outcome(
            x_adv, is_adversarial(pred, labels, targeted), pred,
            long * (forwards + 1), long * counter.grad_calls,
        )



def foolbox_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    attack: Any,
    eps: float | tuple[float, ...],
    bounds: Bounds = (0.0, 1.0),
    target: torch.Tensor | None = None,
) -> AttackResults:
    """Run the foolbox 3 attack instance ``attack`` through the bandguard protocol in one call.

    Args:
        model: maps ``[N, C, H, W]`` images in ``bounds`` to logits ``[N, K]``.
        x: clean images ``[N, C, H, W]``.
        y: int64 labels ``[N]``.
        attack: a foolbox 3 attack instance, e.g. ``foolbox.attacks.L2CarliniWagnerAttack()``.
        eps: budget(s) in the attack's norm; one result per value.
        bounds: ``(lo, hi)`` of the input domain.
        target: int64 ``[N]`` target classes, or ``None``.

    Returns:
        :class:`~bandguard.attacks.results.AttackResults`, one per eps; each ``x_adv`` is
        ``[N, C, H, W]``.
    """
    return FoolboxAttack(attack=attack, eps=eps, bounds=bounds)(model, x, y, target=target)
