"""Random number generators that follow the tensors: one rule for every randomized hot loop.

A seeded ``torch.Generator`` usually lives on the CPU (it is what a spec's seed or a test makes),
while the tensors may sit on a GPU. Drawing there and copying costs a host-to-device transfer per
call (about 400 MB per post-averaging forward at 224 x 224); :func:`device_generator` instead
seeds a generator on the tensors' device from one CPU draw, so the numbers are made where they are
used and a seeded run stays reproducible (on the same kind of device).
"""

from __future__ import annotations

import torch

__all__ = ["device_generator"]


def device_generator(generator: torch.Generator | None, device: torch.device | str) -> torch.Generator | None:
    """A generator on ``device`` driven by ``generator``.

    Args:
        generator: the caller's generator, or ``None`` (torch's default generator of ``device``
            is then used, and ``None`` returned).
        device: where the random numbers are needed.

    Returns:
        ``generator`` itself if it lives on ``device``; else a new generator on ``device`` seeded
        from one 62-bit draw of ``generator`` (a CPU draw: no device sync), so each call draws fresh
        numbers and the same seed gives the same sequence of calls.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if generator is None or generator.device == device:
        return generator
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)
