"""How a job's model runs on its device: memory layout, ``torch.compile``, DDP.

The job keeps two handles on one network. ``model`` is the plain module that specs,
surgery, the tracker and checkpoints see; ``net`` is what the training step calls:
``model`` wrapped in DistributedDataParallel under torchrun and compiled with
``torch.compile`` when asked. After every structural change the job asks for a new
``net``: a compiled graph and a DDP wrapper both belong to one set of parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from grownet.dist import DistContext
from grownet.errors import UserError
from grownet.runs import RunDir


class Runtime:
    """Device placement and wrappers of a job's model.

    Parameters
    ----------
    dist
        This process's data-parallel context (its ``device`` is where the model lives).
    compile
        Wrap the training forward in ``torch.compile`` (recompiled after each growth).
    """

    def __init__(self, dist: DistContext, compile: bool = False) -> None:
        self.dist = dist
        self.device = dist.device
        self.compile = compile
        # NHWC lets cuDNN use its tensor-core conv kernels under bf16; on CPU the
        # default layout is the fast one
        self.channels_last = self.device.type == "cuda"

    def place(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device (in place, as ``Module.to``) in the run's layout."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def net(self, model: nn.Module) -> nn.Module:
        """The callable the training step uses for ``model``: DDP, then compile."""
        net = self.dist.wrap(model)
        if self.compile:
            # the graphs of the old parameters are dead; without a reset each growth
            # step uses up one of dynamo's few cache entries per code object
            torch._dynamo.reset()
            net = torch.compile(net)
        return net

    def batch(self, xb: torch.Tensor) -> torch.Tensor:
        """An input batch in the model's layout."""
        if self.channels_last and xb.dim() == 4:
            return xb.contiguous(memory_format=torch.channels_last)
        return xb

    def reduce(self, totals: torch.Tensor) -> torch.Tensor:
        """Sum per-rank epoch totals (loss sum, correct, seen) over the ranks."""
        return self.dist.all_reduce_sum(totals)


def writer(ctx: DistContext, make: Callable[[], RunDir]) -> RunDir:
    """Rank 0 makes the (locked) run directory; the others learn its path and never
    write. A refusal on rank 0 stops every rank."""
    if not ctx.enabled:
        return make()
    made: RunDir | UserError | None = None
    if ctx.is_main:
        try:
            made = make()
        except UserError as err:  # every rank must stop, not wait for a broadcast
            made = err
    shared = ctx.broadcast(made.path if isinstance(made, RunDir) else made)
    if isinstance(shared, UserError):
        raise shared
    return made if ctx.is_main else RunDir.follower(shared)
