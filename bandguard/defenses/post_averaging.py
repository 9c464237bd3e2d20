"""Post-averaging: classify by averaging the model over random points around the input.

Lin et al., "Bandlimiting Neural Networks Against Adversarial Attacks" (arXiv 1905.12797), as in
their code (YupingLin171/PostAvgDefense, ``PADefense.findNeighbors_random`` and
``integratedForward``): ``K`` directions drawn i.i.d. normal over the whole input and scaled to unit
L2 norm (uniform on the sphere, not orthogonalised), used with both signs at radii
``(R/3, 2R/3, R)``, plus the input itself: ``1 + 3 * 2K`` forwards (91 for ``K = 15``). The softmax
outputs are averaged and the class is the argmax.

Radii. Lin et al. state ``R`` in the model's normalized input space (ImageNet mean/std):
CIFAR-10 ``R = 6``, ImageNet ``R = 30``. bandguard models normalize inside, so ``radius_l2`` here is an L2 distance in
``[0, 1]`` pixel units; a normalized-space distance is the pixel distance divided by the std, so
multiply by about 0.225: CIFAR ``R = 6`` is about 1.35, ImageNet ``R = 30`` about 6.8.

Clipping. Lin et al.'s code adds ``r * u`` to the normalized image and never clips the neighbours to
the valid image range. bandguard does the same by default (``bounds=None``); pass ``bounds=(0, 1)``
to clip every neighbour (then a neighbour's distance to the input can be below its radius).

Sampling is kept apart from the deterministic apply step: :func:`sample_directions` draws the
directions and :func:`post_average` is a pure function of ``(model, x, directions, radii_l2)``, so a
call of :class:`PostAveraging` can be replayed exactly.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterator, Sequence

import torch
import torch.utils.checkpoint
from einops import rearrange
from torch import nn

from bandguard._checks import (
    check_bool,
    check_bounds,
    check_enum,
    check_finite,
    check_generator,
    check_images,
    check_int,
    check_logits_shape,
    check_memory,
    check_model,
    check_model_input,
    check_nonnegative,
)
from bandguard._memory import activation_bytes, parse_memory, resolve_memory
from bandguard._random import device_generator
from bandguard.defenses.base import Defense

__all__ = [
    "MAX_CHUNK_VALUES",
    "PostAverageSettings",
    "PostAveraging",
    "Reduce",
    "default_max_batch",
    "neighbours",
    "post_average",
    "sample_directions",
]

#: Unit: float values (model inputs x C*H*W) per model call of post-averaging on the CPU (and per
#: draw of directions everywhere): about 256 CIFAR or 1,000 MNIST neighbours. One giant batch of every
# sample is much slower on CPU than chunks of a few hundred (cache misses); see
# benchmarks/defense_cost.py. On a GPU the memory budget alone sets the model calls.
MAX_CHUNK_VALUES = 2**20


class Reduce(str, enum.Enum):
    """How the outputs over the neighbours are combined (Lin et al.'s ``voteMethod``)."""

    PROBS = "probs"  # mean of softmax probabilities ("avg_softmax", their default)
    LOGITS = "logits"  # mean of logits ("avg_feat")
    VOTE = "vote"  # fraction of neighbours predicting each class ("most_vote")


@dataclasses.dataclass(frozen=True)
class PostAverageSettings:
    """Settings of :class:`PostAveraging` (also accepted by :func:`~bandguard.defenses.compose.defend`).

    Attributes:
        radius_l2: outer radius ``R``, an L2 distance in the model's input (pixel) space; radii default to
            ``(R/3, 2R/3, R)``.
        K: number of random directions (each used with both signs if ``antithetic``).
        radii_l2: explicit L2 radii, overriding ``radius_l2``.
        antithetic: use every direction with both signs, as Lin et al. do.
        include_original: also classify the input itself.
        reduce: ``"probs"`` (default), ``"logits"`` or ``"vote"``.
        bounds: clip neighbours into ``(lo, hi)``; ``None`` (default, as Lin et al.) does not clip.
        max_batch: most neighbours per model call; ``None`` picks one from the memory budget (and,
            on the CPU, at most :func:`default_max_batch`).
        memory: bytes the model calls of one forward may take (``"2GiB"``, ``"512MiB"`` or an
            int); ``None``: half of what the input's device has available. See :class:`PostAveraging`.
    """

    radius_l2: float
    K: int = 15
    radii_l2: tuple[float, ...] | None = None
    antithetic: bool = True
    include_original: bool = True
    reduce: Reduce = Reduce.PROBS
    bounds: tuple[float, float] | None = None
    max_batch: int | None = None
    memory: int | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius_l2", check_nonnegative(self.radius_l2, "radius_l2"))
        object.__setattr__(self, "K", check_int(self.K, "K", minimum=1))
        if self.radii_l2 is not None:
            radii_l2 = tuple(check_nonnegative(r, "radii_l2") for r in self.radii_l2)
            if not radii_l2:
                raise ValueError(f"radii_l2 must hold at least one radius, got {self.radii_l2!r}")
            object.__setattr__(self, "radii_l2", radii_l2)
        object.__setattr__(self, "reduce", check_enum(self.reduce, Reduce, "reduce"))
        if self.bounds is not None:
            object.__setattr__(self, "bounds", check_bounds(self.bounds))
        if self.max_batch is not None:
            check_int(self.max_batch, "max_batch", minimum=1)
        if self.memory is not None:
            parse_memory(self.memory, "memory")
        for name in ("antithetic", "include_original"):
            object.__setattr__(self, name, check_bool(getattr(self, name), name))

    @property
    def effective_radii_l2(self) -> tuple[float, ...]:
        """The L2 radii used: ``radii_l2`` if given, else ``(R/3, 2R/3, R)``."""
        if self.radii_l2 is not None:
            return self.radii_l2
        return (self.radius_l2 / 3, 2 * self.radius_l2 / 3, self.radius_l2)

    @property
    def samples_per_input(self) -> int:
        """Model forwards per image: ``include_original + len(radii_l2) * K * (2 if antithetic)``."""
        signs = 2 if self.antithetic else 1
        return int(self.include_original) + len(self.effective_radii_l2) * self.K * signs


def default_max_batch(sample_numel: int, max_values: int = MAX_CHUNK_VALUES) -> int:
    """Neighbours per model call for inputs of ``sample_numel`` values: ``max_values // numel``, >= 16."""
    return max(16, max_values // max(1, sample_numel))


def _images_per_chunk(per_image: int, sample_numel: int, max_batch: int | None) -> int:
    """Whole images per chunk of :func:`post_average` (an image with more neighbours than a model
    call takes is split further there)."""
    return max(1, (max_batch or default_max_batch(sample_numel)) // per_image)


@torch.compiler.disable
def sample_directions(
    n: int,
    shape: Sequence[int],
    K: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``K`` i.i.d. directions per image, uniform on the unit sphere of the whole input.

    Normal draws over all ``C * H * W`` values, each scaled to unit L2 norm (Lin et al.).
    With a ``generator`` the draws happen on the generator's device (then move to ``device``),
    so a seeded generator gives the same directions wherever the model runs.

    Args:
        n: number of images.
        shape: one image's shape ``(C, H, W)``.
        K: directions per image, >= 1.
        generator: source of randomness; ``None`` uses torch's global generator.
        device, dtype: of the result.

    Returns:
        Tensor ``[n, K, C, H, W]`` whose ``[i, k]`` slices have L2 norm 1.
    """
    check_int(K, "K", minimum=1)
    check_int(n, "n", minimum=1)
    numel = math.prod(shape)
    draw_device = generator.device if generator is not None else device
    u = torch.randn(n, K, numel, generator=generator, device=draw_device, dtype=torch.float32)
    u = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    return u.reshape(n, K, *shape).to(device=device, dtype=dtype)


def neighbours(
    x: torch.Tensor,
    directions: torch.Tensor,
    radii_l2: Sequence[float],
    *,
    antithetic: bool = True,
    include_original: bool = True,
    bounds: tuple[float, float] | None = None,
) -> torch.Tensor:
    """The points around each image that post-averaging classifies.

    Order per image: the input (if ``include_original``), then for each L2 radius ``r`` the
    ``K`` points ``x + r u_k`` followed (if ``antithetic``) by the ``K`` points ``x - r u_k``.

    Args:
        x: images ``[N, C, H, W]``.
        directions: unit directions ``[N, K, C, H, W]``.
        radii_l2: the L2 radii (pixel units), ``R`` of them.
        antithetic, include_original, bounds: see :class:`PostAverageSettings`.

    Returns:
        Tensor ``[N, S, C, H, W]`` with ``S = include_original + R * K * (2 if antithetic else 1)``.
    """
    signs = (1.0, -1.0) if antithetic else (1.0,)
    scales = torch.tensor([s * r for r in radii_l2 for s in signs], device=x.device, dtype=x.dtype)
    offsets = rearrange(scales, "m -> 1 m 1 1 1 1") * directions.unsqueeze(1)  # [N, M, K, C, H, W]
    pts = x.unsqueeze(1) + rearrange(offsets, "n m k c h w -> n (m k) c h w")
    if include_original:
        pts = torch.cat([x.unsqueeze(1), pts], dim=1)
    if bounds is not None:
        pts = pts.clamp(bounds[0], bounds[1])
    return pts


def post_average(
    model: nn.Module,
    x: torch.Tensor,
    directions: torch.Tensor,
    radii_l2: Sequence[float],
    *,
    antithetic: bool = True,
    include_original: bool = True,
    reduce: Reduce | str = Reduce.PROBS,
    bounds: tuple[float, float] | None = None,
    max_batch: int | None = None,
    recompute: bool = False,
) -> torch.Tensor:
    """Deterministic apply step of post-averaging (Lin et al. 1905.12797).

    Classifies every neighbour (see :func:`neighbours`) in chunks of at most ``max_batch`` model
    inputs and combines the outputs per image. Differentiable in ``x`` for ``"probs"`` and
    ``"logits"`` (the directions are constants); ``"vote"`` has zero gradient almost everywhere.
    With ``recompute`` and gradients on, each chunk's forward is run again in the backward
    (``torch.utils.checkpoint``): the graph keeps the neighbours, not every chunk's activations, so
    a backward's memory is one chunk's whatever ``K`` (the same values and gradients, one more
    forward).

    Args:
        model: classifier returning logits ``[B, num_classes]``.
        x: images ``[N, C, H, W]``.
        directions: unit directions ``[N, K, C, H, W]`` (from :func:`sample_directions`).
        radii_l2: the L2 radii (pixel units).
        antithetic, include_original, reduce, bounds, max_batch: see :class:`PostAverageSettings`.
        recompute: trade one more forward for memory in the backward (see above).

    Returns:
        Log-probabilities ``[N, num_classes]``: ``log`` of the mean softmax (``"probs"``),
        ``log_softmax`` of the mean logits (``"logits"``) or ``log`` of the vote fractions
        (``"vote"``, zero fractions clamped to the dtype's tiniest value). Usable as logits by
        cross-entropy attacks; the argmax is the averaged prediction.
    """
    reduce = check_enum(reduce, Reduce, "reduce")
    antithetic = check_bool(antithetic, "antithetic")
    include_original = check_bool(include_original, "include_original")
    _check_shapes(x, directions, radii_l2)
    n = x.shape[0]
    sample_numel = x[0].numel()
    per_image = int(include_original) + len(radii_l2) * directions.shape[1] * (2 if antithetic else 1)
    limit = max_batch or default_max_batch(sample_numel)
    # Whole images per chunk keep the neighbour construction simple; an image with more
    # neighbours than `limit` is split further below.
    images_per_chunk = _images_per_chunk(per_image, sample_numel, max_batch)
    outputs = []
    for start in range(0, n, images_per_chunk):
        stop = min(n, start + images_per_chunk)
        pts = neighbours(x[start:stop], directions[start:stop], radii_l2, antithetic=antithetic,
                         include_original=include_original, bounds=bounds)
        flat = rearrange(pts, "n s c h w -> (n s) c h w")
        logits = torch.cat([_logits_of(model, part, recompute) for part in flat.split(limit)])
        outputs.append(_combine(rearrange(logits, "(n s) k -> n s k", n=stop - start), reduce))
    return torch.cat(outputs)


def _logits_of(model: nn.Module, part: torch.Tensor, recompute: bool = False) -> torch.Tensor:
    # A model returning a tuple or images would fail inside torch.cat or einops; say which
    # module returned what (metadata only: this runs on every forward of an attack loop).
    if recompute and torch.is_grad_enabled() and part.requires_grad:
        out = torch.utils.checkpoint.checkpoint(model, part, use_reentrant=False)
    else:
        out = model(part)
    return check_logits_shape(out, part.shape[0],
                              name=f"output of the model inside PostAveraging ({type(model).__name__})")


def _check_shapes(x: torch.Tensor, directions: torch.Tensor, radii_l2: Sequence[float]) -> None:
    # Cheap metadata checks only: this runs on every forward of an attack loop.
    if x.ndim != 4:
        raise ValueError(f"x must have shape [N, C, H, W], got {tuple(x.shape)}")
    if directions.ndim != 5 or directions.shape[0] != x.shape[0] or directions.shape[2:] != x.shape[1:]:
        raise ValueError(
            f"directions must have shape [N, K, C, H, W] = [{x.shape[0]}, K, {', '.join(map(str, x.shape[1:]))}]"
            f", got {tuple(directions.shape)}"
        )
    if not len(radii_l2):
        raise ValueError("radii_l2 must hold at least one radius")
    for r in radii_l2:
        check_nonnegative(r, "radii_l2")


def _combine(logits: torch.Tensor, reduce: Reduce) -> torch.Tensor:
    """``[N, S, classes]`` logits of the neighbours -> ``[N, classes]`` log-probabilities."""
    if reduce is Reduce.PROBS:
        # log(mean(softmax)) computed stably as logsumexp(log_softmax) - log(S).
        return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=1) - math.log(logits.shape[1])
    if reduce is Reduce.LOGITS:
        return torch.log_softmax(logits.mean(dim=1), dim=-1)
    votes = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    frac = votes.mean(dim=1)
    return frac.clamp_min(torch.finfo(frac.dtype).tiny).log()


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How :class:`PostAveraging` cuts a forward, fixed on its first forward per input shape."""

    calls: int  # model inputs per model call
    images: int  # images per post_average call (whole draw chunks)
    budget: int  # bytes
    per_input: int  # measured bytes per model input with gradients


class PostAveraging(Defense):
    """Post-averaged classifier (Lin et al. 1905.12797): new random directions on every call.

    Args:
        model: classifier taking ``[N, C, H, W]`` in its bounds and returning logits.
        K: random directions per image (default 15, as Lin et al.).
        radius_l2: outer radius ``R``, an L2 distance in the model's input space (``[0, 1]`` pixels); radii
            ``(R/3, 2R/3, R)``. Lin et al.'s normalized-space CIFAR ``R = 6`` is about 1.35 here.
        radii_l2: explicit L2 radii instead.
        antithetic: use each direction with both signs (Lin et al.).
        include_original: classify the input too.
        reduce: ``"probs"`` (mean softmax, default), ``"logits"`` or ``"vote"``.
        bounds: clip neighbours into these bounds; ``None`` (default) does not, as Lin et al.
        generator: a ``torch.Generator``; the same seed gives identical outputs on the same kind of
            device. On another device than the inputs' (a CPU generator, CUDA inputs) each forward
            seeds a generator on the inputs' device from one draw of it, so the directions are
            drawn where they are used, never on the CPU and copied.
        max_batch: most model inputs per call (default from ``memory``).
        memory: bytes a forward's model calls may take (``"2GiB"``, ``"512MiB"`` or an int; default
            half of what the input's device has available). On the first forward per input shape
            the model's bytes per input are measured once (:func:`bandguard._memory.activation_bytes`);
            a model call then takes ``memory // bytes`` inputs (on the CPU at most
            :func:`default_max_batch`, whose smaller calls run faster there), and where gradients
            flow and the whole forward's graph (``N * forward_cost`` inputs) would exceed the budget,
            each call is recomputed in the backward instead of kept (``post_average(...,
            recompute=True)``): a budget too small for one image slows the attack, it never fails.
            Neither changes the directions drawn, so outputs do not depend on the budget.

    Shape:
        ``[N, C, H, W] -> [N, num_classes]`` log-probabilities (a drop-in for logits).

    ``randomized = True``, so attacks average gradients over draws (EOT); ``forward_cost`` is
    ``1 + 3 * 2K`` (91) with the defaults. To replay a call, draw the directions with
    :meth:`sample` and pass them to :func:`post_average` with :attr:`settings`.
    """

    randomized = True

    def __init__(
        self,
        model: nn.Module,
        *,
        K: int = 15,
        radius_l2: float,
        radii_l2: Sequence[float] | None = None,
        antithetic: bool = True,
        include_original: bool = True,
        reduce: Reduce | str = Reduce.PROBS,
        bounds: tuple[float, float] | None = None,
        generator: torch.Generator | None = None,
        max_batch: int | None = None,
        memory: int | str | None = None,
    ) -> None:
        super().__init__()
        check_model(model)
        check_generator(generator)
        self.settings = PostAverageSettings(
            radius_l2=radius_l2, K=K, radii_l2=None if radii_l2 is None else tuple(radii_l2),
            antithetic=antithetic,
            include_original=include_original, reduce=reduce, bounds=bounds, max_batch=max_batch, memory=memory,
        )
        self.model = model
        self.generator = generator
        self.forward_cost = self.settings.samples_per_input
        self._checked_for: tuple[object, ...] | None = None
        self._plan: _Plan | None = None

    @classmethod
    def from_settings(cls, model: nn.Module, settings: PostAverageSettings, *,
                      generator: torch.Generator | None = None) -> PostAveraging:
        """Build from a :class:`PostAverageSettings`."""
        s = settings
        return cls(model, K=s.K, radius_l2=s.radius_l2, radii_l2=s.radii_l2, antithetic=s.antithetic,
                   include_original=s.include_original, reduce=s.reduce, bounds=s.bounds,
                   generator=generator, max_batch=s.max_batch, memory=s.memory)

    def _directions(self, x: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
        """``(images, directions [n, K, C, H, W])`` per chunk of :func:`post_average`, drawn on
        ``x``'s device (:func:`~bandguard._random.device_generator`) as the chunk is reached."""
        s = self.settings
        generator = device_generator(self.generator, x.device)
        step = _images_per_chunk(s.samples_per_input, x[0].numel(), s.max_batch)
        for start in range(0, x.shape[0], step):
            part = slice(start, min(start + step, x.shape[0]))
            yield part, sample_directions(part.stop - start, x.shape[1:], s.K, generator=generator,
                                          device=x.device, dtype=x.dtype)

    @torch.compiler.disable
    def _plan_for(self, x: torch.Tensor) -> _Plan:
        """Model inputs per call, images per :func:`post_average` call and the budget, for inputs
        like ``x``: measured once per input shape, dtype and device."""
        s = self.settings
        budget = resolve_memory(s.memory, x.device)
        per_input = activation_bytes(self.model, x[:1])
        numel = x[0].numel()
        calls = s.max_batch or max(1, budget // per_input)
        if s.max_batch is None and x.device.type == "cpu":
            calls = min(calls, default_max_batch(numel))
        # Whole draw chunks per call of post_average, so the directions never depend on the budget.
        step = _images_per_chunk(s.samples_per_input, numel, s.max_batch)
        images = max(step, calls // s.samples_per_input // step * step)
        return _Plan(calls=calls, images=images, budget=budget, per_input=per_input)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        """The directions ``[N, K, C, H, W]`` the next forward on ``x`` ``[N, C, H, W]`` would draw.

        A forward draws them chunk by chunk; this draws the same chunks (advancing the generator
        as a forward does) and stacks them, so ``post_average(model, x, sample(x), ...)`` replays
        a forward of a twin module seeded alike.
        """
        return torch.cat([u for _, u in self._directions(x)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.settings
        # Metadata on every forward (free); the values, the model's device and dtype, the memory and
        # the output's finiteness once per input shape, on its first forward: reading values is a
        # host sync, which on a GPU would stall every forward of an attack's loop. The directions
        # are drawn per chunk of images, so memory is that of one chunk whatever N.
        check_images(x, "x", bounds=None, values=False)
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        first = key != self._checked_for
        if first:
            # The model's device and dtype too: a half or double batch around a float32 model gets
            # the attacks' error, not torch's "mat1 and mat2 must have the same dtype".
            check_model_input(self.model, x, bounds=None)
            per_chunk = _images_per_chunk(s.samples_per_input, x[0].numel(), s.max_batch)
            check_memory(per_chunk * (s.K + s.samples_per_input) * x[0].numel() * x.element_size(), "K",
                         device=x.device)
            self._plan = self._plan_for(x)
        plan: _Plan = self._plan  # type: ignore[assignment]  # set on the first forward of this key
        # The graph of every neighbour lives until the backward: recompute the calls when it would
        # not fit (arithmetic on shapes only, no host sync).
        recompute = torch.is_grad_enabled() and x.shape[0] * s.samples_per_input * plan.per_input > plan.budget
        outputs, parts, draws = [], [], []
        for part, u in self._directions(x):
            parts.append(part)
            draws.append(u)
            if part.stop - parts[0].start >= plan.images or part.stop == x.shape[0]:
                group = slice(parts[0].start, part.stop)
                outputs.append(post_average(
                    self.model, x[group], torch.cat(draws), s.effective_radii_l2, antithetic=s.antithetic,
                    include_original=s.include_original, reduce=s.reduce, bounds=s.bounds, max_batch=plan.calls,
                    recompute=recompute))
                parts, draws = [], []
        out = torch.cat(outputs)
        if first:
            radius = max(s.effective_radii_l2)
            check_finite(out, "PostAveraging output",
                         hint=f"the model overflows at L2 radius {radius:g} around x; use a smaller radius_l2")
            self._checked_for = key
        return out

    def extra_repr(self) -> str:
        s = self.settings
        radii_l2 = ", ".join(f"{r:.4g}" for r in s.effective_radii_l2)
        parts = [f"K={s.K}", f"radii_l2=({radii_l2})", f"reduce={s.reduce.value!r}",
                 f"forward_cost={self.forward_cost}"]
        if not s.antithetic:
            parts.append("antithetic=False")
        if not s.include_original:
            parts.append("include_original=False")
        if s.bounds is not None:
            parts.append(f"bounds={s.bounds}")
        if self.generator is not None:
            parts.append("generator=<seeded>")
        return ", ".join(parts)
