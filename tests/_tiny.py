"""Tiny deterministic nets and images shared by the defense and spectral tests (not a test module)."""

from __future__ import annotations

import torch
from torch import nn


def tiny_net(channels: int = 1, size: int = 8, classes: int = 4, seed: int = 0) -> nn.Module:
    """Two 3x3 convs and a linear head, in eval mode."""
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
    """Uniform images in [0, 1], reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g, dtype=dtype).to(device)


def tiny_model(channels: int = 2, size: int = 8, classes: int = 5, seed: int = 0) -> nn.Module:
    """A small random conv net in float64 (no dropout, no batch statistics); spectral tests."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(),
            nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(4 * size * size, classes),
        ).double()


def tiny_data(n: int = 12, channels: int = 2, size: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (n,), generator=g)
    return x, y
