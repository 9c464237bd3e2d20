"""Sharding over 2 gloo processes on CPU gives exactly the one-process table."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bandguard.bench import parse_spec, run
from bandguard.bench.distributed import Shard
from bandguard.models import save_checkpoint


def _spec_data(ckpt: Path, out: Path) -> dict:
    return {
        "dataset": "mnist", "n": 20, "batch_size": 4, "seed": 1, "out": str(out), "eot": 2, "sanity_n": 8,
        "defenses": ["post_average:3.0,K=1"],
        "models": [{"name": "cnn", "checkpoint": str(ckpt)}],
        "attacks": [{"attack": "pgd", "eps": [0.1, 0.2], "steps": 2}],
    }


def _worker(rank: int, world: int, port: int, data: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        run(parse_spec(data), shard=Shard(rank, world))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shard_batches_cover_every_sample_once() -> None:
    seen = [sl for r in range(3) for _, sl in Shard(r, 3).batches(10, 3)]
    covered = sorted(i for sl in seen for i in range(sl.start, sl.stop))
    assert covered == list(range(10))
    assert [b for b, _ in Shard(1, 3).batches(10, 3)] == [1]


@pytest.mark.slow
def test_two_gloo_processes_match_one(mnist_model: torch.nn.Module, tmp_path: Path) -> None:
    ckpt = tmp_path / "cnn.pt"
    save_checkpoint(ckpt, mnist_model, arch="mnist_cnn", dataset="mnist")
    single = run(parse_spec(_spec_data(ckpt, tmp_path / "one")))
    mp.spawn(_worker, args=(2, _free_port(), _spec_data(ckpt, tmp_path / "two")), nprocs=2, join=True)
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["rows"] == single.table()
    assert two["flags"] == [f.to_dict() for f in single.flags]
    assert (tmp_path / "one" / "results.csv").read_bytes() == (tmp_path / "two" / "results.csv").read_bytes()


def test_torchrun_on_cuda_sets_each_ranks_device_before_nccl(monkeypatch: pytest.MonkeyPatch) -> None:
    from bandguard.bench import distributed

    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.init_from_env(torch.device("cuda")) == Shard(1, 2)
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl")]
    calls.clear()
    distributed.init_from_env(torch.device("cpu"))  # gloo on CPU: no device to set
    assert calls == [("init", "gloo")]
