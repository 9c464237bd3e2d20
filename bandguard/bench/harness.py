"""The benchmark harness's two entry points: a TOML spec (:func:`run`) and objects in memory
(:func:`evaluate_robustness`).

Both build the same cells the same way through the cell engine (:mod:`bandguard.bench.engine`:
clean, white-box, transfer and adaptive cells, one cascade per threat model, worst case per sample)
and return a :class:`~bandguard.bench.results.BenchResult`; both add, by default, a scale-invariant
attack (APGD-DLR) to every cascade whose gradient attacks all ascend cross-entropy, and both can run
the same gradient-masking checks (:func:`bandguard.bench.sanity.run_checks`). Loading models,
defenses, devices and samples lives in :mod:`bandguard.bench.loading`.

With a spec, each finished cell is one transaction in the SQLite store
(:mod:`bandguard.bench.results`) keyed by a hash of everything that determines it; a rerun
computes only missing cells.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bandguard._amp import BF16Forward, native_bf16
from bandguard._checks import (
    check_bool,
    check_callable,
    check_device,
    check_images,
    check_int,
    check_labels,
    check_model,
    check_output_path,
    check_seed,
)
from bandguard._memory import resolve_memory
from bandguard._progress import Bars, announce_estimate
from bandguard.attacks.protocol import Attack
from bandguard.bench.cost import estimate_grid_seconds
from bandguard.bench.distributed import Shard, init_from_env, local_device
from bandguard.bench.engine import (
    FORMAT,
    Context,
    Entry,
    Progress,
    batch_size_for,
    predict,
    run_model,
    scale_invariant_entries,
    threat_chains,
)
from bandguard.bench.loading import (
    build_defense,
    check_model_fits,
    load_model,
    load_samples,
    load_source,
    resolve_device,
)
from bandguard.bench.results import BenchResult, Cell, Flag, ResultStore
from bandguard.bench.sanity import run_checks
from bandguard.bench.spec import NO_DEFENSE, AttackSpec, BenchSpec, ModelSpec, ensemble_spec, load_spec, settings_hash
from bandguard.data.stream import Samples, StreamSamples, TensorSamples, as_samples

__all__ = [
    "FORMAT",
    "Progress",
    "batch_size_for",
    "build_defense",
    "check_model_fits",
    "evaluate_robustness",
    "load_model",
    "load_samples",
    "load_source",
    "predict",
    "resolve_device",
    "run",
    "threat_chains",
]


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return fallback


def _check_grid(model: object, x: object, y: object, attacks: object, defenses: object,
                num_workers: object) -> tuple[Samples, dict[str, nn.Module]]:
    """The in-memory grid's arguments, checked once: ``(samples, {label: module}, the bare one first)``."""
    model = check_model(model)
    if not isinstance(attacks, Mapping) or not attacks:
        hint = ""
        if isinstance(y, Mapping) and attacks is None:
            hint = "; with a data source pass them by keyword: evaluate_robustness(model, data, attacks={...})"
        raise TypeError(f"attacks must be a non-empty mapping of name -> Attack, got {attacks!r}{hint}")
    for name, attack in attacks.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"attack names must be non-empty strings, got {name!r}")
        if not isinstance(attack, Attack):
            raise TypeError(f"attacks[{name!r}] must be a bandguard Attack, got {type(attack).__name__}")
    data: Samples
    if isinstance(x, torch.Tensor):
        for attack in attacks.values():
            x = check_images(x, "x", bounds=attack.bounds)
        data = TensorSamples(x, check_labels(y, x, "y"))  # type: ignore[arg-type]
    else:  # a stream: every batch is checked as it arrives, against every attack's bounds
        lo = max(a.bounds[0] for a in attacks.values())
        hi = min(a.bounds[1] for a in attacks.values())
        data = dataclasses.replace(as_samples(x, y, num_workers=num_workers), bounds=(lo, hi))
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
    return data, {NO_DEFENSE: model, **defenses}  # type: ignore[return-value]


def _probe(data: Samples) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What :func:`check_model_fits` reads: tensors with every label (checked at once), or one sample
    of a stream (whose labels are checked batch by batch against the model's classes)."""
    if isinstance(data, TensorSamples):
        return data.x, data.y
    return data.head(1)[0], None


def _with_classes(data: Samples, num_classes: int) -> Samples:
    """A stream that checks its labels against ``num_classes``; tensors as they are."""
    return dataclasses.replace(data, num_classes=num_classes) if isinstance(data, StreamSamples) else data


def _sanity(ctx: Context, defended: Mapping[str, nn.Module], entries: list[Entry], cells: list[Cell],
            sanity_n: int, num_classes: int) -> list[Flag]:
    """The checks on the first ``sanity_n`` samples, torch's global randomness fixed and restored."""
    x, y = ctx.data.head(min(sanity_n, ctx.n))
    x, y = x.to(ctx.device), y.to(ctx.device)
    key = settings_hash({"sanity": 4, "cells": sorted(c.key for c in cells), "n": sanity_n})
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        torch.manual_seed(int(key[:8], 16))
        return run_checks(defended, {e.name: e.attack for e in entries}, cells, x, y, num_classes=num_classes,
                          eot=ctx.eot)


def evaluate_robustness(
    model: nn.Module,
    x: torch.Tensor | Dataset | DataLoader,
    y: torch.Tensor | None = None,
    attacks: Mapping[str, Attack] | None = None,
    *,
    defenses: Mapping[str, nn.Module] | None = None,
    name: str = "model",
    batch_size: int = BenchSpec.batch_size,
    sample_budget: int = BenchSpec.sample_budget,
    memory: int | str | None = BenchSpec.memory,
    eot: int = BenchSpec.eot,
    cascade: bool = BenchSpec.cascade,
    scale_invariant: bool = BenchSpec.scale_invariant,
    sanity: bool = False,
    sanity_n: int = BenchSpec.sanity_n,
    seed: int = BenchSpec.seed,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    progress: Progress | bool | None = None,
) -> BenchResult:
    """The harness on tensors or a data source, and objects in memory: clean, white-box, transfer, adaptive, worst case.

    The same cells as :func:`run` computes for one model of a spec (and, for the same samples,
    seed and labels, the same per-sample outcomes): the attacks run in order as a cascade per
    threat model (see :func:`~bandguard.bench.engine.threat_chains`), each eps only on samples still
    robust, a sample broken at a smaller eps carried over; the worst case per sample closes each
    cascade. Every defense gets transfer cells (examples crafted on ``model``) and adaptive cells
    (the attacks through it, with ``eot`` gradient samples per step where it declares
    ``randomized`` and the attack leaves ``eot_samples`` unset; Athalye et al. 1802.00420).
    Nothing is stored. The caller's model and defenses are not moved or changed.

    Args:
        model: the bare classifier, images in the attacks' bounds -> logits ``[N, classes]``.
        x: images ``[N, C, H, W]`` (any device; moved to ``device`` batch by batch), or a data
            source streamed batch by batch and read again for every cell, so that memory does not
            grow with its size: a :class:`~bandguard.data.FolderSource` (an ImageFolder with
            ``resize``/``center_crop``, a split such as ``"val"``, an index list), any map-style
            ``Dataset`` of ``(image [C, H, W], label)`` items, an ``IterableDataset``, or a
            ``DataLoader`` that does not shuffle (see :func:`~bandguard.data.as_samples`). The
            same images give the same table either way.
        y: int64 labels ``[N]`` with tensors; ``None`` with a data source (its items carry them).
        attacks: label -> attack (e.g. ``{"pgd": PGD(eps=(0.1, 0.3))}``), run in this order;
            pass it by keyword after a data source (``attacks={...}``).
        defenses: label -> defended module wrapping ``model`` (e.g. from
            :func:`bandguard.defenses.build_defense`); ``"none"`` is the bare model's label.
        name: the model's label in the table.
        batch_size: images per attack call on a model with ``forward_cost == 1``.
        sample_budget: model inputs per attack call on a costlier defense (``sample_budget //
            forward_cost`` images, at most ``batch_size``).
        memory: bytes an attack call may take (``"4GiB"``, ``"512MiB"``, ``"2GB"`` or an int);
            ``None``: half of what ``device`` has available now. Batches shrink to fit at the
            bytes per image measured once per module (:func:`bandguard.bench.engine.bytes_per_image`);
            a request over budget runs in smaller batches, never fails.
        eot: gradient samples per step against randomized models (see above).
        cascade: later attacks run only on samples every earlier one left robust.
        scale_invariant: append APGD-DLR (``"apgd-dlr"``) to every cascade whose gradient attacks
            all ascend cross-entropy, so logits scaled until the softmax saturates cannot pass for
            robustness (Croce and Hein 2003.01690); ``False`` runs the attacks as given.
        sanity: run the gradient-masking checks of :mod:`bandguard.bench.sanity` on the first
            ``sanity_n`` samples; their flags go into the rows of the cells they were measured on.
        sanity_n: samples the sanity probes use.
        seed: every attack's and every randomized defense's randomness.
        device: where batches run; ``None``: the model's device.
        num_workers: processes decoding a ``Dataset``'s batches (a ``DataLoader`` keeps its own).
        progress: ``True`` draws a tqdm bar per cell (:class:`bandguard._progress.Bars`); a
            callable is called as ``progress(description, images_done)`` after every batch;
            ``None``/``False``: silent. Either way an estimate of the run time (an upper bound
            from the declared forward costs) goes to the ``bandguard.progress`` logger first, as
            a warning above 10 minutes.

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
    data, defended = _check_grid(model, x, y, attacks, defenses, num_workers)
    where = data.x.device if isinstance(data, TensorSamples) else torch.device("cpu")
    dev = check_device(device) if device is not None else _model_device(model, where)
    if isinstance(data, StreamSamples) and dev.type == "cuda":
        data = dataclasses.replace(data, pin_memory=True)
    attacks = dict(attacks)  # type: ignore[arg-type]
    settings = {"batch_size": check_int(batch_size, "batch_size", minimum=1),
                "sample_budget": check_int(sample_budget, "sample_budget", minimum=1),
                "eot": check_int(eot, "eot", minimum=1), "cascade": check_bool(cascade, "cascade"),
                "seed": check_seed(seed)}
    sanity_n = check_int(sanity_n, "sanity_n", minimum=1)
    budget = resolve_memory(memory, dev)
    px, py = _probe(data)
    num_classes = check_model_fits(model, px, py, dev, labels="y")
    for label, module in defended.items():
        if label != NO_DEFENSE:  # a "defense" without a model inside returns images, not logits
            check_model_fits(module, px, py, dev, labels="y", what=f"defenses[{label!r}]")
    callback, bars = _progress(progress, len(data))
    ctx = Context(data=_with_classes(data, num_classes), device=dev, progress=callback, memory=budget, **settings)
    entries = [Entry(label, a, {"name": label, "attack": repr(a)}) for label, a in attacks.items()]
    if scale_invariant:
        entries = scale_invariant_entries(entries, ctx.shape, num_classes, settings["seed"])
    base = {"format": FORMAT, "model": name, "n": ctx.n, **settings}
    _announce(ctx, name, defended, entries)
    try:
        cells = run_model(ctx, base, name, defended, entries)
    finally:
        if bars is not None:
            bars.close()
    flags = _sanity(ctx, defended, entries, cells, sanity_n, num_classes) if sanity else []
    grid = {"model": name, "n": ctx.n, **settings, "scale_invariant": scale_invariant, "sanity": sanity,
            "sanity_n": sanity_n, "attacks": {e.name: repr(e.attack) for e in entries},
            "defenses": {label: repr(module) for label, module in defended.items() if label != NO_DEFENSE}}
    return BenchResult.from_cells(grid, cells, flags, seconds=time.perf_counter() - start, device=str(dev),
                                  computed=ctx.computed, reused=0)


def run(
    spec: BenchSpec | str | os.PathLike[str],
    *,
    force: bool = False,
    progress: Progress | bool | None = None,
    shard: Shard | None = None,
) -> BenchResult:
    """Run a benchmark spec; only cells missing from its store are computed.

    Args:
        spec: a :class:`BenchSpec` or the path of a TOML spec.
        force: recompute every cell (stored ones are replaced).
        progress: ``True`` draws a tqdm bar per cell; a callable is called as
            ``progress(description, images_done)`` after every batch; ``None``/``False``: silent.
            Each model's estimated run time goes to the ``bandguard.progress`` logger first.
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
    callback, bars = _progress(progress, spec.n or None)
    start = time.perf_counter()
    device = resolve_device(spec.device)
    owns_group = shard is None and not (dist.is_available() and dist.is_initialized())
    shard = shard or init_from_env(device)
    device = local_device(device)
    out = Path(spec.out)
    store = ResultStore(out / "results.sqlite") if shard.is_main else None
    data, num_classes = load_source(spec, pin_memory=device.type == "cuda")
    px, py = _probe(data)
    ctx = Context(data=data, device=device, batch_size=spec.batch_size, sample_budget=spec.sample_budget,
                  eot=spec.eot, cascade=spec.cascade, seed=spec.seed, shard=shard, store=store, force=force,
                  progress=callback, memory=resolve_memory(spec.memory, device))
    entries = [Entry(a.name, a.build(), _attack_identity(a)) for a in _attack_list(spec)]
    cells: list[Cell] = []
    flags: list[Flag] = []
    try:
        for model_spec in spec.models:
            model = load_model(model_spec, device)
            classes = check_model_fits(model, px, py, device)
            ctx.data = _with_classes(data, classes)
            if spec.amp == "bf16" or (spec.amp == "auto" and native_bf16(device)):
                model = BF16Forward(model)
            defended = {d: build_defense(d, model).to(device) for d in spec.defenses}
            model_entries = entries
            if spec.scale_invariant:
                model_entries = scale_invariant_entries(entries, ctx.shape, classes, spec.seed)
            _announce(ctx, model_spec.name, defended, model_entries)
            model_cells = run_model(ctx, _model_key(spec, model_spec), model_spec.name, defended, model_entries)
            cells.extend(model_cells)
            if spec.sanity:
                flags.extend(_stored_sanity(ctx, spec, defended, model_entries, model_cells, num_classes))
    finally:
        if store is not None:
            store.close()
        if bars is not None:
            bars.close()
    result = BenchResult.from_cells(spec, cells, flags, seconds=time.perf_counter() - start,
                                    device=str(device), computed=ctx.computed, reused=ctx.reused)
    if shard.is_main:
        from bandguard.bench.results import write_reports

        write_reports(result, out)
    shard.barrier()
    if owns_group and shard.world > 1:
        dist.destroy_process_group()
    return result


def _stored_sanity(ctx: Context, spec: BenchSpec, defended: Mapping[str, nn.Module], entries: list[Entry],
                   cells: list[Cell], num_classes: int) -> list[Flag]:
    """The sanity flags of one model: rank 0 computes them (or reads them from the store), every rank
    gets them."""
    key = settings_hash({"sanity": 4, "cells": sorted(c.key for c in cells), "n": spec.sanity_n})
    flags = None
    if ctx.shard.is_main:
        if ctx.store is not None and not ctx.force:
            flags = ctx.store.get_flags(key)
        if flags is not None and any(not f.mode for f in flags):
            flags = None  # stored before flags named their rows' mode: the same probes, rerun
        if flags is None:
            flags = _sanity(ctx, defended, entries, cells, spec.sanity_n, num_classes)
            if ctx.store is not None:
                ctx.store.put_flags(key, flags)
    return list(ctx.shard.broadcast(flags))


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


def _progress(progress: object, total: int | None) -> tuple[Progress | None, Bars | None]:
    """The batch callback ``progress`` asks for and the bars to close after the run, if owned."""
    if progress is None or progress is False:
        return None, None
    if progress is True:
        bars = Bars(total, progress=True)
        return bars, bars
    check_callable(progress, "progress", "progress(description, images_done), True, False or None")
    return progress, None  # type: ignore[return-value]


def _announce(ctx: Context, name: str, defended: Mapping[str, nn.Module], entries: Sequence[Entry]) -> None:
    """Log the estimated run time of one model's cells (rank 0 only)."""
    if not ctx.shard.is_main:
        return
    first, _ = next(iter(ctx.data.batches([slice(0, min(32, ctx.n))])))
    sample = first.to(ctx.device)
    seconds = estimate_grid_seconds(next(iter(defended.values())), defended, [e.attack for e in entries], sample,
                                    ctx.n, ctx.eot)
    stored = ctx.store is not None and not ctx.force and bool(ctx.store.keys())
    what = (f"{name} ({len(defended)} model variants x {len(entries)} attacks on {ctx.n} images"
            + ("; stored cells are reused" if stored else "") + ")")
    announce_estimate(seconds, what, hint="fewer images (-n), fewer eps or steps, or a GPU")
