"""The reference prune order (ALGORITHMS A7) and pruning by percent.

``order_o = ||W[o]|| - e_o``: ``e_o`` is the first epoch in which filter ``o`` was in
Γ's support (2000 when it never was; for an element-structured layer the earliest
entry of any element of row ``o``). Higher = more important: an earlier entry
dominates, the norm breaks ties, and never-selected filters (order about -2000) go
first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from grownet.errors import UserError
from grownet.nets import GrowNet
from grownet.path import NEVER_EPOCH, SupportTracker
from grownet.prune.slimming import Selection, constrain
from grownet.spec import ArchSpec

__all__ = ["by_percent", "entry_epochs", "entry_steps", "prune_orders", "tracker_state"]


def tracker_state(source: SupportTracker | Mapping[str, Any]) -> dict[str, Any]:
    """``source`` as a tracker state dict (what ``SupportTracker.state_dict()`` returns,
    also stored as ``checkpoint["tracker"]``)."""
    if isinstance(source, SupportTracker):
        return source.state_dict()
    if isinstance(source, Mapping) and {"layers", "shapes", "entry_epoch"} <= set(source):
        return dict(source)
    raise UserError("expected a SupportTracker or its state_dict() (checkpoint['tracker']); "
                    "a run trained without DessiLBI (sgd, dst) has no Γ support to prune by")


def _matches(spec_shape: Any, shape: list[int]) -> bool:
    return list(shape) in ([spec_shape.out_ch], list(spec_shape.weight_shape))


def entry_epochs(state: Mapping[str, Any], spec: ArchSpec) -> dict[str, Tensor]:
    """``{layer: first epoch in the support per filter}`` (``NEVER_EPOCH`` = never).

    Parameters
    ----------
    state
        A tracker state for the layers of ``spec`` (same widths).
    spec
        The architecture the tracker followed last.

    Returns
    -------
    dict
        Long tensors shaped ``(out,)``, on the CPU; element layers take the earliest
        entry in each row.
    """
    return _row_entries(state, spec, "entry_epoch", NEVER_EPOCH)


def entry_steps(state: Mapping[str, Any], spec: ArchSpec) -> dict[str, Tensor]:
    """``{layer: optimizer steps after which each filter first entered the support}``
    (``-1`` = never; element layers: the row's earliest element). The tracker stamps
    every step, so this is the support's history at the finest grain: the filters that
    had entered by step ``s`` are those with ``0 <= entry <= s``."""
    never = torch.iinfo(torch.long).max
    return {k: torch.where(v == never, torch.full_like(v, -1), v)
            for k, v in _row_entries(state, spec, "entry_step", never).items()}


def _row_entries(state: Mapping[str, Any], spec: ArchSpec, key: str, never: int
                 ) -> dict[str, Tensor]:
    """Per layer of ``spec`` and output row: the tracker's ``key`` (entry step or epoch),
    ``never`` for a row that never entered."""
    by_id = {s.id: s for s in spec.shapes()}
    flat = state[key].detach().cpu().long()
    out, off = {}, 0
    for name, shape in zip(state["layers"], state["shapes"]):
        n = int(np.prod(shape))
        s = by_id.get(name)
        if s is None or not _matches(s, shape):
            have = "no such layer" if s is None else f"{list(s.weight_shape)}"
            raise UserError(f"the tracker state does not match the model: layer {name!r} has "
                            f"support shape {list(shape)} in the tracker and {have} in the "
                            "model; use the checkpoint's tracker with the final model")
        ee = flat[off:off + n].view(shape)
        off += n
        ee = torch.where(ee < 0, torch.full_like(ee, never), ee)
        out[name] = ee if ee.ndim == 1 else ee.flatten(1).amin(1)
    return out


def prune_orders(model: GrowNet, state: SupportTracker | Mapping[str, Any]
                 ) -> dict[str, Tensor]:
    """The prune order of every filter of every tracked layer (ALGORITHMS A7).

    Parameters
    ----------
    model
        The model the tracker followed (its weights give ``||W[o]||``).
    state
        Its :class:`~grownet.path.SupportTracker` or the tracker's state dict.

    Returns
    -------
    dict
        ``{layer id: float64 tensor (out,)}``, higher = more important. Layers the
        tracker does not follow (the classifier, uncoupled layers) are absent.
    """
    entries = entry_epochs(tracker_state(state), model.spec)
    out = {}
    for name, ee in entries.items():
        w = getattr(model, name).weight.detach().cpu().double()
        out[name] = torch.linalg.vector_norm(w.flatten(1), dim=1) - ee.double()
    return out


def by_percent(model: GrowNet, tracker_state: SupportTracker | Mapping[str, Any],
               percent: float) -> Selection:
    """Keep, per layer, the filters whose prune order reaches the layer's percentile.

    A7's conv rule, applied to every tracked layer: ``thr = numpy.percentile(order,
    percent)`` (linear interpolation), filters with ``order < thr`` are dropped, so
    about ``percent`` % go, never-selected ones first; at least the best filter stays.
    Layers the tracker does not follow keep everything; residual streams then keep
    the union of their convs' sets and what their shortcuts need (see
    :func:`grownet.prune.constrain`), so they can keep more.

    Parameters
    ----------
    model
        The model to prune (from :func:`grownet.build`).
    tracker_state
        Its :class:`~grownet.path.SupportTracker` or the tracker's state dict.
    percent
        In ``[0, 100]``.

    Returns
    -------
    Selection
        ``{layer id: kept filter indices}`` for :func:`grownet.prune.slim_network`.
    """
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) \
            or not 0 <= percent <= 100:
        raise UserError(f"percent must be a number in [0, 100], got {percent!r}")
    if not isinstance(model, GrowNet):
        raise UserError(f"by_percent needs a model built by grownet.build, got "
                        f"{type(model).__name__}")
    orders = prune_orders(model, tracker_state)
    keep: dict[str, Tensor] = {}
    for name, order in orders.items():
        thr = np.percentile(order.numpy(), float(percent))
        kept = torch.from_numpy(order.numpy() >= thr)
        if not kept.any():  # float edge case: keep the best filter
            kept[int(torch.argmax(order))] = True
        keep[name] = torch.nonzero(kept).flatten()
    return constrain(model.spec, keep, rank=orders)
