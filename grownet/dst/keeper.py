"""The models a DST run keeps besides its final one, as the reference trainer does: the
most accurate (``RUN/best/``) and the most accurate of the sparsest (``RUN/sparsest/``).

Accuracy is the validation accuracy when the run holds out a validation split
(``val_frac``), else the training accuracy of the epoch: the test set never
chooses a model. "Sparsest" means a keep ratio within :data:`SPARSEST_TOLERANCE`
(relative) of the lowest seen so far: a paced run holds its target keep for the last
quarter of training, where the lowest keep of all is an accident of a few weights,
so among the epochs near it the most accurate is kept. (The reference keeps the
lowest keep ratio whatever its accuracy, and picks its best model on the test set.)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from grownet.dst.slim import bake
from grownet.runs import RunDir
from grownet.spec import ArchSpec

#: relative slack on the lowest keep ratio within which ``sparsest`` picks by accuracy
SPARSEST_TOLERANCE = 0.05


class BestKeeper:
    """Decides, after every epoch, whether the model becomes ``best`` and/or
    ``sparsest``, and writes it there with its masks baked in (a plain
    :func:`grownet.build` model; :func:`grownet.runs.load_final_model` ``(run, "best")``
    reads it back). The metadata say the epoch, keep ratio and accuracies."""

    def __init__(self) -> None:
        self.best_acc: float | None = None
        self.lowest_keep: float | None = None
        self.sparsest: tuple[float, float] | None = None  # (keep, acc)

    def update(self, run: RunDir, row: dict[str, Any], spec: ArchSpec,
               model: nn.Module) -> list[str]:
        """Consider the epoch of ``row`` (a ``metrics.csv`` row with ``keep``); returns
        the names written."""
        key = "val_acc" if "val_acc" in row else "train_acc"
        acc, keep = float(row[key]), float(row["keep"])
        written = []
        if self.best_acc is None or acc > self.best_acc:
            self.best_acc = acc
            written.append("best")
        self.lowest_keep = keep if self.lowest_keep is None else min(self.lowest_keep, keep)
        near = self.lowest_keep * (1.0 + SPARSEST_TOLERANCE)
        if keep <= near and (self.sparsest is None or self.sparsest[0] > near
                             or (acc, -keep) > (self.sparsest[1], -self.sparsest[0])):
            self.sparsest = (keep, acc)
            written.append("sparsest")
        if written:
            baked = bake(spec, model)
            meta = {"epoch": str(int(row["epoch"])), "keep": f"{keep:.6f}", "chosen_by": key,
                    key: f"{acc:.6f}", "test_acc": f"{float(row['test_acc']):.6f}"}
            for name in written:
                run.save_model(name, spec, baked, extra=meta)
        return written

    def state_dict(self) -> dict[str, Any]:
        return {"best_acc": self.best_acc, "lowest_keep": self.lowest_keep,
                "sparsest": list(self.sparsest) if self.sparsest else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_acc = state.get("best_acc")
        self.lowest_keep = state.get("lowest_keep")
        sparsest = state.get("sparsest")
        self.sparsest = tuple(sparsest) if sparsest else None


__all__ = ["SPARSEST_TOLERANCE", "BestKeeper"]
