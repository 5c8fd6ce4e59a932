"""Which filters of a layer have had their time, for growth: the census of a tracker's
groups.

A group enters Γ's support after about ``λν / (a ||W_g||)`` steps while ``Γ_g = 0``
(ALGORITHMS A5): with λ paced so that a filter of norm 1 enters after ``entry_epochs``,
a filter growth has just added is out of the support for a while whatever the task
makes of it. Counting it as "not selected" would make the layer that just grew look
as if it had room. So each group is judged only once it has trained ``mature_epochs``
epochs since its birth (the start's groups are born in epoch 0, a growth step's in the
epoch after it):

* **used**: in Γ's support now;
* **waiting**: out of the support and younger than ``mature_epochs`` (no verdict yet);
* **idle**: out of the support and old enough.

``used / (used + idle)`` is the layer's ratio among the groups that had their time. A
layer with waiting groups is *pending* for growth: neither a reason to grow it again
nor a sign that it has room. With ``mature_epochs`` 0 every group is judged at once
(the reference's rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from grownet.path.layout import LayerSlot


@dataclass(frozen=True)
class Census:
    """A layer's groups at a check (see the module docstring); ``ready``: the epoch at
    whose end its youngest waiting group has had its time (-1 when none waits)."""

    used: int
    waiting: int
    idle: int
    ready: int = -1

    @property
    def total(self) -> int:
        return self.used + self.waiting + self.idle

    @property
    def ratio(self) -> float | None:
        """Used among the groups that had their time; ``None`` when none had."""
        judged = self.used + self.idle
        return self.used / judged if judged else None


class GrowthReadout:
    """Mixin for :class:`~grownet.path.SupportTracker`: :meth:`census`. Expects the
    tracker's ``_layers``, ``_support``, ``_birth``, ``_next_epoch`` and ``_refresh``."""

    _layers: list[LayerSlot]
    _support: Tensor
    _birth: Tensor
    _history: list[dict[str, Any]]
    _next_epoch: int

    def _refresh(self, stamp: bool, after_step: bool = False) -> None:  # the tracker's
        raise NotImplementedError

    def census(self, mature_epochs: float) -> dict[str, Census]:
        """Each layer's groups now: used, waiting, idle (see the module docstring); one
        device sync. A group's age is the number of epochs it has trained."""
        self._refresh(stamp=True)
        young = (self._next_epoch - self._birth) < mature_epochs
        waiting = ~self._support & young
        born = torch.where(waiting, self._birth, -1)
        rows = []
        for lay in self._layers:
            s = slice(lay.offset, lay.offset + lay.numel)
            rows += [self._support[s].sum(), waiting[s].sum(), born[s].max()]
        counts = torch.stack(rows).tolist()
        out = {}
        for i, lay in enumerate(self._layers):
            used, wait, newest = counts[3 * i: 3 * i + 3]
            ready = newest + math.ceil(mature_epochs) - 1 if wait else -1
            out[lay.name] = Census(int(used), int(wait), int(lay.numel - used - wait),
                                   int(ready))
        return out
