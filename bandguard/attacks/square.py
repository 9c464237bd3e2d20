"""Square attack (Andriushchenko et al. 1912.00049): score-based random search, Linf and L2.

Each iteration changes the perturbation in a random square window (per image) and keeps the
change if it lowers the margin ``z_y - max_{j != y} z_j`` (untargeted) or ``max_{j != t} z_j -
z_t`` (targeted). The window's side follows the paper's schedule: ``p`` (the fraction of pixels a
window covers) starts at ``p_init`` and halves after iterations 10, 50, 200, 500, 1000, 2000,
4000, 6000 and 8000, rescaled to the budget (as if it were 10,000 iterations). Windows, signs and
L2 patterns are drawn per image, as in the paper's code. AutoAttack's port (and torchattacks') draws
one window and one set of signs per iteration for the whole batch: the same attack per image, but
its robust accuracy on a batch moves with the seed as one block (10 seeds on 1,000 MNIST images:
sd about 2 points, ours about 0.5; ``benchmarks/RESULTS.md``). The attack reads only the model's
outputs: it catches defenses that mask gradients.

:func:`square` is the function; :class:`Square` carries its settings (both give the same result).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bandguard._checks import check_enum, check_int, check_positive
from bandguard.attacks.losses import Loss, is_adversarial, per_sample_loss
from bandguard.attacks.norms import Norm
from bandguard.attacks.protocol import Attack, Outcome
from bandguard.attacks.results import AttackResults

__all__ = ["Square", "square", "square_fraction"]

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(iteration: int, iterations: int, p_init: float) -> float:
    """The paper's ``p`` at ``iteration`` (0-based) of ``iterations``, rescaled to 10,000.

    Args:
        iteration: the current iteration, 0-based.
        iterations: the attack's iteration budget.
        p_init: the fraction at the start.

    Returns:
        The fraction of the image the window covers now: ``p_init`` halved at the paper's
        checkpoints (Andriushchenko et al. 1912.00049, schedule for 10,000 iterations).
    """
    it = int(iteration / iterations * 10000)
    return p_init / 2 ** sum(it > h for h in _HALVINGS)


def _signs(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    bits = torch.randint(0, 2, shape, generator=generator, device=like.device)
    return (2 * bits - 1).to(like.dtype)


def _offsets(n: int, size: int, side: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Per-image window corners uniform in ``[0, size - side)`` (``0`` when the window fills the side)."""
    u = torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)
    return (u * (size - side)).long()


def _window(top: torch.Tensor, left: torch.Tensor, side: int, h: int, w: int) -> torch.Tensor:
    """Bool ``[N, 1, h, w]``: each image's ``side x side`` window at ``(top, left)``."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _rectangles(a: int, b: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The paper's ``a x b`` block of nested rectangles, ``1 / (k + 1)^2`` each, unit norm (float64).

    Rectangle ``k`` covers ``|i - a // 2| <= k`` and ``|j - b // 2| <= k``, so a pixel at Chebyshev
    distance ``d`` from ``(a // 2, b // 2)`` holds ``sum_{k >= d} 1 / (k + 1)^2``; built on
    ``device`` in one pass, summed in the paper's order (``k`` rising) so it equals its loop.
    """
    n = max(a // 2 + 1, b // 2 + 1)
    k = torch.arange(n, device=device, dtype=torch.float64)
    terms = torch.where(k[None, :] >= k[:, None], 1.0 / (k[None, :] + 1) ** 2, 0.0)  # [d, k]
    tail = terms.cumsum(1)[:, -1]  # tail[d] = sum over k >= d
    rows = (torch.arange(a, device=device) - a // 2).abs()
    cols = (torch.arange(b, device=device) - b // 2).abs()
    block = tail[torch.maximum(rows[:, None], cols[None, :])]
    return block / block.norm().clamp_min(1e-12)


def _eta(side: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The L2 update pattern ``[side, side]`` (float64, on ``device``): a positive and a negative
    block of rectangles."""
    top = side // 2
    pattern = torch.cat([_rectangles(top, side, device=device), -_rectangles(side - top, side, device=device)], 0)
    return pattern / pattern.norm().clamp_min(1e-12)


def _place(pattern: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
           h: int, w: int) -> torch.Tensor:
    """``[N, 1, h, w]``: ``pattern`` (transposed where ``flip``) put at each image's window, zero elsewhere."""
    side = pattern.shape[0]
    rows = torch.arange(h, device=top.device)[None, :] - top[:, None]  # [N, h]
    cols = torch.arange(w, device=top.device)[None, :] - left[:, None]  # [N, w]
    inside = ((rows >= 0) & (rows < side))[:, :, None] & ((cols >= 0) & (cols < side))[:, None, :]
    ri = rows.clamp(0, side - 1)[:, :, None].expand(-1, -1, w)
    ci = cols.clamp(0, side - 1)[:, None, :].expand(-1, h, -1)
    # A transposed pattern is the same pattern read at swapped indices.
    value = torch.where(flip[:, None, None], pattern[ci, ri], pattern[ri, ci])
    return (value * inside)[:, None]


def _l2_unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.linalg.vector_norm(v.flatten(1), dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)


def _init_linf(x0: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """Vertical stripes: ``+-eps`` per image, channel and column."""
    n, c, _, w = x0.shape
    return x0 + eps * _signs((n, c, 1, w), x0, generator)


def _init_l2(x0: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """A grid of 5 x 5 blocks of the update pattern with random signs, scaled to norm ``eps``."""
    n, c, h, w = x0.shape
    side = max(min(h, w) // 5, 1)
    delta = torch.zeros_like(x0)
    top0, left0 = (h - side * (h // side)) // 2, (w - side * (w // side)) // 2
    eta = _eta(side, device=x0.device).to(x0.dtype)
    for bi in range(h // side):
        for bj in range(w // side):
            # Transposed or not on the device: no host sync per block.
            block = torch.where(torch.rand((), generator=generator, device=x0.device) > 0.5, eta.T, eta)
            r, col = top0 + bi * side, left0 + bj * side
            delta[:, :, r:r + side, col:col + side] += block * _signs((n, c, 1, 1), x0, generator)
    return x0 + eps * _l2_unit(delta)


def _square_core(
    model: nn.Module,
    x0: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    queries: int,
    p_init: float,
    targeted: bool,
    bounds: tuple[float, float],
    generator: torch.Generator | None,
) -> Outcome:
    """Square attack on trusted inputs (model in eval mode); at most ``queries`` forwards per image.

    Images leave the batch at their first success (random search on one image never depends on
    another's), which is where a sequential attacker would stop.
    """
    lo, hi = bounds
    n, c, h, w = x0.shape
    iterations = queries - 1
    start = _init_linf(x0, eps, generator) if norm is Norm.LINF else _init_l2(x0, eps, generator)
    best = start.clamp(lo, hi)
    with torch.no_grad():
        logits = model(best)
    margin = -per_sample_loss(logits, labels, Loss.MARGIN, targeted)  # to lower; <= 0 is (nearly) success
    pred = logits.argmax(1)
    success = is_adversarial(pred, labels, targeted)
    forwards = torch.ones(n, dtype=torch.long, device=x0.device)
    lower, upper = (x0 - eps).clamp(min=lo), (x0 + eps).clamp(max=hi)
    patterns: dict[int, torch.Tensor] = {}
    for i in range(iterations):
        idx = (~success).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        a = idx.numel()
        xs, cur = x0[idx], best[idx]
        p = square_fraction(i, iterations, p_init)
        if norm is Norm.LINF:
            side = min(max(round((p * h * w) ** 0.5), 1), h, w)
            win = _window(_offsets(a, h, side, xs, generator), _offsets(a, w, side, xs, generator), side, h, w)
            step = 2 * eps * _signs((a, c, 1, 1), xs, generator)
            cand = torch.minimum(torch.maximum(cur + win * step, lower[idx]), upper[idx])
        else:
            side = max(round((p * h * w) ** 0.5), 3)
            side = min(side + 1 - side % 2, h, w)  # odd, as in the paper, and inside the image
            if side not in patterns:  # built once per size, on the device
                patterns[side] = _eta(side, device=x0.device).to(x0.dtype)
            cand = _l2_candidate(xs, cur, eps, patterns[side], generator).clamp(lo, hi)
        with torch.no_grad():
            logits = model(cand)
        forwards[idx] += 1
        m = -per_sample_loss(logits, labels[idx], Loss.MARGIN, targeted)
        p_new = logits.argmax(1)
        hit = is_adversarial(p_new, labels[idx], targeted)
        improved = (m < margin[idx]) | hit
        take = idx[improved]
        best[take], margin[take], pred[take] = cand[improved], m[improved], p_new[improved]
        success[idx[hit]] = True
    return Outcome(best, success, pred, forwards, torch.zeros_like(forwards))


def _l2_candidate(x0: torch.Tensor, cur: torch.Tensor, eps: float, eta: torch.Tensor,
                  generator: torch.Generator | None) -> torch.Tensor:
    """The paper's L2 update: move the mass of a second window into a first one with a fresh pattern
    (``eta`` ``[side, side]``, :func:`_eta` on ``x0``'s device and dtype)."""
    a, c, h, w = x0.shape
    side = eta.shape[0]
    delta = cur - x0
    top1, left1 = _offsets(a, h, side, x0, generator), _offsets(a, w, side, x0, generator)
    top2, left2 = _offsets(a, h, side, x0, generator), _offsets(a, w, side, x0, generator)
    win1, win2 = _window(top1, left1, side, h, w), _window(top2, left2, side, h, w)
    norm_win1 = torch.linalg.vector_norm(delta * win1, dim=(-2, -1), keepdim=True)  # [A, C, 1, 1]
    norm_img = torch.linalg.vector_norm(delta.flatten(1), dim=1).view(-1, 1, 1, 1)
    norm_both = torch.linalg.vector_norm((delta * (win1 | win2)).flatten(1), dim=1).view(-1, 1, 1, 1)
    flip = torch.rand(a, generator=generator, device=x0.device) > 0.5
    pattern = _place(eta, top1, left1, flip, h, w)  # [A, 1, h, w]
    new = pattern * _signs((a, c, 1, 1), x0, generator) + delta * win1 / (norm_win1 + 1e-12)
    # Scale the window so the image keeps norm eps: it gets the freed budget plus what both windows held.
    budget = ((eps**2 - norm_img**2).clamp_min(0) / c + norm_both**2).sqrt()
    new = new / (torch.linalg.vector_norm(new, dim=(-2, -1), keepdim=True) + 1e-12) * budget
    delta = torch.where(win1, new, torch.where(win2, torch.zeros_like(delta), delta))
    return x0 + eps * _l2_unit(delta)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Square(Attack):
    """Square attack (Andriushchenko et al. 1912.00049); ``Square(eps=8/255)(model, x, y)``.

    ``forwards`` counts the clean forward plus the attack's own queries: the start and one per
    iteration until the first success, ``queries`` at most. No gradients are used.

    Attributes:
        eps: one budget or several, in ``norm``.
        norm: ``"linf"`` or ``"l2"`` (the whole image).
        queries: forwards per image, the start included (torchattacks' ``n_queries`` + 1).
        p_init: the fraction of the image the first windows cover (paper: 0.05 for Linf on
            ImageNet, 0.1 for L2; AutoAttack: 0.8).
        bounds: ``(lo, hi)`` of the input domain.
        seed: seeds every random draw (``None``: torch's global generator).
    """

    name = "square"

    norm: Norm = Norm.LINF
    queries: int = 5001
    p_init: float = 0.8
    seed: int | None = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "norm", check_enum(self.norm, Norm, "norm"))
        check_int(self.queries, "queries", minimum=1)
        p = check_positive(self.p_init, "p_init")
        if p > 1:
            raise ValueError(f"p_init must be in (0, 1], got {p}")
        if self.seed is not None:
            check_int(self.seed, "seed")

    def _run(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
             generator: torch.Generator | None) -> Outcome:
        return _square_core(model, x, labels, eps=eps, norm=self.norm, queries=self.queries,
                            p_init=self.p_init, targeted=targeted, bounds=self.bounds,
                            generator=generator)


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float | Sequence[float],
        target: torch.Tensor | None = None, **settings: Any) -> AttackResults:
    """Square attack as a function: ``square(model, x, y, eps=8/255, queries=1001)``.

    Same arguments and result as ``Square(eps=eps, **settings)(model, x, y, target=target)``.

    Args:
        model: maps ``[N, C, H, W]`` images in the bounds to logits ``[N, K]``; only its outputs
            are used.
        x: clean images ``[N, C, H, W]``.
        y: int64 labels ``[N]``.
        eps: one budget or several, in the norm (``"linf"`` by default).
        target: int64 ``[N]`` target classes for a targeted attack; ``None`` is untargeted.
        **settings: the other fields of :class:`Square` (``norm``, ``queries``, ``p_init``, ...).

    Returns:
        :class:`~bandguard.attacks.results.AttackResults`, one per eps; each ``x_adv`` is
        ``[N, C, H, W]``.
    """
    return Square(eps=eps, **settings)(model, x, y, target=target)
