"""bandguard.bench.zoo: the reference nets (trained once, cached), their data and shifted copies."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from bandguard.bench.zoo import RECIPES, reference_model, resolve_dataset, shifted_copies
from bandguard.models import load_checkpoint, save_checkpoint


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` [N, C, H, W] moved down ``dy`` and right ``dx`` pixels, zeros moved in (reference)."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float64])
def test_shifted_copies_are_translations_within_the_limit(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (6, 2, 7, 9), generator=g).to(dtype)
    out = shifted_copies(x, 4, max_shift=2, generator=torch.Generator().manual_seed(1))
    assert out.shape == (24, 2, 7, 9) and out.dtype == dtype and torch.equal(out[:6], x)
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    seen = set()
    for k, img in enumerate(out[6:]):
        matches = [o for o in offsets if torch.equal(img, _shift(x[k % 6 : k % 6 + 1], *o)[0])]
        assert len(matches) == 1, f"copy {k} is no translation of image {k % 6} by at most 2 pixels"
        seen.add(matches[0])
    assert len(seen) > 5  # offsets vary between images and copies
    again = shifted_copies(x, 4, max_shift=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_shifted_copies_edge_cases() -> None:
    x = torch.arange(8, dtype=torch.uint8).reshape(2, 1, 2, 2)
    assert torch.equal(shifted_copies(x, 1, max_shift=3), x)
    assert torch.equal(shifted_copies(x, 3, max_shift=0), torch.cat([x, x, x]))
    with pytest.raises(ValueError, match="copies must be >= 1"):
        shifted_copies(x, 0, max_shift=1)
    with pytest.raises(TypeError, match="max_shift must be an int"):
        shifted_copies(x, 2, max_shift=1.5)  # type: ignore[arg-type]


def test_reference_mnist_cnn_is_accurate_and_cached(mnist_trained: tuple[torch.nn.Module, float],
                                                    zoo_options: dict) -> None:
    """The fixture net is the zoo's; asking again loads the same weights from the cache."""
    model, accuracy = mnist_trained
    assert accuracy >= 0.98
    again, meta = reference_model("mnist_cnn", **zoo_options)
    assert meta["cached"] is True and meta["test_accuracy"] == accuracy and not again.training
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    ckpt = load_checkpoint(meta["path"])
    assert (ckpt.meta["arch"], ckpt.meta["dataset"]) == ("mnist_cnn", "mnist")
    assert ckpt.meta["recipe"]["config"]["lr"] == RECIPES["mnist_cnn"].config.lr
    source = ckpt.meta["data_source"]
    assert source == "bundled sample" if zoo_options["root"] is None else source.endswith("mnist.pkl.gz")
    assert ckpt.meta["train_images"] >= RECIPES["mnist_cnn"].min_images


def test_cached_file_is_found_by_name(mnist_trained: tuple[torch.nn.Module, float], zoo_options: dict,
                                     tmp_path: Path) -> None:
    """The entry's name is all that finds it: a copy in another folder is served from there."""
    _, meta = reference_model("mnist_cnn", **zoo_options)
    copy = tmp_path / Path(meta["path"]).name
    shutil.copy(meta["path"], copy)
    options = {**zoo_options, "cache_dir": tmp_path}
    _, again = reference_model("mnist_cnn", **options)
    assert again["cached"] is True and again["path"] == str(copy)
    assert again["test_accuracy"] == meta["test_accuracy"]


def test_unknown_arch_and_wrong_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown reference model 'resnet'; expected one of 'mnist_cnn'"):
        reference_model("resnet", cache_dir=tmp_path)
    for split in ("train", "test"):
        (tmp_path / "rgb" / split / "a").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "rgb" / split / "a" / "0.png")
    with pytest.raises(ValueError, match=r"mnist_cnn takes images of shape \(1, 28, 28\), got \(3, 8, 8\)"):
        reference_model("mnist_cnn", dataset=tmp_path / "rgb", cache_dir=tmp_path / "models")
    with pytest.raises(TypeError, match="retrain must be a bool"):
        reference_model("mnist_cnn", retrain="yes", cache_dir=tmp_path)  # type: ignore[arg-type]
    assert not (tmp_path / "models").exists()


def test_resolve_dataset(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    save_checkpoint(tmp_path / "named.pt", model, dataset="cifar10")
    save_checkpoint(tmp_path / "anonymous.pt", model)
    assert resolve_dataset(tmp_path / "named.pt") == "cifar10"
    assert resolve_dataset(tmp_path / "named.pt", "mnist") == "mnist"  # an explicit choice wins
    assert resolve_dataset("mnist_cnn", "mnist") == "mnist"
    for spec in (tmp_path / "anonymous.pt", "mnist_cnn"):
        with pytest.raises(ValueError, match="dataset is needed: .* does not name its data set"):
            resolve_dataset(spec)


@pytest.mark.slow  # trains on 120,000 shifted sample images: about a minute on 2 cores
def test_sample_recipe_reaches_98_percent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing but the bundled sample, the recipe still gives >= 98 % on its test split."""
    from bandguard.data import SampleDataWarning

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    with pytest.warns(SampleDataWarning):
        _, meta = reference_model("mnist_cnn", root=tmp_path / "empty", download=False)
    assert meta["data_source"] == "bundled sample" and meta["train_images"] == 120_000
    assert meta["test_accuracy"] >= 0.98
    assert Path(meta["path"]).parent == tmp_path / "cache" / "bandguard" / "models"


def test_recipes_name_their_network_and_limit_keys_the_cache(tmp_path: Path) -> None:
    """Training variants share one network; a limited run is its own recipe (and cache entry)."""
    from bandguard.models import MODELS

    for name, recipe in RECIPES.items():
        assert recipe.arch in MODELS, name
    variants = ("cifar_small", "cifar_small_gaussian", "cifar_small_adversarial")
    assert {RECIPES[v].arch for v in variants} == {"cifar_small"}
    gaussian = RECIPES["cifar_small_gaussian"].config
    assert gaussian.mode == "gaussian" and gaussian.sigma > 0
    assert RECIPES["cifar_small_adversarial"].config.adversary is not None
    full = RECIPES["cifar_small"]
    assert "limit" not in full.to_dict()  # full-data keys unchanged by the option
    limited = dataclasses.replace(full, limit=1000)
    assert limited.to_dict()["limit"] == 1000 and limited.to_dict() != full.to_dict()
    with pytest.raises(ValueError, match="limit must be >= 1"):
        reference_model("cifar_small", limit=0, cache_dir=tmp_path)


def test_filtered_recipes_train_on_complementary_bands() -> None:
    """cifar_small_lowpass and cifar_small_highpass split each image in two (Wang et al. 1905.13545)."""
    low, high = RECIPES["cifar_small_lowpass"].config, RECIPES["cifar_small_highpass"].config
    assert (low.mode, high.mode) == ("lowpass", "highpass")
    # Everything but the filter matches the natural recipe, so the three differ by their input only.
    natural = RECIPES["cifar_small"].config
    for config in (low, high):
        assert dataclasses.replace(config, mode="natural", radius=None) == natural
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    parts = low.frequency_filter()(x), high.frequency_filter()(x)  # type: ignore[misc]
    torch.testing.assert_close(parts[0] + parts[1], x, atol=1e-5, rtol=0)
    # The DC term is the lowest frequency: the low part keeps each channel's mean, the high part none.
    torch.testing.assert_close(parts[0].mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(parts[1].mean(dim=(2, 3)), torch.zeros(4, 3), atol=1e-5, rtol=0)
    assert float(parts[1].std()) > 0.1  # uniform noise has most of its energy outside the disc


# --------------------------------------------------------------------------- published weights


def test_published_weights_round_trip_and_are_used_first(mnist_trained, mnist_test, zoo_options, tmp_path,
                                                         monkeypatch, capsys) -> None:
    """publish_weights writes a float16 checkpoint and a manifest entry; reference_model serves it
    (SHA256 checked) before the cache, with predictions of the float32 net; `train --recipe` too."""
    import json

    from bandguard.bench.zoo import load_published, publish_weights
    from bandguard.cli import main

    model, accuracy = mnist_trained
    _, meta = reference_model("mnist_cnn", **zoo_options)
    folder = tmp_path / "published"
    entry = publish_weights("mnist_cnn", model, meta, folder, images_per_second=123.0)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["mnist_cnn"] == entry
    assert entry["file"] == "mnist_cnn.pt" and entry["data_key"] == meta["data_key"] and entry["seed"] == 0
    assert entry["test_accuracy"] == accuracy and entry["images_per_second"] == 123.0
    assert entry["recipe"] == RECIPES["mnist_cnn"].to_dict()
    ckpt = load_checkpoint(folder / "mnist_cnn.pt")
    assert {v.dtype for v in ckpt.state_dict.values() if v.is_floating_point()} == {torch.float16}

    served, info = reference_model("mnist_cnn", **zoo_options, weights=folder)
    assert info["published"] is True and info["path"] == str(folder / "mnist_cnn.pt")
    assert all(v.dtype == torch.float32 for v in served.state_dict().values() if v.is_floating_point())
    x = mnist_test[0]
    with torch.no_grad():
        same = (served(x).argmax(1) == model(x).argmax(1)).float().mean()
    assert same >= 0.995  # float16 rounding moves at most a handful of the 1,000 decisions

    # Another recipe version or other data: the entry does not match and is not used.
    assert load_published("mnist_cnn", "0" * 16, folder) is None
    # The command line finds the same weights through the environment.
    monkeypatch.setenv("BANDGUARD_WEIGHTS", str(folder))
    if zoo_options["root"] is not None:
        monkeypatch.setenv("BANDGUARD_DATA", str(zoo_options["root"]))
    out = tmp_path / "cli.pt"
    assert main(["train", "--recipe", "mnist_cnn", "--out", str(out), "-q"]) == 0
    assert "loaded mnist_cnn" in capsys.readouterr().out
    assert load_checkpoint(out).meta["arch"] == "mnist_cnn"

    # A damaged file is refused by its checksum, not loaded.
    data = bytearray((folder / "mnist_cnn.pt").read_bytes())
    data[-100] ^= 0xFF
    (folder / "mnist_cnn.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="fail their SHA256 check"):
        reference_model("mnist_cnn", **zoo_options, weights=folder)


def test_a_training_seed_has_its_own_published_name_and_cache_key(mnist_trained, zoo_options, tmp_path) -> None:
    """reference_model(seed=N) trains the recipe with seed N: its own cache key, published as
    <name>-seed<N> beside the recipe's own seed, each lookup serving only its own entry."""
    from bandguard.bench.zoo import _cache_key, publish_weights, published_name
    from bandguard.data import load_dataset

    assert published_name("mnist_cnn", 0) == "mnist_cnn" and published_name("mnist_cnn", 1) == "mnist_cnn-seed1"
    model, _ = mnist_trained
    _, meta = reference_model("mnist_cnn", **zoo_options)
    recipe = RECIPES["mnist_cnn"]
    seeded = dataclasses.replace(recipe, config=dataclasses.replace(recipe.config, seed=1))
    data = {k: v for k, v in zoo_options.items() if k in ("root", "download")}
    train, test = load_dataset("mnist", "train", **data), load_dataset("mnist", "test", **data)
    key = _cache_key(seeded, train, test)
    assert key != meta["data_key"]  # the seed joins the key: never served for the recipe's own seed
    folder = tmp_path / "published"
    publish_weights("mnist_cnn", model, meta, folder)
    # Stand-in for a seed-1 net (training one takes a minute): the same weights under seed 1's recipe.
    entry = publish_weights("mnist_cnn", model, {**meta, "recipe": seeded.to_dict(), "data_key": key}, folder)
    assert entry["file"] == "mnist_cnn-seed1.pt" and entry["seed"] == 1 and entry["recipe"]["config"]["seed"] == 1
    _, one = reference_model("mnist_cnn", **zoo_options, weights=folder, seed=1)
    _, own = reference_model("mnist_cnn", **zoo_options, weights=folder, seed=0)
    assert one["path"] == str(folder / "mnist_cnn-seed1.pt") and own["path"] == str(folder / "mnist_cnn.pt")
    with pytest.raises(ValueError, match="seed"):
        reference_model("mnist_cnn", **zoo_options, weights=folder, seed=-1)
