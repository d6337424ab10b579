"""Process-group set-up for ``torchrun``: NCCL on GPU, gloo on CPU; rank and world size from the env.

``torchrun --nproc_per_node=G [--nnodes=M --node_rank=i --rdzv_endpoint=host:port] -m
pointmoe_core.cli train seg ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
``MASTER_ADDR``/``MASTER_PORT``; without them the process runs alone and nothing is initialised.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..common.device import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the torchrun process group if the env describes one; pick this rank's device
    (``rank_device``; "cpu" forces CPU, and gloo, even on a GPU machine)."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    torch_device = rank_device(device, local_rank)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, torch_device)


def rank_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``device`` with "auto" resolved (``resolve_device``); "cuda" means this rank's GPU,
    ``cuda:LOCAL_RANK``."""
    device = resolve_device(device)
    return torch.device("cuda", local_rank) if device == "cuda" else torch.device(device)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over ranks (``value`` itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
