"""The benchmark spec: a TOML file read into frozen dataclasses, validated before anything runs.

A spec names the data (set, split, how many samples, drawn as a fixed subset by seed), the
models, the defenses (spec strings of :func:`bandguard.defenses.build_defense`) and the attacks
(registry names or ``"foolbox:<ClassName>"``), each with its eps list and settings::

    dataset = "mnist"
    split = "test"
    n = 500
    seed = 0
    out = "bench-out"
    defenses = ["none", "lowpass:10"]

    [[models]]
    name = "cnn"
    reference = "mnist_cnn"          # or checkpoint = "m.pt" (+ arch, num_classes), torchvision = "resnet50",
    limit = 10000                    # robustbench = "Standard", code = "pkg.mod:fn" (see ModelSpec)

    [[attacks]]
    attack = "pgd"
    eps = [0.1, 0.2, 0.3]            # or text: eps = ["4/255", "8/255"], read as on the command line
    steps = 20                       # every other key is a setting of the attack

An ImageFolder too large to hold in memory, or of images of different sizes (ImageNet), streams
instead: a ``[data]`` table replaces ``dataset`` and reads the images batch by batch for every
cell (:class:`bandguard.data.FolderSource`), with the same table as the in-memory path on the
same images::

    n = 5000

    [data]
    folder = "imagenet"              # root/<split>/<class>/<image>, resolved against the spec
    split = "val"
    resize = 256                     # shorter side, then a centre crop: the ImageNet transform
    center_crop = 224
    index = "imagenet_ids.txt"       # optional: integers or <class>/<image> paths, in order
    workers = 4                      # decoding processes

With an index list, ``n`` keeps its first ``n`` entries; without, ``n`` draws the same seeded
subset as the in-memory path.

Every error names the TOML key path (``attacks[1].eps[0]``) and what was expected; an unknown key
gets the nearest known one as a hint.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomllib

from bandguard._checks import parse_number

__all__ = ["AttackSpec", "BenchSpec", "DataSpec", "ModelSpec", "SpecError", "load_spec", "parse_spec"]

NO_DEFENSE = "none"
SPLITS = ("train", "val", "test")
NAMED_SPLITS = ("train", "test")  # MNIST's and CIFAR-10's
DEVICES = ("auto", "cpu", "cuda", "mps")
MODEL_KINDS = ("reference", "robustbench", "torchvision", "code")
"""What builds a model besides a checkpoint alone (:class:`ModelSpec`)."""
ROBUSTBENCH_DATA = ("cifar10", "cifar100", "imagenet")
ROBUSTBENCH_THREATS = ("Linf", "L2", "corruptions")


class SpecError(ValueError):
    """A spec that cannot run; the message starts with the TOML key path."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model of the spec, built by one of ``reference``, ``robustbench``, ``torchvision``,
    ``code`` or a ``checkpoint`` alone (:func:`bandguard.bench.loading.load_model`).

    Every model takes inputs in ``[0, 1]`` with its normalization inside, as RobustBench's do.

    Attributes:
        name: the label in the tables.
        reference: a recipe of :func:`bandguard.bench.zoo.reference_model` (``"mnist_cnn"``,
            ``"cifar_small_adversarial"``, ...).
        robustbench: a RobustBench model name (``"Standard"``, ``"Wong2020Fast"``), read by the
            ``robustbench`` package's own loader from ``model_dir/<dataset>/<threat_model>/<name>.pt``
            (:func:`bandguard.models.robustbench_model`; never downloaded).
        dataset, threat_model, model_dir: with ``robustbench`` only: ``"cifar10"``, ``"cifar100"``
            or ``"imagenet"`` (default: the spec's data set); ``"Linf"`` (default), ``"L2"`` or
            ``"corruptions"``; the local model folder (default ``"models"``).
        torchvision: a torchvision classifier (``"resnet50"``) behind ImageNet's normalization
            (:func:`bandguard.models.torchvision_model`), ``num_classes`` outputs (default 1000),
            weights from ``checkpoint`` (a local file) or random.
        code: ``"package.module:function"`` returning an ``nn.Module`` (runs that code), called
            with ``kwargs``; weights from ``checkpoint`` if given (any state-dict layout).
        checkpoint: a checkpoint path (resolved against the spec's folder): alone, a bandguard
            checkpoint or, with ``arch``, the state dict of a registered arch; with ``num_classes``
            too, any state-dict layout into that arch with that many outputs
            (:func:`bandguard.models.load_pretrained`). With ``torchvision`` or ``code``: their weights.
        arch: with a ``checkpoint`` alone: the registered arch to load it into.
        num_classes: outputs of ``torchvision``'s or ``arch``'s head.
        kwargs: with ``code`` only: keyword arguments of the function, sorted ``(key, value)`` pairs
            (a TOML table ``kwargs = {num_classes = 100}``).
        limit: with ``reference`` only: the recipe trained on a fixed random subset of ``limit``
            training images (``reference_model(..., limit=...)``, a quick run's model); ``None``:
            the recipe's own training set.
    """

    name: str
    reference: str | None = None
    checkpoint: str | None = None
    arch: str | None = None
    code: str | None = None
    limit: int | None = None
    robustbench: str | None = None
    dataset: str | None = None
    threat_model: str | None = None
    model_dir: str | None = None
    torchvision: str | None = None
    num_classes: int | None = None
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        """Check that the fields name one model; errors start with the field's key."""
        _string(self.name, "name")
        kinds = [k for k in MODEL_KINDS if getattr(self, k) is not None]
        if len(kinds) > 1 or (not kinds and self.checkpoint is None):
            raise SpecError(f"expected exactly one of {', '.join(MODEL_KINDS)} or a checkpoint alone, "
                            f"got {kinds or 'none'}")
        kind = kinds[0] if kinds else "checkpoint"
        for key in (*MODEL_KINDS, "checkpoint", "arch", "dataset", "threat_model", "model_dir", "torchvision"):
            if getattr(self, key) is not None:
                _string(getattr(self, key), key)
        allowed = {"reference": {"limit"}, "robustbench": {"dataset", "threat_model", "model_dir"},
                   "torchvision": {"num_classes", "checkpoint"}, "code": {"kwargs", "checkpoint"},
                   "checkpoint": {"checkpoint", "arch", "num_classes"}}[kind]
        for key in ("limit", "dataset", "threat_model", "model_dir", "num_classes", "arch", "checkpoint", "kwargs"):
            if getattr(self, key) not in (None, ()) and key not in allowed:
                if key == "limit":
                    raise SpecError(f"limit: only a 'reference' model takes a training-subset limit, not a "
                                    f"'{kind}' one")
                raise SpecError(f"{key}: not a setting of a '{kind}' model; it takes "
                                f"{', '.join(sorted(allowed)) or 'none'}")
        if self.limit is not None:
            _int(self.limit, "limit", 1)
        if self.num_classes is not None:
            _int(self.num_classes, "num_classes", 1)
            if kind == "checkpoint" and self.arch is None:
                raise SpecError("num_classes: a checkpoint with num_classes needs 'arch' (the registered "
                                "network to build)")
        if self.reference is not None:
            from bandguard.bench.zoo import RECIPES

            if self.reference not in RECIPES:
                raise SpecError(f"reference: unknown reference model {self.reference!r}; expected one of "
                                f"{', '.join(RECIPES)}")
        if self.arch is not None:
            from bandguard.models import MODELS

            if self.arch not in MODELS:
                raise SpecError(f"arch: unknown model {self.arch!r}; expected one of {', '.join(MODELS.names())}")
        if self.code is not None:
            module, sep, function = self.code.partition(":")
            if not sep or not all(p.isidentifier() for p in module.split(".")) or not function.isidentifier():
                raise SpecError(f"code: expected the form 'package.module:function', got {self.code!r}")
        if self.robustbench is not None:
            if self.dataset is None:
                raise SpecError(f"dataset: a robustbench model needs its data set, one of "
                                f"{', '.join(ROBUSTBENCH_DATA)}")
            _choice(self.dataset, ROBUSTBENCH_DATA, "dataset")
            _choice(self.threat_model or "Linf", ROBUSTBENCH_THREATS, "threat_model")
        if self.torchvision is not None:
            import torchvision

            known = torchvision.models.list_models(module=torchvision.models)
            if self.torchvision not in known:
                raise SpecError(f"torchvision: unknown torchvision model {self.torchvision!r}; expected one of "
                                f"{', '.join(sorted(known))}")
        kwargs = self.kwargs.items() if isinstance(self.kwargs, Mapping) else self.kwargs
        if not isinstance(kwargs, (tuple, list)) or not all(
                isinstance(kv, (tuple, list)) and len(kv) == 2 and isinstance(kv[0], str) and kv[0].isidentifier()
                for kv in kwargs):
            raise SpecError(f"kwargs: expected a table of keyword arguments, got {self.kwargs!r}")
        object.__setattr__(self, "kwargs", tuple(sorted((str(k), v) for k, v in kwargs)))

    @property
    def kind(self) -> str:
        """What builds the model: ``"reference"``, ``"robustbench"``, ``"torchvision"``, ``"code"``
        or ``"checkpoint"``."""
        return next((k for k in MODEL_KINDS if getattr(self, k) is not None), "checkpoint")

    def robustbench_path(self) -> Path:
        """Where RobustBench keeps this model's checkpoint: ``model_dir/<dataset>/<threat_model>/<name>.pt``."""
        return Path(self.model_dir or "models") / str(self.dataset) / (self.threat_model or "Linf") / \
            f"{self.robustbench}.pt"

    def identity(self) -> dict[str, Any]:
        """What identifies the model's weights in a cell key (a checkpoint by its content hash)."""
        out = dataclasses.asdict(self)
        for key in ("limit", "robustbench", "dataset", "threat_model", "model_dir", "torchvision", "num_classes"):
            if out[key] is None:  # absent when unset, so the cell keys of existing stores stay valid
                out.pop(key)
        if not self.kwargs:
            out.pop("kwargs")
        if self.checkpoint is not None:
            out["checkpoint"] = _file_digest(Path(self.checkpoint))
        if self.robustbench is not None:
            out.pop("model_dir", None)  # the weights, not where they lie
            path = self.robustbench_path()
            out["weights"] = _file_digest(path) if path.is_file() else None
        return out


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack: registry name (or ``foolbox:<Name>``), eps list and settings.

    Attributes:
        name: the label in the tables (default: the attack name).
        attack: ``bandguard.attacks.ATTACKS`` name or ``"foolbox:<ClassName>"``.
        eps: budgets, each >= 0, ascending.
        settings: keyword settings of the attack, sorted ``(key, value)`` pairs.
    """

    name: str
    attack: str
    eps: tuple[float, ...]
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def options(self) -> dict[str, Any]:
        """The settings as a dict."""
        return dict(self.settings)

    def build(self) -> Any:
        """The :class:`~bandguard.attacks.Attack` (all eps in one call)."""
        from bandguard.attacks import create_attack

        return create_attack(self.attack, eps=self.eps, **self.options)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The ``[data]`` table: how the ImageFolder ``BenchSpec.dataset`` streams.

    Attributes:
        resize: shorter side after resizing, or ``(height, width)``; ``None`` keeps each size.
        center_crop: centre crop side, or ``(height, width)``, after ``resize``.
        index: an index list file (resolved against the spec's folder): integers or
            ``<class>/<image>`` paths, one per line; ``None``: every image.
        workers: processes decoding batches (0: in the main process).
    """

    resize: int | tuple[int, int] | None = None
    center_crop: int | tuple[int, int] | None = None
    index: str | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        from bandguard.data.stream import check_sizes

        for key in ("resize", "center_crop"):
            object.__setattr__(self, key, _size(getattr(self, key), f"data.{key}"))
        try:
            check_sizes(self.resize, self.center_crop)
        except ValueError as err:
            raise SpecError(f"data.center_crop: {err}") from None
        if self.index is not None:
            _string(self.index, "data.index")
        _int(self.workers, "data.workers", 0)

    def identity(self) -> dict[str, Any]:
        """What fixes the streamed images (the index list by its content; ``workers`` changes nothing)."""
        index = _file_digest(Path(self.index)) if self.index is not None else None
        return {"resize": self.resize, "center_crop": self.center_crop, "index": index}


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    """A whole benchmark: data, models x defenses x attacks x eps, and where results go.

    Attributes:
        dataset, split: what :func:`bandguard.data.load_dataset` loads, into memory; with
            ``data``, the ImageFolder streamed (split ``"val"`` allowed for folders).
        data: ``None`` (in memory), or how ``dataset`` streams (:class:`DataSpec`).
        n: samples evaluated, a fixed random subset drawn with ``seed`` (``0``: the whole split);
            with an index list, its first ``n`` entries.
        batch_size: images per attack call on a model with ``forward_cost == 1``.
        sample_budget: model inputs (images x forwards per image x EOT samples) per attack call on
            a costlier defense; sets the peak memory instead of ``n``.
        memory: bytes an attack call may take, ``"4GiB"``, ``"512MiB"``, ``"2GB"`` or an int;
            ``None`` (default): half of what the device has available. Batches shrink to fit at
            the bytes per image measured once per model; never an error.
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        seed: the subset, every attack's and every randomized defense's randomness.
        out: output folder (resolved against the spec's folder).
        models, defenses, attacks: the grid; defenses always start with ``"none"``.
        eot: gradient samples per step (EOT) for attacks on a randomized model, unless the
            attack's own settings give ``eot_samples``.
        cascade: later attacks run only on samples every earlier one left robust.
        sanity: run the gradient-masking checks of :mod:`bandguard.bench.sanity`.
        sanity_n: samples the sanity probes use.
        amp: ``"off"``, ``"bf16"`` (bf16 autocast for the model's forwards, logits and input
            gradients in float32: :class:`bandguard.BF16Forward`) or ``"auto"`` (bf16 where the
            device computes it natively: CUDA with bf16, CPUs with AVX512-BF16 or AMX).
        ensemble: ``"standard"`` appends the standard ensemble of attacks, or ``None``.
        scale_invariant: append APGD-DLR to every cascade whose gradient attacks all ascend
            cross-entropy (see :func:`bandguard.bench.engine.scale_invariant_entries`); ``false``
            opts out.
    """

    dataset: str
    models: tuple[ModelSpec, ...]
    attacks: tuple[AttackSpec, ...]
    defenses: tuple[str, ...] = (NO_DEFENSE,)
    split: str = "test"
    n: int = 1000
    batch_size: int = 256
    sample_budget: int = 4096
    memory: str | int | None = None
    device: str = "auto"
    seed: int = 0
    out: str = "bench-out"
    eot: int = 10
    cascade: bool = True
    sanity: bool = True
    sanity_n: int = 64
    amp: str = "off"
    ensemble: str | None = None
    scale_invariant: bool = True
    data: DataSpec | None = None

    def __post_init__(self) -> None:
        """Validate every field, so a spec built in code or by ``dataclasses.replace`` is checked
        exactly as a TOML one; errors start with the field's TOML key path."""
        _string(self.dataset, "dataset")
        _choice(self.split, SPLITS, "split")
        if self.split not in NAMED_SPLITS and self.dataset.lower() in ("mnist", "cifar10"):
            raise SpecError(f"split: {self.dataset} has only the splits {', '.join(map(repr, NAMED_SPLITS))}, "
                            f"got {self.split!r}")
        if self.data is not None and not isinstance(self.data, DataSpec):
            raise SpecError(f"data: expected a DataSpec, got {type(self.data).__name__}")
        for key, minimum in (("n", 0), ("batch_size", 1), ("sample_budget", 1), ("seed", 0), ("sanity_n", 1),
                             ("eot", 1)):
            _int(getattr(self, key), key, minimum)
        for key in ("cascade", "sanity", "scale_invariant"):
            _bool(getattr(self, key), key)
        if self.memory is not None:
            _memory(self.memory, "memory")
        device = _string(self.device, "device")
        if device.split(":")[0] not in DEVICES:
            raise SpecError(f"device: expected one of {', '.join(DEVICES)} (or 'cuda:<index>'), got {device!r}")
        _choice(self.amp, ("off", "bf16", "auto"), "amp")
        _string(self.out, "out")
        if self.ensemble is not None:
            _choice(self.ensemble, ENSEMBLES, "ensemble")
        for key, kind in (("models", ModelSpec), ("attacks", AttackSpec)):
            items = getattr(self, key)
            if not isinstance(items, (tuple, list)) or not items:
                raise SpecError(f"{key}: expected a non-empty sequence of {kind.__name__}, got {items!r}")
            for i, item in enumerate(items):
                if not isinstance(item, kind):
                    raise SpecError(f"{key}[{i}]: expected a {kind.__name__}, got {type(item).__name__}")
            object.__setattr__(self, key, tuple(items))
        _unique([m.name for m in self.models], "models", "name")
        _unique([a.name for a in self.attacks], "attacks", "name")
        object.__setattr__(self, "defenses", _defenses(list(self.defenses) if isinstance(self.defenses, tuple)
                                                       else self.defenses))

    def data_identity(self) -> dict[str, Any]:
        """What fixes the evaluated samples (part of every cell key)."""
        out: dict[str, Any] = {"dataset": self.dataset, "split": self.split, "n": self.n, "seed": self.seed}
        if self.data is not None:  # absent in memory, so the cell keys of existing stores stay valid
            out["stream"] = self.data.identity()
        return out


def settings_hash(obj: Any) -> str:
    """A stable hex digest of plain values (JSON with sorted keys)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:24]


# --------------------------------------------------------------------------- parsing

_TOP_KEYS = {f.name for f in dataclasses.fields(BenchSpec)}
_MODEL_KEYS = {f.name for f in dataclasses.fields(ModelSpec)}
_ATTACK_KEYS = {"name", "attack", "eps"}
ENSEMBLES = ("standard",)


def load_spec(path: str | os.PathLike[str]) -> BenchSpec:
    """Read and validate a TOML spec; relative paths in it resolve against its folder.

    Args:
        path: the ``.toml`` file.

    Returns:
        The validated :class:`BenchSpec`.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from None
    return parse_spec(data, base_dir=path.parent)


def parse_spec(data: Mapping[str, Any], *, base_dir: str | os.PathLike[str] = ".") -> BenchSpec:
    """Validate a spec given as plain values (what ``tomllib`` returns); see the module docs.

    Args:
        data: the spec's keys and values; eps lists take numbers or text such as ``"8/255"``.
        base_dir: the folder relative paths (``out``, checkpoints) resolve against.

    Returns:
        The validated :class:`BenchSpec`.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"spec: expected a table, got {type(data).__name__}")
    base = Path(base_dir)
    _no_unknown(data, _TOP_KEYS, "")
    for key in ("models", "attacks"):
        if key not in data:
            raise SpecError(f"{key}: required key missing")
    kw: dict[str, Any] = {}
    if "data" in data:
        kw.update(_data_table(data, base))
    elif "dataset" not in data:
        raise SpecError("dataset: required key missing (a data set name or folder; or a [data] table with "
                        "folder = ...)")
    else:
        kw["dataset"] = _string(data["dataset"], "dataset")
    if "split" in data:
        kw["split"] = _choice(data["split"], SPLITS, "split")
    for key, minimum in (("n", 0), ("batch_size", 1), ("sample_budget", 1), ("seed", 0), ("sanity_n", 1),
                         ("eot", 1)):
        if key in data:
            kw[key] = _int(data[key], key, minimum)
    for key in ("cascade", "sanity", "scale_invariant"):
        if key in data:
            kw[key] = _bool(data[key], key)
    if "device" in data:
        device = _string(data["device"], "device")
        if device.split(":")[0] not in DEVICES:
            raise SpecError(f"device: expected one of {', '.join(DEVICES)} (or 'cuda:<index>'), got {device!r}")
        kw["device"] = device
    if "amp" in data:
        kw["amp"] = _choice(data["amp"], ("off", "bf16", "auto"), "amp")
    if "memory" in data:
        kw["memory"] = _memory(data["memory"], "memory")
    if "out" in data:
        kw["out"] = str(base / _string(data["out"], "out"))
    else:
        kw["out"] = str(base / "bench-out")
    if "ensemble" in data:
        kw["ensemble"] = _choice(data["ensemble"], ENSEMBLES, "ensemble")
    kw["models"] = _models(data["models"], base, kw["dataset"])
    kw["defenses"] = _defenses(data.get("defenses", [NO_DEFENSE]))
    kw["attacks"] = _attacks(data["attacks"])
    return BenchSpec(**kw)


_DATA_KEYS = {"folder", "split", "resize", "center_crop", "index", "workers"}


def _data_table(data: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """The ``[data]`` table as ``BenchSpec`` keywords: ``dataset`` (the folder), ``split``, ``data``."""
    table = data["data"]
    if not isinstance(table, Mapping):
        raise SpecError(f"data: expected a table ([data]), got {type(table).__name__}")
    _no_unknown(table, _DATA_KEYS, "data")
    if "dataset" in data:
        raise SpecError("dataset: give either dataset (in memory) or a [data] table (streamed), not both")
    if "folder" not in table:
        raise SpecError("data.folder: required key missing (an ImageFolder directory)")
    folder = base / _string(table["folder"], "data.folder")
    if not folder.is_dir():
        raise SpecError(f"data.folder: folder {str(folder)!r} does not exist")
    kw: dict[str, Any] = {"dataset": str(folder)}
    if "split" in table:
        if "split" in data:
            raise SpecError("data.split: give split in [data] or at the top, not both")
        kw["split"] = _choice(table["split"], SPLITS, "data.split")
    fields: dict[str, Any] = {k: table[k] for k in ("resize", "center_crop", "workers") if k in table}
    if "index" in table:
        index = base / _string(table["index"], "data.index")
        if not index.is_file():
            raise SpecError(f"data.index: file {str(index)!r} does not exist")
        fields["index"] = str(index)
    kw["data"] = DataSpec(**fields)
    return kw


def _models(value: Any, base: Path, dataset: str) -> tuple[ModelSpec, ...]:
    items = _table_list(value, "models")
    out = []
    for i, item in enumerate(items):
        where = f"models[{i}]"
        _no_unknown(item, _MODEL_KEYS, where)
        fields = {k: v for k, v in item.items() if k != "name"}
        if "kwargs" in fields and not isinstance(fields["kwargs"], Mapping):
            raise SpecError(f"{where}.kwargs: expected a table of keyword arguments, got {fields['kwargs']!r}")
        if "kwargs" in fields:
            fields["kwargs"] = tuple(fields["kwargs"].items())
        if "robustbench" in fields and "dataset" not in fields and dataset in ROBUSTBENCH_DATA:
            fields["dataset"] = dataset  # RobustBench's data set is the spec's
        for key in ("checkpoint", "model_dir"):  # paths resolve against the spec's folder
            if isinstance(fields.get(key), str) and fields[key].strip():
                fields[key] = str(base / fields[key].strip())
        kind = next((k for k in (*MODEL_KINDS, "checkpoint") if k in fields), "reference")
        text = fields.get(kind)
        name = item["name"] if "name" in item else (Path(text).stem or text if isinstance(text, str) else text)
        try:
            spec = ModelSpec(name=name, **fields)
        except SpecError as err:
            field = str(err).partition(":")[0]
            raise SpecError(f"{where}.{err}" if field in _MODEL_KEYS else f"{where}: {err}") from None
        if spec.checkpoint is not None and not Path(spec.checkpoint).is_file():
            raise SpecError(f"{where}.checkpoint: file {spec.checkpoint!r} does not exist")
        out.append(spec)
    _unique([m.name for m in out], "models", "name")
    return tuple(out)


def _defenses(value: Any) -> tuple[str, ...]:
    """The defense spec strings checked, ``"none"`` first (where the list gives it, it is skipped)."""
    from bandguard.defenses import check_defense_spec

    if not isinstance(value, list):
        raise SpecError(f"defenses: expected a list of defense spec strings, got {type(value).__name__}")
    out = [NO_DEFENSE]
    for i, spec in enumerate(value):
        where = f"defenses[{i}]"
        text = _string(spec, where)
        if text == NO_DEFENSE:
            continue
        try:
            check_defense_spec(text)
        except ValueError as err:
            raise SpecError(f"{where}: {err}") from None
        out.append(text)
    _unique(out, "defenses", None)
    return tuple(out)


def _attacks(value: Any) -> tuple[AttackSpec, ...]:
    items = _table_list(value, "attacks")
    out = []
    for i, item in enumerate(items):
        where = f"attacks[{i}]"
        if "attack" not in item:
            raise SpecError(f"{where}.attack: required key missing (a registry name or 'foolbox:<ClassName>')")
        name = _string(item["attack"], f"{where}.attack")
        if "eps" not in item:
            raise SpecError(f"{where}.eps: required key missing (a list of budgets >= 0)")
        eps = _eps(item["eps"], f"{where}.eps")
        settings = {k: v for k, v in item.items() if k not in _ATTACK_KEYS}
        spec = AttackSpec(
            name=_string(item["name"], f"{where}.name") if "name" in item else name,
            attack=name, eps=eps, settings=tuple(sorted(settings.items())),
        )
        try:
            spec.build()
        except (ValueError, TypeError, ImportError) as err:
            raise SpecError(f"{where}: {err}") from None
        out.append(spec)
    _unique([a.name for a in out], "attacks", "name")
    return tuple(out)


# --------------------------------------------------------------------------- scalar checks


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(f"{prefix}{unknown[0]}: unknown key{hint}; expected one of {', '.join(sorted(known))}")


def _table_list(value: Any, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where}: expected a non-empty array of tables ([[{where}]]), got {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise SpecError(f"{where}[{i}]: expected a table, got {type(item).__name__}")
    return value


def _unique(names: list[str], where: str, key: str | None) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            path = f"{where}[{i}].{key}" if key else f"{where}[{i}]"
            raise SpecError(f"{path}: duplicate {name!r}; names must be unique")
        seen.add(name)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    text = _string(value, where)
    if text not in choices:
        raise SpecError(f"{where}: expected one of {', '.join(map(repr, choices))}, got {text!r}")
    return text


def _int(value: Any, where: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpecError(f"{where}: expected an integer, got {value!r}")
    if value < minimum:
        raise SpecError(f"{where}: expected an integer >= {minimum}, got {value}")
    return value


def _size(value: Any, where: str) -> int | tuple[int, int] | None:
    """``None``, a side >= 1, or a ``[height, width]`` pair of them."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise SpecError(f"{where}: expected an integer or a [height, width] pair, got {list(value)!r}")
        return (_int(value[0], f"{where}[0]", 1), _int(value[1], f"{where}[1]", 1))
    return _int(value, where, 1)


def _memory(value: Any, where: str) -> str | int:
    from bandguard._memory import parse_memory

    try:
        parse_memory(value, where)
    except (TypeError, ValueError) as err:
        raise SpecError(str(err)) from None
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{where}: expected true or false, got {value!r}")
    return value


def _eps(value: Any, where: str) -> tuple[float, ...]:
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where}: expected a non-empty list of numbers >= 0, got {value!r}")
    out = []
    for j, v in enumerate(value):
        if isinstance(v, str):  # "8/255": the command line's reading (bandguard._checks.parse_number)
            try:
                v = parse_number(v, f"{where}[{j}]")
            except ValueError:
                raise SpecError(f"{where}[{j}]: expected a number >= 0 like 0.03 or \"8/255\", got {v!r}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise SpecError(f"{where}[{j}]: expected a finite number >= 0, got {v!r}")
        out.append(float(v))
    if out != sorted(out) or len(set(out)) != len(out):
        raise SpecError(f"{where}: expected strictly increasing budgets, got {out}")
    return tuple(out)


def ensemble_spec(spec: BenchSpec) -> AttackSpec:
    """The ``ensemble = "standard"`` attack on the first attack's eps list and norm.

    Built by the attack registry's ``"standard"`` (``bandguard.attacks.standard_ensemble``).
    """
    first = spec.attacks[0]
    norm = str(first.options.get("norm", "linf"))
    return AttackSpec(name="standard", attack="standard", eps=first.eps, settings=(("norm", norm),))
