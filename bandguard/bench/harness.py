"""The benchmark harness: models x defenses x attacks x eps, worst case per sample, resumable.

For every model the harness evaluates the bare model and each defense around it:

- ``white-box`` (the bare model) and ``adaptive`` (through the defense, with EOT when the
  defense declares ``randomized``; Athalye et al. 1802.00420) cells run each attack on the
  model they report;
- ``transfer`` cells classify, with the defense, the adversarial examples crafted on the bare
  model (how Lin et al. 1905.12797 and Wang et al. 1905.13545 report).

Attacks run in spec order as a cascade (as AutoAttack does, Croce & Hein 2003.01690): each one
attacks, eps by eps, only the samples that every earlier attack left robust at that eps, so a cell's
per-sample outcome is "robust after this attack and all before it" and the last cell of a group is
the per-sample worst case (a sample counts as robust only if no attack broke it). The samples are
cut into fixed batches whose randomness is seeded from the cell and batch index alone, so a run is
bit-identical whatever the order, the resume point or the number of processes.

Each finished cell is one transaction in the SQLite store (:mod:`bandguard.bench.results`) keyed
by a hash of everything that determines it; a rerun computes only missing cells.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from bandguard._modes import model_mode
from bandguard.bench.distributed import Shard, init_from_env, local_device
from bandguard.bench.results import BenchResult, Cell, ResultStore
from bandguard.bench.spec import NO_DEFENSE, AttackSpec, BenchSpec, ModelSpec, load_spec, settings_hash
from bandguard.defenses.base import forward_cost, is_randomized

__all__ = ["FORMAT", "run"]

log = logging.getLogger(__name__)

FORMAT = "bandguard-bench/2"
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


def check_model_fits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
    """One forward on one sample, so a model that does not take the data, returns no logits
    ``[N, classes]`` (a tuple, a 1-D output, probabilities) or has fewer classes than the labels
    fails with a clear error before any cell runs."""
    from bandguard._checks import check_labels, check_model_input, check_model_output

    xb = check_model_input(model, x[:1].to(device), bounds=None)
    with model_mode(model), torch.inference_mode():
        logits = check_model_output(model(xb), n=1)
    check_labels(y, None, "the data set's labels", num_classes=logits.shape[1])


def build_defense(spec: str, model: nn.Module) -> nn.Module:
    """The defended model a defense spec string names (``"none"``: the model itself)."""
    if spec == NO_DEFENSE:
        return model
    from bandguard.defenses import build_defense as build

    return build(spec, model)


def _attack_for(spec: AttackSpec, randomized: bool, eot: int) -> tuple[Any, int]:
    """The attack to run on a model, EOT chosen from what the model declares.

    An ``eot_samples`` given in the spec is kept as is (so a spec can attack a randomized model
    without EOT, which the sanity checks then flag); otherwise a randomized model gets ``eot``
    samples and a deterministic one a single sample.
    """
    attack = spec.build()
    fields = {f.name for f in dataclasses.fields(attack)} if dataclasses.is_dataclass(attack) else set()
    if "eot_samples" not in fields:
        return attack, 1
    if "eot_samples" not in spec.options:
        attack = dataclasses.replace(attack, eot_samples=eot if randomized else 1)
    return attack, int(attack.eot_samples or 1)


def _with_seed(attack: Any, seed: int) -> Any:
    fields = {f.name for f in dataclasses.fields(attack)} if dataclasses.is_dataclass(attack) else set()
    return dataclasses.replace(attack, seed=seed) if "seed" in fields else attack


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


def sample_indices(size: int, n: int, seed: int) -> torch.Tensor:
    """A fixed subset of ``range(size)``: ``n`` indices drawn with ``seed``, sorted (``0``: all)."""
    if n == 0 or n >= size:
        return torch.arange(size)
    perm = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return perm[:n].sort().values


def load_samples(spec: BenchSpec) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(x [N, C, H, W] float32 in [0, 1], y [N], num_classes)`` of the spec's fixed subset (CPU)."""
    from bandguard.data import load_dataset

    data = load_dataset(spec.dataset, spec.split)
    idx = sample_indices(len(data), spec.n, spec.seed)
    x = data.images[idx].to(torch.float32).div_(255)
    return x, data.labels[idx].clone(), int(data.num_classes)


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True) if device.type == "cuda" else x


def batch_size_for(spec: BenchSpec, module: nn.Module) -> int:
    """Images per attack call: ``batch_size``, or ``sample_budget // forward_cost`` if smaller."""
    return max(1, min(spec.batch_size, spec.sample_budget // forward_cost(module)))


def predict(module: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Predicted labels ``[N]`` in chunks of ``chunk`` images, no graph, mode restored."""
    with model_mode(module), torch.no_grad():
        return torch.cat([module(part).argmax(1) for part in x.split(chunk)])


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass
class _Context:
    spec: BenchSpec
    device: torch.device
    shard: Shard
    store: ResultStore | None
    force: bool
    x: torch.Tensor
    y: torch.Tensor
    progress: Progress | None
    computed: int = 0
    reused: int = 0

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
    ctx = _Context(spec, device, shard, store, force, x, y, progress)
    cells: list[Cell] = []
    flags = []
    try:
        for model_spec in spec.models:
            model = load_model(model_spec, device)
            check_model_fits(model, x, y, device)
            if spec.amp == "bf16" and device.type == "cuda":
                model = _Autocast(model)
            model_cells = _run_model(ctx, model_spec, model)
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


def _model_key(ctx: _Context, model_spec: ModelSpec) -> dict[str, Any]:
    s = ctx.spec
    return {"format": FORMAT, "data": s.data_identity(), "model": model_spec.identity(),
            "batch_size": s.batch_size, "sample_budget": s.sample_budget, "amp": s.amp,
            "cascade": s.cascade}


def _attack_list(spec: BenchSpec) -> list[AttackSpec]:
    attacks = list(spec.attacks)
    if spec.ensemble == "standard":
        from bandguard.bench.spec import ensemble_spec

        extra = ensemble_spec(spec)
        if extra is None:
            log.warning("ensemble = 'standard' needs bandguard.attacks.ensemble; skipped")
        else:
            attacks.append(extra)
    return attacks


def _run_model(ctx: _Context, model_spec: ModelSpec, model: nn.Module) -> list[Cell]:
    """Every cell of one model: clean, white-box, transfer and adaptive, in cascade order."""
    spec = ctx.spec
    base = _model_key(ctx, model_spec)
    defended = {d: build_defense(d, model).to(ctx.device) for d in spec.defenses}
    cells: list[Cell] = []
    clean = {}
    for d, module in defended.items():
        key = settings_hash({**base, "defense": d, "mode": CLEAN})
        cell = _clean_cell(ctx, key, model_spec.name, d, module)
        clean[d] = cell
        cells.append(cell)
    for chain in threat_chains(_attack_list(spec)):
        # Bare model: white-box cells, each with the transfer cells of every defense.
        prev = dict(clean)
        for a in chain:
            group = _white_box_unit(ctx, base, model_spec.name, a, defended, prev, clean)
            cells.extend(group.values())
            prev = group
        # Each defense: adaptive cells.
        for d in spec.defenses[1:]:
            prev_cell = clean[d]
            for a in chain:
                cell = _adaptive_cell(ctx, base, model_spec.name, d, defended[d], a, prev_cell, clean[d])
                cells.append(cell)
                prev_cell = cell
    return cells


def _clean_cell(ctx: _Context, key: str, model_name: str, defense: str, module: nn.Module) -> Cell:
    found = ctx.lookup([key])
    if found is not None:
        return found[0]
    start = time.perf_counter()
    size = batch_size_for(ctx.spec, module)
    parts = {}
    for b, sl in ctx.shard.batches(len(ctx.y), size):
        xb, yb = _to(ctx.x[sl], ctx.device), _to(ctx.y[sl], ctx.device)
        with _seeded(_batch_seed(key, b), ctx.device):
            parts[b] = (predict(module, xb, size) == yb).cpu()
    correct = torch.cat(ctx.shard.gather(parts))
    cell = Cell(key=key, model=model_name, defense=defense, mode=CLEAN, attack="", norm="", attack_repr="",
                epsilons=(), robust=correct[None], forwards=torch.ones(1, len(correct), dtype=torch.long),
                gradients=torch.zeros(1, len(correct), dtype=torch.long), eot_samples=0,
                randomized=is_randomized(module), forward_cost=forward_cost(module),
                seconds=time.perf_counter() - start)
    ctx.save([cell])
    return cell


def threat_chains(attacks: Sequence[AttackSpec]) -> list[list[AttackSpec]]:
    """Attacks grouped by threat model (norm and eps list), in spec order: one cascade each.

    A per-sample worst case only means something within one threat model, so each group is its
    own cascade, starting from the clean predictions.
    """
    chains: dict[tuple[str, tuple[float, ...]], list[AttackSpec]] = {}
    for a in attacks:
        chains.setdefault((threat_norm(a), a.eps), []).append(a)
    return list(chains.values())


def threat_norm(a: AttackSpec) -> str:
    """The norm an attack's eps is measured in (``"linf"``, ``"l2"``, ...)."""
    norm = getattr(a.build(), "norm", "?")
    return str(getattr(norm, "value", norm))


def _prev_robust(prev: Cell, n_eps: int) -> torch.Tensor:
    return prev.robust.expand(n_eps, -1) if prev.mode == CLEAN else prev.robust


def _per_eps(attack: Any) -> list[tuple[list[int], Any]]:
    """``(eps indices, attack)`` pairs, smallest eps first: one attack per eps where it has an ``eps``
    field (so each eps attacks only what is still robust at it), else the attack itself once."""
    eps = list(attack.epsilons)
    if not (dataclasses.is_dataclass(attack) and "eps" in {f.name for f in dataclasses.fields(attack)}):
        return [(list(range(len(eps))), attack)]
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    return [([i], dataclasses.replace(attack, eps=(eps[i],))) for i in order]


def _attack_batches(
    ctx: _Context, key: str, attack: Any, module: nn.Module, alive: torch.Tensor, size: int, desc: str,
    on_batch: Callable[[int, slice, torch.Tensor, torch.Tensor, list[torch.Tensor]], Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[int, Any]]:
    """Run ``attack`` batch by batch on the alive samples of this rank's batches, then gather.

    ``alive`` ``[E, N]``: the samples still robust at each eps. Eps by eps from the smallest, a
    sample is attacked only where it is alive and this attack has not broken it at a smaller eps
    (that adversarial example lies in the larger ball too and is carried over, with its counts, as
    the attacks' own eps loop does); so a later attack in a cascade spends nothing at an eps where
    an earlier one already broke the sample.

    Returns per-sample ``robust [E, N]`` (False where not attacked), ``forwards`` and
    ``gradients`` ``[E, N]``, and what ``on_batch(b, slice, xb, yb, x_adv per eps)`` returned.
    """
    n_eps = len(attack.epsilons)
    runs = _per_eps(attack)
    parts: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    extra: dict[int, Any] = {}
    for b, sl in ctx.shard.batches(len(ctx.y), size):
        xb, yb = _to(ctx.x[sl], ctx.device), _to(ctx.y[sl], ctx.device)
        m = xb.shape[0]
        robust = torch.zeros(n_eps, m, dtype=torch.bool)
        fwd = torch.zeros(n_eps, m, dtype=torch.long)
        grads = torch.zeros(n_eps, m, dtype=torch.long)
        x_adv = [xb.clone() for _ in range(n_eps)]
        broken = torch.zeros(m, dtype=torch.bool)  # by this attack at a smaller eps
        last: int | None = None
        seed = _batch_seed(key, b)
        for r, (eps_idx, run_attack) in enumerate(runs):
            if last is not None:
                for e in eps_idx:  # carry the smaller eps's adversarial examples over
                    x_adv[e][broken.to(ctx.device)] = x_adv[last][broken.to(ctx.device)]
                    fwd[e, broken], grads[e, broken] = fwd[last, broken], grads[last, broken]
            idx = (alive[eps_idx][:, sl].any(0) & ~broken).nonzero().squeeze(1)
            if idx.numel():
                idx_d = idx.to(ctx.device)
                with _seeded(seed + r, ctx.device):
                    results = _with_seed(run_attack, seed + r)(module, xb[idx_d], yb[idx_d])
                for e, res in zip(eps_idx, results):
                    robust[e, idx] = (res.adv_pred == yb[idx_d]).cpu()
                    fwd[e, idx] = res.forwards.cpu()
                    grads[e, idx] = res.gradients.cpu()
                    x_adv[e][idx_d] = res.x_adv.to(xb.dtype)
            last = eps_idx[-1]
            if len(runs) > 1:
                broken |= alive[last, sl] & ~robust[last]
        parts[b] = (robust, fwd, grads)
        if on_batch is not None:
            with _seeded(seed + len(runs), ctx.device):
                extra[b] = on_batch(b, sl, xb, yb, x_adv)
        if ctx.progress is not None:
            ctx.progress(desc, m * ctx.shard.world)
    gathered = ctx.shard.gather(parts)
    robust, fwd, grads = (torch.cat([g[i] for g in gathered], dim=1) for i in range(3))
    extras = ctx.shard.gather(extra) if on_batch is not None else []
    return robust, fwd, grads, dict(enumerate(extras))


def _attack_identity(a: AttackSpec) -> dict[str, Any]:
    return {"name": a.name, "attack": a.attack, "eps": list(a.eps), "settings": [list(s) for s in a.settings]}


def _white_box_unit(
    ctx: _Context, base: dict[str, Any], model_name: str, a: AttackSpec,
    defended: dict[str, nn.Module], prev: dict[str, Cell], clean: dict[str, Cell],
) -> dict[str, Cell]:
    """One attack on the bare model and its transfer to every defense: one transaction."""
    bare = defended[NO_DEFENSE]
    attack, eot = _attack_for(a, is_randomized(bare), ctx.spec.eot)
    key = settings_hash({**base, "defense": NO_DEFENSE, "mode": WHITE_BOX, "attack": _attack_identity(a),
                         "eot": eot, "after": prev[NO_DEFENSE].key})
    keys = {NO_DEFENSE: key}
    for d in ctx.spec.defenses[1:]:
        keys[d] = settings_hash({"white_box": key, "defense": d, "mode": TRANSFER, "after": prev[d].key})
    found = ctx.lookup(list(keys.values()))
    if found is not None:
        return dict(zip(keys, found))
    start = time.perf_counter()
    transfer_to = {d: defended[d] for d in ctx.spec.defenses[1:]}

    def transfer(b: int, sl: slice, xb: torch.Tensor, yb: torch.Tensor, x_adv: list[torch.Tensor]) -> Any:
        return {d: torch.stack([(predict(m, xa, batch_size_for(ctx.spec, m)) == yb).cpu() for xa in x_adv])
                for d, m in transfer_to.items()}

    n_eps = len(a.eps)
    alive = _prev_robust((prev if ctx.spec.cascade else clean)[NO_DEFENSE], n_eps)
    robust, fwd, grads, extra = _attack_batches(
        ctx, key, attack, bare, alive, batch_size_for(ctx.spec, bare),
        f"{model_name} | {a.name}", transfer if transfer_to else None)
    n_eps = len(a.eps)
    seconds = time.perf_counter() - start
    out = {NO_DEFENSE: Cell(
        key=key, model=model_name, defense=NO_DEFENSE, mode=WHITE_BOX, attack=a.name, norm=threat_norm(a),
        attack_repr=repr(attack), epsilons=a.eps, robust=_prev_robust(prev[NO_DEFENSE], n_eps) & robust,
        forwards=fwd, gradients=grads, eot_samples=eot, randomized=is_randomized(bare),
        forward_cost=forward_cost(bare), seconds=seconds)}
    for d, module in transfer_to.items():
        correct = torch.cat([extra[i][d] for i in sorted(extra)], dim=1)
        out[d] = Cell(
            key=keys[d], model=model_name, defense=d, mode=TRANSFER, attack=a.name, norm=threat_norm(a),
            attack_repr=repr(attack),
            epsilons=a.eps, robust=_prev_robust(prev[d], n_eps) & correct, forwards=fwd, gradients=grads,
            eot_samples=eot, randomized=is_randomized(module), forward_cost=forward_cost(module),
            seconds=seconds)
    ctx.save(list(out.values()))
    return out


def _adaptive_cell(
    ctx: _Context, base: dict[str, Any], model_name: str, d: str, module: nn.Module, a: AttackSpec,
    prev: Cell, clean: Cell,
) -> Cell:
    randomized = is_randomized(module)
    attack, eot = _attack_for(a, randomized, ctx.spec.eot)
    key = settings_hash({**base, "defense": d, "mode": ADAPTIVE, "attack": _attack_identity(a), "eot": eot,
                         "after": prev.key})
    found = ctx.lookup([key])
    if found is not None:
        return found[0]
    start = time.perf_counter()
    alive = _prev_robust(prev if ctx.spec.cascade else clean, len(a.eps))
    robust, fwd, grads, _ = _attack_batches(ctx, key, attack, module, alive, batch_size_for(ctx.spec, module),
                                            f"{model_name} | {d} | {a.name}")
    cell = Cell(key=key, model=model_name, defense=d, mode=ADAPTIVE, attack=a.name, norm=threat_norm(a),
                attack_repr=repr(attack),
                epsilons=a.eps, robust=_prev_robust(prev, len(a.eps)) & robust, forwards=fwd,
                gradients=grads, eot_samples=eot, randomized=randomized, forward_cost=forward_cost(module),
                seconds=time.perf_counter() - start)
    ctx.save([cell])
    return cell
