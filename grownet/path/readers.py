"""Reading a tracker's history: per-epoch supports and the entry / prune orders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from grownet.errors import UserError
from grownet.optim.groups import group_norms
from grownet.path.layout import NEVER_EPOCH, LayerSlot, numel, view

if TYPE_CHECKING:
    import pandas as pd


class HistoryReadout:
    """Mixin for :class:`~grownet.path.SupportTracker`: history, tickets' supports and
    orders. Expects the tracker's ``_history``, ``_layers``, ``_entry_step``,
    ``_entry_epoch`` and ``_layer()``."""

    _history: list[dict[str, Any]]
    _layers: list[LayerSlot]
    _entry_step: Tensor
    _entry_epoch: Tensor

    def _layer(self, layer: str) -> LayerSlot:  # provided by the tracker
        raise NotImplementedError

    def history(self) -> pd.DataFrame:
        """One row per layer per :meth:`end_epoch` call.

        Returns
        -------
        pandas.DataFrame
            Columns ``step, epoch, layer, selected, total, ratio``; ``selected`` and
            ``total`` count rows (filter layers) or elements (element layers).
        """
        import pandas as pd  # here, not at module level: importing grownet stays light

        cols = ["step", "epoch", "layer", "selected", "total", "ratio"]
        if not self._history:
            return pd.DataFrame(columns=cols)
        sums = []
        for rec in self._history:
            off = 0
            for shape in rec["shapes"]:
                n = numel(shape)
                sums.append(rec["support"][off : off + n].sum())
                off += n
        counts = torch.stack(sums).tolist()  # one sync for the whole history
        rows = []
        k = 0
        for rec in self._history:
            for name, shape in zip(rec["layers"], rec["shapes"]):
                n = numel(shape)
                rows.append((rec["step"], rec["epoch"], name, counts[k], n, counts[k] / n))
                k += 1
        return pd.DataFrame(rows, columns=cols)

    def support_at(self, epoch: int) -> dict[str, Tensor]:
        """The support recorded by ``end_epoch(epoch)`` (the last such call).

        Returns
        -------
        dict
            ``{layer: bool tensor}`` with the layer shapes of that time.
        """
        for rec in reversed(self._history):
            if rec["epoch"] == epoch:
                out = {}
                off = 0
                for name, shape in zip(rec["layers"], rec["shapes"]):
                    n = numel(shape)
                    out[name] = rec["support"][off : off + n].view(shape).clone()
                    off += n
                return out
        known = sorted({rec["epoch"] for rec in self._history})
        raise UserError(
            f"SupportTracker: no support recorded for epoch {epoch}; recorded epochs: "
            f"{known or 'none (call tracker.end_epoch(epoch) after each epoch)'}"
        )

    def entry_order(self, layer: str) -> Tensor:
        """Groups of ``layer`` ranked by entry: first in first, ties by larger ``||W_g||``.

        Never-entered groups come last (also ordered by norm).

        Returns
        -------
        Tensor
            Long tensor of group indices (rows for filter layers, flat element
            indices for element layers), on the device.
        """
        lay = self._layer(layer)
        es = view(self._entry_step, lay).flatten()
        key = torch.where(es < 0, torch.iinfo(torch.long).max, es)
        by_norm = torch.argsort(group_norms(lay.param, lay.structure), descending=True, stable=True)
        return by_norm[torch.argsort(key[by_norm], stable=True)]

    def prune_order(self, layer: str) -> Tensor:
        """The reference prune order (ALGORITHMS A7): higher = more important.

        ``order_g = ||W_g|| - entry_epoch_g`` with never-entered groups at epoch
        2000; ``||W_g||`` is the row norm for filter layers and ``|W_ij|`` for element
        layers. Earlier entry dominates and the norm breaks ties (not strictly
        lexicographic when norms exceed 1; :meth:`entry_order` is). Filter layers
        use the epoch of the first entry at any step; the reference checks the
        support only at epoch ends.

        Returns
        -------
        Tensor
            Float tensor shaped ``(out,)`` (filter) or like the weight (element).
        """
        lay = self._layer(layer)
        ee = view(self._entry_epoch, lay)
        rec = torch.where(ee < 0, NEVER_EPOCH, ee).to(torch.float32)
        return group_norms(lay.param, lay.structure).view(lay.shape) - rec
