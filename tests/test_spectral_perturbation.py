"""Contracts of bandguard.spectral: perturbation spectra and the spectral CLI (corruptions, heat
maps, filtered accuracy, kernel spectra and plots have their own test_spectral_*.py)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from _tiny import tiny_model

from bandguard.spectral import (
    attack_spectrum,
    compare_attack_spectra,
    perturbation_spectrum,
)

# --------------------------------------------------------------------------- perturbation spectra


def sinusoid_attack(a: int, b: int, amplitude: float = 0.05):
    """An attack through the protocol's ``_run`` hook that adds a fixed sinusoid at centred offset
    (a, b) (eps 1 in Linf: the sinusoid stays inside it)."""
    from bandguard.attacks import Attack, Outcome

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Sinusoid(Attack):
        norm = "linf"

        def _run(self, model, x, labels, targeted, eps, generator):
            h, w = x.shape[-2:]
            r = torch.arange(h, dtype=x.dtype)[:, None]
            c = torch.arange(w, dtype=x.dtype)[None, :]
            x_adv = x + amplitude * torch.cos(2 * math.pi * (a * r / h + b * c / w))
            zeros = torch.zeros_like(labels)
            return Outcome(x_adv, zeros.bool(), labels, zeros, zeros)

    return Sinusoid(eps=1.0)


def test_attack_spectrum_finds_the_attacks_frequency() -> None:
    model = tiny_model()
    x = torch.full((5, 2, 8, 8), 0.5, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)  # every image is attacked (the protocol skips misclassified ones)
    spec = attack_spectrum(model, sinusoid_attack(3, 1), x, y, radius=2.0)
    peak = int(spec.mean.argmax())
    assert divmod(peak, 8) in {(4 + 3, 4 + 1), (4 - 3, 4 - 1)}
    assert spec.high_fraction > 0.99  # distance sqrt(10) > 2
    assert spec.per_channel.shape == (2, 8, 8) and spec.n == 5
    low = attack_spectrum(model, sinusoid_attack(1, 0), x, y, radius=2.0)
    assert low.high_fraction < 0.01
    # one eps only: a sweep has no single perturbation
    sweep = dataclasses.replace(sinusoid_attack(3, 1), eps=(0.5, 1.0))
    with pytest.raises(ValueError, match="one eps"):
        attack_spectrum(model, sweep, x, y)


def test_compare_attack_spectra_keeps_model_order() -> None:
    x = torch.full((3, 2, 8, 8), 0.5, dtype=torch.float64)
    y = torch.ones(3, dtype=torch.long)  # both models (seeds 0 and 2) predict class 1: both attacked
    cmp = compare_attack_spectra([tiny_model(seed=0), tiny_model(seed=2)], sinusoid_attack(2, 2), x, y)
    assert cmp.names == ("natural", "adversarial") and len(cmp.spectra) == 2
    assert float(cmp["natural"].mean.sum()) > 0
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


# --------------------------------------------------------------------------- command line


def test_cli_heatmap_and_spectrum_write_png_and_json(mnist_env, tmp_path, capsys) -> None:
    from bandguard.cli import main
    from bandguard.models import create_model, save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "net.pt", create_model("mnist_cnn"), arch="mnist_cnn", dataset="mnist")
    assert main(["heatmap", "--model", str(ckpt), "--eps", "4", "-n", "2",
                 "--out", str(tmp_path / "heat.png")]) == 0
    saved = json.loads((tmp_path / "heat.json").read_text())
    assert saved["n"] == 2 and saved["eps"] == 4.0 and len(saved["heatmap"]) == 28
    assert (tmp_path / "heat.png").stat().st_size > 1000
    assert main(["heatmap", "--model", str(ckpt), "--eps", "4", "-n", "2", "--max-frequency", "3",
                 "--out", str(tmp_path / "square.png")]) == 0
    square = json.loads((tmp_path / "square.json").read_text())
    assert square["max_frequency"] == 3 and len(square["heatmap"]) == len(square["heatmap"][0]) == 7
    assert main(["spectrum", "--model", str(ckpt), "--attack", "pgd", "--eps", "8/255", "--steps", "2",
                 "-n", "4", "--out", str(tmp_path / "spec.png")]) == 0
    out = capsys.readouterr().out
    assert "clean error" in out and "high-frequency energy share" in out
    spectra = json.loads((tmp_path / "spec.json").read_text())
    assert list(spectra) == ["net"] and spectra["net"]["n"] == 4
    assert (tmp_path / "spec_radial.png").exists()
    assert main(["heatmap", "--model", str(ckpt), "--eps", "-1", "-n", "2"]) == 2  # clear error
    assert "argument --eps: expected a number >= 0, got '-1'" in capsys.readouterr().err


def test_per_image_energies_split_each_perturbation_at_the_radius() -> None:
    """Each perturbation's energy is its squared norm up to one FFT scale, and its high part is
    exactly what lies outside the radius: a low sinusoid puts none there, a high one all of it."""
    from bandguard import fourier
    from bandguard.spectral import perturbation_spectrum

    basis = fourier.fourier_basis(8, 8, torch.tensor([[4 + 1, 4], [4 + 3, 4 + 2]]), dtype=torch.float64)
    scales = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    low = scales[:, None, None, None] * basis[0].expand(3, 1, 8, 8)  # distance 1
    high = scales[:, None, None, None] * basis[1].expand(3, 1, 8, 8)  # distance sqrt(13)
    spec = perturbation_spectrum(torch.cat([low, high]), radius=2.0)
    norms = torch.cat([low, high]).pow(2).sum((1, 2, 3))
    ratio = spec.energy / norms
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0])))  # Parseval, one scale
    torch.testing.assert_close(spec.high_energy[:3], torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(spec.high_energy[3:], spec.energy[3:])
    assert spec.high_fraction == pytest.approx(float(spec.high_energy.sum() / spec.energy.sum()))
    assert spec.high_fraction == pytest.approx(float((scales**2).sum() / (2 * (scales**2).sum())))
