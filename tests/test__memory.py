"""bandguard._memory: sizes in bytes, what a device has available, a model's measured bytes per image."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from attack_models import tiny_model
from torch import nn

from bandguard._memory import (
    DEFAULT_FRACTION,
    activation_bytes,
    available_memory,
    format_bytes,
    parse_memory,
    resolve_memory,
)
from bandguard.models import create_model


@pytest.mark.parametrize(("text", "expected"), [
    ("4GiB", 4 * 2**30), ("512MiB", 512 * 2**20), ("2GB", 2 * 10**9), ("1.5 gib", 3 * 2**29),
    ("4096", 4096), (" 10kb ", 10_000), ("7B", 7), (123, 123), ("1TiB", 2**40),
])
def test_parse_memory_units(text: object, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize(("value", "error", "match"), [
    ("4 gigs", ValueError, r"--memory: unknown unit 'gigs'.*KiB, MiB, GiB"),
    ("GiB", ValueError, r"--memory must be a size such as '4GiB'"),
    ("-1GiB", ValueError, "must be a size"),
    ("0", ValueError, "at least 1 byte"),
    (0.5, TypeError, "got float 0.5"),
    (True, TypeError, "got bool"),
])
def test_parse_memory_errors_name_the_setting(value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        parse_memory(value, "--memory")


def test_format_bytes() -> None:
    assert format_bytes(4 * 2**30) == "4 GiB" and format_bytes(1536) == "1.5 KiB" and format_bytes(12) == "12 B"


def test_available_memory_and_the_default_budget() -> None:
    free = available_memory("cpu")
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        line = next(v for v in meminfo.read_text().splitlines() if v.startswith("MemAvailable:"))
        assert free <= int(line.split()[1]) * 1024 * 1.1  # never more than the machine has available
    assert free > 2**26
    budget = resolve_memory(None, "cpu")
    assert abs(budget - DEFAULT_FRACTION * free) <= 0.25 * free  # the machine's memory moves meanwhile
    assert resolve_memory("3MiB") == 3 * 2**20


_CAPPED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), resource.RLIM_INFINITY))
from bandguard._memory import available_memory
print(available_memory("cpu"))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmSize from /proc (Linux)")
def test_an_address_space_cap_bounds_the_available_memory() -> None:
    cap = 6 * 2**30  # importing torch (with CUDA) maps about 3.5 GiB of address space
    out = subprocess.run([sys.executable, "-c", _CAPPED, str(cap)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert 0 < int(out.stdout) < cap  # the cap less what torch already mapped, not the machine's memory
    assert resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY  # this process untouched


def test_activation_bytes_counts_the_graph_of_one_image() -> None:
    # Two 3x3 convs to 8 channels on 16x16, weights frozen: per image conv1 saves its input (the
    # image), the ReLU its output, which conv2 saves too (one storage, counted once); the Linear
    # needs only its (frozen, excluded) weight for the input's gradient.
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)).eval()
    model = nn.Sequential(net, nn.Flatten(), nn.Linear(8 * 16 * 16, 4))
    per = activation_bytes(model, torch.rand(5, 3, 16, 16))
    image, act = 3 * 16 * 16 * 4, 8 * 16 * 16 * 4
    # Plus the logits, the backward's transient (twice the largest growth), times the margin.
    counted = image + act + 4 * 4 + 2 * act
    assert per == pytest.approx(1.25 * counted, rel=0.02)


def test_activation_bytes_restores_modes_and_grows_with_the_image() -> None:
    model = tiny_model().train()
    before = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
    activation_bytes(model, torch.rand(1, 1, 8, 8))
    assert before == [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
    net = create_model("cifar_small")
    small, large = (activation_bytes(net, torch.rand(1, 3, s, s)) for s in (32, 64))
    assert 3.5 < large / small < 4.5  # activations scale with H x W
    with torch.inference_mode():  # a caller's inference mode records no graph: the probe makes one
        assert activation_bytes(net, torch.rand(1, 3, 32, 32)) == small
