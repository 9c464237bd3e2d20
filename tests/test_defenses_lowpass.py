"""Contracts of bandguard.defenses.lowpass: LowPass / HighPass over the one FrequencyFilter."""

from __future__ import annotations

import pytest
import torch
from _tiny import images, tiny_net
from torch import nn

from bandguard.defenses import DEFENSE_CLIP, HighPass, LowPass
from bandguard.fourier import FrequencyFilter, frequency_filter


@pytest.mark.parametrize("shape", ["disc", "square"])
def test_default_output_is_the_filter_clipped_to_the_model_bounds(shape: str, device: torch.device,
                                                                   dtype: torch.dtype) -> None:
    x = 0.2 * images(4, 3, 16, 16, dtype=dtype, device=device)
    x[..., 5:11] += 0.8  # a bright bar with sharp edges, like an MNIST stroke: the low-pass rings
    out = LowPass(3, shape=shape)(x)
    raw = frequency_filter(x, 3, shape=shape)
    assert DEFENSE_CLIP == (0.0, 1.0) and out.dtype == dtype and out.device.type == device.type
    assert torch.equal(out, raw.clamp(0, 1))
    assert raw.min() < 0 or raw.max() > 1  # the ideal low-pass rings past the bounds: the clip matters
    assert torch.equal(LowPass(3, shape=shape, clip=None)(x), raw)


@pytest.mark.parametrize("shape", ["disc", "square"])
@pytest.mark.parametrize("profile", ["ideal", "gaussian", "butterworth"])
def test_unclipped_low_plus_high_is_the_input(shape: str, profile: str) -> None:
    x = images(2, 3, 7, 9)
    low = LowPass(2.5, shape=shape, profile=profile, clip=None)(x)
    high = HighPass(2.5, shape=shape, profile=profile, clip=None)(x)
    torch.testing.assert_close(low + high, x, atol=1e-5, rtol=0)
    # Clipped, the high-pass image loses its negative half.
    assert torch.equal(HighPass(2.5, shape=shape, profile=profile)(x), high.clamp(0, 1))


def test_protocol_facts() -> None:
    for cls in (LowPass, HighPass):
        defense = cls(3)
        assert defense.randomized is False and defense.differentiable is True and defense.forward_cost == 1
    assert "mask" not in LowPass(3).state_dict() and not list(LowPass(3).parameters())


def test_rescale_divides_each_image_by_its_maximum() -> None:
    x = images(3, 2, 8, 8) * 0.5
    out = LowPass(2, rescale=True, clip=None)(x)
    plain = LowPass(2, clip=None)(x)
    torch.testing.assert_close(out, plain / plain.amax(dim=(1, 2, 3), keepdim=True))
    torch.testing.assert_close(out.amax(dim=(1, 2, 3)), torch.ones(3))


def test_gradcheck() -> None:
    x = images(1, 1, 5, 4, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(LowPass(2.0, clip=None), (x,))
    assert torch.autograd.gradcheck(HighPass(2.0, shape="square", profile="gaussian", clip=None), (x,))


def test_from_filter_sequential_and_repr() -> None:
    net, x = tiny_net(), images()
    settings = FrequencyFilter(2, shape="square", clip=(0.0, 1.0))
    lp = LowPass.from_filter(settings)
    assert lp.filter == settings
    torch.testing.assert_close(nn.Sequential(lp, net)(x), net(settings(x)))
    assert repr(lp) == "LowPass(radius=2, shape='square', clip=(0.0, 1.0))"
    assert repr(HighPass(3, clip=None)) == "HighPass(radius=3, clip=None)"
    assert "order=3" in repr(LowPass(2, profile="butterworth", order=3))
    with pytest.raises(ValueError, match="HighPass needs a kind='high' filter, got 'low'"):
        HighPass.from_filter(settings)


def test_errors() -> None:
    with pytest.raises(ValueError, match="radius must be >= 0"):
        LowPass(-1)
    with pytest.raises(ValueError, match="unknown profile 'box'"):
        LowPass(2, profile="box")
    with pytest.raises(ValueError, match="unknown shape 'ring'"):
        HighPass(2, shape="ring")
    with pytest.raises(ValueError, match="order"):
        LowPass(2, profile="butterworth", order=0)


def test_forward_checks_metadata_only_so_no_host_sync_per_forward() -> None:
    # The values are the entry point's to check (once per attack or evaluation): a finiteness test
    # here would be a host sync on every forward of an attack's loop on a GPU. NaN goes through.
    out = LowPass(3)(torch.full((2, 1, 8, 8), float("nan")))
    assert out.shape == (2, 1, 8, 8) and bool(out.isnan().all())
    with pytest.raises(ValueError, match="x must hold at least one"):
        LowPass(3)(torch.rand(0, 1, 8, 8))
    with pytest.raises(ValueError, match="x looks channels-last"):
        LowPass(3)(torch.rand(2, 32, 32, 3))
