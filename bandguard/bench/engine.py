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
alone, so a run is bit-identical whatever the order, the resume point, the number of processes or
the entry point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bandguard._modes import model_mode
from bandguard.attacks.apgd import APGD, APGDLoss
from bandguard.attacks.cascade import cascade_stage
from bandguard.attacks.pgd import PGD
from bandguard.attacks.protocol import Attack, resolve_eot
from bandguard.attacks.threat import ThreatModel, ThreatNorm
from bandguard.bench.distributed import Shard
from bandguard.bench.results import Cell, ResultStore
from bandguard.bench.spec import NO_DEFENSE, settings_hash
from bandguard.defenses.base import forward_cost, is_randomized

__all__ = [
    "FORMAT",
    "Context",
    "Entry",
    "attack_with_eot",
    "batch_size_for",
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
    """What every cell of one evaluation shares: the samples, the settings and where cells go."""

    x: torch.Tensor
    y: torch.Tensor
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
    computed: int = 0
    reused: int = 0

    def batch_size_for(self, module: nn.Module) -> int:
        return batch_size_for(self.batch_size, self.sample_budget, module)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the samples."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

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
    for d, module in defended.items():
        cell = _clean_cell(ctx, settings_hash({**base, "defense": d, "mode": CLEAN}), model_name, d, module)
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
    parts = {}
    for b, sl in ctx.shard.batches(len(ctx.y), size):
        xb, yb = _to(ctx.x[sl], ctx.device), _to(ctx.y[sl], ctx.device)
        with _seeded(_batch_seed(seed_key, b), ctx.device):
            parts[b] = (predict(module, xb, size) == yb).cpu()
    correct = torch.cat(ctx.shard.gather(parts))
    n = len(correct)
    cell = Cell(key=key, model=model_name, defense=defense, mode=CLEAN, attack="", norm="", attack_repr="",
                epsilons=(), robust=correct[None], forwards=torch.ones(1, n, dtype=torch.long),
                gradients=torch.zeros(1, n, dtype=torch.long), norms=torch.zeros(1, n), eot_samples=0,
                randomized=is_randomized(module), forward_cost=forward_cost(module),
                seconds=time.perf_counter() - start)
    ctx.save([cell])
    return cell


def _prev_robust(prev: Cell, n_eps: int) -> torch.Tensor:
    return prev.robust.expand(n_eps, -1) if prev.mode == CLEAN else prev.robust


def _attack_batches(
    ctx: Context, seed_key: str, attack: Attack, module: nn.Module, alive: torch.Tensor, size: int, desc: str,
    ball: ThreatModel,
    on_batch: Callable[[int, slice, torch.Tensor, torch.Tensor, list[torch.Tensor]], Any] | None = None,
) -> tuple[_Outcomes, dict[int, Any]]:
    """Run ``attack`` once per batch of this rank on the samples ``alive`` ``[E, N]`` keeps, then gather.

    Each call is one :func:`~bandguard.attacks.cascade.cascade_stage`: eps by eps from the
    smallest, a sample is attacked where it is alive and this attack has not broken it at a smaller
    eps (that adversarial example lies in the larger ball too and is carried over, with its counts).

    Returns per-sample :class:`_Outcomes` (``robust`` False, counts and norms 0 where a sample was
    neither alive nor carried; norms measured in ``ball``'s norm) and what
    ``on_batch(b, slice, xb, yb, x_adv per eps)`` returned per batch.
    """
    n_eps = len(attack.epsilons)
    order = sorted(range(n_eps), key=lambda i: attack.epsilons[i])
    parts: dict[int, tuple[torch.Tensor, ...]] = {}
    extra: dict[int, Any] = {}
    for b, sl in ctx.shard.batches(len(ctx.y), size):
        xb, yb = _to(ctx.x[sl], ctx.device), _to(ctx.y[sl], ctx.device)
        seed = _batch_seed(seed_key, b)
        live = alive[:, sl].to(ctx.device)
        with _seeded(seed, ctx.device):
            stage = cascade_stage(_with_seed(attack, seed), module, xb, yb, live)
        m = xb.shape[0]
        fwd = torch.zeros(n_eps, m, dtype=torch.long)
        grads = torch.zeros(n_eps, m, dtype=torch.long)
        norms = torch.zeros(n_eps, m)
        carried = torch.zeros(m, dtype=torch.bool, device=ctx.device)
        for e in order:
            res = stage.results[e]
            keep = live[e] | carried
            fwd[e] = torch.where(keep, res.forwards, 0).cpu()
            grads[e] = torch.where(keep, res.gradients, 0).cpu()
            norms[e] = torch.where(keep, ball.measure(res.x_adv - xb).float(), 0).cpu()
            carried |= live[e] & res.success
        parts[b] = (stage.robust.cpu(), fwd, grads, norms)
        if on_batch is not None:
            with _seeded(seed + 1, ctx.device):
                extra[b] = on_batch(b, sl, xb, yb, [r.x_adv for r in stage.results])
        if ctx.progress is not None:
            ctx.progress(desc, m * ctx.shard.world)
    gathered = ctx.shard.gather(parts)
    outcomes = _Outcomes(*(torch.cat([g[i] for g in gathered], dim=1) for i in range(4)))
    extras = ctx.shard.gather(extra) if on_batch is not None else []
    return outcomes, dict(enumerate(extras))


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
                         "eot": eot, "after": prev[NO_DEFENSE].key, "ball": ball.label()})
    keys = {NO_DEFENSE: key}
    transfer_to = {d: m for d, m in defended.items() if d != NO_DEFENSE}
    for d in transfer_to:
        keys[d] = settings_hash({"white_box": key, "defense": d, "mode": TRANSFER, "after": prev[d].key})
    found = ctx.lookup(list(keys.values()))
    if found is not None:
        return dict(zip(keys, found))
    start = time.perf_counter()

    def transfer(b: int, sl: slice, xb: torch.Tensor, yb: torch.Tensor, x_adv: list[torch.Tensor]) -> Any:
        return {d: torch.stack([(predict(m, xa, ctx.batch_size_for(m)) == yb).cpu() for xa in x_adv])
                for d, m in transfer_to.items()}

    n_eps = len(a.attack.epsilons)
    alive = _prev_robust((prev if ctx.cascade else clean)[NO_DEFENSE], n_eps)
    spent, extra = _attack_batches(
        ctx, ctx.seed_key(NO_DEFENSE, WHITE_BOX, a.name), attack, bare, alive, ctx.batch_size_for(bare),
        f"{model_name} | {a.name}", ball, transfer if transfer_to else None)
    seconds = time.perf_counter() - start
    out = {NO_DEFENSE: _attack_cell(key, model_name, NO_DEFENSE, WHITE_BOX, a, ball, attack, eot, bare,
                                    _prev_robust(prev[NO_DEFENSE], n_eps) & spent.robust, spent, seconds,
                                    ctx.shape)}
    for d, module in transfer_to.items():
        correct = torch.cat([extra[i][d] for i in sorted(extra)], dim=1)
        out[d] = _attack_cell(keys[d], model_name, d, TRANSFER, a, ball, attack, eot, module,
                              _prev_robust(prev[d], n_eps) & correct, spent, seconds, ctx.shape)
    ctx.save(list(out.values()))
    return out


def _adaptive_cell(
    ctx: Context, base: dict[str, Any], model_name: str, d: str, module: nn.Module, a: Entry, ball: ThreatModel,
    prev: Cell, clean: Cell,
) -> Cell:
    attack, eot = attack_with_eot(a.attack, module, ctx.eot)
    key = settings_hash({**base, "defense": d, "mode": ADAPTIVE, "attack": a.identity, "eot": eot,
                         "after": prev.key, "ball": ball.label()})
    found = ctx.lookup([key])
    if found is not None:
        return found[0]
    start = time.perf_counter()
    n_eps = len(a.attack.epsilons)
    alive = _prev_robust(prev if ctx.cascade else clean, n_eps)
    spent, _ = _attack_batches(ctx, ctx.seed_key(d, ADAPTIVE, a.name), attack, module, alive,
                               ctx.batch_size_for(module), f"{model_name} | {d} | {a.name}", ball)
    cell = _attack_cell(key, model_name, d, ADAPTIVE, a, ball, attack, eot, module,
                        _prev_robust(prev, n_eps) & spent.robust, spent, time.perf_counter() - start, ctx.shape)
    ctx.save([cell])
    return cell
