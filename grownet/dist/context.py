"""Data parallelism under ``torchrun``: who this process is, and the few collectives
growth needs.

``torchrun --nproc_per_node=N -m grownet grow ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set (as nanoGPT does, that is how a run knows it is
distributed). Every rank holds the same model and optimizer; DistributedDataParallel
averages the gradients, so every rank's optimizer takes the identical step. Rank 0
alone decides each growth step and broadcasts the decision; every rank applies the
same surgery and wraps the new model in a new DDP (the old wrapper holds hooks and
buckets for parameters that no longer exist).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from grownet.errors import UserError

T = TypeVar("T")


@dataclass
class DistContext:
    """This process's place in a data-parallel job (``world_size == 1``: a plain run).

    Parameters
    ----------
    rank, world_size, local_rank
        As ``torchrun`` sets them.
    device
        This rank's device (``cuda:LOCAL_RANK`` on GPUs).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that decides growth, logs, and writes files."""
        return self.rank == 0

    # ------------------------------------------------------------- collectives
    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (any picklable object; others pass a dummy)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place (also returned)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def _comm_device(self) -> torch.device | None:
        # NCCL moves pickled objects through the GPU; gloo through the CPU
        return self.device if dist.get_backend() == "nccl" else None

    # --------------------------------------------------------------- wrapping
    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in a fresh DistributedDataParallel (itself when not distributed).

        DDP's constructor broadcasts rank 0's parameters and buffers, so a new wrapper
        after each structural change also makes every rank start the stage from the
        same weights. BatchNorm stays per rank (each normalises over its own shard and
        DDP broadcasts rank 0's running statistics each forward), as in plain DDP
        training: the module tree is left as surgery built it.
        """
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            return DistributedDataParallel(model, device_ids=[self.device.index])
        return DistributedDataParallel(model)

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def context_from_env(device: torch.device) -> DistContext:
    """The context of this process: from ``torchrun``'s variables, else a single process.

    Initialises the process group (NCCL on CUDA, gloo on CPU) on first use. Under
    ``torchrun`` on CUDA, each rank takes GPU ``LOCAL_RANK``.
    """
    if not launched_by_torchrun():
        return DistContext(device=device)
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as err:
        raise UserError(f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK are not integers ({err}); "
                        "launch with torchrun --nproc_per_node=N -m grownet ...") from None
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local} has no GPU ({torch.cuda.device_count()} "
                            "visible); use --nproc_per_node <= the number of GPUs")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP and/or ``torch.compile`` wrapper."""
    inner: Any = model
    while True:
        if hasattr(inner, "_orig_mod"):  # torch.compile's OptimizedModule
            inner = inner._orig_mod
        elif isinstance(inner, nn.parallel.DistributedDataParallel):
            inner = inner.module
        else:
            return inner
