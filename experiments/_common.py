"""Shared by the experiment scripts: one training run as a table row, recipes, and
mean ± std tables. Every run is a real ``grownet`` run directory, trained on one thread.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import time
from pathlib import Path
from typing import Any

#: the DST paper's MNIST recipe (ALGORITHMS B5): SGD lr 0.01, momentum 0.9, batch 64,
#: constant lr, no warm-up (the data keep their own augmentation unless told)
PAPER = {"lr": 0.01, "momentum": 0.9, "batch_size": 64, "schedule": "constant",
         "warmup_epochs": 0.0}


def train_row(folder: Path, **config: Any) -> dict[str, Any]:
    """Run ``grownet train`` (or ``grow``, with ``command="grow"``) with ``config`` into
    ``folder`` (reused when it already finished, started again when it did not) and
    return its last metrics row plus the final test accuracy, wall time (one thread)
    and the run's path. A finished folder trained with another config is trained again
    (without ``config``: a finished run made elsewhere, read as it is)."""
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    from grownet.compare.plan import same_config
    from grownet.grow.job import recorded_config, start_job
    from grownet.runs import RunConfig, RunDir, final_test_acc

    t0 = time.perf_counter()
    cfg = RunConfig(**{"command": "train", **config})
    run = RunDir(folder)
    if not run.finished or (config and not same_config(run.config(), recorded_config(cfg))):
        shutil.rmtree(folder, ignore_errors=True)  # killed half-way, or another recipe
        with contextlib.redirect_stdout(io.StringIO()):
            start_job(cfg, folder, quiet=True)
    metrics = pd.read_csv(folder / "metrics.csv")
    row = metrics.iloc[-1].to_dict()
    row.update(final_acc=final_test_acc(folder), run=str(folder), epochs=len(metrics),
               train_s=float(row["time_s"]), call_s=time.perf_counter() - t0)
    return row


def mean_std(values: Any, scale: float = 100.0, digits: int = 2) -> str:
    """``"m ± s"`` of a pandas Series (sample std; just ``m`` for one value)."""
    m = float(values.mean()) * scale
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {float(values.std()) * scale:.{digits}f}"


def markdown(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
