"""What an attack returns: one :class:`AttackResult` per epsilon, held in :class:`AttackResults`.

Every attack returns :class:`AttackResults` whatever its ``eps`` is (one number or several), so a
caller never checks the type of the result: ``results[0]``, ``results.at(0.3)`` and
``results.robust_accuracy`` work the same for one budget or ten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import torch

if TYPE_CHECKING:
    from bandguard.attacks.threat import ThreatModel

__all__ = ["AttackResult", "AttackResults"]


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """What one attack run at one epsilon produced.

    Attributes:
        eps: the perturbation budget. For the Fourier-basis attacks it is the L2 norm *per
            channel* (Yin et al. 1906.08988); see ``channel_norms``.
        norm: ``"linf"`` or ``"l2"``, the norm ``norms`` and ``channel_norms`` are measured in.
        x_adv: adversarial images ``[N, C, H, W]`` (no graph), inside the bounds and the eps-ball.
        success: bool ``[N]``; untargeted: the model errs on ``x_adv`` (a sample the model already
            misclassifies counts, with ``x_adv = x``); targeted: it predicts the target.
        norms: ``[N]`` norm of the whole perturbation ``x_adv - x``.
        channel_norms: ``[N, C]`` norm of each channel of the perturbation.
        labels: ``[N]`` true labels.
        clean_pred: ``[N]`` predictions on ``x``.
        adv_pred: ``[N]`` predictions on ``x_adv``.
        forwards: int64 ``[N]`` model evaluations spent on each sample, the clean one included.
        gradients: int64 ``[N]`` input-gradient evaluations spent on each sample.
        target: ``[N]`` target classes of a targeted run, else ``None``.
    """

    eps: float
    norm: str
    x_adv: torch.Tensor
    success: torch.Tensor
    norms: torch.Tensor
    channel_norms: torch.Tensor
    labels: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    forwards: torch.Tensor
    gradients: torch.Tensor
    target: torch.Tensor | None = None

    @property
    def robust(self) -> torch.Tensor:
        """Bool ``[N]``: the attack failed (untargeted: still correct; targeted: target not reached)."""
        return ~self.success

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
        """Fraction of samples classified correctly on ``x_adv`` (w.r.t. the true labels)."""
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
            "max_channel_norm": float(self.channel_norms.float().max()),
            "forwards": int(self.forwards.sum()),
            "gradients": int(self.gradients.sum()),
            "targeted": self.target is not None,
        }
        if per_sample:
            out.update(
                success=self.success.tolist(),
                norms=self.norms.tolist(),
                channel_norms=self.channel_norms.tolist(),
                forwards_per_sample=self.forwards.tolist(),
                gradients_per_sample=self.gradients.tolist(),
                adv_pred=self.adv_pred.tolist(),
            )
        return out


@dataclasses.dataclass(frozen=True)
class AttackResults(Sequence[AttackResult]):
    """The results of one attack call: one :class:`AttackResult` per eps, in the order given.

    An immutable sequence (``len``, indexing, iteration) with per-eps summaries. With several
    epsilons a sample broken at a smaller one keeps that example for the larger ones, so
    ``robust`` never gains a sample as eps grows.

    Attributes:
        results: the per-eps results.
        threat: the threat model the attack stayed in (its norm, budgets and the image shape);
            ``None`` only where a caller built the results by hand.

    Example:
        >>> results = PGD(eps=(0.1, 0.3))(model, x, y)  # doctest: +SKIP
        >>> results.robust_accuracy, results.at(0.3).x_adv.shape  # doctest: +SKIP
    """

    results: tuple[AttackResult, ...]
    threat: ThreatModel | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "results", tuple(self.results))
        if not self.results:
            raise ValueError("AttackResults needs at least one AttackResult, got none")

    @overload
    def __getitem__(self, index: int) -> AttackResult: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[AttackResult, ...]: ...

    def __getitem__(self, index: int | slice) -> AttackResult | tuple[AttackResult, ...]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AttackResult]:
        return iter(self.results)

    @property
    def epsilons(self) -> tuple[float, ...]:
        """The budgets, in the order given."""
        return tuple(r.eps for r in self.results)

    @property
    def clean_accuracy(self) -> float:
        """Fraction classified correctly without attack (shared by every eps)."""
        return self.results[0].clean_accuracy

    @property
    def robust_accuracy(self) -> tuple[float, ...]:
        """Per eps, the fraction still classified correctly."""
        return tuple(r.robust_accuracy for r in self.results)

    @property
    def success(self) -> torch.Tensor:
        """Bool ``[E, N]``: per eps and sample, the attack succeeded."""
        return torch.stack([r.success for r in self.results])

    @property
    def robust(self) -> torch.Tensor:
        """Bool ``[E, N]``: per eps and sample, the attack failed (see :attr:`AttackResult.robust`)."""
        return torch.stack([r.robust for r in self.results])

    def at(self, eps: float) -> AttackResult:
        """The result at budget ``eps`` (compared as a float); unknown values raise ``KeyError``."""
        for r in self.results:
            if r.eps == float(eps):
                return r
        raise KeyError(f"no result at eps={eps!r}; the budgets are {self.epsilons}")

    def to_dict(self, *, per_sample: bool = False) -> dict[str, Any]:
        """Plain values: the summaries and one :meth:`AttackResult.to_dict` per eps."""
        return {
            "epsilons": list(self.epsilons),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": list(self.robust_accuracy),
            "results": [r.to_dict(per_sample=per_sample) for r in self.results],
        }
