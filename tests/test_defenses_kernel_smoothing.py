"""Contracts of bandguard.defenses.kernel_smoothing (Wang et al. 1905.13545) on tiny nets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.signal
import torch
from _tiny import images, tiny_net
from torch import nn

from bandguard.defenses import (
    SmoothSettings,
    filter_kernel,
    filter_kernels,
    neighbor_weight_penalty,
    smooth_kernel,
    smooth_kernels,
)
from bandguard.defenses.regularizers import kernel_high_frequency_energy


def test_settings_normalise_layers() -> None:
    assert SmoothSettings(0.25).layers == "first"
    assert SmoothSettings(0.25, layers=0).layers == ("0",)  # a spec's "layers=0"
    assert SmoothSettings(0.25, layers=["0", "2"]).layers == ("0", "2")
    with pytest.raises(ValueError, match="rho must be >= 0"):
        SmoothSettings(-0.5)


def test_smooth_kernel_matches_scipy_symmetric_convolution() -> None:
    rho = 0.3
    mask = np.full((3, 3), rho)
    mask[1, 1] = 1.0
    for kernel in (np.array([[1.0, 2.0, 0.0], [-1.0, 3.0, 4.0], [0.5, 0.0, -2.0]]),
                   np.arange(25.0).reshape(5, 5) % 7 - 3, np.array([[2.0]])):
        expected = scipy.signal.convolve2d(kernel, mask, boundary="symm", mode="same")
        got = smooth_kernel(torch.tensor(kernel)[None, None], rho)[0, 0].numpy()
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_normalised_smoothing_keeps_flat_kernels_and_divides_by_the_mask_sum() -> None:
    kernel = torch.tensor([[1.0, 2.0, 0.0], [-1.0, 3.0, 4.0], [0.5, 0.0, -2.0]])[None, None]
    raw, normed = smooth_kernel(kernel, 1.0), smooth_kernel(kernel, 1.0, normalise=True)
    torch.testing.assert_close(normed, raw / 9)
    flat = torch.full((2, 3, 3, 3), 0.7)
    torch.testing.assert_close(smooth_kernel(flat, 0.5, normalise=True), flat)  # DC gain 1
    torch.testing.assert_close(smooth_kernel(flat, 0.5), flat * 5)  # Wang et al.'s mask: 1 + 8 rho
    net = tiny_net()
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    smoothed = smooth_kernels(net, 1.0, normalise=True)
    first = next(m for m in smoothed.modules() if isinstance(m, nn.Conv2d))
    torch.testing.assert_close(first.weight, smooth_kernel(conv.weight, 1.0) / 9)
    assert SmoothSettings(1.0, normalise=True).normalise
    with pytest.raises(TypeError, match="normalise"):
        smooth_kernels(net, 1.0, normalise="yes")


def test_smooth_kernels_rho_zero_is_identity_and_model_is_untouched() -> None:
    net = tiny_net()
    before = copy.deepcopy(net.state_dict())
    x = images()
    same = smooth_kernels(net, 0.0, "all")
    assert same is not net
    torch.testing.assert_close(same(x), net(x), atol=0, rtol=0)
    smoothed = smooth_kernels(net, 0.5, "first")
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(smoothed[0].weight, net[0].weight)
    assert torch.equal(smoothed[2].weight, net[2].weight)  # "first" only
    expected = smooth_kernel(net[0].weight.detach(), 0.5)
    torch.testing.assert_close(smoothed[0].weight.detach(), expected)
    every = smooth_kernels(net, 0.5, "all")
    assert not torch.equal(every[2].weight, net[2].weight)
    named = smooth_kernels(net, 0.5, ["2"])
    assert torch.equal(named[0].weight, net[0].weight) and not torch.equal(named[2].weight, net[2].weight)
    assert smoothed[0].weight.requires_grad == net[0].weight.requires_grad
    assert smoothed.training == net.training


def test_smoothing_spatial_not_channel_axes() -> None:
    # A kernel that is a delta in space but varies over channels: smoothing spreads it in space only.
    w = torch.zeros(2, 3, 3, 3)
    w[:, :, 1, 1] = torch.arange(6.0).reshape(2, 3)
    out = smooth_kernel(w, 0.5)
    torch.testing.assert_close(out[:, :, 1, 1], w[:, :, 1, 1])
    torch.testing.assert_close(out[:, :, 0, 0], 0.5 * w[:, :, 1, 1])


def test_filter_kernels_identity_beyond_corner_and_zero_at_radius_zero() -> None:
    net, x = tiny_net(), images()
    before = copy.deepcopy(net.state_dict())
    same = filter_kernels(net, 23.0, "all")  # beyond the corner of the 32 x 32 kernel grid (22.6)
    torch.testing.assert_close(same(x), net(x), atol=1e-5, rtol=0)
    zero = filter_kernels(net, 0.0, "first")
    assert zero[0].weight.abs().max() == 0
    low = filter_kernels(net, 4.0, "first")
    assert 0 < (low[0].weight - net[0].weight).abs().max()
    # Low-pass filtering makes a kernel smoother: adjacent weights get closer.
    assert neighbor_weight_penalty(low, "first") < neighbor_weight_penalty(net, "first")
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def test_filter_kernel_is_the_low_pass_of_the_kernel_grid_response(dtype: torch.dtype) -> None:
    weight = torch.randn(2, 3, 3, 3, generator=torch.Generator().manual_seed(0)).to(dtype)
    radius = 6.0
    # Written out on the 32 x 32 grid: pad, centred FFT, keep d < radius, inverse, crop.
    canvas = torch.zeros(2, 3, 32, 32, dtype=dtype)
    canvas[..., :3, :3] = weight
    spectrum = torch.fft.fftshift(torch.fft.fft2(canvas), dim=(-2, -1))
    rows = torch.arange(32)[:, None] - 16
    cols = torch.arange(32)[None, :] - 16
    keep = (rows**2 + cols**2 < radius**2).to(dtype)
    expected = torch.fft.ifft2(torch.fft.ifftshift(spectrum * keep, dim=(-2, -1))).real[..., :3, :3]
    got = filter_kernel(weight, radius)
    assert got.dtype == dtype
    torch.testing.assert_close(got, expected)
    # The same radius names the same frequencies as the regularizer: filtering removes most of the
    # energy the regularizer counts (the crop puts a little back).
    after, before = kernel_high_frequency_energy(got, radius).sum(), kernel_high_frequency_energy(weight, radius).sum()
    assert float(after) < 0.5 * float(before)


def test_weight_defense_errors() -> None:
    net = tiny_net()
    dense = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    with pytest.raises(ValueError, match="rho must be >= 0"):
        smooth_kernels(net, -0.1)
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        smooth_kernels(dense, 0.1)
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        smooth_kernels(net, 0.1, ["conv9"])
    with pytest.raises(ValueError, match="not nn.Conv2d"):
        smooth_kernels(net, 0.1, ["1"])
    with pytest.raises(ValueError, match="unknown layer 'last' in layers"):
        smooth_kernels(net, 0.1, "last")
    with pytest.raises(ValueError, match="kernels must be at most 32 wide"):
        filter_kernels(nn.Sequential(nn.Conv2d(1, 1, 33)), 1.0)
