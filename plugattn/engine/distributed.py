"""Where a run computes: the device it asked for, and DistributedDataParallel set-up from torchrun's
environment (NCCL on GPUs, gloo on CPU)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_reduce_sum", "barrier", "cleanup", "init_distributed", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when torch sees it, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``,
    checked against the devices this machine has."""
    if not (isinstance(name, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", name)):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but torch sees no CUDA device")
    device = torch.device(name)
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.index is not None and device.index >= count:
        raise ValueError(
            f"device {name!r} was asked for, but torch sees {count} CUDA device(s): cuda:0..{count - 1}"
        )
    return device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    # Where the process group's collectives run: NCCL reduces only CUDA tensors, gloo CPU ones.
    device: str = "cpu"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); a plain
    run (no such variables, or ``WORLD_SIZE=1``) is one process and needs no group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)  # before the group exists, so NCCL binds this rank to its GPU
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=f"cuda:{local}" if cuda else "cpu")


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over all processes (identity for one process); the result is on ``t``'s device.

    The sum runs on the process group's device (``info.device``): a CPU tensor is copied to the GPU
    for NCCL and back, since NCCL rejects CPU tensors.
    """
    if not info.enabled:
        return t
    on_group = t.to(info.device)
    dist.all_reduce(on_group, op=dist.ReduceOp.SUM)
    return on_group.to(t.device)


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op for one process)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
