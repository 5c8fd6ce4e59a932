"""The epoch loop: one training epoch, evaluation, seeding, device choice, NaN guard.

Losses and accuracies are summed on the device and read once per epoch, so a training
step never waits on the host.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grownet.errors import UserError


class NonFiniteLoss(UserError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochResult:
    loss: float
    acc: float
    samples: int


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible CPU run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is available; "
                        "use --device cpu")
    return torch.device(name)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (parameters and optimizer state stay fp32); off on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def progress(iterable: Iterable, total: int, desc: str | None) -> Iterable:
    """A tqdm bar on a terminal; the plain iterable otherwise (logs stay clean), or when
    ``desc`` is None (the ranks other than 0 of a data-parallel run)."""
    if desc is None or not sys.stderr.isatty():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


class Totals:
    """Loss sum and correct count of an epoch, accumulated on the device (no sync)."""

    def __init__(self, device: torch.device) -> None:
        # two in-place adds per step; packed into one tensor only at the end
        self.loss = torch.zeros((), device=device, dtype=torch.float64)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen = 0  # known on the host: batch sizes

    def add(self, loss_sum: torch.Tensor, logits: torch.Tensor, yb: torch.Tensor) -> None:
        self.loss += loss_sum
        self.correct += (logits.argmax(1) == yb).sum()
        self.seen += yb.shape[0]

    def result(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> EpochResult:
        sums = torch.stack([self.loss, self.correct.double(),
                            self.loss.new_tensor(float(self.seen))])
        if reduce is not None:
            sums = reduce(sums)
        loss, correct, seen = sums.tolist()  # the epoch's one host sync
        seen = max(int(seen), 1)
        return EpochResult(loss / seen, correct / seen, seen)


def train_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                device: torch.device, desc: str | None = "train",
                extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
                after_step: Callable[[], None] | None = None, runtime=None) -> EpochResult:
    """One pass over ``loader``. ``extra_loss(model)`` adds a regulariser (DST's);
    ``after_step()`` runs after every optimizer step (scheduler hooks and the like);
    ``runtime`` (a :class:`~grownet.train.runtime.Runtime`) lays out batches and sums
    the epoch's totals over data-parallel ranks. On a sharded loader each rank's mean
    loss is weighted by its ``shard_weight``, so that DDP's averaged gradient is the
    gradient of the global batch's mean loss even when the last batch splits unevenly.

    Raises :class:`NonFiniteLoss` when the epoch's loss is NaN or infinite."""
    model.train()
    totals = Totals(device)
    for xb, yb in progress(loader, len(loader), desc):
        if runtime is not None:
            xb = runtime.batch(xb)
        with autocast(device):
            logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            if extra_loss is not None:
                loss = loss + extra_loss(model)
        weight = getattr(loader, "shard_weight", 1.0)
        optimizer.zero_grad(set_to_none=True)
        (loss * weight if weight != 1.0 else loss).backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        totals.add(loss.detach() * yb.shape[0], logits.detach(), yb)
    result = totals.result(runtime.reduce if runtime is not None else None)
    if not np.isfinite(result.loss):
        raise NonFiniteLoss("training loss became NaN/inf; the last good checkpoint is "
                            "kept — lower --lr (or raise nu) and run again")
    return result


@torch.inference_mode()
def evaluate(model: nn.Module, loader, device: torch.device, runtime=None) -> EpochResult:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) over ``loader`` (summed
    over the ranks' shards when ``runtime`` is data parallel)."""
    model.eval()
    totals = Totals(device)
    for xb, yb in loader:
        if runtime is not None:
            xb = runtime.batch(xb)
        with autocast(device):
            logits = model(xb).float()
        totals.add(F.cross_entropy(logits, yb, reduction="sum"), logits, yb)
    return totals.result(runtime.reduce if runtime is not None else None)


def rng_state() -> dict[str, torch.Tensor]:
    """The RNG states a resumed CPU run needs (torch's global generator: dropout, init)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
