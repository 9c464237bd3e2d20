"""Tiny models, batches and checks shared by the attack tests (not a test module)."""

from __future__ import annotations

import torch
from torch import nn


def _conv_net(c: int, h: int, w: int, classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * h * w, classes),
    )


def tiny_model(c: int = 1, h: int = 8, w: int = 8, classes: int = 3, seed: int = 0,
               dtype: torch.dtype = torch.float32) -> nn.Module:
    """A conv-BN-ReLU-linear net with seeded default initialisation (a few hundred parameters)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _conv_net(c, h, w, classes)
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.1, 0.1)
    return model.to(dtype).eval()


def plain_model(c: int = 1, h: int = 8, w: int = 8, classes: int = 3, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> nn.Module:
    """:func:`tiny_model` with BatchNorm's default running statistics."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _conv_net(c, h, w, classes)
    return model.to(dtype).eval()


def linear_model(c: int = 1, h: int = 8, w: int = 8, classes: int = 2, seed: int = 0) -> nn.Module:
    """A linear classifier centred on the grey image, so small budgets already matter."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        lin = nn.Linear(c * h * w, classes)
    with torch.no_grad():
        lin.bias.copy_(-0.5 * lin.weight.sum(1))
    return nn.Sequential(nn.Flatten(), lin).eval()


def batch(n: int = 16, c: int = 1, h: int = 8, w: int = 8, classes: int = 3, seed: int = 1,
          dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


def snapshot(model: nn.Module) -> dict:
    """Everything an attack must leave alone: values, flags, gradients, every submodule's mode."""
    return {
        "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "grad": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
        "modes": [m.training for m in model.modules()],
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["modes"] == after["modes"]
    assert before["requires_grad"] == after["requires_grad"]
    for k, v in before["params"].items():
        assert torch.equal(v, after["params"][k]), k
    for k, v in before["grad"].items():
        assert (v is None and after["grad"][k] is None) or torch.equal(v, after["grad"][k]), k


def within(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, bounds=(0.0, 1.0), *,
           per_channel: bool = False) -> None:
    """``x_adv`` is detached, inside ``bounds`` and the eps-ball (per channel for the Fourier attacks)."""
    lo, hi = bounds
    # x_adv - x can only be as exact as the pixels it is read from: at a pixel of size 255 one
    # float32 rounding step is ~1.5e-5, and an L2 norm adds up to sqrt(numel) of them.
    ulp = torch.finfo(x.dtype).eps * max(abs(lo), abs(hi), 1.0)
    tol = max(1e-6 if x.dtype == torch.float64 else 2e-6, 2 * ulp * (x[0].numel() ** 0.5 if norm == "l2" else 1))
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert x_adv.grad_fn is None
    assert float(x_adv.min()) >= lo and float(x_adv.max()) <= hi
    d = (x_adv - x).flatten(2) if per_channel else (x_adv - x).flatten(1)
    dist = d.abs().amax(-1) if norm == "linf" else torch.linalg.vector_norm(d, dim=-1)
    assert float(dist.max()) <= eps * (1 + tol) + tol


class Counting(nn.Module):
    """Runs ``model`` and counts, per clean image, the rows it sees (with and without an input
    gradient): a row is charged to the clean image nearest to it in L2, so perturbations must be
    small against the distance between images."""

    def __init__(self, model: nn.Module, x0: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("x0", x0.detach().flatten(1).clone())
        self.rows = torch.zeros(x0.shape[0], dtype=torch.long)
        self.grad_rows = torch.zeros(x0.shape[0], dtype=torch.long)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            owner = torch.cdist(x.detach().flatten(1).to(self.x0.dtype), self.x0).argmin(1).cpu()
        self.rows.index_add_(0, owner, torch.ones_like(owner))
        if x.requires_grad:
            self.grad_rows.index_add_(0, owner, torch.ones_like(owner))
        return self.model(x)


class RowCounter(nn.Module):
    """Runs ``inner`` and counts the rows (images) of every forward in ``rows``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.inner(x)
