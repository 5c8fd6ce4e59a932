"""Shared pieces of the optimizer package: structures, hyperparameter checks, support."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from grownet.errors import UserError

#: Valid values of a parameter group's ``structure`` key.
STRUCTURES = ("filter", "element", "none")

# Γ is only ever updated for these ranks (ALGORITHMS A3): other coupled tensors
# (1-D, 3-D, ...) keep Γ = 0 and feel only the pull of W towards 0.
_PROX_NDIMS = (2, 4)
_ROW_DIMS = {2: (1,), 4: (1, 2, 3)}  # all dims but the first, per rank in _PROX_NDIMS
# Where torch's fused SGD kernel (momentum + step in one pass) exists.
_FUSED_DEVICES = ("cpu", "cuda")
_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _auto_structure(p: Tensor) -> str:
    """Reference rule for plain tensors: 4-D filter-wise, 2-D element-wise, rest plain."""
    if p.ndim == 4:
        return "filter"
    if p.ndim == 2:
        return "element"
    return "none"


def _support(gam: Tensor, structure: str) -> Tensor:
    """Support of Γ: rows (dim 0) for "filter", elements for "element"."""
    if structure == "filter" and gam.ndim > 1:
        return gam.flatten(1).abs().amax(1) > 0  # faster than any() over a float tensor
    return gam.bool()


def _check_hyper(h: dict[str, Any], where: str) -> None:
    """Validate hyperparameters present in ``h``; raise one clear UserError."""

    def bad(key: str, why: str) -> None:
        raise UserError(f"{where}: {key}={h[key]!r} is invalid; {why}")

    def num(key: str) -> float | None:
        if key not in h:
            return None
        val = h[key]
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            bad(key, "pass a finite number")
        return float(val)

    if (lr := num("lr")) is not None and lr < 0:
        bad("lr", "the step size must be >= 0")
    if (kappa := num("kappa")) is not None and kappa <= 0:
        bad("kappa", "kappa must be > 0 (1.0 is the reference value)")
    if (nu := num("nu")) is not None and nu <= 0:
        bad("nu", "nu must be > 0 (100 is the reference value; see nu_for_entry)")
    if (lam := num("lam")) is not None and lam < 0:
        bad("lam", "the prox threshold must be >= 0 (1.0 is the reference value)")
    if (m := num("momentum")) is not None and m < 0:
        bad("momentum", "momentum must be >= 0")
    if (dmp := num("dampening")) is not None and not 0 <= dmp <= 1:
        bad("dampening", "dampening must lie in [0, 1]")
    if (wd := num("weight_decay")) is not None and wd < 0:
        bad("weight_decay", "weight decay must be >= 0")
    if h.get("nesterov") and (h.get("momentum", 0) <= 0 or h.get("dampening", 0) != 0):
        bad("nesterov", "Nesterov momentum needs momentum > 0 and dampening = 0")


# -- parameter groups for a model -------------------------------------------------
