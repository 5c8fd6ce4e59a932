"""DST paced to a target keep ratio: α steered so that the share of kept weights follows
a schedule from 1 (dense) down to the target, whatever the dataset size.

The paper's DST has one knob, α, and its sparsity depends on steps × α × lr: the same α
keeps 55 % of LeNet-5's weights after 800 steps and 4 % after 12,000. :class:`KeepPacer`
instead takes the keep ratio a user wants at the end of training and adjusts α every
step, on the device, from the measured keep ratio:

* target at step ``s`` of ``S``: 1 for the first 10 % of the run (the net learns
  first: early on, the thresholds' own task gradient is noise), then
  ``k*(s) = K + (1 - K) (1 - (s - s₀) / (s₁ - s₀))^3`` from ``s₀ = 0.1 S`` to
  ``s₁ = 0.75 S`` (the gradual-pruning schedule of Zhu & Gupta, 2017), then ``K``: the
  last quarter of the run trains at the target sparsity;
* error ``e = ln(k / k*(s))``, ``k`` the weighted keep ratio of the masked layers (kept
  weights over their weights) after this step's forward pass, or, when smaller,
  ``ln(k_min / 0.015)`` with ``k_min`` the lowest layer keep ratio: the pacer never
  drives a layer onto the dead-layer guard (1 %), which would reset it to dense and,
  with alpha then climbing, cycle (LeNet-5-Caffe's fc1, 93 % of its weights, does so
  on the way to 1.5 % overall; the target is then missed, not cycled around);
* ``ln(α/α₀) → I + P e``, ``I += e / τ`` each step (a PI controller in log α): the
  thresholds integrate α, so the proportional part damps and the integral part removes
  the offset against the task gradient, which pushes thresholds back down. Because the
  thresholds answer α only through the momentum buffer (about 10 steps late), ``ln α``
  moves at most :data:`SLEW` per step and stays below ``α₀ e^6``, and the integral
  unwinds 4x faster below the target than above it (an overshoot is dear: only the task
  gradient brings thresholds down). Without these a short run sends thresholds past
  every weight, and the dead-layer guard then resets layers in a cycle.
  ``α₀ = (1 - m) w̄ / (a S)`` is the α that, unopposed, would lift every threshold by the
  mean weight magnitude ``w̄`` over the run (momentum ``m``, lr ``a``): it makes the gains
  independent of the run's length, lr and weight scale.

Nothing is read back to the host: ``α`` and ``I`` are 0-dim device tensors, so a step
waits on nothing. The state (``I`` and the step) goes into the job's checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from grownet.dst.convert import masked_layers, threshold_penalty
from grownet.dst.layers import DEAD_RATIO
from grownet.errors import UserError

#: the target falls from 1 to K between these shares of the run (then it holds K)
RAMP_START = 0.1
RAMP_END = 0.75
#: proportional gain on ln(k / k*)
GAIN_P = 4.0
#: steps over which a constant error of 1 raises ln α by 1 (integral time): this share
#: of the run, but at least TAU_MIN_STEPS
TAU = 0.01
TAU_MIN_STEPS = 20.0
#: below the target the integral unwinds this many times faster: thresholds come down
#: only through the task gradient, slowly, so an overshoot is dear
BELOW = 4.0
#: ln(α/α₀) changes by at most this per step: the thresholds answer α through the
#: momentum buffer, about 1/(1 - m) = 10 steps late, so a faster α overshoots
SLEW = 0.1
#: the pacer keeps every layer's keep ratio above this multiple of the guard's 1 %
GUARD_MARGIN = 1.5
#: ln(α/α₀) stays within [-LOG_MIN, LOG_MAX]: α at most ~400 α₀
LOG_MIN = 12.0
LOG_MAX = 6.0


def keep_target(step: int, total_steps: int, keep: float) -> float:
    """The scheduled keep ratio after ``step`` of ``total_steps`` (see the module)."""
    start = RAMP_START * total_steps
    length = max(RAMP_END * total_steps - start, 1.0)
    left = min(1.0, max(0.0, 1.0 - (step - start) / length))
    return keep + (1.0 - keep) * left ** 3


def _keeps(layers: list[nn.Module], sizes: Tensor) -> tuple[Tensor, Tensor]:
    """The weighted keep ratio and the lowest keep ratio of a layer (device tensors, no
    sync); ``sizes``: the layers' weight counts (float64, on the masks' device)."""
    kept = torch.stack([m.mask().sum() for m in layers]).double()
    return kept.sum() / sizes.sum(), (kept / sizes).min()


class KeepPacer:
    """DST's regulariser with α steered to a keep ratio (see the module docstring).

    Call it like :func:`grownet.dst.sparsity_loss` once per training step, after the
    forward pass: ``loss = task + pacer(model)``.

    Parameters
    ----------
    model
        The converted model (its masked layers give ``w̄``).
    keep
        Target share of the masked layers' weights kept at the end, in ``(0, 1)``.
    total_steps
        Optimizer steps of the whole run.
    lr, momentum
        The optimizer's (start) learning rate and momentum.
    """

    def __init__(self, model: nn.Module, keep: float, total_steps: int, lr: float,
                 momentum: float = 0.9) -> None:
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep < 1:
            raise UserError(f"keep must be a number in (0, 1), got {keep!r}")
        if total_steps < 1:
            raise UserError(f"total_steps must be >= 1, got {total_steps!r}")
        self.keep = float(keep)
        self.total_steps = int(total_steps)
        layers = list(masked_layers(model).values())
        with torch.no_grad():
            abs_sum = sum(float(m.weight.detach().abs().sum()) for m in layers)
        numels = [m.weight.numel() for m in layers]
        mean_abs = abs_sum / sum(numels)
        self.alpha0 = (1.0 - momentum) * max(mean_abs, 1e-8) / (lr * self.total_steps)
        self.step = 0
        dev = layers[0].weight.device
        # built once: a tensor made from host values each step would be a host copy
        self._sizes = torch.tensor(numels, dtype=torch.float64, device=dev)
        self._integral = torch.zeros((), dtype=torch.float64, device=dev)
        self._log_gain = torch.zeros_like(self._integral)
        self._alpha = torch.full((), self.alpha0, dtype=torch.float64, device=dev)

    @property
    def alpha(self) -> Tensor:
        """The α of the last step (0-dim device tensor)."""
        return self._alpha

    def target(self, step: int | None = None) -> float:
        return keep_target(self.step if step is None else step, self.total_steps, self.keep)

    def __call__(self, model: nn.Module) -> Tensor:
        with torch.no_grad():
            layers = list(masked_layers(model).values())
            dev = layers[0].weight.device
            if self._sizes.device != dev:  # the model moved after the pacer was made
                self._sizes = self._sizes.to(dev)
            k, lowest = (t.to(self._integral.device) for t in _keeps(layers, self._sizes))
            err = torch.log(k.clamp_min(1e-12)) - math.log(self.target())
            # never drive a layer onto the dead-layer guard: near it, steer by the layer
            near_guard = torch.log(lowest.clamp_min(1e-12)) - math.log(GUARD_MARGIN * DEAD_RATIO)
            err = torch.minimum(err, near_guard)
            tau = max(TAU * self.total_steps, TAU_MIN_STEPS)
            rate = torch.where(err < 0, BELOW / tau, 1.0 / tau)
            self._integral.add_(err * rate).clamp_(-LOG_MIN, LOG_MAX)
            want = (self._integral + GAIN_P * err).clamp(-LOG_MIN, LOG_MAX)
            self._log_gain += (want - self._log_gain).clamp(-SLEW, SLEW)
            self._alpha = self.alpha0 * torch.exp(self._log_gain)
        self.step += 1
        total = threshold_penalty(model)
        return self._alpha.to(total.dtype) * total

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "integral": float(self._integral),
                "log_gain": float(self._log_gain), "alpha0": self.alpha0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.alpha0 = float(state["alpha0"])
        self._integral.fill_(float(state["integral"]))
        self._log_gain.fill_(float(state["log_gain"]))
        self._alpha = self.alpha0 * torch.exp(self._log_gain)


__all__ = ["KeepPacer", "keep_target"]
