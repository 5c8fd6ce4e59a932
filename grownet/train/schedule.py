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


def lr_sum(cfg: RunConfig, steps_per_epoch: int, epochs: float) -> float:
    """The sum of the per-step learning rates of a ``train`` run over its first
    ``epochs`` epochs (fractional allowed), warm-up included: how far DessiLBI's ``V``
    moves per unit of ``||W - Γ|| / ν`` in that time (λ's per-layer pacing uses it).
    Epochs past the run's end count at the base ``cfg.lr``, as if it went on
    unscheduled (an entry target beyond the run: a filter whose norm stayed at its
    initial value would not enter in it)."""
    steps = max(1, round(epochs * steps_per_epoch))
    warmup_steps = round(cfg.warmup * steps_per_epoch)
    total = 0.0
    for step in range(steps):
        epoch = step // steps_per_epoch
        lr = lr_at(cfg, "train", epoch, 0, cfg.epochs) if epoch < cfg.epochs else cfg.lr
        total += warmed_up(lr, step, warmup_steps)
    return total
