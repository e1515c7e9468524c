"""Data-parallel training with PyTorch DDP, when launched by ``torchrun`` (one process per GPU or CPU slot).

``torchrun --nproc_per_node 2 -m slimbench.cli train CONFIG`` runs the same training in two processes: each
takes its slice of every global batch (``batch_size`` stays the global batch, so learning rates mean the
same), gradients are averaged by DDP (NCCL on GPUs, gloo on CPUs), batch-norm buffers follow rank 0, and
only rank 0 writes checkpoints, logs, plots and the results store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from slimbench.errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group that torchrun describes in the environment (once); single-process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size()), device


def check_batch(batch_size: int, dist: Distributed) -> int:
    """The per-process batch."""
    if batch_size % dist.world:
        raise ConfigError(f"batch_size {batch_size} must divide among the {dist.world} processes")
    return batch_size // dist.world
