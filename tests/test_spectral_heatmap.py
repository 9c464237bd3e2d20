"""Contracts of bandguard.spectral.heatmap (Yin et al. 1906.08988) on a tiny float64 net."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _tiny import tiny_data, tiny_model
from torch import nn

from bandguard import fourier
from bandguard.spectral import fourier_heatmap, heatmap_signs
from bandguard.spectral.heatmap import HeatmapResult


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


@pytest.mark.parametrize("max_batch", [5, 1000])
def test_per_image_values_are_each_images_own_error_at_every_cell(max_batch: int) -> None:
    """``per_image`` holds, per image and frequency, exactly the 0/1 error the naive loop finds
    for that image; its mean over images is the map; without the flag nothing is kept."""
    model, (x, y) = tiny_model(), tiny_data()
    h, w = x.shape[-2:]
    _, orbit = fourier.frequency_orbits(h, w)
    k = fourier.distinct_frequencies(h, w).shape[0]
    signs = heatmap_signs(k, 12, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    r = fourier_heatmap(model, x, y, eps=2.0, max_batch=max_batch, per_image=True,
                        generator=torch.Generator().manual_seed(4))
    assert r.per_image is not None and r.per_image.shape == (12, h, w)
    with torch.no_grad():
        for i, j in [(0, 0), (1, 3), (4, 4), (7, 2)]:
            u = fourier.fourier_basis(h, w, torch.tensor([[i, j]]), dtype=x.dtype)[0]
            step = (2.0 * signs[int(orbit[i, j])])[:, :, None, None] * u[None, None]
            wrong = (model((x + step).clamp(0, 1)).argmax(1) != y).float()
            assert torch.equal(r.per_image[:, i, j], wrong)
        clean_wrong = (model(x).argmax(1) != y).float()
    torch.testing.assert_close(r.per_image.mean(0), r.heatmap)
    assert torch.equal(r.clean_per_image, clean_wrong)
    plain = fourier_heatmap(model, x, y, eps=2.0, generator=torch.Generator().manual_seed(4))
    assert plain.per_image is None and plain.clean_per_image is None
    assert torch.equal(plain.heatmap, r.heatmap)


def test_heatmap_is_point_symmetric_and_has_binomial_errors(device: torch.device, dtype: torch.dtype) -> None:
    model, (x, y) = tiny_model().to(device, dtype), tiny_data(n=20)
    r = fourier_heatmap(model, x.to(device, dtype), y.to(device), eps=3.0,
                        generator=torch.Generator().manual_seed(0))
    mi, mj = fourier.mirror_positions(8, 8)
    assert torch.equal(r.heatmap, r.heatmap[mi][:, mj])
    torch.testing.assert_close(r.stderr, torch.sqrt(r.heatmap * (1 - r.heatmap) / 20))
    counts = r.heatmap.double() * 20  # error counts over the 20 images
    torch.testing.assert_close(counts, counts.round(), atol=1e-5, rtol=0)
    assert r.n == 20 and r.eps == 3.0 and r.metric == "error" and r.sign == "random"
    assert json.loads(json.dumps(r.to_dict()))["heatmap"] == r.heatmap.tolist()


def test_heatmap_forwards_at_most_distinct_frequencies_times_n_plus_the_clean_pass() -> None:
    model, (x, y) = tiny_model(), tiny_data(n=10)
    counter = CountingModel(model)
    fourier_heatmap(counter, x, y, eps=1.0, max_batch=64)
    k = fourier.distinct_frequencies(8, 8).shape[0]  # 34 of 64 positions
    assert k == 34
    assert counter.images == k * 10 + 10  # K * N perturbed images plus N clean ones
    assert counter.calls == math.ceil(k * 10 / 64) + 1  # in chunks of max_batch


def test_layer_heatmap_is_the_mean_l2_change_of_that_layer_relative_to_its_maximum() -> None:
    model, (x, y) = tiny_model(), tiny_data(n=6)
    k = fourier.distinct_frequencies(8, 8).shape[0]
    signs = heatmap_signs(k, 6, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    expected, _ = naive_heatmap(model, x, y, 1.5, signs, layer="2")
    absolute = fourier_heatmap(model, x, y, eps=1.5, layer="2", max_batch=11, relative_scale=False,
                               generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(absolute.heatmap.double(), expected, rtol=1e-6, atol=1e-6)
    assert absolute.layer == "2" and float(absolute.heatmap.min()) > 0 and not absolute.relative_scale
    # Yin et al.'s default (freq_heatmap.py, relative_scale=True): the map divided by its maximum.
    relative = fourier_heatmap(model, x, y, eps=1.5, layer="2", max_batch=11,
                               generator=torch.Generator().manual_seed(5))
    assert relative.relative_scale and relative.to_dict()["relative_scale"] is True
    torch.testing.assert_close(relative.heatmap.double(), expected / expected.max(), rtol=1e-5, atol=1e-6)
    assert float(relative.heatmap.max()) == 1.0
    torch.testing.assert_close(relative.stderr, absolute.stderr / absolute.heatmap.max(), rtol=1e-5, atol=1e-7)
    # eps = 0 changes nothing: the map stays zero instead of 0 / 0.
    still = fourier_heatmap(model, x, y, eps=0.0, layer="2")
    assert torch.equal(still.heatmap, torch.zeros(8, 8))
    # Without a layer the option does not apply: error rates are never rescaled.
    plain = fourier_heatmap(model, x, y, eps=1.5, generator=torch.Generator().manual_seed(5))
    assert not plain.relative_scale
    with pytest.raises(TypeError, match="relative_scale must be True or False"):
        fourier_heatmap(model, x, y, eps=1.0, layer="2", relative_scale="yes")  # type: ignore[arg-type]


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
    # Each cell is an error count over the 16 images, and a frequency and its mirror share a cell.
    counts = r.heatmap.double() * 16
    torch.testing.assert_close(counts, counts.round(), atol=1e-5, rtol=0)
    mi, mj = fourier.mirror_positions(28, 28)
    assert torch.equal(r.heatmap, r.heatmap[mi][:, mj])
    assert float(r.heatmap.max()) > r.clean  # some frequency at eps = 4 hurts the model


def test_heatmap_result_validates_its_shapes() -> None:
    with pytest.raises(ValueError, match="heatmap and stderr"):
        HeatmapResult(torch.zeros(4, 4), torch.zeros(4, 5), 0.0, 1.0, 1, "error", "random")


# --------------------------------------------------------------------------- max_frequency and scale


def naive_square_heatmap(model, x, y, eps, signs, m):
    """Yin et al.'s loop over every position of the centred square |i - h/2|, |j - w/2| <= m."""
    h, w = x.shape[-2:]
    _, orbit = fourier.frequency_orbits(h, w, max_frequency=m)
    out = torch.zeros(orbit.shape, dtype=torch.float64)
    with torch.no_grad():
        for a in range(orbit.shape[0]):
            for b in range(orbit.shape[1]):
                i, j = h // 2 - m + a, w // 2 - m + b
                u = fourier.fourier_basis(h, w, torch.tensor([[i, j]]), dtype=x.dtype)[0]
                step = (eps * signs[int(orbit[a, b])])[:, :, None, None] * u[None, None]
                out[a, b] = (model((x + step).clamp(0, 1)).argmax(1) != y).double().mean()
    return out


@pytest.mark.parametrize("m", [0, 1, 2])
def test_max_frequency_maps_only_the_centred_square_with_exact_forwards(m: int) -> None:
    model, (x, y) = tiny_model(), tiny_data(n=9)
    k = fourier.distinct_frequencies(8, 8, max_frequency=m).shape[0]
    assert k == ((2 * m + 1) ** 2 + 1) // 2  # one per mirror pair, the centre its own mirror
    counter = CountingModel(model)
    r = fourier_heatmap(counter, x, y, eps=2.0, max_frequency=m, max_batch=5,
                        generator=torch.Generator().manual_seed(4))
    assert r.heatmap.shape == r.stderr.shape == (2 * m + 1, 2 * m + 1) and r.max_frequency == m
    assert counter.images == k * 9 + 9  # exactly the distinct frequencies x N, plus the clean pass
    signs = heatmap_signs(k, 9, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert torch.equal(r.heatmap.double(), naive_square_heatmap(model, x, y, 2.0, signs, m).float().double())
    assert torch.equal(r.heatmap, r.heatmap.flip(0, 1))  # point-symmetric about the centre
    assert r.to_dict()["max_frequency"] == m


def test_max_frequency_reaching_the_edges_is_the_whole_map() -> None:
    model, (x, y) = tiny_model(), tiny_data(n=6)
    whole = fourier_heatmap(model, x, y, eps=2.0, generator=torch.Generator().manual_seed(2))
    wide = fourier_heatmap(model, x, y, eps=2.0, max_frequency=4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(whole.heatmap, wide.heatmap) and whole.max_frequency is None
    with pytest.raises(ValueError, match="max_frequency must be >= 0"):
        fourier_heatmap(model, x, y, eps=1.0, max_frequency=-1)


def test_signs_drawn_in_blocks_do_not_depend_on_max_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks of 2 frequencies (25 // (6 * 2)): batches never straddle them, the map is unchanged.
    monkeypatch.setattr(fourier, "SIGN_BLOCK_VALUES", 25)
    model, (x, y) = tiny_model(), tiny_data(n=6)
    k = fourier.distinct_frequencies(8, 8).shape[0]
    signs = heatmap_signs(k, 6, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    expected, _ = naive_heatmap(model, x, y, 2.0, signs)
    counter = CountingModel(model)
    for max_batch in (5, 12, 1000):
        r = fourier_heatmap(counter, x, y, eps=2.0, max_batch=max_batch, generator=torch.Generator().manual_seed(8))
        assert torch.equal(r.heatmap.double(), expected.float().double()), max_batch
    assert counter.images == 3 * (k * 6 + 6)
    blocks = list(fourier.sign_blocks(k, 6, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64))
    assert [b.shape[0] for _, b in blocks] == [2] * (k // 2) and torch.equal(torch.cat([b for _, b in blocks]), signs)


# The 63 x 63 map at 224 x 224 (Yin et al.'s ImageNet setting) in a process capped at 8 GiB of
# address space; prints the forwards and the growth of its peak resident memory (VmHWM).
_SCALE_SCRIPT = """
import re, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))
import torch
from torch import nn
from bandguard.spectral import fourier_heatmap

class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(3 * 64, 10))
        self.images = 0
    def forward(self, x):
        self.images += x.shape[0]
        return self.net(x)

def peak_mib():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1)) // 1024

torch.manual_seed(0)
size = int(sys.argv[1])
model, x, y = Counting(), torch.rand(2, 3, size, size), torch.tensor([3, 5])
before = peak_mib()
r = fourier_heatmap(model, x, y, eps=15.7, max_frequency=31, generator=torch.Generator().manual_seed(0))
print(r.heatmap.shape[0], r.heatmap.shape[1], model.images, peak_mib() - before)
"""


def _scale_run(size: int) -> list[int]:
    out = subprocess.run([sys.executable, "-c", _SCALE_SCRIPT, str(size)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    return [int(v) for v in out.stdout.split()[-4:]]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_imagenet_size_map_costs_its_distinct_frequencies_and_memory_set_by_the_chunk() -> None:
    # Measured (2 shared cores): 910 MiB at 112 x 112 and 909 MiB at 224 x 224, 6-10 s each; before
    # the lazy basis the 224 map of every frequency needed ~30 GB (25,090 basis images up front).
    small, large = _scale_run(112), _scale_run(224)
    assert small[:3] == large[:3] == [63, 63, 1985 * 2 + 2]  # 1,985 distinct frequencies x N=2, + clean
    assert large[3] < 2048 and large[3] < 1.25 * small[3] + 64, (small, large)  # not growing with H x W
