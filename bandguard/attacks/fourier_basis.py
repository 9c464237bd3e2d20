"""Black-box attacks in the Fourier basis: they read only the model's outputs.

- :func:`fourier_attack` (Yin et al. 1906.08988): per image, try ``x + s * eps * U_ij`` (``U_ij``
  the real unit-L2 Fourier basis image of :func:`bandguard.fourier.fourier_basis`, ``s = +-1`` drawn
  per channel) over frequencies until the model errs or the query budget ends.
- :func:`fourier_greedy`: the query-efficient greedy variant in the same basis (SimBA, Guo et al.
  1905.07121): walk through low-frequency directions and keep a step ``+-alpha * U_ij`` (one
  channel at a time) when it lowers the true-class probability, within an L2 budget.

Both are batched over images: candidates for every still-unbroken image are evaluated in one
forward (chunked to ``batch_size`` images), and query counts are exact per image: the number of
candidates a sequential attacker would have had to evaluate.
"""

from __future__ import annotations

import dataclasses
import enum

import torch
from einops import rearrange, repeat
from torch import nn

from bandguard._checks import (
    Bounds,
    check_enum,
    check_int,
    check_nonnegative,
    check_positive,
)
from bandguard._modes import model_mode
from bandguard.attacks.base import Attack, Norm, _check_call, _is_adversarial, _Outcome
from bandguard.fourier import distinct_frequencies, fourier_basis, radial_distance

__all__ = [
    "FourierAttack",
    "FourierGreedy",
    "Order",
    "fourier_attack",
    "fourier_greedy",
    "frequency_order",
]

DEFAULT_BATCH = 1024


class Order(str, enum.Enum):
    """Order in which frequencies are tried."""

    ROW_MAJOR = "row_major"  # Yin et al.'s loop over the centred grid
    RADIUS = "radius"  # low frequencies first, row-major within a ring
    RANDOM = "random"  # one random permutation shared by all images of a call

    def __repr__(self) -> str:
        return repr(self.value)


def frequency_order(
    h: int,
    w: int,
    *,
    order: Order | str = "row_major",
    radii: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The distinct centred frequency positions an attack tries, in the order it tries them.

    Args:
        h, w: image size.
        order: ``"row_major"``, ``"radius"`` (distance from the centre, ascending, stable) or
            ``"random"`` (a permutation drawn from ``generator``).
        radii: keep positions with ``inner <= distance < outer``; ``None`` keeps all.
        generator: for ``"random"`` (on ``device``); ``None`` uses torch's global generator.

    Returns:
        int64 ``[K, 2]`` centred ``(row, col)`` positions, one per mirror pair.
    """
    order_ = check_enum(order, Order, "order")
    positions = distinct_frequencies(h, w, device=device)
    dist = radial_distance(h, w, device=device, dtype=torch.float64)[positions[:, 0], positions[:, 1]]
    if radii is not None:
        inner, outer = radii
        positions, dist = positions[(dist >= inner) & (dist < outer)], dist[(dist >= inner) & (dist < outer)]
    if order_ is Order.RADIUS:
        positions = positions[torch.sort(dist, stable=True).indices]
    elif order_ is Order.RANDOM:
        positions = positions[torch.randperm(positions.shape[0], generator=generator, device=positions.device)]
    return positions


def _random_signs(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    bits = torch.randint(0, 2, shape, generator=generator, device=like.device)
    return (2 * bits - 1).to(like.dtype)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(chunk) for chunk in x.split(batch_size)])


@torch.no_grad()
def _fourier_core(
    model: nn.Module,
    x0: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    positions: torch.Tensor,
    targeted: bool,
    bounds: Bounds,
    generator: torch.Generator | None,
    batch_size: int,
) -> _Outcome:
    """Yin et al.'s Fourier-basis attack on trusted inputs; frequencies tried in ``positions`` order.

    All unbroken images stand at the same frequency index, so each round takes the next chunk of
    frequencies for all of them: ``[images, chunk]`` candidates in one (chunked) forward.
    """
    lo, hi = bounds
    n, c, h, w = x0.shape
    k_total = positions.shape[0]
    basis = fourier_basis(h, w, positions, device=x0.device, dtype=x0.dtype)  # [K, H, W]
    signs = _random_signs((n, k_total, c), x0, generator)  # drawn up front: chunking-independent
    # eps is the L2 norm of the whole perturbation, so each channel gets eps / sqrt(C).
    amplitude = eps / c**0.5
    x_adv, pred = x0.clone(), labels.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x0.device)
    forwards = torch.zeros(n, dtype=torch.long, device=x0.device)
    active = torch.arange(n, device=x0.device)
    k0 = 0
    while k0 < k_total and active.numel():
        kc = min(max(1, batch_size // active.numel()), k_total - k0)
        scaled = amplitude * signs[active, k0:k0 + kc, :, None, None] * basis[None, k0:k0 + kc, None]
        candidates = (x0[active, None] + scaled).clamp_(lo, hi)  # [A, kc, C, H, W]
        logits = _predict(model, rearrange(candidates, "a k c h w -> (a k) c h w"), batch_size)
        p = rearrange(logits.argmax(1), "(a k) -> a k", k=kc)
        hit = _is_adversarial(p, labels[active, None], targeted)
        found = hit.any(1)
        first = hit.to(torch.int8).argmax(1)  # first erring frequency of each image
        # A sequential attacker stops at its first success: later candidates in the chunk are
        # not counted as queries.
        forwards[active] += torch.where(found, first + 1, torch.full_like(first, kc)).long()
        winners, cols = active[found], first[found]
        rows = found.nonzero().squeeze(1)
        x_adv[winners] = candidates[rows, cols]
        pred[winners] = p[rows, cols]
        success[winners] = True
        active = active[~found]
        k0 += kc
    return _Outcome(x_adv, success, pred, forwards, torch.zeros_like(forwards))


def _check_search_settings(attack: FourierAttack | FourierGreedy) -> None:
    """Validate (and coerce) the settings both Fourier-basis attacks share."""
    object.__setattr__(attack, "order", check_enum(attack.order, Order, "order"))
    object.__setattr__(attack, "radii", _check_radii(attack.radii))
    if attack.max_queries is not None:
        check_int(attack.max_queries, "max_queries", minimum=1)
    check_int(attack.batch_size, "batch_size", minimum=1)
    if attack.seed is not None:
        check_int(attack.seed, "seed")


def _check_radii(radii: object) -> tuple[float, float] | None:
    if radii is None:
        return None
    try:
        inner, outer = (float(r) for r in radii)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"radii must be a pair (inner, outer), got {radii!r}") from None
    check_nonnegative(inner, "radii")
    if not outer > inner:
        raise ValueError(f"radii must have inner < outer, got {(inner, outer)}")
    return inner, outer


def fourier_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    order: Order | str = "row_major",
    radii: tuple[float, float] | None = None,
    max_queries: int | None = None,
    target: torch.Tensor | None = None,
    bounds: Bounds = (0.0, 1.0),
    generator: torch.Generator | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> torch.Tensor:
    """Fourier-basis black-box attack (Yin et al. 1906.08988).

    For each image, frequencies are tried in :func:`frequency_order`; the candidate is
    ``clip(x + eps / sqrt(C) * s_c * U_ij)`` with an independent random sign ``s_c`` per channel
    (``U_ij`` of unit L2 norm), so the whole perturbation has L2 norm ``eps`` and stays in the
    eps-ball like every attack here. Yin et al. put ``r * U_ij`` on each channel: their ``r``
    is ``eps / sqrt(C)`` (``r = 4`` on CIFAR-10 is ``eps = 4 * sqrt(3)``). The first candidate
    the model gets wrong is returned; an image with none keeps ``x``.

    Args:
        model: maps ``[N, C, H, W]`` to logits ``[N, K]``; only its outputs are used.
        x: clean images ``[N, C, H, W]``; y: int64 labels ``[N]``.
        eps: L2 norm of the whole perturbation (all channels).
        order, radii: which frequencies and in which order (see :func:`frequency_order`).
        max_queries: most candidates per image; ``None`` tries every selected frequency.
        target: int64 ``[N]`` classes to reach instead of any error; ``None`` is untargeted.
        bounds: ``(lo, hi)``; generator: signs and the ``"random"`` order.
        batch_size: candidate images per forward.

    Returns:
        ``x_adv`` ``[N, C, H, W]``.
    """
    x, y, target, eps, bounds = _check_call(model, x, y, target, eps, bounds)
    radii = _check_radii(radii)
    if max_queries is not None:
        check_int(max_queries, "max_queries", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    positions = frequency_order(*x.shape[-2:], order=order, radii=radii, generator=generator, device=x.device)
    with model_mode(model):
        return _fourier_core(
            model, x, y if target is None else target, eps=eps, positions=positions[:max_queries],
            targeted=target is not None, bounds=bounds, generator=generator, batch_size=batch_size,
        ).x_adv


@torch.no_grad()
def _greedy_core(
    model: nn.Module,
    x0: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    positions: torch.Tensor,
    max_queries: int | None,
    targeted: bool,
    bounds: Bounds,
    generator: torch.Generator | None,
    batch_size: int,
    clean_logits: torch.Tensor | None = None,
) -> _Outcome:
    """SimBA (Guo et al. 1905.07121) over directions ``U_ij`` on one channel, in ``positions`` order.

    Directions are orthonormal, so each kept step adds ``step_size**2`` to the squared L2 norm
    (less where clipping bites); a step that would leave the L2 ball is not queried.
    """
    lo, hi = bounds
    n, c, h, w = x0.shape
    basis = fourier_basis(h, w, positions, device=x0.device, dtype=x0.dtype)  # [K, H, W]
    # Direction d = (frequency d // c, channel d % c): every channel of a frequency before the next.
    channels = repeat(torch.arange(c, device=x0.device), "c -> (k c)", k=positions.shape[0])
    freqs = repeat(torch.arange(positions.shape[0], device=x0.device), "k -> (k c)", c=c)
    sign = -1.0 if targeted else 1.0  # minimise p(true) untargeted, maximise p(target) targeted

    def score(logits: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        return sign * logits.softmax(1).gather(1, lab[:, None]).squeeze(1)

    queries = torch.zeros(n, dtype=torch.long, device=x0.device)  # candidates, for max_queries
    forwards = torch.zeros(n, dtype=torch.long, device=x0.device)
    if clean_logits is None:
        clean_logits = _predict(model, x0, batch_size)
        forwards += 1
    x_adv, pred = x0.clone(), clean_logits.argmax(1)
    current = score(clean_logits, labels)
    success = _is_adversarial(pred, labels, targeted)
    budget = eps * (1 + 1e-6)
    for d in range(freqs.shape[0]):
        active = (~success).nonzero().squeeze(1)
        if max_queries is not None:
            active = active[queries[active] < max_queries]
        if active.numel() == 0:
            break
        direction = torch.zeros(c, h, w, device=x0.device, dtype=x0.dtype)
        direction[channels[d]] = basis[freqs[d]]
        for step in (-step_size, step_size):
            if active.numel() == 0:
                break
            if max_queries is not None:
                active = active[queries[active] < max_queries]
            cand = (x_adv[active] + step * direction).clamp_(lo, hi)
            within = torch.linalg.vector_norm((cand - x0[active]).flatten(1), dim=1) <= budget
            active, cand = active[within], cand[within]
            if active.numel() == 0:
                break
            logits = _predict(model, cand, batch_size)
            queries[active] += 1
            new = score(logits, labels[active])
            better = new < current[active]
            kept = active[better]
            x_adv[kept] = cand[better]
            current[kept] = new[better]
            pred[kept] = logits[better].argmax(1)
            success[kept] = _is_adversarial(pred[kept], labels[kept], targeted)
            active = active[~better]  # the opposite step is tried only where this one failed
    return _Outcome(x_adv, success, pred, forwards + queries, torch.zeros_like(forwards))


def fourier_greedy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float | None = None,
    order: Order | str = "radius",
    radii: tuple[float, float] | None = None,
    max_queries: int | None = None,
    target: torch.Tensor | None = None,
    bounds: Bounds = (0.0, 1.0),
    generator: torch.Generator | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> torch.Tensor:
    """Greedy Fourier-basis black-box attack under an L2 budget (SimBA, Guo et al. 1905.07121).

    Directions are Fourier basis images ``U_ij`` (Yin et al. 1906.08988) on one channel, low
    frequencies first by default. For each, ``x - alpha * U`` is tried, then ``x + alpha * U``; a
    step is kept if it lowers the true-class probability (raises the target's). Steps that would
    take ``x_adv`` outside the L2 ball of radius ``eps`` are skipped without a query. An image stops
    once misclassified or out of queries.

    Args:
        model: maps ``[N, C, H, W]`` to logits ``[N, K]``; only its outputs are used.
        x: clean images ``[N, C, H, W]``; y: int64 labels ``[N]``.
        eps: L2 budget of the whole perturbation.
        step_size: L2 length ``alpha`` of one step; default ``eps / 5``.
        order, radii: direction order and frequency band (see :func:`frequency_order`).
        max_queries: most forwards per image (the clean one excluded); ``None``: no limit.
        target: int64 ``[N]`` target classes, or ``None``.
        bounds, generator, batch_size: as in :func:`fourier_attack`.

    Returns:
        ``x_adv`` ``[N, C, H, W]`` with ``|x_adv - x|_2 <= eps``.
    """
    x, y, target, eps, bounds = _check_call(model, x, y, target, eps, bounds)
    radii = _check_radii(radii)
    if step_size is not None:
        check_positive(step_size, "step_size")
    if max_queries is not None:
        check_int(max_queries, "max_queries", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    positions = frequency_order(*x.shape[-2:], order=order, radii=radii, generator=generator, device=x.device)
    with model_mode(model):
        return _greedy_core(
            model, x, y if target is None else target, eps=eps,
            step_size=eps / 5 if step_size is None else step_size, positions=positions,
            max_queries=max_queries, targeted=target is not None, bounds=bounds,
            generator=generator, batch_size=batch_size,
        ).x_adv


@dataclasses.dataclass(frozen=True, kw_only=True)
class FourierAttack(Attack):
    """Settings of :func:`fourier_attack`; ``FourierAttack(eps=4.0)(model, x, y) -> AttackResult``.

    ``forwards`` in the result counts, per image, the clean forward plus the candidates tried up to
    and including the first success (``max_queries`` at most).

    Attributes:
        eps: L2 norm of the whole perturbation (one value or several).
        order, radii, max_queries, batch_size: as in :func:`fourier_attack`.
        bounds: input domain; seed: seeds signs and the random order (``None``: global generator).
    """

    name = "fourier"
    norm = Norm.L2

    order: Order = Order.ROW_MAJOR
    radii: tuple[float, float] | None = None
    max_queries: int | None = None
    batch_size: int = DEFAULT_BATCH
    seed: int | None = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_search_settings(self)

    def _run(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
        generator: torch.Generator | None,
    ) -> _Outcome:
        positions = frequency_order(
            *x.shape[-2:], order=self.order, radii=self.radii, generator=generator, device=x.device
        )
        return _fourier_core(
            model, x, labels, eps=eps, positions=positions[: self.max_queries], targeted=targeted,
            bounds=self.bounds, generator=generator, batch_size=self.batch_size,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class FourierGreedy(Attack):
    """Settings of :func:`fourier_greedy`; ``FourierGreedy(eps=2.0)(model, x, y) -> AttackResult``.

    ``forwards`` counts, per image, every model evaluation: the protocol's clean forward, the
    clean probabilities the greedy walk starts from, and every candidate.

    Attributes:
        eps: L2 budget (one value or several); step_size: ``None`` means ``eps / 5``.
        order, radii, max_queries, batch_size: as in :func:`fourier_greedy`.
        bounds: input domain; seed: seeds the random order (``None``: global generator).
    """

    name = "fourier_greedy"
    norm = Norm.L2

    step_size: float | None = None
    order: Order = Order.RADIUS
    radii: tuple[float, float] | None = None
    max_queries: int | None = None
    batch_size: int = DEFAULT_BATCH
    seed: int | None = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_search_settings(self)
        if self.step_size is not None:
            check_positive(self.step_size, "step_size")

    def _run(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
        generator: torch.Generator | None,
    ) -> _Outcome:
        positions = frequency_order(
            *x.shape[-2:], order=self.order, radii=self.radii, generator=generator, device=x.device
        )
        return _greedy_core(
            model, x, labels, eps=eps, step_size=eps / 5 if self.step_size is None else self.step_size,
            positions=positions, max_queries=self.max_queries, targeted=targeted, bounds=self.bounds,
            generator=generator, batch_size=self.batch_size,
        )
