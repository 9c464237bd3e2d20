"""Adversaries for adversarial training: ``(model, x, y) -> x_adv`` hooks for ``TrainConfig``.

- ``"pgd"``: PGD adversarial training (Madry et al. 1706.06083): a random start and ``steps``
  PGD steps per batch.
- ``"fgsm_rs"``: fast adversarial training (Wong et al. 2001.03994): one FGSM step of
  ``1.25 * eps`` from a uniform random start in the eps-box.
- ``"fgsm"``: plain FGSM from the clean point (prone to catastrophic overfitting; for comparison).

Mode choice: the adversarial examples are computed with the model in **eval** mode, and every
submodule's mode is restored afterwards, so the training loop's ``train()`` state is untouched.
Wong et al. and several PGD-AT codes attack in train mode; we do not, because in train mode each
of the attack's forwards would update the BatchNorm running statistics with statistics of
half-attacked batches (``steps`` extra updates per batch) and dropout would randomize the
gradient. In eval mode the attack sees the network as it will be evaluated, and the only forward
in train mode is the training step itself. Gradients are taken w.r.t. the input only, so the
parameters' ``.grad`` are never touched.
"""

from __future__ import annotations

import dataclasses
import enum

import torch
from torch import nn

from bandguard._checks import Bounds, check_bounds, check_enum, check_int, check_nonnegative, check_positive
from bandguard._modes import model_mode
from bandguard.attacks.base import Loss, Norm, _generator
from bandguard.attacks.fgsm import RS_STEP
from bandguard.attacks.pgd import _pgd_core, _resolve_step

__all__ = ["AdvKind", "Adversary", "adversarial_example_fn"]


class AdvKind(str, enum.Enum):
    """Which adversary adversarial training uses."""

    PGD = "pgd"
    FGSM_RS = "fgsm_rs"
    FGSM = "fgsm"

    def __repr__(self) -> str:
        return repr(self.value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Adversary:
    """A training-time adversary: ``Adversary(kind="pgd", eps=0.3)(model, x, y) -> x_adv``.

    Attributes:
        kind: ``"pgd"``, ``"fgsm_rs"`` or ``"fgsm"`` (see the module docstring).
        eps: budget in ``norm``.
        steps: PGD steps (ignored by the FGSM kinds).
        step_size: absolute step; default ``2.5 * eps / steps`` for PGD, ``1.25 * eps`` for
            ``fgsm_rs`` and ``eps`` for ``fgsm``.
        norm: ``"linf"`` or ``"l2"`` (FGSM kinds are Linf only).
        bounds: ``(lo, hi)`` of the input domain.
        seed: seeds a generator (one per device, advanced batch after batch) for the random
            starts; ``None`` draws from torch's global generator.
    """

    kind: AdvKind = AdvKind.PGD
    eps: float = 0.3
    steps: int = 10
    step_size: float | None = None
    norm: Norm = Norm.LINF
    bounds: Bounds = (0.0, 1.0)
    seed: int | None = None
    _generators: dict[str, torch.Generator] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", check_enum(self.kind, AdvKind, "kind"))
        object.__setattr__(self, "norm", check_enum(self.norm, Norm, "norm"))
        object.__setattr__(self, "eps", check_nonnegative(self.eps, "eps"))
        object.__setattr__(self, "bounds", check_bounds(self.bounds))
        check_int(self.steps, "steps", minimum=1)
        if self.step_size is not None:
            check_positive(self.step_size, "step_size")
        if self.seed is not None:
            check_int(self.seed, "seed")
        if self.kind is not AdvKind.PGD and self.norm is not Norm.LINF:
            raise ValueError(f"kind {self.kind.value!r} is Linf only, got norm {self.norm.value!r}")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial version of the batch ``x`` ``[N, C, H, W]`` with labels ``y`` ``[N]``.

        Inputs are trusted (this runs inside a training loop); the result has no graph.
        """
        generator = self._generator(x.device)
        x = x.detach()
        if self.kind is AdvKind.PGD:
            steps, random_start = self.steps, True
            step = _resolve_step(self.step_size, None, self.eps, self.steps)
        else:
            steps, random_start = 1, self.kind is AdvKind.FGSM_RS
            default = RS_STEP * self.eps if random_start else self.eps
            step = default if self.step_size is None else self.step_size
        with model_mode(model):
            return _pgd_core(
                model, x, y, eps=self.eps, norm=self.norm, steps=steps, step_size=step,
                random_start=random_start, restarts=1, loss=Loss.CE, targeted=False, eot=1,
                bounds=self.bounds, generator=generator, final_eval=False,
            ).x_adv

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        key = str(device)
        if key not in self._generators:
            self._generators[key] = _generator(self.seed, device)  # type: ignore[assignment]
        return self._generators[key]


def adversarial_example_fn(
    kind: AdvKind | str = "pgd",
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    norm: Norm | str = "linf",
    bounds: Bounds = (0.0, 1.0),
    seed: int | None = None,
) -> Adversary:
    """The ``TrainConfig(adversary=...)`` hook for PGD-AT or fast FGSM-RS training.

    Example:
        >>> config = TrainConfig(adversary=adversarial_example_fn("fgsm_rs", eps=0.3))  # doctest: +SKIP

    Returns:
        An :class:`Adversary`, callable as ``(model, x, y) -> x_adv``.
    """
    return Adversary(
        kind=kind, eps=eps, steps=steps, step_size=step_size, norm=norm, bounds=bounds, seed=seed  # type: ignore[arg-type]
    )
