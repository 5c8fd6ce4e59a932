"""Tickets of a size, and the check that a ticket leaves every layer enough units.

A ticket of a given size is the support of Γ at the first moment it reaches that size.
The tracker stamps, after every optimizer step, the step at which each filter first
entered the support, so the support's growth is known step by step: the filters that
had entered by step ``s`` are those with ``0 <= entry_step <= s``. The ticket's size is
the params of the slimmed network they give (:func:`grownet.count` of the slimmed spec,
after :func:`~grownet.prune.constrain`); it never shrinks as ``s`` grows, so the first
step reaching a size is found by bisection over the steps at which something entered.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from grownet.cost import count
from grownet.errors import UserError
from grownet.nets import GrowNet
from grownet.path import SupportTracker
from grownet.prune.order import entry_steps, prune_orders, tracker_state
from grownet.prune.slimming import Selection, constrain
from grownet.prune.tickets import check_layers, cut_here
from grownet.spec import ArchSpec
from grownet.surgery import slim

__all__ = ["MIN_UNITS", "SizedTicket", "few_units", "ticket_at_step", "ticket_of_size"]

#: a ticket that leaves a layer fewer units than this is refused unless forced
MIN_UNITS = 2


@dataclass
class SizedTicket:
    """What :func:`ticket_of_size` found: the keep, the step at which Γ's support first
    reached the size, and the slimmed params of the full net and of the ticket."""

    keep: Selection
    step: int
    params: int
    full_params: int


def ticket_at_step(state: SupportTracker | Mapping[str, Any], spec: ArchSpec, step: int,
                   model: GrowNet | None = None, layers: str = "all") -> Selection:
    """The filters that had entered Γ's support by optimizer step ``step``.

    Parameters
    ----------
    state
        A :class:`~grownet.path.SupportTracker` or its state dict (a checkpoint's
        ``"tracker"``), for the layers of ``spec``.
    spec
        The architecture to prune (the tracker's last).
    step
        Optimizer steps since the tracker started (``metrics.csv``'s ``step`` column
        counts them too).
    model
        The model; its weights rank the filter a layer with nothing selected keeps.
    layers
        ``"all"`` or ``"conv"`` (hidden linear layers keep every unit).
    """
    check_layers(layers)
    entries, rank = _entries_and_rank(state, spec, model)
    return _keep_at(spec, entries, step, layers, rank)


def _entries_and_rank(state: SupportTracker | Mapping[str, Any], spec: ArchSpec,
                      model: GrowNet | None) -> tuple[dict[str, Tensor], Mapping[str, Tensor]]:
    """Each layer's entry steps, and the order a layer keeps its filters in: the model's
    Γ order when given, else the earliest entries first."""
    st = tracker_state(state)
    entries = entry_steps(st, spec)
    rank = prune_orders(model, st) if model is not None else {
        k: -v.double() for k, v in entries.items()}
    return entries, rank


def _keep_at(spec: ArchSpec, entries: dict[str, Tensor], step: int, layers: str,
             rank: Mapping[str, Tensor]) -> Selection:
    keep = {}
    for s in spec.shapes():
        if cut_here(s, set(entries), layers):
            e = entries[s.id]
            keep[s.id] = torch.nonzero((e >= 0) & (e <= step)).flatten()
    return constrain(spec, keep, rank=rank)


def ticket_of_size(state: SupportTracker | Mapping[str, Any], spec: ArchSpec,
                   params: int | None = None, keep: float | None = None,
                   model: GrowNet | None = None, layers: str = "all") -> SizedTicket:
    """The ticket at the first step where Γ's support reaches a size.

    Parameters
    ----------
    state, spec, model, layers
        As in :func:`ticket_at_step`.
    params, keep
        Exactly one: the slimmed net's params to reach, or its share of the full
        net's params, in ``(0, 1]``.

    Returns
    -------
    SizedTicket
        The keep at the first step whose slimmed net has at least the size asked for.

    Raises
    ------
    UserError
        Neither or both sizes given, or the support never reached the size (the
        message says how large it got).
    """
    check_layers(layers)
    if (params is None) == (keep is None):
        raise UserError("give exactly one of params or keep (the ticket's size)")
    full = count(spec).params
    if keep is not None:
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
            raise UserError(f"keep must be a share of the params in (0, 1], got {keep!r}")
        params = keep * full
    elif isinstance(params, bool) or not isinstance(params, int) or params < 1:
        raise UserError(f"params must be an integer >= 1, got {params!r}")
    entries, rank = _entries_and_rank(state, spec, model)
    steps = sorted({int(v) for e in entries.values() for v in e.tolist() if v >= 0})

    @functools.cache  # the search asks for some steps twice (its ends)
    def size(step: int) -> tuple[int, Selection]:
        sel = _keep_at(spec, entries, step, layers, rank)
        return count(slim(spec, sel)).params, sel

    top = size(steps[-1])[0] if steps else size(-1)[0]
    if top < params:
        raise UserError(f"Γ's support never reached {params:,.0f} params: its largest ticket "
                        f"has {top:,} of the net's {full:,} ({100 * top / full:.1f}%); ask "
                        "for a smaller ticket")
    lo, hi = 0, len(steps) - 1  # the answer is steps[i] for the least i reaching params
    while lo < hi:
        mid = (lo + hi) // 2
        if size(steps[mid])[0] >= params:
            hi = mid
        else:
            lo = mid + 1
    got, sel = size(steps[lo])
    return SizedTicket(sel, steps[lo], got, full)


def few_units(spec: ArchSpec, keep: Mapping[str, Tensor],
              minimum: int = MIN_UNITS) -> dict[str, tuple[int, int]]:
    """``{layer: (kept, width)}`` for every layer ``keep`` leaves fewer than ``minimum``
    units (filters / neurons) out of more; the classifier is never cut."""
    out = {}
    for s in spec.shapes():
        kept = keep.get(s.id)
        if kept is not None and s.role != "head" and len(kept) < min(minimum, s.out_ch):
            out[s.id] = (len(kept), s.out_ch)
    return out
