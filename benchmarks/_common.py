"""Helpers shared by the benchmark scripts: the machine's name, CUDA sync, RESULTS.md sections."""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

import torch

from bandguard._io import write_bytes_atomic


def cpu_name() -> str:
    """The CPU model as ``lscpu`` names it (``platform.processor()`` where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        match = re.search(r"Model name:\s*(.+)", out)
        if match:
            return match.group(1).strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock timings cover it; a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_section(title: str, text: str, path: Path) -> None:
    """Replace the ``## title`` section of ``path`` with ``text`` (or append it), atomically."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    write_bytes_atomic(path, new.encode())
