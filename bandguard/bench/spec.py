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
    reference = "mnist_cnn"          # or checkpoint = "m.pt" (+ arch), or code = "pkg.mod:fn"
    limit = 10000                    # optional, reference only: trained on a random training subset

    [[attacks]]
    attack = "pgd"
    eps = [0.1, 0.2, 0.3]            # or text: eps = ["4/255", "8/255"], read as on the command line
    steps = 20                       # every other key is a setting of the attack

Every error names the TOML key path (``attacks[1].eps[0]``) and what was expected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomllib

from bandguard._checks import parse_number

__all__ = ["AttackSpec", "BenchSpec", "ModelSpec", "SpecError", "load_spec", "parse_spec"]

NO_DEFENSE = "none"
DEVICES = ("auto", "cpu", "cuda", "mps")


class SpecError(ValueError):
    """A spec that cannot run; the message starts with the TOML key path."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model of the spec: exactly one of ``reference``, ``checkpoint`` or ``code``.

    Attributes:
        name: the label in the tables.
        reference: a recipe of :func:`bandguard.bench.zoo.reference_model` (``"mnist_cnn"``,
            ``"cifar_small_adversarial"``, ...).
        checkpoint: a checkpoint path (resolved against the spec's folder).
        arch: with ``checkpoint``: the registered arch a bare state dict loads into (optional).
        code: ``"package.module:function"`` returning an ``nn.Module`` (runs that code).
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

    def identity(self) -> dict[str, Any]:
        """What identifies the model's weights in a cell key (a checkpoint by its content hash)."""
        out = dataclasses.asdict(self)
        if self.limit is None:  # absent when unset, so the cell keys of existing stores stay valid
            out.pop("limit")
        if self.checkpoint is not None:
            out["checkpoint"] = _file_digest(Path(self.checkpoint))
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
class BenchSpec:
    """A whole benchmark: data, models x defenses x attacks x eps, and where results go.

    Attributes:
        dataset, split: what :func:`bandguard.data.load_dataset` loads.
        n: samples evaluated, a fixed random subset drawn with ``seed`` (``0``: the whole split).
        batch_size: images per attack call on a model with ``forward_cost == 1``.
        sample_budget: model inputs (images x forwards per image x EOT samples) per attack call on
            a costlier defense; sets the peak memory instead of ``n``.
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

    def __post_init__(self) -> None:
        """Validate every field, so a spec built in code or by ``dataclasses.replace`` is checked
        exactly as a TOML one; errors start with the field's TOML key path."""
        _string(self.dataset, "dataset")
        _choice(self.split, ("train", "test"), "split")
        for key, minimum in (("n", 0), ("batch_size", 1), ("sample_budget", 1), ("seed", 0), ("sanity_n", 1),
                             ("eot", 1)):
            _int(getattr(self, key), key, minimum)
        for key in ("cascade", "sanity", "scale_invariant"):
            _bool(getattr(self, key), key)
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
        return {"dataset": self.dataset, "split": self.split, "n": self.n, "seed": self.seed}


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
    for key in ("dataset", "models", "attacks"):
        if key not in data:
            raise SpecError(f"{key}: required key missing")
    kw: dict[str, Any] = {}
    kw["dataset"] = _string(data["dataset"], "dataset")
    if "split" in data:
        kw["split"] = _choice(data["split"], ("train", "test"), "split")
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
    if "out" in data:
        kw["out"] = str(base / _string(data["out"], "out"))
    else:
        kw["out"] = str(base / "bench-out")
    if "ensemble" in data:
        kw["ensemble"] = _choice(data["ensemble"], ENSEMBLES, "ensemble")
    kw["models"] = _models(data["models"], base)
    kw["defenses"] = _defenses(data.get("defenses", [NO_DEFENSE]))
    kw["attacks"] = _attacks(data["attacks"])
    return BenchSpec(**kw)


def _models(value: Any, base: Path) -> tuple[ModelSpec, ...]:
    from bandguard.bench.zoo import RECIPES
    from bandguard.models import MODELS

    items = _table_list(value, "models")
    out = []
    for i, item in enumerate(items):
        where = f"models[{i}]"
        _no_unknown(item, _MODEL_KEYS, where)
        given = [k for k in ("reference", "checkpoint", "code") if k in item]
        if len(given) != 1:
            raise SpecError(
                f"{where}: expected exactly one of 'reference', 'checkpoint', 'code', got {given or 'none'}")
        kind = given[0]
        text = _string(item[kind], f"{where}.{kind}")
        fields: dict[str, Any] = {kind: text}
        if "arch" in item:
            arch = _string(item["arch"], f"{where}.arch")
            if arch not in MODELS:
                raise SpecError(f"{where}.arch: unknown model {arch!r}; expected one of {', '.join(MODELS.names())}")
            fields["arch"] = arch
        if kind == "reference" and text not in RECIPES:
            raise SpecError(
                f"{where}.reference: unknown reference model {text!r}; expected one of {', '.join(RECIPES)}")
        if "limit" in item:
            if kind != "reference":
                raise SpecError(f"{where}.limit: only a 'reference' model takes a training-subset limit, "
                                f"not a '{kind}' one")
            fields["limit"] = _int(item["limit"], f"{where}.limit", 1)
        if kind == "checkpoint":
            path = base / text
            if not path.is_file():
                raise SpecError(f"{where}.checkpoint: file {str(path)!r} does not exist")
            fields["checkpoint"] = str(path)
        if kind == "code":
            module, sep, function = text.partition(":")
            if not sep or not all(p.isidentifier() for p in module.split(".")) or not function.isidentifier():
                raise SpecError(f"{where}.code: expected 'package.module:function', got {text!r}")
        name = _string(item["name"], f"{where}.name") if "name" in item else Path(text).stem or text
        out.append(ModelSpec(name=name, **fields))
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
        raise SpecError(f"{prefix}{unknown[0]}: unknown key; expected one of {', '.join(sorted(known))}")


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
