"""bandguard._amp: native bf16 detection (the check bf16 autocast's speed depends on)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bandguard._amp import native_bf16
from bandguard.training import _use_bf16


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs /proc/cpuinfo (Linux)")
def test_cpu_detection_agrees_with_the_cpu_flags() -> None:
    """oneDNN's answer and the kernel's flags agree (the old check read get_cpu_capability, which
    names the vector ISA, never bf16, and so said 'no' on every CPU)."""
    flags = _cpu_flags()
    expected = "avx512_bf16" in flags or "amx_bf16" in flags
    assert native_bf16("cpu") is expected
    assert native_bf16(torch.device("cpu")) is expected
    assert torch.backends.cpu.get_cpu_capability() not in ("AVX512_BF16", "AMX")  # why the old check failed


def test_auto_follows_the_detection_and_off_is_off() -> None:
    cpu = torch.device("cpu")
    assert _use_bf16("auto", cpu) is native_bf16(cpu)
    assert _use_bf16("off", cpu) is False
    assert _use_bf16("bf16", cpu) is True  # asked for: used, with a warning where emulated
    assert native_bf16("meta") is False


def test_bf16_forward_close_to_float32() -> None:
    """Where bf16 is used, a forward stays within bf16's rounding of float32 (the precondition of
    the speed claim: the result is the same network's)."""
    from bandguard.models import create_model

    torch.manual_seed(0)
    net = create_model("cifar_small").eval()
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x).float()
    assert float((low - ref).abs().max()) < 0.05 * float(ref.abs().max()) + 1e-3


def test_bf16_forward_agrees_with_float32_under_attack(mnist_model, mnist_test) -> None:
    """PGD through BF16Forward finds the same robust accuracy as in float32 within 2 points on 500
    MNIST images, its x_adv stay in the ball, and the wrapped model's weights stay float32."""
    from bandguard import PGD, BF16Forward

    x, y = mnist_test[0][:500], mnist_test[1][:500]
    attack = PGD(eps=0.1, norm="linf", steps=10, seed=0)
    ref = attack(mnist_model, x, y)
    fast_model = BF16Forward(mnist_model)
    fast = attack(fast_model, x, y)
    assert abs(fast.robust_accuracy[0] - ref.robust_accuracy[0]) <= 0.02
    assert float((fast.results[0].x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert all(p.dtype == torch.float32 for p in fast_model.parameters())
    with torch.no_grad():
        assert fast_model(x[:4]).dtype == torch.float32
