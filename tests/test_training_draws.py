"""Where training draws its noise and crops (bandguard.training._transform): on the batch's device.

A separate file from tests/test_training.py only while that file is being edited for issue 21's
neighbours; fold it in when convenient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bandguard.training import TrainConfig, _transform


def _config() -> TrainConfig:
    return TrainConfig(mode="gaussian", sigma=0.1, augment=True, translate=2)


def test_cpu_runs_draw_exactly_as_before() -> None:
    """The run's CPU generator is used as it is on CPU batches: the same numbers in the same order."""
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = _transform(x, _config(), torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    dy, dx = torch.randint(0, 5, (5,), generator=g), torch.randint(0, 5, (5,), generator=g)
    flip = torch.rand(5, generator=g) < 0.5
    noise = torch.randn(x.shape, generator=g)
    padded = F.pad(x, (2, 2, 2, 2))
    crops = torch.stack([padded[k, :, dy[k]:dy[k] + 8, dx[k]:dx[k] + 8] for k in range(5)])
    crops = torch.where(flip[:, None, None, None], crops.flip(-1), crops)
    assert torch.equal(out, (crops + 0.1 * noise).clamp(0, 1))


@pytest.mark.gpu
def test_cuda_batches_draw_on_the_gpu_reproducibly(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = []
    real = torch.randn

    def spy(*args, generator=None, **kwargs):
        devices.append(generator.device.type)
        return real(*args, generator=generator, **kwargs)

    monkeypatch.setattr(torch, "randn", spy)
    x = torch.rand(5, 3, 8, 8, device="cuda")
    a = _transform(x, _config(), torch.Generator().manual_seed(4))
    b = _transform(x, _config(), torch.Generator().manual_seed(4))
    assert devices == ["cuda", "cuda"] and a.device.type == "cuda" and torch.equal(a, b)
