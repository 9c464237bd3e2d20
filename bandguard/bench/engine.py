"""The cell engine: clean, white-box, transfer and adaptive cells of one model, cascaded per threat.

For every model the engine evaluates the bare model and each defense around it:

- ``white-box`` (the bare model) and ``adaptive`` (through the defense, with EOT when the
  defense declares ``randomized``; Athalye et al. 1802.00420) cells run each attack on the
  model they report;
- ``transfer`` cells classify, with the defense, the adversarial examples crafted on the bare
  model (how Lin et al. 1905.12797 and Wang et al. 1905.13545 report).

Attacks are grouped by threat model (:func:`threat_chains`): a worst-case row holds only attacks
whose every perturbation lies inside that row's ball. Within a group they run in the given order as
one cascade (:func:`bandguard.attacks.cascade.cascade_stage`, as AutoAttack does, Croce & Hein
2003.01690): each attack is called once per batch with the samples every earlier attack left robust
at each eps (``alive`` ``[E, N]``), so a cell's per-sample outcome is "robust after this attack and
all before it" and the last cell of a group is the per-sample worst case. The samples are cut into
fixed batches whose randomness is seeded from the run's seed, the cell's labels and the batch index
alone, so a run is bit-identical whatever the order, the resume point, the number of processes, the
entry point, or whether the samples sit in memory or stream from disk (the cut is the same, and a
stream's batches hold the same images).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bandguard._memory import activation_bytes, format_bytes
from bandguard._modes import model_mode
from bandguard.attacks.apgd import APGD, APGDLoss
from bandguard.attacks.cascade import cascade_stage
from bandguard.attacks.pgd import PGD
from bandguard.attacks.protocol import Attack, resolve_eot
from bandguard.attacks.threat import ThreatModel, ThreatNorm
from bandguard.bench.distributed import Shard
from bandguard.bench.results import Cell, ResultStore
from bandguard.bench.spec import NO_DEFENSE, settings_hash
from bandguard.data.stream import Samples
from bandguard.defenses.base import forward_cost, is_randomized

__all__ = [
    "FORMAT",
    "Context",
    "Entry",
    "attack_with_eot",
    "batch_size_for",
    "bytes_per_image",
    "predict",
    "run_model",
    "scale_invariant_entries",
    "threat_chains",
]

FORMAT = "bandguard-bench/4"
"""Part of every cell key: bump when a change alters what a cell computes (4: one attack call per
batch with ``alive`` per eps, norms measured in the row's ball, cells grouped by threat model)."""

WHITE_BOX, ADAPTIVE, TRANSFER, CLEAN = "white-box", "adaptive", "transfer", "clean"
SCALE_INVARIANT = "apgd-dlr"
"""The label of the scale-invariant attack the engine adds to a cascade of cross-entropy attacks."""
MIN_STEPS = 25
"""Fewest steps of the added scale-invariant attack (on the MNIST CNN at L2 eps 1.5, APGD-DLR
reached its 100-step robust accuracy at 25 steps, 7.8 % of 64 images, and read 9.4 % at 10)."""
Progress = Callable[[str, int], None]
logger = logging.getLogger(__name__)


def _fields(obj: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()


def attack_with_eot(attack: Attack, module: nn.Module, eot: int) -> tuple[Attack, int]:
    """The attack to run on ``module``, its EOT fixed by :func:`~bandguard.attacks.resolve_eot`.

    An attack's own ``eot_samples`` is kept as is (so a spec can attack a randomized model without
    EOT, which the sanity checks then flag); where it is ``None`` a model declaring ``randomized``
    gets ``eot`` samples per step and any other a single sample.

    Args:
        attack: the attack as configured.
        module: the model it runs on.
        eot: gradient samples per step against a declared-randomized model.

    Returns:
        ``(attack, samples)``: the attack to run and its samples per step (1 for attacks without
        the setting).
    """
    if "eot_samples" not in _fields(attack):
        return attack, 1
    samples = resolve_eot(module, attack.eot_samples, default=eot)  # type: ignore[attr-defined]
    return dataclasses.replace(attack, eot_samples=samples), samples  # type: ignore[type-var]


def _with_seed(attack: Attack, seed: int) -> Attack:
    return dataclasses.replace(attack, seed=seed) if "seed" in _fields(attack) else attack  # type: ignore[type-var]


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Fix torch's global randomness (defenses without a generator) for one batch, then restore."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _batch_seed(key: str, batch: int) -> int:
    return int(settings_hash([key, batch]), 16) % (2**31 - 1)


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True)


def batch_size_for(batch_size: int, sample_budget: int, module: nn.Module) -> int:
    """Images per attack call: ``batch_size``, or ``sample_budget // forward_cost`` if smaller."""
    return max(1, min(batch_size, sample_budget // forward_cost(module)))


def bytes_per_image(module: nn.Module, bare: nn.Module, x: torch.Tensor) -> int:
    """Bytes one image costs an attack call on ``module``: measured on ``module`` itself
    (:func:`bandguard._memory.activation_bytes`) when it is deterministic and costs one forward,
    else ``forward_cost`` times the bare model's (a randomized defense is never run for a probe, so
    its generator is not advanced). Torch's global randomness is restored afterwards.

    Args:
        module: what the attack calls; bare: the undefended model inside it; x: ``[>=1, C, H, W]``
            on the device the attack runs on.
    """
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if forward_cost(module) == 1 and not is_randomized(module):
            return activation_bytes(module, x)
        return forward_cost(module) * activation_bytes(bare, x)


def predict(module: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Predicted labels ``[N]`` in chunks of ``chunk`` images, no graph, mode restored.

    Args:
        module: the classifier.
        x: images ``[N, C, H, W]``.
        chunk: images per forward.

    Returns:
        int64 ``[N]``.
    """
    with model_mode(module), torch.no_grad():
        return torch.cat([module(part).argmax(1) for part in x.split(chunk)])


# --------------------------------------------------------------------------- grouping


@dataclasses.dataclass(frozen=True)
class Entry:
    """One attack of the grid: its label, the attack and what identifies it in a cell key.

    Args:
        name: the label in the table.
        attack: the attack.
        identity: plain values hashed into the keys of its cells.
    """

    name: str
    attack: Attack
    identity: Any


def threat_chains(attacks: Mapping[str, Attack], shape: Sequence[int]) -> list[tuple[ThreatModel, list[str]]]:
    """Attack names grouped by threat model on images of ``shape`` ``(C, H, W)``: one cascade each.

    A per-sample worst case only means something within one ball, so each group is its own
    cascade, starting from the clean predictions, and reports the ball it holds. Linf and
    whole-image L2 attacks group by their exact threat; an attack whose eps is an L2 norm per
    channel (the Fourier tools) joins the first whole-image L2 group whose every budget holds its
    whole-image norm (``eps * sqrt(C) <= eps_row``, budget by budget), else it forms its own
    (``l2/channel``) group.

    Args:
        attacks: label -> attack, in the grid's order.
        shape: ``(C, H, W)`` of the images.

    Returns:
        ``[(ball, [label, ...]), ...]``, in the order each group's first attack appears.
    """
    entries = [Entry(name, a, None) for name, a in attacks.items()]
    return [(ball, [e.name for e in chain]) for ball, chain in chains(entries, shape)]


def chains(entries: Sequence[Entry], shape: Sequence[int]) -> list[tuple[ThreatModel, list[Entry]]]:
    """:func:`threat_chains` of grid entries, in the order their first attack appears."""
    shape = tuple(shape[-3:])
    balls: dict[ThreatModel, list[Entry]] = {}
    for e in entries:  # whole-image threats fix the balls
        threat = e.attack.threat(shape)
        if threat.norm is not ThreatNorm.L2_CHANNEL:
            balls.setdefault(threat, [])
    for e in entries:
        threat = e.attack.threat(shape)
        if threat.norm is not ThreatNorm.L2_CHANNEL:
            balls[threat].append(e)
            continue
        home = next((b for b in balls if b.norm is ThreatNorm.L2 and threat.fits_in(b)), threat)
        balls.setdefault(home, []).append(e)
    ordered = sorted(balls.items(), key=lambda kv: entries.index(kv[1][0]))
    return [(ball, chain) for ball, chain in ordered if chain]


def scale_invariant_entries(entries: Sequence[Entry], shape: Sequence[int], num_classes: int,
                            seed: int) -> list[Entry]:
    """``entries`` plus, for every threat group whose gradient attacks all ascend cross-entropy, one
    scale-invariant attack at the group's ball, appended to the group.

    Cross-entropy's input gradient vanishes once the softmax rounds to one (logits scaled by a large
    factor): such a cascade reads a masked model as robust. APGD with the Difference of Logits Ratio
    (Croce and Hein 2003.01690) is invariant to the logits' scale and shift; with fewer than three
    classes (DLR needs three) PGD on the logit margin is used, whose normalised steps are
    invariant to the scale too. Its steps are the group's largest ``steps``, at least :data:`MIN_STEPS`.

    Args:
        entries: the grid's attacks.
        shape: ``(C, H, W)`` of the images.
        num_classes: the model's classes (DLR needs three).
        seed: the added attack's seed.

    Returns:
        The entries with the added ones (labelled ``"apgd-dlr"``, ``"apgd-dlr-2"``, ...).
    """
    out = list(entries)
    for ball, chain in chains(entries, shape):
        losses = [e.attack.gradient_loss for e in chain]
        if "ce" not in losses or set(losses) - {"ce", None}:
            continue
        steps = max([int(getattr(e.attack, "steps", 0) or 0) for e in chain] + [MIN_STEPS])
        norm = "l2" if ball.norm is not ThreatNorm.LINF else "linf"
        bounds = chain[0].attack.bounds
        if num_classes >= 3:
            attack: Attack = APGD(eps=ball.epsilons, norm=norm, steps=steps, loss=APGDLoss.DLR, bounds=bounds,
                                  seed=seed)
        else:
            attack = PGD(eps=ball.epsilons, norm=norm, steps=steps, loss="margin", bounds=bounds, seed=seed)
        taken = {e.name for e in out}
        name = next(n for n in (SCALE_INVARIANT, *(f"{SCALE_INVARIANT}-{k}" for k in range(2, len(out) + 3)))
                    if n not in taken)  # one per threat group, each label unique
        out.append(Entry(name, attack, {"name": name, "attack": repr(attack)}))
    return out


# --------------------------------------------------------------------------- the cells


@dataclasses.dataclass
class Context:
    """What every cell of one evaluation shares: the samples, the settings and where cells go.

    ``data`` is read batch by batch for every cell (:meth:`batches`): tensors are sliced, a stream
    (:class:`~bandguard.data.stream.StreamSamples`) decodes each batch as it is needed, so what a
    cell holds grows with ``n`` only by its per-sample outcomes (a few bytes per sample and eps).
    """

    data: Samples
    device: torch.device
    batch_size: int
    sample_budget: int
    eot: int
    cascade: bool
    seed: int
    shard: Shard = dataclasses.field(default_factory=Shard)
    store: ResultStore | None = None
    force: bool = False
    progress: Progress | None = None
    memory: int | None = None
    computed: int = 0
    reused: int = 0
    sizes: dict[int, int] = dataclasses.field(default_factory=dict)

    def plan(self, defended: Mapping[str, nn.Module]) -> None:
        """Fix the images per attack call of every module of one model, once, before its cells.

        ``batch_size`` (or ``sample_budget // forward_cost``), shrunk until the call fits
        ``memory`` bytes at the measured bytes per image (:func:`bytes_per_image`), never below one
        image: an over-budget request runs in smaller batches, it does not fail. Rank 0's sizes
        are every rank's, so all cut the samples alike.
        """
        self.sizes = {}
        if self.memory is None:
            return
        bare = defended[NO_DEFENSE]
        first, _ = next(iter(self.data.batches([slice(0, 1)])))
        x = _to(first, self.device)
        sizes = {}
        for label, module in defended.items():
            nominal = batch_size_for(self.batch_size, self.sample_budget, module)
            per_image = bytes_per_image(module, bare, x)
            size = max(1, min(nominal, self.memory // per_image))
            if size < nominal:
                logger.info("%s: %d images per attack call instead of %d (%s per image, memory budget %s)",
                            label, size, nominal, format_bytes(per_image), format_bytes(self.memory))
            sizes[label] = size
        sizes = self.shard.broadcast(sizes)
        self.sizes = {id(defended[label]): size for label, size in sizes.items()}

    def batch_size_for(self, module: nn.Module) -> int:
        """Images per attack call on ``module``: what :meth:`plan` fixed, else the nominal size."""
        return self.sizes.get(id(module), batch_size_for(self.batch_size, self.sample_budget, module))

    def batch_key(self, module: nn.Module) -> dict[str, int]:
        """``{"batch": size}`` for a cell key where the memory budget shrank the batch (the batches
        fix a randomized run's draws), ``{}`` otherwise so unshrunk cells keep their keys."""
        size = self.batch_size_for(module)
        return {} if size == batch_size_for(self.batch_size, self.sample_budget, module) else {"batch": size}

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the samples."""
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def n(self) -> int:
        """The number of samples."""
        return len(self.data)

    def batches(self, size: int) -> Iterator[tuple[int, slice, torch.Tensor, torch.Tensor]]:
        """This rank's batches of the fixed cut of the samples into ``size``: ``(index, slice, x, y)``
        with ``x`` and ``y`` on the device. The cut, and so every batch's seed, depends on ``n``
        and ``size`` alone, not on where the samples come from."""
        cut = list(self.shard.batches(self.n, size))
        for (b, sl), (xb, yb) in zip(cut, self.data.batches([sl for _, sl in cut])):
            yield b, sl, _to(xb, self.device), _to(yb, self.device)

    def seed_key(self, defense: str, mode: str, attack: str) -> str:
        """What a cell's randomness derives from: the run's seed and the cell's labels, nothing of
        the model or the data identity, so both entry points draw the same random numbers."""
        return settings_hash({"seed": self.seed, "defense": defense, "mode": mode, "attack": attack})

    def lookup(self, keys: Sequence[str]) -> list[Cell] | None:
        """The stored cells for ``keys`` if all exist (rank 0 reads, every rank gets them)."""
        found = None
        if self.shard.is_main and self.store is not None and not self.force:
            cells = [self.store.get(k) for k in keys]
            found = None if any(c is None for c in cells) else cells
        found = self.shard.broadcast(found)
        if found is not None:
            self.reused += len(found)
        return found

    def save(self, cells: Sequence[Cell]) -> None:
        self.computed += len(cells)
        if self.shard.is_main and self.store is not None:
            self.store.put(cells)


@dataclasses.dataclass(frozen=True)
class _Outcomes:
    """Per-sample outcomes of one attack cell, each ``[E, N]``."""

    robust: torch.Tensor
    forwards: torch.Tensor
    gradients: torch.Tensor
    norms: torch.Tensor


def run_model(ctx: Context, base: dict[str, Any], model_name: str, defended: dict[str, nn.Module],
              entries: Sequence[Entry]) -> list[Cell]:
    """Every cell of one model: clean, white-box, transfer and adaptive, in cascade order.

    Args:
        ctx: the samples, settings and store shared by the run.
        base: plain values every cell key of this model includes.
        model_name: the model's label.
        defended: label -> module, the bare model first under ``"none"``.
        entries: the attacks, in order.

    Returns:
        The cells (stored ones reused, new ones saved).
    """
    cells: list[Cell] = []
    clean = {}
    ctx.plan(defended)
    for d, module in defended.items():
        cell = _clean_cell(ctx, settings_hash({**base, "defense": d, "mode": CLEAN, **ctx.batch_key(module)}),
                           model_name, d, module)
        clean[d] = cell
        cells.append(cell)
    for ball, chain in chains(entries, ctx.shape):
        # Bare model: white-box cells, each with the transfer cells of every defense.
        prev = dict(clean)
        for a in chain:
            group = _white_box_unit(ctx, base, model_name, a, ball, defended, prev, clean)
            cells.extend(group.values())
            prev = group
        # Each defense: adaptive cells.
        for d in list(defended)[1:]:
            prev_cell = clean[d]
            for a in chain:
                cell = _adaptive_cell(ctx, base, model_name, d, defended[d], a, ball, prev_cell, clean[d])
                cells.append(cell)
                prev_cell = cell
    return cells


def _clean_cell(ctx: Context, key: str, model_name: str, defense: str, module: nn.Module) -> Cell:
    found = ctx.lookup([key])
    if found is not None:
        return found[0]
    start = time.perf_counter()
    size = ctx.batch_size_for(module)
    seed_key = ctx.seed_key(defense, CLEAN, "")
    n = ctx.n
    correct = torch.zeros(n, dtype=torch.bool)
    mine = []
    for b, sl, xb, yb in ctx.batches(size):
        with _seeded(_batch_seed(seed_key, b), ctx.device):
            correct[sl] = predict(module, xb, size) == yb
        mine.append((b, sl))
    _merge(ctx, [correct], mine)
    cell = Cell(key=key, model=model_name, defense=defense, mode=CLEAN, attack="", norm="", attack_repr="",
                epsilons=(), robust=correct[None], forwards=torch.ones(1, n, dtype=torch.long),
                gradients=torch.zeros(1, n, dtype=torch.long), norms=torch.zeros(1, n), eot_samples=0,
                randomized=is_randomized(module), forward_cost=forward_cost(module),
                seconds=time.perf_counter() - start)
    ctx.save([cell])
    return cell


def _prev_robust(prev: Cell, n_eps: int) -> torch.Tensor:
    return prev.robust.expand(n_eps, -1) if prev.mode == CLEAN else prev.robust


def _merge(ctx: Context, buffers: Sequence[torch.Tensor], mine: Sequence[tuple[int, slice]]) -> None:
    """Fill, on every rank, the columns of ``buffers`` (each ``[..., N]``) that other ranks computed.

    Per-sample outcomes go into buffers of ``n`` columns allocated once per cell, never into one
    small tensor per batch: small long-lived allocations between each batch's large, freed ones
    fragment the C heap, and the process then grows with ``n`` although nothing holds the batches
    (measured with glibc: +82 MiB of peak RSS over 1,000 streamed images of 108 KiB, +4 MiB with
    the buffers).
    """
    if ctx.shard.world == 1:
        return
    gathered = ctx.shard.gather({b: [t[..., sl].clone() for t in buffers] for b, sl in mine})
    for i, t in enumerate(buffers):  # every batch of the fixed cut, in order: the columns 0..N
        t.copy_(torch.cat([g[i] for g in gathered], dim=-1))


def _attack_batches(
    ctx: Context, seed_key: str, attack: Attack, module: nn.Module, alive: torch.Tensor, size: int, desc: str,
    ball: ThreatModel,
    on_batch: Callable[[slice, torch.Tensor, torch.Tensor, list[torch.Tensor]], None] | None = None,
    buffers: Sequence[torch.Tensor] = (),
) -> _Outcomes:
    """Run ``attack`` once per batch of this rank on the samples ``alive`` ``[E, N]`` keeps, then gather.

    Each call is one :func:`~bandguard.attacks.cascade.cascade_stage`: eps by eps from the
    smallest, a sample is attacked where it is alive and this attack has not broken it at a smaller
    eps (that adversarial example lies in the larger ball too and is carried over, with its counts).

    Returns per-sample :class:`_Outcomes` (``robust`` False, counts and norms 0 where a sample was
    neither alive nor carried; norms measured in ``ball``'s norm). ``on_batch(slice, xb, yb, x_adv
    per eps)`` writes what it computes into the columns ``slice`` of ``buffers`` (``[..., N]``),
    which are gathered from every rank too.
    """
    n_eps, n = len(attack.epsilons), ctx.n
    order = sorted(range(n_eps), key=lambda i: attack.epsilons[i])
    out = _Outcomes(robust=torch.zeros(n_eps, n, dtype=torch.bool), forwards=torch.zeros(n_eps, n, dtype=torch.long),
                    gradients=torch.zeros(n_eps, n, dtype=torch.long), norms=torch.zeros(n_eps, n))
    mine = []
    for b, sl, xb, yb in ctx.batches(size):
        seed = _batch_seed(seed_key, b)
        live = alive[:, sl].to(ctx.device)
        with _seeded(seed, ctx.device):
            stage = cascade_stage(_with_seed(attack, seed), module, xb, yb, live)
        carried = torch.zeros(xb.shape[0], dtype=torch.bool, device=ctx.device)
        for e in order:
            res = stage.results[e]
            keep = live[e] | carried
            out.forwards[e, sl] = torch.where(keep, res.forwards, 0)
            out.gradients[e, sl] = torch.where(keep, res.gradients, 0)
            out.norms[e, sl] = torch.where(keep, ball.measure(res.x_adv - xb).float(), 0)
            carried |= live[e] & res.success
        out.robust[:, sl] = stage.robust
        if on_batch is not None:
            with _seeded(seed + 1, ctx.device):
                on_batch(sl, xb, yb, [r.x_adv for r in stage.results])
        mine.append((b, sl))
        if ctx.progress is not None:
            ctx.progress(desc, xb.shape[0] * ctx.shard.world)
    _merge(ctx, [out.robust, out.forwards, out.gradients, out.norms, *buffers], mine)
    return out


def _attack_cell(key: str, model_name: str, defense: str, mode: str, a: Entry, ball: ThreatModel, attack: Attack,
                 eot: int, module: nn.Module, robust: torch.Tensor, spent: _Outcomes, seconds: float,
                 shape: Sequence[int]) -> Cell:
    return Cell(key=key, model=model_name, defense=defense, mode=mode, attack=a.name,
                norm=a.attack.threat(shape).norm.value, attack_repr=repr(attack),
                epsilons=tuple(a.attack.epsilons), robust=robust, forwards=spent.forwards,
                gradients=spent.gradients, norms=spent.norms, eot_samples=eot, randomized=is_randomized(module),
                forward_cost=forward_cost(module), seconds=seconds, ball=ball.norm.value,
                ball_eps=ball.epsilons)


def _white_box_unit(
    ctx: Context, base: dict[str, Any], model_name: str, a: Entry, ball: ThreatModel,
    defended: dict[str, nn.Module], prev: dict[str, Cell], clean: dict[str, Cell],
) -> dict[str, Cell]:
    """One attack on the bare model and its transfer to every defense: one transaction."""
    bare = defended[NO_DEFENSE]
    attack, eot = attack_with_eot(a.attack, bare, ctx.eot)
    key = settings_hash({**base, "defense": NO_DEFENSE, "mode": WHITE_BOX, "attack": a.identity,
                         "eot": eot, "after": prev[NO_DEFENSE].key, "ball": ball.label(), **ctx.batch_key(bare)})
    keys = {NO_DEFENSE: key}
    transfer_to = {d: m for d, m in defended.items() if d != NO_DEFENSE}
    for d, m in transfer_to.items():
        keys[d] = settings_hash({"white_box": key, "defense": d, "mode": TRANSFER, "after": prev[d].key,
                                 **ctx.batch_key(m)})
    found = ctx.lookup(list(keys.values()))
    if found is not None:
        return dict(zip(keys, found))
    start = time.perf_counter()

    n_eps = len(a.attack.epsilons)
    correct = {d: torch.zeros(n_eps, ctx.n, dtype=torch.bool) for d in transfer_to}

    def transfer(sl: slice, xb: torch.Tensor, yb: torch.Tensor, x_adv: list[torch.Tensor]) -> None:
        for d, m in transfer_to.items():
            for e, xa in enumerate(x_adv):
                correct[d][e, sl] = predict(m, xa, ctx.batch_size_for(m)) == yb

    alive = _prev_robust((prev if ctx.cascade else clean)[NO_DEFENSE], n_eps)
    spent = _attack_batches(
        ctx, ctx.seed_key(NO_DEFENSE, WHITE_BOX, a.name), attack, bare, alive, ctx.batch_size_for(bare),
        f"{model_name} | {a.name}", ball, transfer if transfer_to else None, list(correct.values()))
    seconds = time.perf_counter() - start
    out = {NO_DEFENSE: _attack_cell(key, model_name, NO_DEFENSE, WHITE_BOX, a, ball, attack, eot, bare,
                                    _prev_robust(prev[NO_DEFENSE], n_eps) & spent.robust, spent, seconds,
                                    ctx.shape)}
    for d, module in transfer_to.items():
        out[d] = _attack_cell(keys[d], model_name, d, TRANSFER, a, ball, attack, eot, module,
                              _prev_robust(prev[d], n_eps) & correct[d], spent, seconds, ctx.shape)
    ctx.save(list(out.values()))
    return out


def _adaptive_cell(
    ctx: Context, base: dict[str, Any], model_name: str, d: str, module: nn.Module, a: Entry, ball: ThreatModel,
    prev: Cell, clean: Cell,
) -> Cell:
    attack, eot = attack_with_eot(a.attack, module, ctx.eot)
    key = settings_hash({**base, "defense": d, "mode": ADAPTIVE, "attack": a.identity, "eot": eot,
                         "after": prev.key, "ball": ball.label(), **ctx.batch_key(module)})
    found = ctx.lookup([key])
    if found is not None:
        return found[0]
    start = time.perf_counter()
    n_eps = len(a.attack.epsilons)
    alive = _prev_robust(prev if ctx.cascade else clean, n_eps)
    spent = _attack_batches(ctx, ctx.seed_key(d, ADAPTIVE, a.name), attack, module, alive,
                            ctx.batch_size_for(module), f"{model_name} | {d} | {a.name}", ball)
    cell = _attack_cell(key, model_name, d, ADAPTIVE, a, ball, attack, eot, module,
                        _prev_robust(prev, n_eps) & spent.robust, spent, time.perf_counter() - start, ctx.shape)
    ctx.save([cell])
    return cell
