"""Contracts of bandguard.spectral: heat maps, perturbation and corruption spectra, filtered
accuracy, kernel spectra and plots."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from bandguard import fourier
from bandguard.spectral import (
    CORRUPTIONS,
    attack_spectrum,
    compare_attack_spectra,
    corrupt,
    corruption_spectrum,
    filter_images,
    filtered_accuracy,
    fourier_heatmap,
    heatmap_signs,
    kernel_spectrum,
    perturbation_spectrum,
    plots,
)
from bandguard.spectral.heatmap import HeatmapResult


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


class CountingModel(nn.Module):
    """Wraps a model and counts the images it is asked to classify."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.images = 0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        self.calls += 1
        return self.model(x)


def naive_heatmap(model, x, y, eps, signs, *, layer=None):
    """Yin et al.'s loop over every position of the grid (not only the distinct half)."""
    h, w = x.shape[-2:]
    _, orbit = fourier.frequency_orbits(h, w)
    out = torch.zeros(h, w, dtype=torch.float64)
    captured = []
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda m, i, o: captured.append(o.flatten(1))) if layer else None
    with torch.no_grad():
        clean = model(x)
        for i in range(h):
            for j in range(w):
                k = int(orbit[i, j])
                u = fourier.fourier_basis(h, w, torch.tensor([[i, j]]), dtype=x.dtype)[0]
                step = (eps * signs[k])[:, :, None, None] * u[None, None]
                logits = model((x + step).clamp(0, 1))
                if layer:
                    out[i, j] = torch.linalg.vector_norm(captured[-1] - captured[0], dim=1).mean()
                else:
                    out[i, j] = (logits.argmax(1) != y).double().mean()
    if handle:
        handle.remove()
    return out, float((clean.argmax(1) != y).double().mean())


# --------------------------------------------------------------------------- heat map


@pytest.mark.parametrize("max_batch", [7, 1000])
def test_heatmap_equals_a_naive_per_frequency_loop_with_the_same_signs(max_batch: int) -> None:
    model, (x, y) = tiny_model(), tiny_data()
    k = fourier.distinct_frequencies(8, 8).shape[0]
    signs = heatmap_signs(k, 12, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    result = fourier_heatmap(model, x, y, eps=2.0, max_batch=max_batch,
                             generator=torch.Generator().manual_seed(3))
    expected, clean = naive_heatmap(model, x, y, 2.0, signs)
    assert torch.equal(result.heatmap.double(), expected.float().double())
    assert result.clean == clean
    assert 0 < float(result.heatmap.max()) and float(result.heatmap.min()) < 1  # not a constant map
    assert len(set(result.heatmap.flatten().tolist())) > 2


def test_heatmap_is_point_symmetric_and_has_binomial_errors() -> None:
    model, (x, y) = tiny_model(), tiny_data(n=20)
    r = fourier_heatmap(model, x, y, eps=3.0, generator=torch.Generator().manual_seed(0))
    mi, mj = fourier.mirror_positions(8, 8)
    assert torch.equal(r.heatmap, r.heatmap[mi][:, mj])
    torch.testing.assert_close(r.stderr, torch.sqrt(r.heatmap * (1 - r.heatmap) / 20))
    assert r.n == 20 and r.eps == 3.0 and r.metric == "error" and r.sign == "random"
    json.dumps(r.to_dict())


def test_heatmap_forwards_at_most_distinct_frequencies_times_n_plus_the_clean_pass() -> None:
    model, (x, y) = tiny_model(), tiny_data(n=10)
    counter = CountingModel(model)
    fourier_heatmap(counter, x, y, eps=1.0, max_batch=64)
    k = fourier.distinct_frequencies(8, 8).shape[0]  # 34 of 64 positions
    assert k == 34
    assert counter.images == k * 10 + 10  # K * N perturbed images plus N clean ones
    assert counter.calls == math.ceil(k * 10 / 64) + 1  # in chunks of max_batch


def test_layer_heatmap_is_the_mean_l2_change_of_that_layer() -> None:
    model, (x, y) = tiny_model(), tiny_data(n=6)
    k = fourier.distinct_frequencies(8, 8).shape[0]
    signs = heatmap_signs(k, 6, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    r = fourier_heatmap(model, x, y, eps=1.5, layer="2", max_batch=11,
                        generator=torch.Generator().manual_seed(5))
    expected, _ = naive_heatmap(model, x, y, 1.5, signs, layer="2")
    torch.testing.assert_close(r.heatmap.double(), expected, rtol=1e-6, atol=1e-6)
    assert r.layer == "2" and float(r.heatmap.min()) > 0


def test_heatmap_with_a_custom_metric_positive_signs_and_seeds() -> None:
    model, (x, y) = tiny_model(), tiny_data(n=8)

    def true_logit(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits.gather(1, labels[:, None])[:, 0]

    r = fourier_heatmap(model, x, y, eps=1.0, metric=true_logit, sign="+")
    with torch.no_grad():
        assert abs(r.clean - float(true_logit(model(x), y).mean())) < 1e-6
    # the DC basis image is the constant 1/8: with sign + every pixel rises by eps/8
    u0 = torch.full((8, 8), 1.0 / 8, dtype=torch.float64)
    with torch.no_grad():
        dc = float(true_logit(model((x + u0).clamp(0, 1)), y).mean())
    assert abs(float(r.heatmap[4, 4]) - dc) < 1e-5
    assert r.metric == "true_logit" and r.sign == "positive"
    a = fourier_heatmap(model, x, y, eps=2.0, generator=torch.Generator().manual_seed(1))
    b = fourier_heatmap(model, x, y, eps=2.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.heatmap, b.heatmap)


def test_heatmap_restores_mode_and_leaves_parameters_alone() -> None:
    model, (x, y) = tiny_model(), tiny_data(n=4)
    model.train()
    before = [p.clone() for p in model.parameters()]
    fourier_heatmap(model, x, y, eps=1.0)
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_heatmap_refuses_bad_inputs() -> None:
    model, (x, y) = tiny_model(), tiny_data(n=4)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        fourier_heatmap(model, x, y, eps=-1.0)
    with pytest.raises(ValueError, match=r"x must have shape \[N, C, H, W\]"):
        fourier_heatmap(model, x[0], y, eps=1.0)
    with pytest.raises(ValueError, match="y has 3 labels but x has 4"):
        fourier_heatmap(model, x, y[:3], eps=1.0)
    with pytest.raises(ValueError, match="unknown metric 'accuracy'"):
        fourier_heatmap(model, x, y, eps=1.0, metric="accuracy")
    with pytest.raises(ValueError, match="unknown sign 'minus'"):
        fourier_heatmap(model, x, y, eps=1.0, sign="minus")
    with pytest.raises(ValueError, match="unknown layer 'fc9'"):
        fourier_heatmap(model, x, y, eps=1.0, layer="fc9")
    with pytest.raises(ValueError, match="bounds"):
        fourier_heatmap(model, x + 2, y, eps=1.0)
    with pytest.raises(ValueError, match="one value per sample"):
        fourier_heatmap(model, x, y, eps=1.0, metric=lambda logits, labels: logits)
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        fourier_heatmap(model, x, y, eps=1.0, max_batch=0)


def test_heatmap_of_a_trained_mnist_model(mnist_model, mnist_test) -> None:
    x, y = mnist_test[0][:16], mnist_test[1][:16]
    r = fourier_heatmap(mnist_model, x, y, eps=4.0, generator=torch.Generator().manual_seed(0))
    assert r.heatmap.shape == (28, 28)
    pred = mnist_model(x).argmax(1)
    assert r.clean == float((pred != y).double().mean())
    assert 0.0 <= float(r.heatmap.min()) <= float(r.heatmap.max()) <= 1.0
    assert float(r.heatmap.max()) > r.clean  # some frequency at eps = 4 hurts the model


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


# --------------------------------------------------------------------------- filtered accuracy


def test_filtered_accuracy_beyond_the_corner_equals_clean_accuracy(mnist_model, mnist_test) -> None:
    x, y = mnist_test[0][:300], mnist_test[1][:300]
    corner = math.hypot(14, 14) + 1
    low = filtered_accuracy(mnist_model, x, y, [2, 6, corner], kind="low")
    assert low.accuracy[-1] == low.clean
    assert low.clean > 0.9 and low.accuracy[0] < low.clean
    high = filtered_accuracy(mnist_model, x, y, [0.0, corner], kind="high")
    assert high.accuracy[0] == high.clean  # radius 0 keeps every frequency
    blank = filtered_accuracy(mnist_model, x, y, [0.0], kind="low").accuracy[0]
    assert high.accuracy[1] == blank  # both see a blank image
    assert low.to_dict()["radii"] == [2.0, 6.0, corner]


def test_filter_images_clips_and_rescales() -> None:
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    high = filter_images(x, 3.0, "high")
    assert float(high.min()) >= 0 and float(high.max()) <= 1
    raw = fourier.highpass(x, 3.0)
    torch.testing.assert_close(high, raw.clamp(0, 1))
    stretched = filter_images(x, 3.0, "high", rescale=True)
    torch.testing.assert_close(stretched.amax(dim=(1, 2, 3)), torch.ones(4))


def test_filtered_accuracy_refuses_bad_arguments() -> None:
    model, (x, y) = tiny_model(), tiny_data(n=4)
    with pytest.raises(ValueError, match="unknown kind 'band'"):
        filtered_accuracy(model, x, y, [1.0], kind="band")
    with pytest.raises(ValueError, match="radii must be >= 0"):
        filtered_accuracy(model, x, y, [-1.0])
    with pytest.raises(ValueError, match="at least one radius"):
        filtered_accuracy(model, x, y, [])


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


# --------------------------------------------------------------------------- kernels


def test_kernel_spectrum_of_known_kernels() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(), nn.Conv2d(2, 1, 3, bias=False))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[:, :, 1, 1] = 1.0  # identity kernels: flat response
        model[2].weight.fill_(1.0 / 9)  # box blur: low-pass
    result = kernel_spectrum(model, size=16)
    assert [layer.name for layer in result.layers] == ["0", "2"]
    torch.testing.assert_close(result["0"].spectrum, torch.ones(16, 16))
    box = result["2"].spectrum
    assert float(box[8, 8]) == pytest.approx(1.0) and float(box[8, 8]) == float(box.max())
    flat_share = float((fourier.radial_distance(16, 16) >= 4).double().mean())  # 0.95
    assert result["0"].high_fraction == pytest.approx(flat_share)
    assert result["2"].high_fraction < 0.3
    assert result["0"].kernel_shape == (2, 1, 3, 3)
    with pytest.raises(ValueError, match="size must be >= the kernel size"):
        kernel_spectrum(model, size=2)
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        kernel_spectrum(nn.Linear(3, 3))


# --------------------------------------------------------------------------- plots


def test_every_plot_writes_a_png_and_its_data(tmp_path) -> None:
    model = tiny_model(channels=3, size=8)
    x = torch.rand(6, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (6,))
    heat = fourier_heatmap(model, x, y, eps=1.0)
    spec = perturbation_spectrum(torch.randn(4, 3, 8, 8))
    filt = filtered_accuracy(model, x, y, [1, 2, 4])
    corr = corruption_spectrum(model, x, y, ["fog", "gaussian_noise"])
    written = [
        plots.plot_heatmap(heat, tmp_path / "heat.png"),
        plots.plot_spectra({"a": spec, "b": spec}, tmp_path / "spectra.png"),
        plots.plot_radial_profiles({"a": spec, "b": spec.radial * 2}, tmp_path / "radial.png"),
        plots.plot_filtered_accuracy({"low": filt}, tmp_path / "filtered.png"),
        plots.plot_corruption_spectra(corr, tmp_path / "corr.png"),
        plots.plot_kernel_spectra(kernel_spectrum(model), tmp_path / "kernels.png"),
    ]
    assert len(written) == 6
    for name in ("heat", "spectra", "radial", "filtered", "corr", "kernels"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 300_000
        json.loads((tmp_path / f"{name}.json").read_text())
    assert "clean error" in written[0].axes[0].get_title()
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def test_plots_do_not_touch_pyplot() -> None:
    code = "import sys, bandguard.spectral.plots; sys.exit('matplotlib.pyplot' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_heatmap_result_validates_its_shapes() -> None:
    with pytest.raises(ValueError, match="heatmap and stderr"):
        HeatmapResult(torch.zeros(4, 4), torch.zeros(4, 5), 0.0, 1.0, 1, "error", "random")


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
    assert "argument --eps: expected a number >= 0, got '-1'" in capsys.readouterr().err
