"""Learning rate per epoch (constant while growing, then the schedule) and per-step
linear warm-up."""

from __future__ import annotations

import math

from grownet.runs import RunConfig


def lr_at(cfg: RunConfig, phase: str, epoch: int, phase_start: int, phase_epochs: int
          ) -> float:
    """The lr of ``epoch``: constant while growing, then ``cfg.schedule`` over the phase."""
    if phase == "grow":
        return cfg.lr
    k, n = epoch - phase_start, max(phase_epochs, 1)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * k / n))
    if cfg.schedule == "step":  # x0.1 at 1/2 and 3/4 of the phase
        return cfg.lr * (0.1 ** ((k >= n // 2) + (k >= (3 * n) // 4)))
    return cfg.lr


def warmed_up(lr: float, step: int, warmup_steps: int) -> float:
    """``lr`` scaled linearly over the first ``warmup_steps`` steps of a run."""
    return lr * (step + 1) / warmup_steps if step < warmup_steps else lr
