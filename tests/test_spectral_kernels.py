"""Contracts of bandguard.spectral.kernels: kernel spectra on the one 32 x 32 kernel grid."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from bandguard import fourier
from bandguard.defenses import smooth_kernels
from bandguard.spectral import kernel_spectrum
from bandguard.spectral.kernels import kernel_amplitude


def known_kernels() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(), nn.Conv2d(2, 1, 3, bias=False))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[:, :, 1, 1] = 1.0  # identity kernels: flat response
        model[2].weight.fill_(1.0 / 9)  # box blur: low-pass
    return model


def test_kernel_spectrum_of_known_kernels() -> None:
    result = kernel_spectrum(known_kernels())
    assert result.size == fourier.KERNEL_GRID == 32
    assert [layer.name for layer in result.layers] == ["0", "2"]
    torch.testing.assert_close(result["0"].spectrum, torch.ones(32, 32))
    box = result["2"].spectrum
    assert float(box[16, 16]) == pytest.approx(1.0) and float(box[16, 16]) == float(box.max())
    # The box's response is separable: |sin(3 pi k / 32) / (3 sin(pi k / 32))| along each axis.
    k = torch.arange(-16, 16, dtype=torch.float64)
    one = torch.where(k == 0, 1.0, (torch.sin(3 * math.pi * k / 32) / (3 * torch.sin(math.pi * k / 32))).abs())
    torch.testing.assert_close(box.double(), one[:, None] * one[None, :], atol=1e-6, rtol=0)
    flat_share = float((fourier.radial_distance(32, 32) >= 8).double().mean())
    assert result["0"].high_fraction == pytest.approx(flat_share)
    assert result["2"].high_fraction < 0.3 * flat_share
    assert result["0"].kernel_shape == (2, 1, 3, 3)
    torch.testing.assert_close(result["0"].radial, torch.ones_like(result["0"].radial))
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        kernel_spectrum(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="at most 32 x 32"):
        kernel_spectrum(nn.Conv2d(1, 1, 33))


def test_kernel_amplitude_is_the_mean_response_and_smoothing_lowers_high_frequencies() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3))
    weight = model[0].weight.detach()
    expected = fourier.kernel_frequency_response(weight).abs().mean(dim=(0, 1))
    torch.testing.assert_close(kernel_amplitude(weight), expected)
    before = kernel_spectrum(model)["0"].high_fraction
    after = kernel_spectrum(smooth_kernels(model, 1.0))["0"].high_fraction
    assert after < before  # Wang et al.'s smoothing is a low-pass on the kernel grid
    assert json.loads(json.dumps(kernel_spectrum(model).to_dict()))["size"] == 32
