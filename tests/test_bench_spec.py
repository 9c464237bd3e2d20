"""The benchmark spec: parsed into frozen dataclasses, every error names the TOML key path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bandguard.bench.spec import BenchSpec, SpecError, load_spec, parse_spec

SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"


def _spec(**overrides: object) -> dict:
    base = {
        "dataset": "mnist",
        "n": 10,
        "defenses": ["lowpass:10"],
        "models": [{"name": "cnn", "reference": "mnist_cnn"}],
        "attacks": [{"attack": "pgd", "eps": [0.1, 0.2], "steps": 3}],
    }
    base.update(overrides)
    return base


def test_valid_spec_parses_to_frozen_dataclasses(tmp_path: Path) -> None:
    spec = parse_spec(_spec(), base_dir=tmp_path)
    assert isinstance(spec, BenchSpec)
    assert spec.defenses == ("none", "lowpass:10")
    assert spec.attacks[0].eps == (0.1, 0.2)
    assert spec.attacks[0].options == {"steps": 3}
    assert spec.out == str(tmp_path / "bench-out")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.n = 3  # type: ignore[misc]


def test_example_spec_is_valid() -> None:
    spec = load_spec(SPECS / "mnist_defenses.toml")
    assert [a.attack for a in spec.attacks] == ["pgd", "fourier"]
    # "none" first, then the file's three defenses in its order, each parsed and checked.
    assert spec.defenses == ("none", "lowpass:10", "post_average:3.0,K=15", "smooth:0.25")
    quick = load_spec(SPECS / "mnist_linf.toml")  # the demo's "next": text eps read as on the command line
    assert quick.attacks[1].eps == (0.1, 0.2, 0.3) == quick.attacks[0].eps and quick.n == 200


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"colour": "red"}, r"^colour: unknown key"),
        ({"n": "ten"}, r"^n: expected an integer, got 'ten'"),
        ({"n": -1}, r"^n: expected an integer >= 0"),
        ({"batch_size": True}, r"^batch_size: expected an integer"),
        ({"device": "tpu"}, r"^device: expected one of"),
        ({"split": "valid"}, r"^split: expected one of 'train', 'val', 'test', got 'valid'"),
        ({"cascade": 1}, r"^cascade: expected true or false"),
        ({"defenses": ["lowpass:10", "blur:3"]}, r"^defenses\[1\]: unknown defense 'blur'"),
        ({"defenses": "lowpass:10"}, r"^defenses: expected a list"),
        ({"models": [{"name": "a", "reference": "vgg99"}]},
         r"^models\[0\]\.reference: unknown reference model 'vgg99'"),
        ({"models": [{"name": "a", "checkpoint": "missing.pt"}]},
         r"^models\[0\]\.checkpoint: file .* does not exist"),
        ({"models": [{"name": "a", "code": "not a target"}]},
         r"^models\[0\]\.code: expected the form 'package.module:function'"),
        ({"models": [{"name": "a"}]}, r"^models\[0\]: expected exactly one of"),
        ({"models": [{"name": "a", "reference": "mnist_cnn", "size": 3}]}, r"^models\[0\]\.size: unknown key"),
        ({"models": [{"name": "a", "reference": "mnist_cnn", "limit": 0}]},
         r"^models\[0\]\.limit: expected an integer >= 1, got 0"),
        ({"models": [{"name": "a", "reference": "mnist_cnn", "limit": 1e4}]},
         r"^models\[0\]\.limit: expected an integer"),
        ({"models": [{"name": "a", "code": "pkg.mod:fn", "limit": 100}]},
         r"^models\[0\]\.limit: only a 'reference' model takes"),
        ({"models": []}, r"^models: expected a non-empty array"),
        ({"attacks": [{"attack": "pgd", "eps": [0.1, -0.2]}]},
         r"^attacks\[0\]\.eps\[1\]: expected a finite number >= 0"),
        ({"attacks": [{"attack": "pgd", "eps": [0.2, 0.1]}]}, r"^attacks\[0\]\.eps: expected strictly increasing"),
        ({"attacks": [{"attack": "pgd", "eps": ["8/0"]}]}, r"^attacks\[0\]\.eps\[0\]: expected a number >= 0 like"),
        ({"attacks": [{"attack": "pgd", "eps": ["-1/255"]}]}, r"^attacks\[0\]\.eps\[0\]: expected a finite number"),
        ({"attacks": [{"attack": "pgd"}]}, r"^attacks\[0\]\.eps: required key missing"),
        ({"attacks": [{"attack": "zoo", "eps": [0.1]}]}, r"^attacks\[0\]: unknown attack 'zoo'"),
        ({"attacks": [{"attack": "pgd", "eps": [0.1], "stepz": 3}]},
         r"^attacks\[0\]: attack 'pgd' takes no option 'stepz'"),
        ({"attacks": [{"attack": "pgd", "eps": [0.1], "steps": -1}]}, r"^attacks\[0\]: .*steps"),
        ({"attacks": [{"attack": "pgd", "eps": [0.1]}, {"attack": "pgd", "eps": [0.2]}]},
         r"^attacks\[1\]\.name: duplicate 'pgd'"),
    ],
)
def test_errors_name_the_key_path(overrides: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(_spec(**overrides), base_dir=tmp_path)


def test_missing_required_key() -> None:
    data = _spec()
    del data["attacks"]
    with pytest.raises(SpecError, match=r"^attacks: required key missing"):
        parse_spec(data)


def test_load_spec_reports_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("dataset = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)


def test_limit_names_a_subset_trained_reference_in_the_cell_key(tmp_path: Path) -> None:
    full, quick = parse_spec(_spec(models=[{"name": "a", "reference": "mnist_cnn"},
                                           {"name": "b", "reference": "mnist_cnn", "limit": 10_000}]),
                             base_dir=tmp_path).models
    assert (full.limit, quick.limit) == (None, 10_000)
    # Unset, the key is absent, so the stores of specs written before `limit` existed stay valid.
    assert full.identity() == {"name": "a", "reference": "mnist_cnn", "checkpoint": None, "arch": None, "code": None}
    assert quick.identity() == {**full.identity(), "name": "b", "limit": 10_000}


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_example_spec_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.models and spec.attacks


def test_checkpoint_path_resolves_against_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "m.pt").write_bytes(b"x")
    spec = parse_spec(_spec(models=[{"checkpoint": "m.pt"}]), base_dir=tmp_path)
    assert spec.models[0].checkpoint == str(tmp_path / "m.pt")
    assert spec.models[0].name == "m"


def test_standard_ensemble_key(tmp_path: Path) -> None:
    from bandguard.attacks import Ensemble
    from bandguard.bench.spec import ensemble_spec

    spec = parse_spec(_spec(ensemble="standard"), base_dir=tmp_path)
    assert spec.ensemble == "standard"
    extra = ensemble_spec(spec)
    assert extra.eps == spec.attacks[0].eps
    built = extra.build()
    assert isinstance(built, Ensemble)
    assert [a.name for a in built.attacks] == ["apgd", "apgd", "fourier_in_ball", "square"]
    with pytest.raises(SpecError, match=r"^ensemble: expected one of 'standard'"):
        parse_spec(_spec(ensemble="plus"), base_dir=tmp_path)


@pytest.mark.parametrize(("change", "message"), [
    ({"n": -1}, r"^n: expected an integer >= 0, got -1"),
    ({"batch_size": True}, r"^batch_size: expected an integer, got True"),
    ({"device": "tpu"}, r"^device: expected one of"),
    ({"amp": "fp8"}, r"^amp: expected one of 'off', 'bf16', 'auto', got 'fp8'"),
    ({"scale_invariant": "yes"}, r"^scale_invariant: expected true or false"),
    ({"defenses": ("none", "blur:3")}, r"^defenses\[1\]: unknown defense 'blur'"),
    ({"attacks": ()}, r"^attacks: expected a non-empty sequence of AttackSpec"),
    ({"models": ("cnn",)}, r"^models\[0\]: expected a ModelSpec, got str"),
])
def test_replace_cannot_skip_validation(change: dict, message: str, tmp_path: Path) -> None:
    spec = parse_spec(_spec(), base_dir=tmp_path)
    with pytest.raises(SpecError, match=message):
        dataclasses.replace(spec, **change)
    assert dataclasses.replace(spec, n=5).n == 5  # a valid change goes through


def test_spec_built_in_code_gets_none_first_and_a_tuple(tmp_path: Path) -> None:
    spec = parse_spec(_spec(), base_dir=tmp_path)
    built = BenchSpec(dataset="mnist", models=list(spec.models), attacks=list(spec.attacks), defenses=("lowpass:10",))
    assert built.defenses == ("none", "lowpass:10") and isinstance(built.models, tuple)
