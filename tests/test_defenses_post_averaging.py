"""Contracts of bandguard.defenses.post_averaging (Lin et al. 1905.12797) on a tiny net."""

from __future__ import annotations

import pytest
import torch
from _tiny import images, tiny_net
from torch import nn

from bandguard.defenses import (
    MAX_CHUNK_VALUES,
    PostAveraging,
    forward_cost,
    is_randomized,
    neighbours,
    post_average,
    sample_directions,
)
from bandguard.defenses.post_averaging import default_max_batch


def test_protocol_facts_and_sample_budget() -> None:
    net = tiny_net()
    pa = PostAveraging(net, K=2, radius_l2=1.0)
    assert pa.randomized is True and pa.differentiable is True and is_randomized(pa)
    assert pa.forward_cost == forward_cost(pa) == 1 + 3 * 2 * 2
    assert MAX_CHUNK_VALUES == 2**20
    assert default_max_batch(3 * 32 * 32) == 2**20 // 3072 == 341  # CIFAR neighbours per call
    assert default_max_batch(10**7) == 16  # never below 16


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


def test_radius_zero_equals_model_softmax(device: torch.device, dtype: torch.dtype) -> None:
    net, x = tiny_net().to(device, dtype), images(5, dtype=dtype, device=device)
    out = PostAveraging(net, radius_l2=0.0, K=3)(x)
    assert out.dtype == dtype and out.device.type == device.type
    torch.testing.assert_close(out.exp(), torch.softmax(net(x), dim=-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(5, dtype=dtype, device=device))


def test_seeded_directions_are_the_same_on_every_device(device: torch.device, dtype: torch.dtype) -> None:
    u = sample_directions(3, (2, 4, 4), 5, generator=torch.Generator().manual_seed(7), device=device, dtype=dtype)
    ref = sample_directions(3, (2, 4, 4), 5, generator=torch.Generator().manual_seed(7))
    assert u.device.type == device.type and u.dtype == dtype
    torch.testing.assert_close(u.cpu().float(), ref)


def test_same_generator_same_output_and_fresh_directions_per_call() -> None:
    net, x = tiny_net(), images(4)
    a = PostAveraging(net, radius_l2=2.0, K=4, generator=torch.Generator().manual_seed(3))
    b = PostAveraging(net, radius_l2=2.0, K=4, generator=torch.Generator().manual_seed(3))
    first = a(x)
    assert torch.equal(first, b(x))
    assert not torch.equal(first, a(x))  # new directions on every call


def test_replay_with_sampled_directions() -> None:
    net, x = tiny_net(), images(4)
    pa = PostAveraging(net, radius_l2=2.0, K=4, generator=torch.Generator().manual_seed(5))
    replay = PostAveraging(net, radius_l2=2.0, K=4, generator=torch.Generator().manual_seed(5))
    u = replay.sample(x)
    s = pa.settings
    expected = post_average(net, x, u, s.effective_radii_l2)
    assert torch.equal(pa(x), expected)
    # The mean softmax over the neighbours, written out.
    logits = net(neighbours(x, u, s.effective_radii_l2).flatten(0, 1)).reshape(4, 1 + 3 * 8, -1)
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
    pa = PostAveraging(net, radius_l2=1.0, K=5, antithetic=False, include_original=False)
    assert pa.forward_cost == 15


def test_post_averaging_is_differentiable_in_x() -> None:
    net = tiny_net()
    x = images(2).requires_grad_(True)
    pa = PostAveraging(net, radius_l2=1.0, K=3, generator=torch.Generator().manual_seed(0))
    loss = nn.functional.nll_loss(pa(x), torch.tensor([0, 1]))
    (grad,) = torch.autograd.grad(loss, x)
    assert grad.shape == x.shape and grad.abs().sum() > 0


def test_post_averaging_errors() -> None:
    net = tiny_net()
    with pytest.raises(ValueError, match="K must be >= 1"):
        PostAveraging(net, radius_l2=1.0, K=0)
    with pytest.raises(ValueError, match="radius_l2 must be >= 0"):
        PostAveraging(net, radius_l2=-1.0)
    with pytest.raises(ValueError, match="unknown reduce"):
        PostAveraging(net, radius_l2=1.0, reduce="median")
    with pytest.raises(ValueError, match="radii_l2"):
        PostAveraging(net, radius_l2=1.0, radii_l2=(1.0, -2.0))
    with pytest.raises(ValueError, match="max_batch"):
        PostAveraging(net, radius_l2=1.0, max_batch=0)
    with pytest.raises(TypeError, match="nn.Module"):
        PostAveraging(lambda x: x, radius_l2=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="directions"):
        post_average(net, images(2), torch.zeros(3, 2, 1, 8, 8), (1.0,))


def test_values_and_memory_are_checked_on_the_first_forward_of_each_input_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bandguard.defenses import post_averaging as module

    calls = []
    real = module.check_memory
    monkeypatch.setattr(module, "check_memory", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    pa = PostAveraging(net, radius_l2=1.0, K=2)
    nan = torch.full((2, 1, 8, 8), float("nan"))
    with pytest.raises(ValueError, match="x contains NaN"):  # a new shape: its first forward checks values
        pa(nan)
    for _ in range(3):
        pa(images(4))
    assert len(calls) == 1  # on the first clean forward of the shape, not on every forward
    # Later forwards of that shape read no values (a host sync per forward on a GPU): NaN goes through.
    assert bool(pa(nan).isnan().all())
    pa(images(4, h=6, w=6))
    assert len(calls) == 2
    with pytest.raises(ValueError, match="x contains NaN"):
        pa(torch.full((1, 1, 5, 5), float("nan")))


@pytest.mark.parametrize("max_batch", [None, 7, 40])
def test_directions_drawn_per_chunk_replay_exactly_and_stay_fresh(max_batch: int | None) -> None:
    net, x = tiny_net(), images(9)
    pa = PostAveraging(net, radius_l2=2.0, K=3, max_batch=max_batch, generator=torch.Generator().manual_seed(6))
    twin = PostAveraging(net, radius_l2=2.0, K=3, max_batch=max_batch, generator=torch.Generator().manual_seed(6))
    u = twin.sample(x)
    assert u.shape == (9, 3, 1, 8, 8)
    torch.testing.assert_close(u.flatten(2).norm(dim=-1), torch.ones(9, 3))
    assert torch.equal(pa(x), post_average(net, x, u, pa.settings.effective_radii_l2, max_batch=max_batch))
    assert torch.equal(pa(x), twin(x)) and not torch.equal(pa(x), pa(x))


@pytest.mark.gpu
def test_cuda_inputs_with_a_cpu_generator_draw_on_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from bandguard.defenses import post_averaging as module

    devices = []
    real = module.sample_directions
    monkeypatch.setattr(module, "sample_directions",
                        lambda *a, generator=None, **kw: devices.append(generator.device) or
                        real(*a, generator=generator, **kw))
    net, x = tiny_net().cuda(), images(5, device="cuda")
    a = PostAveraging(net, radius_l2=2.0, K=3, generator=torch.Generator().manual_seed(1))
    b = PostAveraging(net, radius_l2=2.0, K=3, generator=torch.Generator().manual_seed(1))
    out = a(x)
    assert devices and all(d.type == "cuda" for d in devices)  # drawn there, never copied from the CPU
    assert out.device.type == "cuda" and torch.equal(out, b(x))  # seeded: reproducible
    replay = PostAveraging(net, radius_l2=2.0, K=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, post_average(net, x, replay.sample(x), a.settings.effective_radii_l2))


def test_recompute_gives_the_same_values_and_gradients() -> None:
    net, x = tiny_net(), images(3)
    u = sample_directions(3, x.shape[1:], 4, generator=torch.Generator().manual_seed(2))
    grads = []
    for recompute in (False, True):
        xg = x.clone().requires_grad_(True)
        out = post_average(net, xg, u, (0.2, 0.4), max_batch=5, recompute=recompute)
        grads.append((out, torch.autograd.grad(out.logsumexp(1).sum(), xg)[0]))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_a_budget_too_small_for_one_image_recomputes_and_changes_nothing() -> None:
    net, x = tiny_net(), images(3)
    calls: list[int] = []
    net.register_forward_pre_hook(lambda m, i: calls.append(i[0].shape[0]))  # recomputes stop early
    results = {}
    for memory in ("1GiB", 1):
        calls.clear()
        pa = PostAveraging(net, K=4, radius_l2=0.5, generator=torch.Generator().manual_seed(0), memory=memory)
        xg = x.clone().requires_grad_(True)
        out = pa(xg)
        grad = torch.autograd.grad(out.logsumexp(1).sum(), xg)[0]
        results[memory] = (out, grad, list(calls))
    (out_big, grad_big, big), (out_tiny, grad_tiny, tiny) = results["1GiB"], results[1]
    inputs = 3 * pa.forward_cost
    assert big[:2] == [1, 2] and sum(big[2:]) == inputs  # the probe, then every neighbour once
    assert set(tiny[2:]) == {1} and len(tiny[2:]) == 2 * inputs  # one input per call, each forward run again
    torch.testing.assert_close(out_tiny, out_big, rtol=1e-6, atol=1e-6)  # the same directions
    torch.testing.assert_close(grad_tiny, grad_big, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="memory: unknown unit"):
        PostAveraging(net, radius_l2=0.5, memory="2 gigs")
