"""Contracts of bandguard.defenses on tiny models (fast; real-data checks are in test_defenses_data.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.signal
import torch
from torch import nn
from torch.func import functional_call

from bandguard.defenses import (
    DEFENSES,
    Defended,
    HighPass,
    LowPass,
    LowPassSettings,
    Penalty,
    PostAverageSettings,
    PostAveraging,
    SmoothSettings,
    build_defense,
    defend,
    filter_kernels,
    forward_cost,
    highpass_filter,
    is_randomized,
    kernel_high_frequency_penalty,
    lowpass_filter,
    neighbor_weight_penalty,
    neighbours,
    parse_defense_spec,
    parse_regularizer,
    post_average,
    sample_directions,
    smooth_kernel,
    smooth_kernels,
)
from bandguard.defenses.base import bpda


def tiny_net(channels: int = 1, size: int = 8, classes: int = 4, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(4 * size * size, classes),
        )
    return net.eval()


def images(n: int = 3, c: int = 1, h: int = 8, w: int = 8, *, seed: int = 0,
           dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g, dtype=dtype).to(device)


# --------------------------------------------------------------------------- protocol


def test_protocol_flags_and_bpda() -> None:
    net = tiny_net()
    assert not is_randomized(nn.Sequential(LowPass(3), net))
    assert is_randomized(PostAveraging(net, radius=1.0))
    assert forward_cost(PostAveraging(net, K=2, radius=1.0)) == 1 + 3 * 2 * 2
    assert forward_cost(net) == 1
    assert LowPass(3).differentiable and LowPass.randomized is False
    exact, approx = torch.tensor([3.0]), torch.tensor([1.0], requires_grad=True)
    out = bpda(exact, approx * 2)
    out.backward()
    assert out.item() == 3.0 and approx.grad.item() == 2.0


# --------------------------------------------------------------------------- low / high pass


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (28, 28), (32, 31)])
@pytest.mark.parametrize("smooth", ["ideal", "gaussian", "butterworth"])
def test_low_plus_high_is_input(shape: tuple[int, int], smooth: str) -> None:
    x = images(2, 3, *shape)
    low, high = LowPass(3.5, smooth=smooth)(x), HighPass(3.5, smooth=smooth)(x)
    assert low.shape == x.shape
    torch.testing.assert_close(low + high, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(low, lowpass_filter(x, 3.5, smooth=smooth), atol=1e-6, rtol=0)
    torch.testing.assert_close(high, highpass_filter(x, 3.5, smooth=smooth), atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (32, 32)])
def test_radius_beyond_corner_is_identity_and_zero_radius_is_zero(shape: tuple[int, int]) -> None:
    h, w = shape
    x = images(2, 3, h, w)
    corner = ((h // 2) ** 2 + (w // 2) ** 2) ** 0.5
    torch.testing.assert_close(LowPass(corner + 0.01)(x), x, atol=1e-5, rtol=0)
    assert LowPass(0)(x).abs().max() < 1e-6
    # Just inside the corner something is removed (the corner frequencies).
    assert (LowPass(corner)(x) - x).abs().max() > 1e-4


def test_lowpass_keeps_a_low_frequency_and_removes_a_high_one() -> None:
    h = w = 16
    rows = torch.arange(h, dtype=torch.float64)[:, None].expand(h, w)
    slow = torch.cos(2 * torch.pi * 2 * rows / h)  # frequency 2
    fast = torch.cos(2 * torch.pi * 7 * rows / h)  # frequency 7
    x = (slow + fast)[None, None]
    torch.testing.assert_close(LowPass(4)(x)[0, 0], slow, atol=1e-10, rtol=0)
    torch.testing.assert_close(HighPass(4)(x)[0, 0], fast, atol=1e-10, rtol=0)


def test_lowpass_mask_cache_follows_shape_and_dtype_and_is_not_state() -> None:
    lp = LowPass(3)
    assert "mask" not in lp.state_dict()
    lp(images(1, 1, 8, 8))
    assert lp.mask.shape == (8, 8)
    out = lp(images(1, 1, 12, 10, dtype=torch.float64))
    assert lp.mask.shape == (12, 10) and lp.mask.dtype == torch.float64 and out.dtype == torch.float64
    torch.testing.assert_close(out, lowpass_filter(images(1, 1, 12, 10, dtype=torch.float64), 3))


def test_lowpass_rescale_gives_unit_max_per_image() -> None:
    x = images(3, 2, 8, 8) * 0.5
    out = LowPass(2, rescale=True)(x)
    torch.testing.assert_close(out.amax(dim=(1, 2, 3)), torch.ones(3))
    plain = LowPass(2)(x)
    torch.testing.assert_close(out, plain / plain.amax(dim=(1, 2, 3), keepdim=True))


@pytest.mark.parametrize("smooth", ["ideal", "gaussian"])
def test_lowpass_gradcheck(smooth: str) -> None:
    x = images(1, 1, 5, 4, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(LowPass(2.0, smooth=smooth), (x,))
    assert torch.autograd.gradcheck(HighPass(2.0, smooth=smooth), (x,))


def test_lowpass_in_sequential_and_repr() -> None:
    net = tiny_net()
    x = images()
    seq = nn.Sequential(LowPass(2), net)
    torch.testing.assert_close(seq(x), net(lowpass_filter(x, 2)))
    assert "radius=2" in repr(seq) and "ideal" in repr(seq)
    assert "order=3" in repr(LowPass(2, smooth="butterworth", order=3))


def test_lowpass_errors() -> None:
    with pytest.raises(ValueError, match="radius must be >= 0"):
        LowPass(-1)
    with pytest.raises(ValueError, match="unknown smooth"):
        LowPass(2, smooth="box")
    with pytest.raises(ValueError, match="order"):
        LowPass(2, smooth="butterworth", order=0)
    with pytest.raises(ValueError, match="radius"):
        lowpass_filter(images(), -0.5)


# --------------------------------------------------------------------------- post-averaging


def test_directions_have_unit_norm_and_neighbours_come_in_pairs_at_each_radius() -> None:
    x = images(2, 3, 5, 4)
    u = sample_directions(2, (3, 5, 4), 6, generator=torch.Generator().manual_seed(1))
    assert u.shape == (2, 6, 3, 5, 4)
    torch.testing.assert_close(u.flatten(2).norm(dim=-1), torch.ones(2, 6))
    radii = (0.5, 1.0, 1.5)
    pts = neighbours(x, u, radii)
    assert pts.shape == (2, 1 + 3 * 2 * 6, 3, 5, 4)
    assert torch.equal(pts[:, 0], x)
    offsets = (pts[:, 1:] - x[:, None]).reshape(2, 3, 2, 6, -1)  # [n, radius, sign, k, chw]
    for i, r in enumerate(radii):
        torch.testing.assert_close(offsets[:, i].norm(dim=-1), torch.full((2, 2, 6), r))
        torch.testing.assert_close(offsets[:, i, 0], -offsets[:, i, 1])
        torch.testing.assert_close(offsets[:, i, 0], r * u.flatten(2))
    # Directions are drawn independently per image, not shared.
    assert not torch.allclose(u[0], u[1])


def test_radius_zero_equals_model_softmax() -> None:
    net, x = tiny_net(), images(5)
    out = PostAveraging(net, radius=0.0, K=3)(x)
    torch.testing.assert_close(out.exp(), torch.softmax(net(x), dim=-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(5))


def test_same_generator_same_output_and_fresh_directions_per_call() -> None:
    net, x = tiny_net(), images(4)
    a = PostAveraging(net, radius=2.0, K=4, generator=torch.Generator().manual_seed(3))
    b = PostAveraging(net, radius=2.0, K=4, generator=torch.Generator().manual_seed(3))
    first = a(x)
    assert torch.equal(first, b(x))
    assert not torch.equal(first, a(x))  # new directions on every call


def test_replay_with_sampled_directions() -> None:
    net, x = tiny_net(), images(4)
    pa = PostAveraging(net, radius=2.0, K=4, generator=torch.Generator().manual_seed(5))
    replay = PostAveraging(net, radius=2.0, K=4, generator=torch.Generator().manual_seed(5))
    u = replay.sample(x)
    s = pa.settings
    expected = post_average(net, x, u, s.effective_radii)
    assert torch.equal(pa(x), expected)
    # The mean softmax over the neighbours, written out.
    logits = net(neighbours(x, u, s.effective_radii).flatten(0, 1)).reshape(4, 1 + 3 * 8, -1)
    torch.testing.assert_close(expected.exp(), torch.softmax(logits, -1).mean(1))


@pytest.mark.parametrize("max_batch", [3, 25, 1000])
def test_chunking_does_not_change_the_result(max_batch: int) -> None:
    net, x = tiny_net(), images(5)
    u = sample_directions(5, (1, 8, 8), 4, generator=torch.Generator().manual_seed(0))
    ref = post_average(net, x, u, (0.3, 0.6, 0.9), max_batch=10_000)
    torch.testing.assert_close(post_average(net, x, u, (0.3, 0.6, 0.9), max_batch=max_batch), ref)


def test_reduce_options_and_bounds() -> None:
    net, x = tiny_net(), images(4)
    u = sample_directions(4, (1, 8, 8), 5, generator=torch.Generator().manual_seed(0))
    radii = (1.0, 2.0, 3.0)
    logits = net(neighbours(x, u, radii).flatten(0, 1)).reshape(4, 31, -1)
    by_logits = post_average(net, x, u, radii, reduce="logits")
    torch.testing.assert_close(by_logits, torch.log_softmax(logits.mean(1), -1))
    votes = post_average(net, x, u, radii, reduce="vote").exp()
    counts = nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float().mean(1)
    torch.testing.assert_close(votes, counts, atol=1e-30, rtol=1e-6)
    clipped = neighbours(x, u, radii, bounds=(0.0, 1.0))
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert neighbours(x, u, radii).max() > 1  # Lin et al. do not clip: points leave [0, 1]
    one_sided = neighbours(x, u, radii, antithetic=False, include_original=False)
    assert one_sided.shape[1] == 3 * 5
    pa = PostAveraging(net, radius=1.0, K=5, antithetic=False, include_original=False)
    assert pa.forward_cost == 15


def test_post_averaging_is_differentiable_in_x() -> None:
    net = tiny_net()
    x = images(2).requires_grad_(True)
    pa = PostAveraging(net, radius=1.0, K=3, generator=torch.Generator().manual_seed(0))
    loss = nn.functional.nll_loss(pa(x), torch.tensor([0, 1]))
    (grad,) = torch.autograd.grad(loss, x)
    assert grad.shape == x.shape and grad.abs().sum() > 0


def test_post_averaging_errors() -> None:
    net = tiny_net()
    with pytest.raises(ValueError, match="K must be >= 1"):
        PostAveraging(net, radius=1.0, K=0)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        PostAveraging(net, radius=-1.0)
    with pytest.raises(ValueError, match="unknown reduce"):
        PostAveraging(net, radius=1.0, reduce="median")
    with pytest.raises(ValueError, match="radii"):
        PostAveraging(net, radius=1.0, radii=(1.0, -2.0))
    with pytest.raises(ValueError, match="max_batch"):
        PostAveraging(net, radius=1.0, max_batch=0)
    with pytest.raises(TypeError, match="nn.Module"):
        PostAveraging(lambda x: x, radius=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="directions"):
        post_average(net, images(2), torch.zeros(3, 2, 1, 8, 8), (1.0,))


# --------------------------------------------------------------------------- kernel smoothing


def test_smooth_kernel_matches_scipy_symmetric_convolution() -> None:
    rho = 0.3
    mask = np.full((3, 3), rho)
    mask[1, 1] = 1.0
    for kernel in (np.array([[1.0, 2.0, 0.0], [-1.0, 3.0, 4.0], [0.5, 0.0, -2.0]]),
                   np.arange(25.0).reshape(5, 5) % 7 - 3, np.array([[2.0]])):
        expected = scipy.signal.convolve2d(kernel, mask, boundary="symm", mode="same")
        got = smooth_kernel(torch.tensor(kernel)[None, None], rho)[0, 0].numpy()
        np.testing.assert_allclose(got, expected, atol=1e-12)


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
    same = filter_kernels(net, 100.0, "all", size=16)
    torch.testing.assert_close(same(x), net(x), atol=1e-5, rtol=0)
    zero = filter_kernels(net, 0.0, "first")
    assert zero[0].weight.abs().max() == 0
    low = filter_kernels(net, 4.0, "first", size=16)
    assert 0 < (low[0].weight - net[0].weight).abs().max()
    # Low-pass filtering makes a kernel smoother: adjacent weights get closer.
    assert neighbor_weight_penalty(low, "first") < neighbor_weight_penalty(net, "first")
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


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
    with pytest.raises(ValueError, match="unknown layers 'last'"):
        smooth_kernels(net, 0.1, "last")
    with pytest.raises(ValueError, match="size must be >= the largest kernel"):
        filter_kernels(net, 1.0, size=2)
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        neighbor_weight_penalty(dense)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        kernel_high_frequency_penalty(net, -1.0)


# --------------------------------------------------------------------------- regularizers


class _Penalty(nn.Module):
    """Calls a penalty inside forward so functional_call can substitute the weights."""

    def __init__(self, net: nn.Module, fn) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.net, self.fn = net, fn

    def forward(self) -> torch.Tensor:
        return self.fn(self.net)


@pytest.mark.parametrize(("penalty", "zero_for_constant"), [
    (neighbor_weight_penalty, True),
    (lambda m: kernel_high_frequency_penalty(m, 1.0), True),
    # Zero-padded, a constant kernel is a box with high frequencies (documented).
    (lambda m: kernel_high_frequency_penalty(m, 2.0, size=6), False),
], ids=["neighbor", "highfreq", "highfreq-padded"])
def test_penalties_zero_for_constant_positive_otherwise_and_gradcheck(penalty, zero_for_constant) -> None:  # type: ignore[no-untyped-def]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 1, 3)).double()
    assert penalty(net).item() > 0
    const = copy.deepcopy(net)
    with torch.no_grad():
        for conv in (const[0], const[2]):
            levels = torch.randn(conv.weight.shape[:2], dtype=torch.float64)[..., None, None]
            conv.weight.copy_(levels.expand_as(conv.weight))
    value = penalty(const).item()
    assert (abs(value) < 1e-12) if zero_for_constant else value > 0
    wrapper = _Penalty(net, penalty)
    names = ["net.0.weight", "net.2.weight"]

    def f(w0: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        return functional_call(wrapper, dict(zip(names, (w0, w2))), ())

    w0 = net[0].weight.detach().clone().requires_grad_(True)
    w2 = net[2].weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (w0, w2))


def test_penalty_exact_values() -> None:
    conv = nn.Conv2d(1, 1, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))
    net = nn.Sequential(conv)
    assert neighbor_weight_penalty(net).item() == pytest.approx(0.5)  # diffs 0, 0, 1, 1
    # radius 0 keeps every frequency: Parseval gives the squared norm.
    assert kernel_high_frequency_penalty(net, 0.0).item() == pytest.approx(2.0)
    # radius 1 drops only the mean (DC): energy of w - mean(w) = 4 * 0.25.
    assert kernel_high_frequency_penalty(net, 1.0).item() == pytest.approx(1.0)


# --------------------------------------------------------------------------- composition, registry


def test_defend_composes_in_order_and_accepts_numbers_dicts_settings() -> None:
    net, x = tiny_net(), images()
    d = defend(net, lowpass=3, post_average=0.5, smooth=0.25,
               generator=torch.Generator().manual_seed(0))
    assert isinstance(d, Defended) and d.randomized and d.forward_cost == 91
    text = repr(d)
    assert text.index("smooth_kernels") < text.index("PostAveraging") < text.index("LowPass")
    inner = d.net.model
    assert isinstance(inner[0], LowPass) and not torch.equal(inner[1][0].weight, net[0].weight)
    same = defend(net, lowpass={"radius": 3}, post_average=PostAverageSettings(radius=0.5),
                  smooth=SmoothSettings(0.25), generator=torch.Generator().manual_seed(0))
    out = d(x)
    assert torch.equal(out, same(x))
    manual = PostAveraging(nn.Sequential(LowPass(3), smooth_kernels(net, 0.25)), radius=0.5,
                           generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, manual(x))
    plain = defend(net, lowpass=LowPassSettings(3))
    assert not plain.randomized and plain.forward_cost == 1
    torch.testing.assert_close(plain(x), net(lowpass_filter(x, 3)))
    with pytest.raises(TypeError, match="lowpass must be a number"):
        defend(net, lowpass="8")
    with pytest.raises(ValueError, match="bad options for post_average"):
        defend(net, post_average={"R": 1.0})


def test_specs_build_registered_defenses() -> None:
    assert {"lowpass", "highpass", "post_average", "smooth", "filter_kernels"} <= set(DEFENSES.names())
    assert parse_defense_spec("post_average:K=15,R=1.35") == ("post_average", (), {"K": 15, "R": 1.35})
    assert parse_defense_spec("smooth:0.25,layers=0+2") == ("smooth", (0.25,), {"layers": ("0", "2")})
    net, x = tiny_net(), images()
    lp = build_defense("lowpass:3", net)
    torch.testing.assert_close(lp(x), net(lowpass_filter(x, 3)))
    pa = build_defense("post_average:K=2,R=0.5,seed=1", net)
    assert pa.forward_cost == 13 and pa.randomized
    assert torch.equal(pa(x), build_defense("post_average:K=2,R=0.5,seed=1", net)(x))
    sm = build_defense("smooth:0.25,layers=all", net)
    assert not torch.equal(sm.net[2].weight, net[2].weight)
    hp = build_defense("highpass:2", net)
    torch.testing.assert_close(hp(x), net(highpass_filter(x, 2)))
    with pytest.raises(ValueError, match="unknown defense 'jpeg'"):
        build_defense("jpeg:75", net)
    with pytest.raises(ValueError, match="bad arguments"):
        build_defense("lowpass", net)
    with pytest.raises(ValueError, match="needs a radius"):
        build_defense("post_average:K=3", net)


# --------------------------------------------------------------------------- torch.compile


def _check_compiled(backend: str) -> None:
    net, x = tiny_net(), images(2)
    torch._dynamo.reset()
    lp = nn.Sequential(LowPass(3), net)
    torch.testing.assert_close(torch.compile(lp, backend=backend)(x), lp(x), atol=1e-5, rtol=1e-5)
    hp = nn.Sequential(HighPass(3, smooth="gaussian"), net)
    torch.testing.assert_close(torch.compile(hp, backend=backend)(x), hp(x), atol=1e-5, rtol=1e-5)
    sm = smooth_kernels(net, 0.3, "all")
    torch.testing.assert_close(torch.compile(sm, backend=backend)(x), sm(x), atol=1e-5, rtol=1e-5)
    settings = {"lowpass": 3, "post_average": {"radius": 0.5, "K": 2}, "smooth": 0.2}
    d1 = defend(net, **settings, generator=torch.Generator().manual_seed(0))
    d2 = defend(net, **settings, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.compile(d2, backend=backend)(x), d1(x), atol=1e-5, rtol=1e-5)
    # A second call draws new directions in both, still in step.
    torch.testing.assert_close(torch.compile(d2, backend=backend)(x), d1(x), atol=1e-5, rtol=1e-5)


def test_compile_matches_eager_aot() -> None:
    # Dynamo tracing plus AOTAutograd: the graph capture inductor would see, without the C++ build.
    _check_compiled("aot_eager")


@pytest.mark.slow
def test_compile_matches_eager_inductor() -> None:
    _check_compiled("inductor")


def test_regularizer_specs_for_the_cli() -> None:
    net = tiny_net()
    pen, w = parse_regularizer("neighbor:1e-3")
    assert w == 1e-3 and pen.__name__ == "neighbor:layers=all"
    assert torch.equal(pen(net), neighbor_weight_penalty(net))
    pen, w = parse_regularizer("highfreq:1.5:0.01:first")
    assert w == 0.01 and pen == Penalty("highfreq", radius=1.5, layers="first")
    assert torch.equal(pen(net), kernel_high_frequency_penalty(net, 1.5, "first"))
    pen, _ = parse_regularizer("neighbor:1:0+2")
    assert pen.layers == ("0", "2")
    for bad in ("l1:1e-3", "neighbor", "highfreq:1e-3", "neighbor:abc", "neighbor:-1", "highfreq:1:2:all:x"):
        with pytest.raises(ValueError):
            parse_regularizer(bad)


def test_evaluate_defenses_table_on_a_tiny_net() -> None:
    from bandguard.attacks import PGD
    from bandguard.bench.defense_eval import evaluate_defenses

    net, x = tiny_net(), images(12)
    y = net(x).argmax(1)
    defenses = {"lowpass:3": build_defense("lowpass:3", net),
                "pa": build_defense("post_average:K=1,R=0.3,seed=0", net)}
    table = evaluate_defenses(net, defenses, PGD(eps=(0.0, 0.1), steps=3), x, y, eot_samples=3)
    assert [r.name for r in table.rows] == ["none", "lowpass:3", "pa"] and table.n == 12
    none = table.row("none")
    assert none.clean_accuracy == 1.0 and none.transfer_accuracy == none.adaptive_accuracy
    assert none.transfer_accuracy[0] == 1.0  # eps 0 changes nothing
    assert table.row("lowpass:3").eot_samples == 1 and not table.row("lowpass:3").randomized
    pa = table.row("pa")
    assert pa.randomized and pa.eot_samples == 3 and pa.forward_cost == 7
    for r in table.rows:
        assert all(w <= min(t, a) for w, t, a in zip(r.worst_accuracy, r.transfer_accuracy, r.adaptive_accuracy))
    assert len(table.to_markdown().splitlines()) == 2 + 3 * 2
    assert table.to_dict()["rows"][2]["forward_cost"] == 7
    with pytest.raises(ValueError, match="reserved"):
        evaluate_defenses(net, {"none": net}, PGD(eps=0.1, steps=1), x, y)
    with pytest.raises(TypeError, match="defense 'f' must be an nn.Module"):
        evaluate_defenses(net, {"f": lambda t: t}, PGD(eps=0.1, steps=1), x, y)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="no defense 'jpeg'"):
        table.row("jpeg")
