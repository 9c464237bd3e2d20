"""Contracts of bandguard.spectral: perturbation and corruption spectra and the spectral CLI
(heat maps, filtered accuracy, kernel spectra and plots have their own test_spectral_*.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from bandguard.spectral import (
    CORRUPTIONS,
    attack_spectrum,
    compare_attack_spectra,
    corrupt,
    corruption_spectrum,
    perturbation_spectrum,
)


def tiny_model(channels: int = 2, size: int = 8, classes: int = 5, seed: int = 0) -> nn.Module:
    """A small random conv net in float64 (no dropout, no batch statistics)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * size * size, classes),
    ).double()


def tiny_data(n: int = 12, channels: int = 2, size: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (n,), generator=g)
    return x, y


# --------------------------------------------------------------------------- perturbation spectra


def sinusoid_attack(a: int, b: int, amplitude: float = 0.05):
    """An 'attack' adding a fixed sinusoid at centred offset (a, b); returns an AttackResult-like."""

    class Result:
        def __init__(self, x_adv: torch.Tensor) -> None:
            self.x_adv = x_adv

    def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Result:
        h, w = x.shape[-2:]
        r = torch.arange(h, dtype=x.dtype)[:, None]
        c = torch.arange(w, dtype=x.dtype)[None, :]
        wave = amplitude * torch.cos(2 * math.pi * (a * r / h + b * c / w))
        return Result(x + wave)

    return attack


def test_attack_spectrum_finds_the_attacks_frequency() -> None:
    model = tiny_model()
    x = torch.full((5, 2, 8, 8), 0.5, dtype=torch.float64)
    y = torch.zeros(5, dtype=torch.long)
    spec = attack_spectrum(model, sinusoid_attack(3, 1), x, y, radius=2.0)
    peak = int(spec.mean.argmax())
    assert divmod(peak, 8) in {(4 + 3, 4 + 1), (4 - 3, 4 - 1)}
    assert spec.high_fraction > 0.99  # distance sqrt(10) > 2
    assert spec.per_channel.shape == (2, 8, 8) and spec.n == 5
    low = attack_spectrum(model, sinusoid_attack(1, 0), x, y, radius=2.0)
    assert low.high_fraction < 0.01
    # a bare tensor is accepted too; a result without x_adv is refused
    plain = attack_spectrum(model, lambda m, xs, ys: sinusoid_attack(3, 1)(m, xs, ys).x_adv, x, y, radius=2.0)
    torch.testing.assert_close(plain.mean, spec.mean)
    with pytest.raises(TypeError, match="x_adv"):
        attack_spectrum(model, lambda m, xs, ys: 42, x, y)


def test_compare_attack_spectra_keeps_model_order() -> None:
    x = torch.full((3, 2, 8, 8), 0.5, dtype=torch.float64)
    y = torch.zeros(3, dtype=torch.long)
    cmp = compare_attack_spectra([tiny_model(seed=0), tiny_model(seed=1)], sinusoid_attack(2, 2), x, y)
    assert cmp.names == ("natural", "adversarial") and len(cmp.spectra) == 2
    torch.testing.assert_close(cmp["natural"].mean, cmp["adversarial"].mean)
    with pytest.raises(ValueError, match="2 models but 1 names"):
        compare_attack_spectra([tiny_model(), tiny_model()], sinusoid_attack(2, 2), x, y, names=["a"])


def test_perturbation_spectrum_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError, match="delta must have shape"):
        perturbation_spectrum(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="radius must be >= 0"):
        perturbation_spectrum(torch.zeros(1, 1, 8, 8), radius=-1.0)


def test_pgd_spectrum_of_a_trained_model(mnist_model, mnist_test) -> None:
    from bandguard.attacks import create_attack

    x, y = mnist_test[0][:32], mnist_test[1][:32]
    spec = attack_spectrum(mnist_model, create_attack("pgd", eps=0.1, steps=5), x, y)
    assert spec.mean.shape == (28, 28) and 0 < spec.high_fraction < 1
    assert float(spec.mean.sum()) > 0


# --------------------------------------------------------------------------- corruptions


def test_registry_holds_the_nine_families() -> None:
    assert CORRUPTIONS.names() == sorted([
        "gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur", "contrast",
        "brightness", "fog", "jpeg", "pixelate",
    ])


@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_corruptions_stay_in_bounds_grow_with_severity_and_replay(name: str) -> None:
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    changes = []
    for severity in (1, 3, 5):
        out = corrupt(x, name, severity, generator=torch.Generator().manual_seed(1))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert float(out.min()) >= 0 and float(out.max()) <= 1
        changes.append(float((out - x).abs().mean()))
    assert changes[0] > 0 and changes[0] < changes[2], changes
    again = corrupt(x, name, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, corrupt(x, name, 3, generator=torch.Generator().manual_seed(1)))


def test_corruptions_work_on_one_channel_and_other_sizes() -> None:
    x = torch.rand(3, 1, 28, 20, generator=torch.Generator().manual_seed(0))
    for name in CORRUPTIONS.names():
        out = corrupt(x, name, 2, generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape and 0 <= float(out.min()) <= float(out.max()) <= 1


def test_brightness_keeps_hue_and_raises_value() -> None:
    x = torch.tensor([0.2, 0.4, 0.1]).view(1, 3, 1, 1).expand(1, 3, 4, 4).clone()
    out = corrupt(x, "brightness", 3)  # +0.15 on V = 0.4
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.2, 0.4, 0.1]) * 0.55 / 0.4)


def test_corrupt_refuses_unknown_names_and_severities() -> None:
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown corruption 'snow'"):
        corrupt(x, "snow", 1)
    with pytest.raises(ValueError, match="severity must be one of"):
        corrupt(x, "fog", 6)
    with pytest.raises(ValueError, match="jpeg needs 1 or 3 channels"):
        corrupt(torch.rand(2, 2, 8, 8), "jpeg", 1)
    with pytest.raises(ValueError, match="bounds"):
        corrupt(x * 3, "fog", 1)


def test_corruption_spectra_separate_noise_from_fog(mnist_model, mnist_test) -> None:
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    names = ["gaussian_noise", "fog", "contrast", "gaussian_blur"]
    result = corruption_spectrum(mnist_model, x, y, names, severity=3,
                                 generator=torch.Generator().manual_seed(0))
    noise, fog = result["gaussian_noise"], result["fog"]
    # clipping at 0 on MNIST's black background rectifies part of the noise, adding low
    # frequencies, so the share stays below the white-noise area fraction (0.82) but well above fog
    assert noise.high_fraction > 0.5
    assert fog.high_fraction < 0.2
    contrast = result["contrast"]
    assert float(contrast.spectrum.mean[14, 14]) < 1e-4  # the channel mean is kept: no DC change
    assert contrast.high_fraction < noise.high_fraction
    assert result.clean_accuracy > 0.9
    assert all(0 <= r.accuracy <= 1 for r in result.results)
    assert [r.name for r in result.results] == names
    with pytest.raises(ValueError, match="unknown corruption"):
        corruption_spectrum(mnist_model, x, y, ["rain"])


# --------------------------------------------------------------------------- command line


def test_cli_heatmap_and_spectrum_write_png_and_json(data_root, tmp_path, capsys) -> None:
    from bandguard.cli import main
    from bandguard.models import create_model, save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "net.pt", create_model("mnist_cnn"), arch="mnist_cnn", dataset="mnist")
    assert main(["heatmap", "--model", str(ckpt), "--eps", "4", "-n", "2",
                 "--out", str(tmp_path / "heat.png")]) == 0
    saved = json.loads((tmp_path / "heat.json").read_text())
    assert saved["n"] == 2 and saved["eps"] == 4.0 and len(saved["heatmap"]) == 28
    assert (tmp_path / "heat.png").stat().st_size > 1000
    assert main(["spectrum", "--model", str(ckpt), "--attack", "pgd", "--eps", "8/255", "--steps", "2",
                 "-n", "4", "--out", str(tmp_path / "spec.png")]) == 0
    out = capsys.readouterr().out
    assert "clean error" in out and "high-frequency energy share" in out
    spectra = json.loads((tmp_path / "spec.json").read_text())
    assert list(spectra) == ["net"] and spectra["net"]["n"] == 4
    assert (tmp_path / "spec_radial.png").exists()
    assert main(["heatmap", "--model", str(ckpt), "--eps", "-1", "-n", "2"]) == 2  # clear error
    assert "eps must be >= 0" in capsys.readouterr().err
