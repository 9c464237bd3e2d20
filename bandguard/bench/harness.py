"""The benchmark harness: models x defenses x attacks x eps, worst case per sample, resumable.

One evaluation loop with two entry points: :func:`run` takes a TOML spec (models, data and
defenses by name, a resumable store, sanity checks, torchrun sharding) and
:func:`evaluate_robustness` takes objects already in memory (a model, defended modules, attacks,
``x`` and ``y``). Both build the same cells the same way and return a
:class:`~bandguard.bench.results.BenchResult`.

For every model the harness evaluates the bare model and each defense around it:

- ``white-box`` (the bare model) and ``adaptive`` (through the defense, with EOT when the
  defense declares ``randomized``; Athalye et al. 1802.00420) cells run each attack on the
  model they report;
- ``transfer`` cells classify, with the defense, the adversarial examples crafted on the bare
  model (how Lin et al. 1905.12797 and Wang et al. 1905.13545 report).

Attacks run in the given order as a cascade (as AutoAttack does, Croce & Hein 2003.01690): each one
attacks, eps by eps, only the samples that every earlier attack left robust at that eps, so a cell's
per-sample outcome is "robust after this attack and all before it" and the last cell of a group is
the per-sample worst case (a sample counts as robust only if no attack broke it). The samples are
cut into fixed batches whose randomness is seeded from the run's seed, the cell's labels and the
batch index alone, so a run is bit-identical whatever the order, the resume point, the number of
processes or the entry point.

With a spec, each finished cell is one transaction in the SQLite store
(:mod:`bandguard.bench.results`) keyed by a hash of everything that determines it; a rerun
computes only missing cells.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from bandguard._checks import (
    check_bool,
    check_callable,
    check_device,
    check_images,
    check_int,
    check_labels,
    check_model,
    check_model_input,
    check_model_output,
    check_output_path,
    check_seed,
)
from bandguard._modes import model_mode
from bandguard.attacks.protocol import Attack
from bandguard.bench.distributed import Shard, init_from_env, local_device
from bandguard.bench.results import BenchResult, Cell, ResultStore
from bandguard.bench.spec import (
    NO_DEFENSE,
    AttackSpec,
    BenchSpec,
    ModelSpec,
    ensemble_spec,
    load_spec,
    settings_hash,
)
from bandguard.defenses.base import forward_cost, is_randomized

__all__ = ["FORMAT", "evaluate_robustness", "run"]


FORMAT = "bandguard-bench/3"
"""Part of every cell key: bump when a change alters what a cell computes."""

WHITE_BOX, ADAPTIVE, TRANSFER, CLEAN = "white-box", "adaptive", "transfer", "clean"
Progress = Callable[[str, int], None]


# --------------------------------------------------------------------------- adapters


def load_model(spec: ModelSpec, device: torch.device) -> nn.Module:
    """The model a :class:`ModelSpec` names, in eval mode on ``device``."""
    if spec.reference is not None:
        from bandguard.bench.zoo import reference_model

        model, _ = reference_model(spec.reference, limit=spec.limit, device=device)
        return model.eval()
    if spec.checkpoint is not None:
        from bandguard.models import load_model as load_checkpoint_model

        return load_checkpoint_model(spec.checkpoint, arch=spec.arch).to(device).eval()
    from bandguard.models import model_from_code  # the explicit code form: runs package.module:function()

    return model_from_code(spec.code or "").to(device).eval()


def check_model_fits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                     labels: str = "the data set's labels", name: str = "model") -> None:
    """One forward on one sample, so a model that does not take the data, returns no logits
    ``[N, classes]`` (a tuple, images, probabilities) or has fewer classes than the labels
    (called ``labels`` in the error) fails with a clear error before any cell runs. ``name`` says
    which module (``"defenses['lowpass:3']"``) in the errors."""
    xb = check_model_input(model, x[:1].to(device), bounds=None, model_name=name)
    with model_mode(model), torch.inference_mode():
        logits = check_model_output(model(xb), n=1, name=f"{name} output")
    check_labels(y, None, labels, num_classes=logits.shape[1])


def build_defense(spec: str, model: nn.Module) -> nn.Module:
    """The defended model a defense spec string names (``"none"``: the model itself)."""
    if spec == NO_DEFENSE:
        return model
    from bandguard.defenses import build_defense as build

    return build(spec, model)


def _fields(obj: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()


def attack_with_eot(attack: Attack, randomized: bool, eot: int) -> tuple[Attack, int]:
    """The attack to run on a model, EOT chosen from what the model declares.

    An attack's own ``eot_samples`` is kept as is (so a spec can attack a randomized model without
    EOT, which the sanity checks then flag); where it is ``None`` a randomized model gets ``eot``
    samples per step and a deterministic one a single sample. Returns the attack and its samples
    per step (1 for attacks without the setting).
    """
    if "eot_samples" not in _fields(attack):
        return attack, 1
    if attack.eot_samples is None:  # type: ignore[attr-defined]
        attack = dataclasses.replace(attack, eot_samples=eot if randomized else 1)  # type: ignore[type-var]
    return attack, int(attack.eot_samples)  # type: ignore[attr-defined]


def _attack_for(spec: AttackSpec, randomized: bool, eot: int) -> tuple[Any, int]:
    """:func:`attack_with_eot` of the attack a spec entry builds."""
    return attack_with_eot(spec.build(), randomized, eot)


def _with_seed(attack: Any, seed: int) -> Any:
    return dataclasses.replace(attack, seed=seed) if "seed" in _fields(attack) else attack


class _Autocast(nn.Module):
    """Forwards under bf16 autocast on CUDA, logits back in float32 (gradients stay float32)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            out = self.net(x)
        return out.float()


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA if present, else CPU; anything else as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Fix torch's global randomness (defenses without a generator) for one batch, then restore."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _batch_seed(key: str, batch: int) -> int:
    return int(settings_hash([key, batch]), 16) % (2**31 - 1)


# --------------------------------------------------------------------------- data


def load_samples(spec: BenchSpec) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(x [N, C, H, W] float32 in [0, 1], y [N], num_classes)`` of the spec's fixed subset (CPU)."""
    from bandguard.data import load_dataset
    from bandguard.training import subset_indices

    data = load_dataset(spec.dataset, spec.split)
    idx = subset_indices(len(data), spec.n or None, spec.seed)  # spec.n == 0: every image
    x = data.images[idx].to(torch.float32).div_(255)
    return x, data.labels[idx].clone(), int(data.num_classes)


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True)


def batch_size_for(batch_size: int, sample_budget: int, module: nn.Module) -> int:
    """Images per attack call: ``batch_size``, or ``sample_budget // forward_cost`` if smaller."""
    return max(1, min(batch_size, sample_budget // forward_cost(module)))


def predict(module: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Predicted labels ``[N]`` in chunks of ``chunk`` images, no graph, mode restored."""
    with model_mode(module), torch.no_grad():
        return torch.cat([module(part).argmax(1) for part in x.split(chunk)])


# --------------------------------------------------------------------------- the cells


@dataclasses.dataclass
class _Context:
    """What every cell of one evaluation shares: the samples, the settings and where cells go.

    ``spec`` is the spec of :func:`run` (the sanity checks read it), ``None`` in memory.
    """

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
    spec: BenchSpec | None = None
    computed: int = 0
    reused: int = 0

    def batch_size_for(self, module: nn.Module) -> int:
        return batch_size_for(self.batch_size, self.sample_budget, module)

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
class _Entry:
    """One attack of the grid: its label, the attack and what identifies it in a cell key."""

    name: str
    attack: Attack
    identity: Any

    @property
    def norm(self) -> str:
        """The norm its eps is measured in (``"linf"``, ``"l2"``, ...)."""
        norm = getattr(self.attack, "norm", "?")
        return str(getattr(norm, "value", norm))


@dataclasses.dataclass(frozen=True)
class _Outcomes:
    """Per-sample outcomes of one attack cell, each ``[E, N]``."""

    robust: torch.Tensor
    forwards: torch.Tensor
    gradients: torch.Tensor
    norms: torch.Tensor


def threat_chains(attacks: Mapping[str, Attack]) -> list[list[str]]:
    """Attack names grouped by threat model (norm and eps list), in order: one cascade each.

    A per-sample worst case only means something within one threat model, so each group is its
    own cascade, starting from the clean predictions.
    """
    entries = [_Entry(name, a, None) for name, a in attacks.items()]
    return [[e.name for e in chain] for chain in _chains(entries)]


def _chains(entries: Sequence[_Entry]) -> list[list[_Entry]]:
    chains: dict[tuple[str, tuple[float, ...]], list[_Entry]] = {}
    for e in entries:
        chains.setdefault((e.norm, tuple(e.attack.epsilons)), []).append(e)
    return list(chains.values())


def _run_model(ctx: _Context, base: dict[str, Any], model_name: str, defended: dict[str, nn.Module],
               entries: Sequence[_Entry]) -> list[Cell]:
    """Every cell of one model: clean, white-box, transfer and adaptive, in cascade order.

    ``defended``: label -> module, the bare model first under ``"none"``.
    """
    cells: list[Cell] = []
    clean = {}
    for d, module in defended.items():
        cell = _clean_cell(ctx, settings_hash({**base, "defense": d, "mode": CLEAN}), model_name, d, module)
        clean[d] = cell
        cells.append(cell)
    for chain in _chains(entries):
        # Bare model: white-box cells, each with the transfer cells of every defense.
        prev = dict(clean)
        for a in chain:
            group = _white_box_unit(ctx, base, model_name, a, defended, prev, clean)
            cells.extend(group.values())
            prev = group
        # Each defense: adaptive cells.
        for d in list(defended)[1:]:
            prev_cell = clean[d]
            for a in chain:
                cell = _adaptive_cell(ctx, base, model_name, d, defended[d], a, prev_cell, clean[d])
                cells.append(cell)
                prev_cell = cell
    return cells


def _clean_cell(ctx: _Context, key: str, model_name: str, defense: str, module: nn.Module) -> Cell:
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


def _per_eps(attack: Any) -> list[tuple[list[int], Any]]:
    """``(eps indices, attack)`` pairs, smallest eps first: one attack per eps where it has an ``eps``
    field (so each eps attacks only what is still robust at it), else the attack itself once."""
    eps = list(attack.epsilons)
    if "eps" not in _fields(attack):
        return [(list(range(len(eps))), attack)]
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    return [([i], dataclasses.replace(attack, eps=(eps[i],))) for i in order]


def _attack_batches(
    ctx: _Context, seed_key: str, attack: Any, module: nn.Module, alive: torch.Tensor, size: int, desc: str,
    on_batch: Callable[[int, slice, torch.Tensor, torch.Tensor, list[torch.Tensor]], Any] | None = None,
) -> tuple[_Outcomes, dict[int, Any]]:
    """Run ``attack`` batch by batch on the alive samples of this rank's batches, then gather.

    ``alive`` ``[E, N]``: the samples still robust at each eps. Eps by eps from the smallest, a
    sample is attacked only where it is alive and this attack has not broken it at a smaller eps
    (that adversarial example lies in the larger ball too and is carried over, with its counts, as
    the attacks' own eps loop does); so a later attack in a cascade spends nothing at an eps where
    an earlier one already broke the sample.

    Returns per-sample :class:`_Outcomes` (``robust`` False, counts and norms 0 where not attacked)
    and what ``on_batch(b, slice, xb, yb, x_adv per eps)`` returned per batch.
    """
    n_eps = len(attack.epsilons)
    runs = _per_eps(attack)
    parts: dict[int, tuple[torch.Tensor, ...]] = {}
    extra: dict[int, Any] = {}
    for b, sl in ctx.shard.batches(len(ctx.y), size):
        xb, yb = _to(ctx.x[sl], ctx.device), _to(ctx.y[sl], ctx.device)
        m = xb.shape[0]
        robust = torch.zeros(n_eps, m, dtype=torch.bool)
        fwd = torch.zeros(n_eps, m, dtype=torch.long)
        grads = torch.zeros(n_eps, m, dtype=torch.long)
        norms = torch.zeros(n_eps, m)
        x_adv = [xb.clone() for _ in range(n_eps)]
        broken = torch.zeros(m, dtype=torch.bool)  # by this attack at a smaller eps
        last: int | None = None
        seed = _batch_seed(seed_key, b)
        for r, (eps_idx, run_attack) in enumerate(runs):
            if last is not None:
                for e in eps_idx:  # carry the smaller eps's adversarial examples over
                    x_adv[e][broken.to(ctx.device)] = x_adv[last][broken.to(ctx.device)]
                    for t in (fwd, grads, norms):
                        t[e, broken] = t[last, broken]
            idx = (alive[eps_idx][:, sl].any(0) & ~broken).nonzero().squeeze(1)
            if idx.numel():
                idx_d = idx.to(ctx.device)
                with _seeded(seed + r, ctx.device):
                    results = _with_seed(run_attack, seed + r)(module, xb[idx_d], yb[idx_d])
                for e, res in zip(eps_idx, results):
                    robust[e, idx] = (res.adv_pred == yb[idx_d]).cpu()
                    fwd[e, idx] = res.forwards.cpu()
                    grads[e, idx] = res.gradients.cpu()
                    norms[e, idx] = res.norms.float().cpu()
                    x_adv[e][idx_d] = res.x_adv.to(xb.dtype)
            last = eps_idx[-1]
            if len(runs) > 1:
                broken |= alive[last, sl] & ~robust[last]
        parts[b] = (robust, fwd, grads, norms)
        if on_batch is not None:
            with _seeded(seed + len(runs), ctx.device):
                extra[b] = on_batch(b, sl, xb, yb, x_adv)
        if ctx.progress is not None:
            ctx.progress(desc, m * ctx.shard.world)
    gathered = ctx.shard.gather(parts)
    outcomes = _Outcomes(*(torch.cat([g[i] for g in gathered], dim=1) for i in range(4)))
    extras = ctx.shard.gather(extra) if on_batch is not None else []
    return outcomes, dict(enumerate(extras))


def _attack_cell(key: str, model_name: str, defense: str, mode: str, a: _Entry, attack: Attack, eot: int,
                 module: nn.Module, robust: torch.Tensor, spent: _Outcomes, seconds: float) -> Cell:
    return Cell(key=key, model=model_name, defense=defense, mode=mode, attack=a.name, norm=a.norm,
                attack_repr=repr(attack), epsilons=tuple(a.attack.epsilons), robust=robust,
                forwards=spent.forwards, gradients=spent.gradients, norms=spent.norms, eot_samples=eot,
                randomized=is_randomized(module), forward_cost=forward_cost(module), seconds=seconds)


def _white_box_unit(
    ctx: _Context, base: dict[str, Any], model_name: str, a: _Entry,
    defended: dict[str, nn.Module], prev: dict[str, Cell], clean: dict[str, Cell],
) -> dict[str, Cell]:
    """One attack on the bare model and its transfer to every defense: one transaction."""
    bare = defended[NO_DEFENSE]
    attack, eot = attack_with_eot(a.attack, is_randomized(bare), ctx.eot)
    key = settings_hash({**base, "defense": NO_DEFENSE, "mode": WHITE_BOX, "attack": a.identity,
                         "eot": eot, "after": prev[NO_DEFENSE].key})
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
        f"{model_name} | {a.name}", transfer if transfer_to else None)
    seconds = time.perf_counter() - start
    out = {NO_DEFENSE: _attack_cell(key, model_name, NO_DEFENSE, WHITE_BOX, a, attack, eot, bare,
                                    _prev_robust(prev[NO_DEFENSE], n_eps) & spent.robust, spent, seconds)}
    for d, module in transfer_to.items():
        correct = torch.cat([extra[i][d] for i in sorted(extra)], dim=1)
        out[d] = _attack_cell(keys[d], model_name, d, TRANSFER, a, attack, eot, module,
                              _prev_robust(prev[d], n_eps) & correct, spent, seconds)
    ctx.save(list(out.values()))
    return out


def _adaptive_cell(
    ctx: _Context, base: dict[str, Any], model_name: str, d: str, module: nn.Module, a: _Entry,
    prev: Cell, clean: Cell,
) -> Cell:
    attack, eot = attack_with_eot(a.attack, is_randomized(module), ctx.eot)
    key = settings_hash({**base, "defense": d, "mode": ADAPTIVE, "attack": a.identity, "eot": eot,
                         "after": prev.key})
    found = ctx.lookup([key])
    if found is not None:
        return found[0]
    start = time.perf_counter()
    n_eps = len(a.attack.epsilons)
    alive = _prev_robust(prev if ctx.cascade else clean, n_eps)
    spent, _ = _attack_batches(ctx, ctx.seed_key(d, ADAPTIVE, a.name), attack, module, alive,
                               ctx.batch_size_for(module), f"{model_name} | {d} | {a.name}")
    cell = _attack_cell(key, model_name, d, ADAPTIVE, a, attack, eot, module,
                        _prev_robust(prev, n_eps) & spent.robust, spent, time.perf_counter() - start)
    ctx.save([cell])
    return cell


# --------------------------------------------------------------------------- in memory


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return fallback


def _check_grid(model: object, x: object, y: object, attacks: object,
                defenses: object) -> tuple[torch.Tensor, torch.Tensor, dict[str, nn.Module]]:
    """The in-memory grid's arguments, checked once: ``(x, y, {label: module}, the bare one first)``."""
    model = check_model(model)
    if not isinstance(attacks, Mapping) or not attacks:
        raise TypeError(f"attacks must be a non-empty mapping of name -> Attack, got {attacks!r}")
    for name, attack in attacks.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"attack names must be non-empty strings, got {name!r}")
        if not isinstance(attack, Attack):
            raise TypeError(f"attacks[{name!r}] must be a bandguard Attack, got {type(attack).__name__}")
        x = check_images(x, "x", bounds=attack.bounds)
    y = check_labels(y, x, "y")  # type: ignore[arg-type]
    if defenses is None:
        defenses = {}
    if not isinstance(defenses, Mapping):
        raise TypeError(f"defenses must be a mapping of name -> nn.Module or None, got {type(defenses).__name__}")
    for name, module in defenses.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"defense names must be non-empty strings, got {name!r}")
        if name == NO_DEFENSE:
            raise ValueError(f"defense name {NO_DEFENSE!r} is reserved for the undefended model")
        check_model(module, f"defenses[{name!r}]")
    return x, y, {NO_DEFENSE: model, **defenses}  # type: ignore[return-value]


def evaluate_robustness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Mapping[str, Attack],
    *,
    defenses: Mapping[str, nn.Module] | None = None,
    name: str = "model",
    batch_size: int = BenchSpec.batch_size,
    sample_budget: int = BenchSpec.sample_budget,
    eot: int = BenchSpec.eot,
    cascade: bool = BenchSpec.cascade,
    seed: int = BenchSpec.seed,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """The harness on tensors and objects in memory: clean, white-box, transfer, adaptive, worst case.

    The same cells as :func:`run` computes for one model of a spec (and, for the same samples,
    seed and labels, the same per-sample outcomes): the attacks run in order as a cascade per
    threat model (norm and eps list), each eps only on samples still robust, a sample broken at a
    smaller eps carried over; the worst case per sample closes each cascade. Every defense gets
    transfer cells (examples crafted on ``model``) and adaptive cells (the attacks through it, with
    ``eot`` gradient samples per step where it declares ``randomized`` and the attack leaves
    ``eot_samples`` unset; Athalye et al. 1802.00420). Nothing is stored and no sanity check runs
    (both need a spec: :func:`run`). The caller's model and defenses are not moved or changed.

    Args:
        model: the bare classifier, images in the attacks' bounds -> logits ``[N, classes]``.
        x: images ``[N, C, H, W]`` (any device; moved to ``device`` batch by batch).
        y: int64 labels ``[N]``.
        attacks: label -> attack (e.g. ``{"pgd": PGD(eps=(0.1, 0.3))}``), run in this order.
        defenses: label -> defended module wrapping ``model`` (e.g. from
            :func:`bandguard.defenses.build_defense`); ``"none"`` is the bare model's label.
        name: the model's label in the table.
        batch_size: images per attack call on a model with ``forward_cost == 1``.
        sample_budget: model inputs per attack call on a costlier defense (``sample_budget //
            forward_cost`` images, at most ``batch_size``): bounds the memory.
        eot: gradient samples per step against randomized models (see above).
        cascade: later attacks run only on samples every earlier one left robust.
        seed: every attack's and every randomized defense's randomness.
        device: where batches run; ``None``: the model's device.
        progress: called as ``progress(description, images_done)`` after every batch.

    Returns:
        :class:`~bandguard.bench.results.BenchResult`: one row per defense, mode, attack and eps
        (plus the worst case of each cascade with two attacks or more) and every cell with its
        per-sample outcomes.

    Example:
        >>> result = evaluate_robustness(model, x, y, {"pgd": PGD(eps=(0.1, 0.3))},  # doctest: +SKIP
        ...                              defenses={"lowpass": nn.Sequential(LowPass(10), model)})
        >>> print(result.to_markdown())  # doctest: +SKIP
    """
    start = time.perf_counter()
    x, y, defended = _check_grid(model, x, y, attacks, defenses)
    settings = {"batch_size": check_int(batch_size, "batch_size", minimum=1),
                "sample_budget": check_int(sample_budget, "sample_budget", minimum=1),
                "eot": check_int(eot, "eot", minimum=1), "cascade": check_bool(cascade, "cascade"),
                "seed": check_seed(seed)}
    dev = check_device(device) if device is not None else _model_device(model, x.device)
    for label, module in defended.items():
        check_model_fits(module, x, y, dev, labels="y", name="model" if label == NO_DEFENSE else f"defenses[{label!r}]")
    ctx = _Context(x=x, y=y, device=dev, progress=_check_progress(progress), **settings)
    entries = [_Entry(label, a, {"name": label, "attack": repr(a)}) for label, a in attacks.items()]
    base = {"format": FORMAT, "model": name, "n": len(y), **settings}
    cells = _run_model(ctx, base, name, defended, entries)
    return BenchResult.from_cells(None, cells, [], seconds=time.perf_counter() - start, device=str(dev),
                                  computed=ctx.computed, reused=0)


# --------------------------------------------------------------------------- from a spec


def run(
    spec: BenchSpec | str | os.PathLike[str],
    *,
    force: bool = False,
    progress: Progress | None = None,
    shard: Shard | None = None,
) -> BenchResult:
    """Run a benchmark spec; only cells missing from its store are computed.

    Args:
        spec: a :class:`BenchSpec` or the path of a TOML spec.
        force: recompute every cell (stored ones are replaced).
        progress: called as ``progress(description, images_done)`` after every batch.
        shard: this process's place in a distributed run; default: from torchrun's environment.

    Returns:
        :class:`~bandguard.bench.results.BenchResult` (on every rank), with the table rows,
        sanity flags and timings; rank 0 has also written the reports into ``spec.out``.
    """
    if not isinstance(spec, BenchSpec):
        spec = load_spec(spec)
    # Before any work: an `out` that is a file, lies under one or cannot be written would
    # otherwise fail in pathlib after the cells ran.
    check_output_path(spec.out, "out", directory=True)
    force = check_bool(force, "force")
    progress = _check_progress(progress)
    start = time.perf_counter()
    device = resolve_device(spec.device)
    owns_group = shard is None and not (dist.is_available() and dist.is_initialized())
    shard = shard or init_from_env(device)
    device = local_device(device)
    out = Path(spec.out)
    store = ResultStore(out / "results.sqlite") if shard.is_main else None
    x, y, num_classes = load_samples(spec)
    if device.type == "cuda":
        x, y = x.pin_memory(), y.pin_memory()
    ctx = _Context(x=x, y=y, device=device, batch_size=spec.batch_size, sample_budget=spec.sample_budget,
                   eot=spec.eot, cascade=spec.cascade, seed=spec.seed, shard=shard, store=store, force=force,
                   progress=progress, spec=spec)
    entries = [_Entry(a.name, a.build(), _attack_identity(a)) for a in _attack_list(spec)]
    cells: list[Cell] = []
    flags = []
    try:
        for model_spec in spec.models:
            model = load_model(model_spec, device)
            check_model_fits(model, x, y, device)
            if spec.amp == "bf16" and device.type == "cuda":
                model = _Autocast(model)
            defended = {d: build_defense(d, model).to(device) for d in spec.defenses}
            model_cells = _run_model(ctx, _model_key(spec, model_spec), model_spec.name, defended, entries)
            cells.extend(model_cells)
            if spec.sanity:
                from bandguard.bench.sanity import run_checks

                flags.extend(run_checks(ctx, model_spec, model, model_cells, num_classes))
    finally:
        if store is not None:
            store.close()
    result = BenchResult.from_cells(spec, cells, flags, seconds=time.perf_counter() - start,
                                    device=str(device), computed=ctx.computed, reused=ctx.reused)
    if shard.is_main:
        from bandguard.bench.results import write_reports

        write_reports(result, out)
    shard.barrier()
    if owns_group and shard.world > 1:
        dist.destroy_process_group()
    return result


def _check_progress(progress: object) -> Progress | None:
    if progress is not None:
        check_callable(progress, "progress", "progress(description, images_done)")
    return progress  # type: ignore[return-value]


def _model_key(s: BenchSpec, model_spec: ModelSpec) -> dict[str, Any]:
    return {"format": FORMAT, "data": s.data_identity(), "model": model_spec.identity(),
            "batch_size": s.batch_size, "sample_budget": s.sample_budget, "amp": s.amp,
            "cascade": s.cascade}


def _attack_list(spec: BenchSpec) -> list[AttackSpec]:
    attacks = list(spec.attacks)
    if spec.ensemble == "standard":
        attacks.append(ensemble_spec(spec))
    return attacks


def _attack_identity(a: AttackSpec) -> dict[str, Any]:
    return {"name": a.name, "attack": a.attack, "eps": list(a.eps), "settings": [list(s) for s in a.settings]}
