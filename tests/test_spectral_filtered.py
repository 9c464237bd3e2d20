"""Contracts of bandguard.spectral.filtered: accuracy on filtered images as the papers build them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bandguard.fourier import FrequencyFilter, frequency_filter
from bandguard.spectral import filtered_accuracy


def tiny_model(channels: int = 2, size: int = 8, classes: int = 5) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(6 * size * size, classes)).double()


def tiny_data(n: int = 40, channels: int = 2, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, channels, size, size, generator=g, dtype=torch.float64), torch.randint(0, 5, (n,), generator=g)


def hits(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).double().mean())


@pytest.mark.parametrize("shape", ["disc", "square"])
@pytest.mark.parametrize("kind", ["low", "high"])
def test_accuracy_is_on_the_raw_filtered_images_by_default(shape: str, kind: str) -> None:
    model, (x, y) = tiny_model(), tiny_data()
    radii = (1.0, 2.0, 3.5)
    result = filtered_accuracy(model, x, y, radii, kind=kind, shape=shape, batch_size=7)
    expected = tuple(hits(model, frequency_filter(x, r, kind=kind, shape=shape), y) for r in radii)
    assert result.accuracy == pytest.approx(expected, abs=1e-12)
    assert result.clean == pytest.approx(hits(model, x, y)) and result.n == 40
    assert (result.kind, result.shape, result.rescale, result.clip) == (kind, shape, False, None)
    rescaled = filtered_accuracy(model, x, y, radii, kind=kind, shape=shape, rescale=True)
    expected = tuple(hits(model, frequency_filter(x, r, kind=kind, shape=shape, rescale=True), y) for r in radii)
    assert rescaled.accuracy == pytest.approx(expected, abs=1e-12) and rescaled.rescale


def test_the_transform_is_wang_et_al_construction_written_out() -> None:
    # HFC: np.real(ifft(ifftshift(fftshift(fft(x)) * (1 - mask)))) / max, never clipped.
    model, (x, y) = tiny_model(), tiny_data()
    radius = 2.0
    mask = np.array([[1.0 if math.hypot(i - 4, j - 4) < radius else 0.0 for j in range(8)] for i in range(8)])
    spectrum = np.fft.fftshift(np.fft.fft2(x.numpy()), axes=(-2, -1)) * (1 - mask)
    high = np.real(np.fft.ifft2(np.fft.ifftshift(spectrum, axes=(-2, -1))))
    high = high / high.max(axis=(1, 2, 3), keepdims=True)
    result = filtered_accuracy(model, x, y, [radius], kind="high", rescale=True)
    assert result.accuracy[0] == pytest.approx(hits(model, torch.from_numpy(high), y))


def test_clipping_is_an_explicit_option_and_changes_high_pass_images() -> None:
    model, (x, y) = tiny_model(), tiny_data()
    clipped = filtered_accuracy(model, x, y, [2.0], kind="high", clip=(0.0, 1.0))
    assert clipped.clip == (0.0, 1.0)
    assert clipped.accuracy[0] == pytest.approx(hits(model, frequency_filter(x, 2.0, kind="high").clamp(0, 1), y))
    raw = frequency_filter(x, 2.0, kind="high")
    assert float((raw < 0).double().mean()) > 0.3  # clipping would zero these pixels
    assert clipped.to_dict()["clip"] == [0.0, 1.0]


def test_filtered_accuracy_beyond_the_corner_equals_clean_accuracy(mnist_model, mnist_test) -> None:
    x, y = mnist_test[0][:300], mnist_test[1][:300]
    corner = math.hypot(14, 14) + 1
    low = filtered_accuracy(mnist_model, x, y, [2, 6, corner], kind="low")
    assert low.accuracy[-1] == low.clean
    assert low.clean > 0.9 and low.accuracy[0] < low.clean
    square = filtered_accuracy(mnist_model, x, y, [14.5], kind="low", shape="square")
    assert square.accuracy[0] == low.clean  # the square's corner lies at 14 on 28 x 28
    high = filtered_accuracy(mnist_model, x, y, [0.0, corner], kind="high")
    assert high.accuracy[0] == high.clean  # radius 0 keeps every frequency
    blank = filtered_accuracy(mnist_model, x, y, [0.0], kind="low").accuracy[0]
    assert high.accuracy[1] == blank  # both see a blank image
    assert low.to_dict()["radii"] == [2.0, 6.0, corner]
    # On MNIST the high-pass image is mostly negative: clipping it is a different experiment.
    raw = FrequencyFilter(4, kind="high")(x)
    assert float((raw < 0).double().mean()) > 0.4


def test_filtered_accuracy_refuses_bad_arguments() -> None:
    model, (x, y) = tiny_model(), tiny_data(n=4)
    with pytest.raises(ValueError, match="unknown kind 'band'"):
        filtered_accuracy(model, x, y, [1.0], kind="band")
    with pytest.raises(ValueError, match="unknown shape 'ring'"):
        filtered_accuracy(model, x, y, [1.0], shape="ring")
    with pytest.raises(ValueError, match="radii must be >= 0"):
        filtered_accuracy(model, x, y, [-1.0])
    with pytest.raises(ValueError, match="at least one radius"):
        filtered_accuracy(model, x, y, [])
    with pytest.raises(ValueError, match="clip must have lo < hi"):
        filtered_accuracy(model, x, y, [1.0], clip=(1.0, 0.0))


def test_per_image_correctness_matches_the_accuracies_and_stays_out_of_the_json() -> None:
    model, (x, y) = tiny_model(), tiny_data()
    radii = (1.0, 3.0)
    result = filtered_accuracy(model, x, y, radii, kind="high", batch_size=7, per_image=True)
    assert result.correct.shape == (2, 40) and result.correct.dtype == torch.bool
    for i, r in enumerate(radii):
        with torch.no_grad():
            expected = model(frequency_filter(x, r, kind="high")).argmax(1) == y
        assert torch.equal(result.correct[i], expected)
    assert result.accuracy == pytest.approx(tuple(result.correct.double().mean(1).tolist()), abs=1e-12)
    assert float(result.clean_correct.double().mean()) == pytest.approx(result.clean)
    assert "correct" not in result.to_dict() and "clean_correct" not in result.to_dict()
    plain = filtered_accuracy(model, x, y, radii, kind="high")
    assert plain.correct is None and plain.accuracy == result.accuracy
