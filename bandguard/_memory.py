"""Memory budgets in bytes: parse ``"4GiB"``, read what a device has free, measure a model's bytes per image.

Batch and chunk sizes come from a byte budget divided by the bytes one image costs (DESIGN.md,
"Memory is a byte budget"). Three small pieces serve every entry point:

- :func:`parse_memory` turns ``"4GiB"``, ``"512MiB"``, ``"2GB"`` or an int of bytes into bytes;
- :func:`available_memory` is what ``device`` can still take now (CUDA: the driver's free memory
  plus the caching allocator's unused reserve; CPU: the least of ``MemAvailable``, the cgroup's
  headroom and the address-space limit's headroom), :func:`resolve_memory` a budget from either;
- :func:`activation_bytes` measures, once, the bytes of autograd graph one more image adds to a
  forward with input gradients (what an attack's backward needs), from the tensors autograd saves.
"""

from __future__ import annotations

import math
import os
import re
import resource
from pathlib import Path

import torch
from torch import nn

from bandguard._modes import model_mode

__all__ = [
    "DEFAULT_FRACTION",
    "MARGIN",
    "activation_bytes",
    "available_memory",
    "format_bytes",
    "parse_memory",
    "resolve_memory",
]

DEFAULT_FRACTION = 0.5
"""Share of the memory available now that a default budget takes: the rest is headroom for the
allocator's fragmentation, workspaces, the data and whatever else the process holds."""

MARGIN = 1.25
"""Factor on the counted bytes per image for the allocator's overhead (see :func:`activation_bytes`)."""

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*")


def parse_memory(value: object, name: str = "memory") -> int:
    """Bytes from a size: ``"4GiB"``, ``"512MiB"``, ``"2GB"``, ``"1.5 GiB"``, ``"4096"`` or an int.

    Units: ``B``; decimal ``KB``, ``MB``, ``GB``, ``TB`` (powers of 1000); binary ``KiB``, ``MiB``,
    ``GiB``, ``TiB`` (powers of 1024); case-insensitive; a bare number is bytes.

    Args:
        value: the size.
        name: the setting's name in errors (``"memory"``, ``"--memory"``).

    Returns:
        The size in bytes, >= 1.

    Raises:
        TypeError: ``value`` is neither a string nor an integer.
        ValueError: not a size, an unknown unit, or below one byte.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{name} must be a size such as '4GiB' or an integer number of bytes, "
                        f"got {type(value).__name__} {value!r}")
    if isinstance(value, int):
        n = value
    else:
        match = _SIZE.fullmatch(value)
        if match is None:
            raise ValueError(f"{name} must be a size such as '4GiB', '512MiB' or '2GB' (or a number of "
                             f"bytes), got {value!r}")
        unit = match.group(2).lower()
        if unit not in _UNITS:
            raise ValueError(f"{name}: unknown unit {match.group(2)!r} in {value!r}; expected one of "
                             "B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)")
        n = math.floor(float(match.group(1)) * _UNITS[unit])
    if n < 1:
        raise ValueError(f"{name} must be at least 1 byte, got {value!r}")
    return int(n)


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units, three significant digits: ``"4 GiB"``, ``"37.5 MiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"  # pragma: no cover


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom() -> int | None:
    """``memory.max - memory.current`` of this process's cgroup (v2), if it has a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def _address_space_headroom() -> int | None:
    """``RLIMIT_AS`` minus the address space already mapped, if a limit is set (``ulimit -v``)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, soft - int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return soft


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def available_memory(device: torch.device | str | None = None) -> int:
    """Bytes ``device`` can still take now.

    CUDA: the driver's free memory (``torch.cuda.mem_get_info``) plus what PyTorch's caching
    allocator has reserved but not handed out. CPU: the least of ``MemAvailable`` (``/proc/meminfo``;
    elsewhere ``os.sysconf``'s available pages), the cgroup's ``memory.max`` headroom and the
    ``RLIMIT_AS`` headroom (a process capped with ``ulimit -v`` cannot use what the machine has
    free); 4 GiB where the platform says nothing.
    """
    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(dev)
        unused = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        return int(free + max(0, unused))
    machine = _meminfo_available()
    if machine is None:
        machine = _sysconf_available()
    found = [v for v in (machine, _cgroup_headroom(), _address_space_headroom()) if v is not None]
    return min(found) if found else 4 * 2**30


def resolve_memory(memory: int | str | None, device: torch.device | str | None = None) -> int:
    """A byte budget: ``memory`` parsed (:func:`parse_memory`), or ``None`` ->
    :data:`DEFAULT_FRACTION` of :func:`available_memory` of ``device`` (at least 64 MiB)."""
    if memory is not None:
        return parse_memory(memory)
    return max(64 * 2**20, int(DEFAULT_FRACTION * available_memory(device)))


def _graph_bytes(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """``(total, largest)`` bytes of the distinct storages autograd saves in a forward of ``x``
    with input gradients (the model's own weights and buffers left out), plus the output's."""
    own = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    # Inside a caller's no_grad or inference_mode a forward records no graph: measure one anyway.
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(xg)
    out_bytes = out.untyped_storage().nbytes() if isinstance(out, torch.Tensor) else 0
    del out, xg
    sizes = list(seen.values())
    return sum(sizes) + out_bytes, max(sizes, default=0)


def activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes one more image adds to a forward and backward of ``model`` with input gradients.

    Measured, not guessed: two forwards (one image, then two) under
    ``torch.autograd.graph.saved_tensors_hooks`` sum the distinct storages autograd keeps for the
    backward, in eval mode with the weights frozen (as attacks run), leaving out the model's weights
    and buffers; the difference between the two is the cost of one image, so whatever both save
    alike drops out.
    The backward's own transient buffers (the gradient of the activation being back-propagated and
    of its input) are added as twice the largest saved tensor's growth, and the sum is multiplied by
    :data:`MARGIN` for the allocator (on the CPU, the resident memory of a PGD step on ResNet-18 grew
    by 1.0 times this count per image at 224 x 224 and by 1.2 times at 32 x 32). The same count on
    every device, so a budget gives the same batch on a CPU and a GPU. Forwards without a graph
    (``no_grad``) need less, so budgets sized with this are safe for them too.

    Args:
        model: the module an attack calls (a defense, a model, a ``BF16Forward``).
        x: at least one image ``[N, C, H, W]`` on the model's device; only ``x[:1]`` is used.

    Returns:
        Bytes per image, >= 1. The modes and ``requires_grad`` flags of ``model`` are restored.
    """
    one = x[:1]
    with model_mode(model, requires_grad=False):
        total1, largest1 = _graph_bytes(model, one)
        total2, largest2 = _graph_bytes(model, one.expand(2, *one.shape[1:]).contiguous())
    saved = max(total2 - total1, 0)
    transient = 2 * max(largest2 - largest1, 0)
    return max(1, math.ceil(MARGIN * (saved + transient)), one.numel() * one.element_size())
