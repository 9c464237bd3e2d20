"""The frequency-principle monitor (Xu et al. 1901.06523, filtering method)."""

from __future__ import annotations

import json
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bandguard.models import create_model
from bandguard.spectral.fprinciple import (
    FPrincipleMonitor,
    frequency_errors,
    gaussian_filter_kernel,
    nonuniform_dft,
    principal_projection,
    projection_errors,
    squared_distances,
)
from bandguard.spectral.plots import plot_fprinciple
from bandguard.training import TrainConfig, train


def test_squared_distances_match_cdist_and_chunking() -> None:
    x = torch.rand(37, 1, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = squared_distances(x, chunk=8)
    flat = x.flatten(1)
    torch.testing.assert_close(d, torch.cdist(flat, flat) ** 2)
    assert torch.equal(d.diagonal(), torch.zeros(37, dtype=torch.float64))


def test_kernel_rows_sum_to_one_and_follow_the_formula() -> None:
    d = torch.tensor([[0.0, 2.0, 8.0], [2.0, 0.0, 4.0], [8.0, 4.0, 0.0]], dtype=torch.float64)
    k = gaussian_filter_kernel(d, 2.0)
    g = torch.exp(-d / 4.0)
    torch.testing.assert_close(k, g / g.sum(1, keepdim=True))
    torch.testing.assert_close(k.sum(1), torch.ones(3, dtype=torch.float64))


def test_frequency_errors_exact_cases() -> None:
    y = F.one_hot(torch.tensor([0, 1, 2, 1]), 3).double()
    h = torch.rand(4, 3, dtype=torch.float64).softmax(1)
    kernel = torch.stack([torch.eye(4, dtype=torch.float64), torch.full((4, 4), 0.25, dtype=torch.float64)])
    low, high = frequency_errors(kernel, y, y)
    zero = torch.zeros(2, dtype=torch.float64)
    assert torch.equal(low, zero) and torch.equal(high, zero)
    low, _ = frequency_errors(kernel, y, h)
    # identity kernel: the low part is everything
    assert float(low[0]) == pytest.approx(float(torch.linalg.norm(h - y) / torch.linalg.norm(y)))
    # averaging kernel: the low part is the mean of each column
    ylow, hlow = y.mean(0).expand(4, 3), h.mean(0).expand(4, 3)
    assert float(low[1]) == pytest.approx(float(torch.linalg.norm(hlow - ylow) / torch.linalg.norm(ylow)))


def mnist_reference(mnist_train, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return mnist_train.tensors(n)


def test_monitor_warns_on_degenerate_deltas_and_validates(mnist_train) -> None:
    x, y = mnist_reference(mnist_train, 200)
    with pytest.warns(UserWarning, match=r"delta=0.1 is degenerate: the kernel is close to the identity"):
        FPrincipleMonitor(x, y, deltas=(0.1, 10.0))
    with pytest.warns(UserWarning, match="averages almost uniformly"):
        FPrincipleMonitor(x, y, deltas=(1e6,))
    with pytest.raises(ValueError, match="deltas must be > 0"):
        FPrincipleMonitor(x, y, deltas=(0.0,))
    with pytest.raises(ValueError, match="at most 5000"):
        FPrincipleMonitor(torch.zeros(5001, 1, 2, 2), torch.zeros(5001, dtype=torch.long))
    with pytest.raises(ValueError, match="y has 199 labels"):
        FPrincipleMonitor(x, y[:199])
    monitor = FPrincipleMonitor(x, y, deltas=(10.0,))
    with pytest.raises(ValueError, match="logits"):
        monitor.on_epoch_end(nn.Sequential(nn.Flatten(), nn.Linear(784, 3)), 0, {})


def test_monitor_records_restores_mode_and_saves(mnist_train, tmp_path) -> None:
    x, y = mnist_reference(mnist_train, 300)
    torch.manual_seed(0)
    model = create_model("mnist_cnn").train()
    monitor = FPrincipleMonitor(x, y, deltas=(10.0, 30.0), out_dir=tmp_path, plot=plot_fprinciple)
    assert monitor.kernel.shape == (2, 300, 300) and monitor.kernel.device == x.device
    monitor.on_train_begin(model)
    monitor.on_epoch_end(model, 0, {"loss": 1.0})
    assert model.training
    result = monitor.result()
    assert result.epochs == (0, 1) and len(result.e_low) == 2 and len(result.e_low[0]) == 2
    assert result.e_low[0] == result.e_low[1]  # no training in between: the same numbers
    saved = json.loads((tmp_path / "fprinciple.json").read_text())
    assert saved["deltas"] == [10.0, 30.0] and saved["e_high"] == [list(r) for r in result.e_high]
    assert (tmp_path / "fprinciple.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(TypeError, match="plot must be callable"):
        FPrincipleMonitor(x, y, deltas=(10.0,), plot="png")  # type: ignore[arg-type]


def test_low_frequencies_are_fitted_first_on_mnist(mnist_train) -> None:
    """Xu et al.'s F-principle on a short real run: e_low drops below 0.5 no later than e_high."""
    start = time.perf_counter()
    x, y = mnist_train.tensors(1500)
    torch.manual_seed(0)
    model = create_model("mnist_cnn")
    deltas = (3.0, 10.0)
    monitor = FPrincipleMonitor(x[:1000], y[:1000], deltas=deltas)
    config = TrainConfig(epochs=2, batch_size=50, lr=0.02, seed=0, amp="off")
    train(model, (x, y), config, callbacks=[monitor], progress=False)
    result = monitor.result()
    assert result.epochs == (0, 1, 2)
    low, high = result.first_below(0.5, "low"), result.first_below(0.5, "high")
    for delta in deltas:
        assert low[delta] is not None, result.e_low
        assert high[delta] is None or low[delta] <= high[delta], (low, high)
        j = deltas.index(delta)
        assert result.e_low[-1][j] < 0.5 * result.e_low[0][j]  # training fitted the low part
    assert time.perf_counter() - start < 120


def test_nonuniform_dft_on_a_uniform_grid_is_the_fft() -> None:
    n = 16
    positions = 2 * torch.pi * torch.arange(n, dtype=torch.float64) / n
    values = torch.randn(n, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = torch.arange(n, dtype=torch.float64)
    torch.testing.assert_close(nonuniform_dft(positions, values, k), torch.fft.fft(values, dim=0) / n)
    torch.testing.assert_close(nonuniform_dft(positions, values[:, 0], k[:3]), torch.fft.fft(values[:, 0])[:3] / n)
    with pytest.raises(ValueError, match="values must be"):
        nonuniform_dft(positions, values[:5], k)


def test_principal_projection_finds_the_direction_of_largest_variance() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(200, generator=g, dtype=torch.float64)
    direction = torch.tensor([3.0, -4.0], dtype=torch.float64) / 5
    # a line through (1, 2) along `direction`, with a little noise across it
    x = torch.tensor([1.0, 2.0], dtype=torch.float64) + t[:, None] * direction
    x = x + 1e-3 * torch.randn(200, 1, generator=g, dtype=torch.float64) * torch.tensor([4.0, 3.0]) / 5
    p = principal_projection(x.reshape(200, 1, 2))
    # direction's largest entry (-4/5) is made positive: the coordinate is -(t - mean t)
    torch.testing.assert_close(p, -(t - t.mean()), atol=1e-2, rtol=0)
    scalars = torch.tensor([1.0, 2.0, 6.0])
    torch.testing.assert_close(principal_projection(scalars), torch.tensor([-2.0, -1.0, 3.0]))
    with pytest.raises(ValueError, match="n >= 2"):
        principal_projection(torch.ones(1, 3))


def test_projection_errors_measure_each_frequency_on_its_own() -> None:
    """sin x + sin 3x + sin 5x fitted without the 5x term: error 1 at k = 5, 0 at k = 1 and 3."""
    x = -torch.pi + 2 * torch.pi * torch.arange(64, dtype=torch.float64) / 64
    target = torch.sin(x) + torch.sin(3 * x) + torch.sin(5 * x)
    k = torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64)
    output = torch.sin(x) + 0.5 * torch.sin(3 * x)
    errors = projection_errors(x[:, None], target, output, k)
    torch.testing.assert_close(errors, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), atol=1e-12, rtol=0)
    # the columns of a [n, c] target are pooled: both columns off by half at k = 3 -> 0.5
    two = projection_errors(x, torch.stack([target, target], 1), torch.stack([output, output], 1), k)
    torch.testing.assert_close(two, errors)
    with pytest.raises(ValueError, match="output must have the target's shape"):
        projection_errors(x, target, output[:10], k)


def test_per_sample_residuals_sum_to_the_errors_and_are_kept_per_record() -> None:
    from bandguard.spectral.fprinciple import frequency_residuals

    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 4, 4, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    kernel = gaussian_filter_kernel(squared_distances(x), 0.5).float()
    target = torch.nn.functional.one_hot(y, 3).float()
    probs = torch.rand(40, 3, generator=g).softmax(1)
    low, high = frequency_residuals(kernel, target, probs)
    e_low, e_high = frequency_errors(kernel, target, probs)
    assert low.shape == high.shape == (40,)
    assert torch.allclose(low.sum().sqrt() / torch.linalg.matrix_norm(kernel @ target), e_low)
    assert torch.allclose(high.sum().sqrt() / torch.linalg.matrix_norm(target - kernel @ target), e_high)

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    monitor = FPrincipleMonitor(x, y, deltas=(0.3, 0.8), per_sample=True)
    with pytest.raises(ValueError, match="nothing recorded"):
        monitor.residuals()
    monitor.on_train_begin(model)
    monitor.on_epoch_end(model)
    low_r, high_r = monitor.residuals()
    assert low_r.shape == high_r.shape == (2, 2, 40)
    result = monitor.result()
    norm = torch.linalg.matrix_norm(monitor.kernel[0] @ monitor.target)
    assert low_r[1, 0].sum().sqrt() / norm == pytest.approx(result.e_low[1][0], rel=1e-5)
    with pytest.raises(ValueError, match="per_sample=True"):
        FPrincipleMonitor(x, y, deltas=(0.5,)).residuals()
