"""bandguard._random: generators that follow the tensors' device."""

from __future__ import annotations

import pytest
import torch

from bandguard._random import device_generator


def test_a_generator_on_the_device_is_used_as_it_is() -> None:
    g = torch.Generator().manual_seed(0)
    assert device_generator(g, "cpu") is g and device_generator(g, torch.device("cpu")) is g
    assert device_generator(None, "cpu") is None


@pytest.mark.gpu
def test_a_cpu_generator_seeds_a_fresh_cuda_generator_per_call() -> None:
    g = torch.Generator().manual_seed(3)
    first, second = device_generator(g, "cuda"), device_generator(g, "cuda")
    assert first.device.type == second.device.type == "cuda"
    a, b = torch.rand(4, generator=first, device="cuda"), torch.rand(4, generator=second, device="cuda")
    assert not torch.equal(a, b)  # each call draws a new seed from g
    again = device_generator(torch.Generator().manual_seed(3), "cuda")
    assert torch.equal(torch.rand(4, generator=again, device="cuda"), a)  # same seed, same sequence
    assert device_generator(first, "cuda") is first
