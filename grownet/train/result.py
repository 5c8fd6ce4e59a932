"""What a finished job returns, and its printed summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from grownet.cost import CostTable
from grownet.runs import RunDir
from grownet.spec import ArchSpec


@dataclass
class JobResult:
    run: RunDir
    spec: ArchSpec
    test_acc: float
    params: int
    macs: int
    epochs: int
    events: list[dict[str, Any]] = field(default_factory=list)
    model: nn.Module | None = None  # the final model (on the job's device)


def nonzero_weights(model: nn.Module) -> tuple[int, int]:
    """``(nonzero, all)`` entries of the conv and linear weights of ``model``."""
    weights = [m.weight.detach() for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    nonzero = sum(int(torch.count_nonzero(w)) for w in weights)
    return nonzero, sum(w.numel() for w in weights)


def summary(result: JobResult, cost: CostTable) -> str:
    """The lines printed at the end of a run: architecture, params, MACs, accuracy, the
    nonzero weights of the final net (and, for DST, the share of the masked layers'
    weights its masks kept), the per-layer cost table and where the run went."""
    widths = ", ".join(f"{k}={v}" for k, v in result.spec.widths().items())
    sparse = ""
    if result.model is not None:
        nonzero, total = nonzero_weights(result.model)
        sparse = f"nonzero weights {nonzero:,} of {total:,} ({100 * nonzero / total:.2f}%)"
        dst = [e for e in result.events if e.get("kind") == "dst-slim" and "keep" in e]
        if dst:
            e = dst[-1]
            sparse += (f"; DST keep {100 * e['keep']:.2f}% ({e['kept_weights']:,} of the "
                       f"masked layers' {e['masked_weights']:,} weights)")
        sparse += "\n"
    return (f"\nfinal architecture ({result.spec.family}): {widths}\n"
            f"params {result.params:,}  MACs {result.macs:,}  test accuracy "
            f"{result.test_acc * 100:.2f}%  epochs {result.epochs}\n"
            f"{sparse}{cost.format_table()}\n"
            f"run directory: {result.run.path}")
