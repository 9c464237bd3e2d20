"""Black-box attacks in the Fourier basis: they read only the model's outputs.

- :func:`fourier_attack` (Yin et al. 1906.08988): per image, try ``x + s * eps * U_ij`` on each
  channel (``U_ij`` the real unit-L2 Fourier basis image of :func:`bandguard.fourier.fourier_basis`,
  ``s = +-1`` drawn per channel) over frequencies until the model errs or the query budget ends.
- :func:`fourier_greedy`: the query-efficient greedy variant in the same basis (SimBA, Guo et al.
  1905.07121): walk through low-frequency directions and keep a step ``+-alpha * U_ij`` (one
  channel at a time) when it lowers the true-class probability, within the budget.

**The eps convention is Yin et al.'s and the Fourier heat map's**
(:func:`bandguard.spectral.fourier_heatmap`): ``eps`` is the L2 norm of the perturbation *of each
channel* (4 on CIFAR-10 in the paper). A perturbation ``s * eps * U_ij`` on each of ``C`` channels
has L2 norm ``eps * sqrt(C)`` as a whole (before clipping); results report both, ``norms`` (whole)
and ``channel_norms`` (per channel, ``<= eps``).

Both are batched over images: candidates for every still-unbroken image are evaluated in one
forward (chunked to ``batch_size`` images), and query counts are exact per image: the number of
candidates a sequential attacker would have had to evaluate. Both draw their frequencies lazily:
only the basis images of the chunk in hand exist (never the ``K x H x W`` basis: 5 GB at 224 x 224),
and the signs come in blocks (:func:`bandguard.fourier.sign_blocks`).
"""

from __future__ import annotations

import dataclasses
import enum

import torch
from einops import rearrange
from torch import nn

from bandguard._checks import Bounds, check_enum, check_int, check_nonnegative, check_positive
from bandguard.attacks.losses import is_adversarial
from bandguard.attacks.norms import Norm, perturbation_norm
from bandguard.attacks.protocol import Attack, Outcome
from bandguard.attacks.results import AttackResults
from bandguard.fourier import distinct_frequencies, fourier_basis, radial_distance, sign_blocks

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
        device: where the positions go.

    Returns:
        int64 ``[K, 2]`` centred ``(row, col)`` positions, one per mirror pair.
    """
    order_ = check_enum(order, Order, "order")
    positions = distinct_frequencies(h, w, device=device)
    dist = radial_distance(h, w, device=device, dtype=torch.float64)[positions[:, 0], positions[:, 1]]
    if radii is not None:
        inner, outer = radii
        keep = (dist >= inner) & (dist < outer)
        if not bool(keep.any()):
            # An empty basis would reach the FFT as an empty batch (an MKL error, not ours).
            raise ValueError(
                f"radii {(inner, outer)} select no frequency of a {h}x{w} image: its distances from the "
                f"centre lie in [{float(dist.min()):g}, {float(dist.max()):g}]"
            )
        positions, dist = positions[keep], dist[keep]
    if order_ is Order.RADIUS:
        positions = positions[torch.sort(dist, stable=True).indices]
    elif order_ is Order.RANDOM:
        positions = positions[torch.randperm(positions.shape[0], generator=generator, device=positions.device)]
    return positions


#: Bytes of basis images the greedy walk builds at a time (a block of frequencies).
GREEDY_BASIS_BYTES = 2**24


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
    clean_pred: torch.Tensor,
) -> Outcome:
    """Yin et al.'s Fourier-basis attack on trusted inputs; frequencies tried in ``positions`` order.

    ``clean_pred`` ``[N]`` is the prediction an image keeps if no candidate succeeds (``x_adv = x``).
    All unbroken images stand at the same frequency index, so each round takes the next chunk of
    frequencies for all of them: ``[images, chunk]`` candidates in one (chunked) forward. A round
    builds only its own basis images and never straddles two sign blocks, whose cut depends on
    ``N`` and ``C`` only, so the result does not depend on ``batch_size``.
    """
    lo, hi = bounds
    n, c, h, w = x0.shape
    k_total = positions.shape[0]
    blocks = sign_blocks(k_total, n, c, generator=generator, device=x0.device, dtype=x0.dtype)
    x_adv, pred = x0.clone(), clean_pred.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x0.device)
    forwards = torch.zeros(n, dtype=torch.long, device=x0.device)
    active = torch.arange(n, device=x0.device)
    k0, block_start, signs = 0, 0, x0.new_empty(0, n, c)
    while k0 < k_total and active.numel():
        if k0 == block_start + signs.shape[0]:
            block_start, signs = next(blocks)  # [kb, N, C]
        kc = min(max(1, batch_size // active.numel()), block_start + signs.shape[0] - k0)
        basis = fourier_basis(h, w, positions[k0:k0 + kc], device=x0.device, dtype=x0.dtype)  # [kc, H, W]
        s = rearrange(eps * signs[k0 - block_start:k0 - block_start + kc][:, active], "k a c -> a k c 1 1")
        candidates = torch.addcmul(x0[active, None], s, basis[None, :, None]).clamp_(lo, hi)  # [A, kc, C, H, W]
        logits = _predict(model, rearrange(candidates, "a k c h w -> (a k) c h w"), batch_size)
        p = rearrange(logits.argmax(1), "(a k) -> a k", k=kc)
        hit = is_adversarial(p, labels[active, None], targeted)
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
    return Outcome(x_adv, success, pred, forwards, torch.zeros_like(forwards))


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
    batch_size: int,
    clean_logits: torch.Tensor,
) -> Outcome:
    """SimBA (Guo et al. 1905.07121) over directions ``U_ij`` on one channel, in ``positions`` order.

    The walk starts from ``clean_logits`` ``[N, K]`` (the caller's clean forward: not spent again).
    Directions are orthonormal, so each kept step adds ``step_size**2`` to the squared L2 norm of
    its channel (less where clipping bites); a step that would take any channel's L2 norm above
    ``eps`` is not queried. ``forwards`` counts the candidates queried.
    """
    n, c, h, w = x0.shape
    # Direction d = (frequency d // c, channel d % c): every channel of a frequency before the next.
    # The basis images are built a block of frequencies at a time, as the walk reaches them.
    per_block = max(1, GREEDY_BASIS_BYTES // (h * w * x0.element_size()))
    basis, basis_start = x0.new_empty(0, h, w), 0
    sign = -1.0 if targeted else 1.0  # minimise p(true) untargeted, maximise p(target) targeted

    def score(logits: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        return sign * logits.softmax(1).gather(1, lab[:, None]).squeeze(1)

    queries = torch.zeros(n, dtype=torch.long, device=x0.device)
    x_adv, pred = x0.clone(), clean_logits.argmax(1)
    current = score(clean_logits, labels)
    success = is_adversarial(pred, labels, targeted)
    budget = eps * (1 + 1e-6)
    for d in range(positions.shape[0] * c):
        active = (~success).nonzero().squeeze(1)
        if max_queries is not None:
            active = active[queries[active] < max_queries]
        if active.numel() == 0:
            break
        freq, channel = divmod(d, c)
        if freq == basis_start + basis.shape[0]:
            basis_start = freq
            basis = fourier_basis(h, w, positions[freq:freq + per_block], device=x0.device, dtype=x0.dtype)
        direction = torch.zeros(c, h, w, device=x0.device, dtype=x0.dtype)
        direction[channel] = basis[freq - basis_start]
        for step in (-step_size, step_size):
            if max_queries is not None:
                active = active[queries[active] < max_queries]
            cand = (x_adv[active] + step * direction).clamp_(*bounds)
            within = perturbation_norm(cand - x0[active], Norm.L2, per_channel=True).amax(1) <= budget
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
            success[kept] = is_adversarial(pred[kept], labels[kept], targeted)
            active = active[~better]  # the opposite step is tried only where this one failed
    return Outcome(x_adv, success, pred, queries, torch.zeros_like(queries))


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class _FourierSearch(Attack):
    """Settings both Fourier-basis attacks share, validated once."""

    norm = Norm.L2
    per_channel = True  # eps is Yin et al.'s L2 norm of each channel: the threat model says so

    order: Order = Order.ROW_MAJOR
    radii: tuple[float, float] | None = None
    max_queries: int | None = None
    batch_size: int = DEFAULT_BATCH
    seed: int | None = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "order", check_enum(self.order, Order, "order"))
        object.__setattr__(self, "radii", _check_radii(self.radii))
        if self.max_queries is not None:
            check_int(self.max_queries, "max_queries", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)

    def _positions(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        h, w = x.shape[-2:]
        return frequency_order(h, w, order=self.order, radii=self.radii, generator=generator, device=x.device)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FourierAttack(_FourierSearch):
    """Fourier-basis black-box attack (Yin et al. 1906.08988).

    For each image, frequencies are tried in :func:`frequency_order`; the candidate is
    ``clip(x + eps * s_c * U_ij)`` with an independent random sign ``s_c`` per channel ``c``
    (``U_ij`` of unit L2 norm): exactly the perturbed image of the Fourier heat map
    (:func:`bandguard.spectral.fourier_heatmap`) at the same eps. The first candidate the model
    gets wrong is returned; an image with none keeps ``x``. ``forwards`` counts, per image, the
    clean forward plus the candidates tried up to and including the first success.

    Attributes:
        eps: L2 norm of the perturbation *per channel* (Yin et al.: 4 on CIFAR-10); the whole
            perturbation has L2 norm ``eps * sqrt(C)`` before clipping. One value or several.
        order: ``"row_major"`` (Yin et al.'s loop), ``"radius"`` or ``"random"``.
        radii: keep frequencies with ``inner <= distance < outer`` (see :func:`frequency_order`).
        max_queries: most candidates per image; ``None`` tries every selected frequency.
        batch_size: candidate images per forward.
        bounds: input domain.
        seed: seeds signs and the random order (``None``: global generator).
    """

    name = "fourier"

    def _search(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
        generator: torch.Generator | None, clean_pred: torch.Tensor,
    ) -> Outcome:
        return _fourier_core(
            model, x, labels, eps=eps, positions=self._positions(x, generator)[: self.max_queries],
            targeted=targeted, bounds=self.bounds, generator=generator, batch_size=self.batch_size,
            clean_pred=clean_pred,
        )

    def _run_from(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
        generator: torch.Generator | None, clean_logits: torch.Tensor,
    ) -> Outcome:
        return self._search(model, x, labels, targeted, eps, generator, clean_logits.argmax(1))

    def _craft(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        # Training reads x_adv alone: no clean forward, the labels stand in for the prediction.
        return self._search(model, x, y, False, eps, generator, y).x_adv


@dataclasses.dataclass(frozen=True, kw_only=True)
class FourierGreedy(_FourierSearch):
    """Greedy Fourier-basis black-box attack (SimBA, Guo et al. 1905.07121, in Yin et al.'s basis).

    Directions are Fourier basis images ``U_ij`` (Yin et al. 1906.08988) on one channel, low
    frequencies first by default. For each, ``x - alpha * U`` is tried, then ``x + alpha * U``; a
    step is kept if it lowers the true-class probability (raises the target's). Steps that would
    take any channel's perturbation above L2 norm ``eps`` are skipped without a query. An image
    stops once misclassified or out of queries. ``forwards`` counts, per image, the one clean
    forward (shared with the driver, as SimBA counts it) plus every candidate.

    Attributes:
        eps: L2 budget *per channel* (the Fourier heat map's convention); the whole perturbation
            stays within ``eps * sqrt(C)``. One value or several.
        step_size: L2 length ``alpha`` of one step; ``None`` means ``eps / 5``.
        order: default ``"radius"`` (low frequencies first).
        radii: as in :class:`FourierAttack`.
        max_queries: most candidates per image (the clean forward excluded); ``None``: no limit.
        batch_size: candidate images per forward.
        bounds: input domain.
        seed: seeds the random order (``None``: global generator).
    """

    name = "fourier_greedy"

    order: Order = Order.RADIUS
    step_size: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.step_size is not None:
            check_positive(self.step_size, "step_size")

    def _run_from(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool, eps: float,
        generator: torch.Generator | None, clean_logits: torch.Tensor,
    ) -> Outcome:
        return _greedy_core(
            model, x, labels, eps=eps, step_size=eps / 5 if self.step_size is None else self.step_size,
            positions=self._positions(x, generator), max_queries=self.max_queries, targeted=targeted,
            bounds=self.bounds, batch_size=self.batch_size, clean_logits=clean_logits,
        )

    def _craft(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        # Without the driver (adversarial training) the walk spends its own clean forward.
        clean_logits = _predict(model, x, self.batch_size)
        return self._run_from(model, x, y, False, eps, generator, clean_logits).x_adv


def fourier_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | tuple[float, ...],
    order: Order | str = "row_major",
    radii: tuple[float, float] | None = None,
    max_queries: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    bounds: Bounds = (0.0, 1.0),
    seed: int | None = 0,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> AttackResults:
    """Yin et al.'s Fourier-basis attack (1906.08988) in one call; see :class:`FourierAttack`.

    Args:
        model: maps ``[N, C, H, W]`` to logits ``[N, K]``; only its outputs are used.
        x: clean images ``[N, C, H, W]``.
        y: int64 labels ``[N]``.
        eps: L2 norm of the perturbation per channel (the heat map's convention).
        order, radii, max_queries, batch_size, bounds, seed: the settings of :class:`FourierAttack`.
        target, generator: as in :meth:`~bandguard.attacks.protocol.Attack.__call__`.

    Returns:
        :class:`~bandguard.attacks.results.AttackResults`, one per eps.
    """
    attack = FourierAttack(eps=eps, order=order, radii=radii, max_queries=max_queries,  # type: ignore[arg-type]
                           batch_size=batch_size, bounds=bounds, seed=seed)
    return attack(model, x, y, target=target, generator=generator)


def fourier_greedy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | tuple[float, ...],
    step_size: float | None = None,
    order: Order | str = "radius",
    radii: tuple[float, float] | None = None,
    max_queries: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    bounds: Bounds = (0.0, 1.0),
    seed: int | None = 0,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> AttackResults:
    """The greedy Fourier-basis attack (SimBA, Guo et al. 1905.07121) in one call; see
    :class:`FourierGreedy`.

    Args:
        model: maps ``[N, C, H, W]`` to logits ``[N, K]``; only its outputs are used.
        x: clean images ``[N, C, H, W]``.
        y: int64 labels ``[N]``.
        eps: L2 budget per channel.
        step_size, order, radii, max_queries, batch_size, bounds, seed: the settings of
            :class:`FourierGreedy`.
        target, generator: as in :meth:`~bandguard.attacks.protocol.Attack.__call__`.

    Returns:
        :class:`~bandguard.attacks.results.AttackResults`, one per eps.
    """
    attack = FourierGreedy(eps=eps, step_size=step_size, order=order, radii=radii,  # type: ignore[arg-type]
                           max_queries=max_queries, batch_size=batch_size, bounds=bounds, seed=seed)
    return attack(model, x, y, target=target, generator=generator)
