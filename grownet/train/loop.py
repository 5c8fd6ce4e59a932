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


def progress(iterable: Iterable, total: int, desc: str) -> Iterable:
    """A tqdm bar on a terminal; the plain iterable otherwise (logs stay clean)."""
    if not sys.stderr.isatty():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def train_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                device: torch.device, desc: str = "train",
                extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
                after_step: Callable[[], None] | None = None) -> EpochResult:
    """One pass over ``loader``. ``extra_loss(model)`` adds a regulariser (DST's);
    ``after_step()`` runs after every optimizer step (scheduler hooks and the like).

    Raises :class:`NonFiniteLoss` when the epoch's loss is NaN or infinite."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for xb, yb in progress(loader, len(loader), desc):
        with autocast(device):
            logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            if extra_loss is not None:
                loss = loss + extra_loss(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        loss_sum += loss.detach() * yb.shape[0]
        correct += (logits.detach().argmax(1) == yb).sum()
        seen += yb.shape[0]
    mean_loss = float(loss_sum) / max(seen, 1)  # the epoch's one host sync
    if not np.isfinite(mean_loss):
        raise NonFiniteLoss("training loss became NaN/inf; the last good checkpoint is "
                            "kept — lower --lr (or raise nu) and run again")
    return EpochResult(mean_loss, int(correct) / max(seen, 1), seen)


@torch.inference_mode()
def evaluate(model: nn.Module, loader, device: torch.device) -> EpochResult:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) over ``loader``."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for xb, yb in loader:
        with autocast(device):
            logits = model(xb).float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
        seen += yb.shape[0]
    return EpochResult(float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1), seen)


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
