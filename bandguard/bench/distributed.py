"""Sharding a benchmark over processes with ``torch.distributed`` (torchrun, gloo or NCCL).

The harness cuts the samples into fixed batches (the same cut whatever the number of processes)
and rank ``r`` of ``W`` runs batches ``r, r + W, ...``; every batch's randomness is seeded from the
cell and the batch index only. Gathering the per-batch outcomes on every rank therefore gives
exactly the arrays a one-process run computes, and rank 0 alone writes the results.

Launch: ``torchrun --nproc_per_node=2 -m bandguard bench spec.toml`` (multi-node through
torchrun's own ``--nnodes``/``--rdzv_*`` flags).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["Shard", "init_from_env"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Shard:
    """This process's place in the run: ``rank`` of ``world`` (``Shard()`` is one process).

    Args:
        rank: this process's index, ``0 <= rank < world``.
        world: the number of processes.
    """

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes results and prints."""
        return self.rank == 0

    def batches(self, n: int, size: int) -> Iterator[tuple[int, slice]]:
        """``(batch index, slice)`` of this rank's batches of a fixed cut of ``range(n)``."""
        for b, start in enumerate(range(0, n, size)):
            if b % self.world == self.rank:
                yield b, slice(start, min(start + size, n))

    def gather(self, parts: dict[int, T]) -> list[T]:
        """Every rank's ``{batch index: value}`` merged, in batch order (on every rank)."""
        if self.world == 1:
            return [parts[b] for b in sorted(parts)]
        everything: list[Any] = [None] * self.world
        dist.all_gather_object(everything, parts)
        merged: dict[int, T] = {}
        for p in everything:
            merged.update(p)
        return [merged[b] for b in sorted(merged)]

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.world > 1:
            dist.barrier()


def init_from_env(device: torch.device) -> Shard:
    """Join the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ...), if any.

    Uses NCCL for CUDA devices and gloo otherwise; a process group already initialised is reused.
    Without torchrun's variables this is a one-process :class:`Shard`. On CUDA each rank first
    makes its own GPU (:func:`local_device`) the current device, as NCCL requires: otherwise every
    rank's communicator and every ``"cuda"`` allocation lands on GPU 0. Each torchrun process owns
    its GPU, so setting it is this process's business, not a side effect on a caller.

    Args:
        device: the run's device (its type picks the backend).

    Returns:
        This process's :class:`Shard`.
    """
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return Shard()
    if device.type == "cuda":
        torch.cuda.set_device(local_device(device))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Shard(dist.get_rank(), dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """On CUDA under torchrun, this rank's GPU (``LOCAL_RANK``); else ``device``."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device
