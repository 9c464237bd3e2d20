"""The defense protocol: one small ``nn.Module`` base that declares three facts.

Attacks and benchmarks read these by duck typing (they never import ``bandguard.defenses``):

- ``randomized``: the output depends on fresh randomness per call, so gradient attacks must use
  expectation over transformation (EOT) (Athalye et al. 1802.00420).
- ``differentiable``: if ``False``, a BPDA approximation (Athalye et al. 1802.00420) is declared
  beside the defense so that gradient attacks can pass through it (see :mod:`bandguard.defenses.bpda`).
- ``forward_cost``: forwards of the wrapped model per input image.
"""

from __future__ import annotations

from torch import nn

__all__ = ["Defense", "forward_cost", "is_randomized"]


class Defense(nn.Module):
    """Base class of every bandguard defense.

    Subclasses set the class attributes below (or instance attributes where they depend on the
    settings, e.g. :class:`~bandguard.defenses.post_averaging.PostAveraging`'s ``forward_cost``).
    """

    randomized: bool = False
    differentiable: bool = True
    forward_cost: int = 1


def is_randomized(model: nn.Module) -> bool:
    """``True`` if ``model`` or any submodule declares ``randomized = True`` (attacks then use EOT)."""
    return any(bool(getattr(m, "randomized", False)) for m in model.modules())


def forward_cost(model: nn.Module) -> int:
    """Model forwards per input image: the outermost module that declares ``forward_cost``.

    Composed defenses set their own total, so the first declaring module found in
    ``model.modules()`` order (outermost first) gives the answer; ``1`` if none declares it.
    """
    for m in model.modules():
        cost = getattr(m, "forward_cost", None)
        if isinstance(cost, int) and not isinstance(cost, bool) and cost >= 1:
            return cost
    return 1
