"""What a finished job returns, and its printed summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


def summary(result: JobResult, cost: CostTable) -> str:
    widths = ", ".join(f"{k}={v}" for k, v in result.spec.widths().items())
    return (f"\nfinal architecture ({result.spec.family}): {widths}\n"
            f"params {result.params:,}  MACs {result.macs:,}  test accuracy "
            f"{result.test_acc * 100:.2f}%  epochs {result.epochs}\n"
            f"{cost.format_table()}\n"
            f"run directory: {result.run.path}")
