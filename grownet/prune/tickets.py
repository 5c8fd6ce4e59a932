"""Winning tickets: the filters in Γ's support at an early epoch, mapped to the final
architecture of a grown network.

The support tracker records, at the end of every epoch, the support with the layer
shapes of that time. A record from an earlier stage is carried to the final spec by
composing :func:`grownet.surgery.plan` ``(stage_k, stage_k+1).out_maps`` along the
stage specs: final channel ``j`` continues channel ``m(j)`` of the record's stage, or
is new (``-1``). A new channel did not exist at that epoch, so it was not selected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from grownet.errors import UserError
from grownet.nets import GrowNet
from grownet.path import SupportTracker
from grownet.prune.order import entry_epochs, prune_orders
from grownet.prune.slimming import Selection, constrain
from grownet.spec import ArchSpec, SpecError
from grownet.surgery import FRESH, plan

__all__ = ["TICKET_LAYERS", "channel_maps", "recorded_epochs", "support_at", "ticket"]

HistorySource = SupportTracker | Mapping[str, Any] | Sequence[Mapping[str, Any]]


def _records(source: HistorySource) -> list[Mapping[str, Any]]:
    if isinstance(source, SupportTracker):
        return list(source.state_dict()["history"])
    if isinstance(source, Mapping):
        if "history" not in source:
            raise UserError("expected a SupportTracker, its state_dict() or its 'history' "
                            "list; this mapping has no 'history'")
        return list(source["history"])
    if isinstance(source, Sequence) and all(isinstance(r, Mapping) for r in source):
        return list(source)
    raise UserError(f"expected a SupportTracker, its state_dict() or its 'history' list, "
                    f"got {type(source).__name__}")


def recorded_epochs(source: HistorySource) -> list[int]:
    """The epochs whose support was recorded (sorted, unique)."""
    return sorted({int(r["epoch"]) for r in _records(source)})


def _record(records: list[Mapping[str, Any]], epoch: int) -> Mapping[str, Any]:
    for rec in reversed(records):  # the last record of an epoch wins, as in support_at
        if int(rec["epoch"]) == epoch:
            return rec
    known = sorted({int(r["epoch"]) for r in records})
    raise UserError(f"no support was recorded for epoch {epoch}; recorded epochs: "
                    f"{', '.join(map(str, known)) or 'none'} (0-based, as in metrics.csv)")


def support_at(source: HistorySource, epoch: int) -> dict[str, Tensor]:
    """``{layer: bool support}`` recorded at the end of ``epoch``, with the layer shapes of
    that time (``(out,)`` for filter layers, the weight's shape for element layers)."""
    rec = _record(_records(source), int(epoch))
    flat = rec["support"].detach().cpu().bool()
    out, off = {}, 0
    for name, shape in zip(rec["layers"], rec["shapes"]):
        n = 1
        for d in shape:
            n *= int(d)
        out[name] = flat[off:off + n].view([int(d) for d in shape])
        off += n
    return out


def _stage_index(support: Mapping[str, Tensor], specs: Sequence[ArchSpec], epoch: int) -> int:
    """The stage whose layer shapes the record has: an exact layer-set match first, then
    one holding all the record's layers; the latest such stage."""
    def fits(spec: ArchSpec) -> tuple[bool, bool]:
        by_id = {s.id: s for s in spec.shapes() if s.role != "head"}
        ok = all(name in by_id and list(t.shape) in ([by_id[name].out_ch],
                                                     list(by_id[name].weight_shape))
                 for name, t in support.items())
        return ok, ok and set(by_id) == set(support)

    fit = [fits(spec) for spec in specs]
    for want in (1, 0):
        for i in range(len(specs) - 1, -1, -1):
            if fit[i][want]:
                return i
    shapes = {k: list(v.shape) for k, v in support.items()}
    raise UserError(f"the support recorded at epoch {epoch} has layer shapes {shapes}, which "
                    "match none of the stage specs; pass stage_specs (the run's "
                    "stages/NNN/arch.json, in order)")


def channel_maps(specs: Sequence[ArchSpec], start: int = 0) -> dict[str, Tensor]:
    """Per layer of ``specs[-1]``: for each channel, the channel of ``specs[start]`` it
    continues, or ``-1`` (created later).

    Parameters
    ----------
    specs
        Consecutive architectures of a growing run (each from the previous one by
        widening / deepening).
    start
        Index of the earlier spec.

    Returns
    -------
    dict
        ``{layer id: LongTensor (final width,)}``; a layer inserted after ``specs[start]``
        maps to ``-1`` everywhere.
    """
    specs = list(specs)
    out = {s.id: torch.arange(s.out_ch) for s in specs[-1].shapes()}
    for i in range(len(specs) - 2, start - 1, -1):
        try:
            change = plan(specs[i], specs[i + 1])
        except SpecError as err:
            raise UserError(f"stage specs {i} and {i + 1} are not consecutive growth steps "
                            f"({err}); pass the run's stages/NNN/arch.json in order") from None
        old_ids = set(specs[i].layer_ids())
        for lid, m in out.items():
            if lid not in old_ids:
                out[lid] = torch.full_like(m, FRESH)
                continue
            om = torch.tensor(change.out_maps[lid], dtype=torch.long)
            out[lid] = torch.where(m >= 0, om[m.clamp_min(0)], torch.full_like(m, FRESH))
    return out


def _as_specs(final_spec: ArchSpec, stage_specs: Sequence[Any] | None) -> list[ArchSpec]:
    specs = [s[1] if isinstance(s, tuple) else s for s in (stage_specs or ())]
    if not all(isinstance(s, ArchSpec) for s in specs):
        raise UserError("stage_specs must be ArchSpecs (or RunDir.stage_specs() pairs)")
    if not specs or specs[-1] != final_spec:
        specs.append(final_spec)
    return specs


#: which layers a ticket cuts: every tracked layer, or convs only (the reference lottery
#: code's: linear layers keep all their units)
TICKET_LAYERS = ("all", "conv")


def check_layers(layers: str) -> None:
    if layers not in TICKET_LAYERS:
        raise UserError(f"layers must be one of {', '.join(TICKET_LAYERS)}, got {layers!r}")


def cut_here(s: Any, tracked: set[str], layers: str) -> bool:
    """Whether a ticket cuts layer ``s`` (a LayerShape): tracked, not the classifier,
    and a conv when ``layers`` is ``"conv"``."""
    return s.role != "head" and s.id in tracked and (layers == "all" or s.kind == "conv")


def ticket(history_or_tracker: HistorySource, epoch: int, final_spec: ArchSpec,
           stage_specs: Sequence[Any] | None = None, model: GrowNet | None = None,
           layers: str = "all") -> Selection:
    """The filters in Γ's support at the end of ``epoch``, as a keep for ``final_spec``.

    Parameters
    ----------
    history_or_tracker
        A :class:`~grownet.path.SupportTracker`, its ``state_dict()`` (a checkpoint's
        ``"tracker"``), or that state's ``"history"`` list.
    epoch
        A recorded epoch (0-based, the ``epoch`` column of ``metrics.csv``).
    final_spec
        The architecture to prune.
    stage_specs
        The run's architectures in order (``RunDir.stage_specs()`` or a list of specs),
        needed when the record is from an earlier stage; ``final_spec`` is appended if
        it is not the last.
    model
        The final model; with the tracker's state its weights give the prune order
        that picks the filter a layer with nothing selected keeps.
    layers
        ``"all"`` (default): every tracked layer is cut; ``"conv"``: conv layers only,
        hidden linear layers keep every unit (the reference lottery procedure).

    Returns
    -------
    Selection
        Filter layers keep their selected filters; element-structured layers the rows
        with any selected element; layers the tracker never followed (the classifier,
        uncoupled layers) everything. Filters created after ``epoch`` are not
        selected. Then :func:`grownet.prune.constrain`: a layer with nothing selected
        keeps its best filter, residual streams keep unions (``notes`` say so).

    Raises
    ------
    UserError
        ``epoch`` was not recorded (the message lists the recorded epochs), or the
        record matches none of the stage specs.
    """
    check_layers(layers)
    records = _records(history_or_tracker)
    support = support_at(records, int(epoch))
    specs = _as_specs(final_spec, stage_specs)
    maps = channel_maps(specs, _stage_index(support, specs, int(epoch)))
    tracked = {name for rec in records for name in rec["layers"]}
    keep: dict[str, Tensor] = {}
    for s in final_spec.shapes():
        if not cut_here(s, tracked, layers):
            continue
        m = maps[s.id]
        selected = torch.zeros(s.out_ch, dtype=torch.bool)
        rows = support.get(s.id)
        if rows is not None:  # absent: the layer did not exist yet, nothing selected
            rows = rows if rows.ndim == 1 else rows.flatten(1).any(1)
            valid = m >= 0
            selected[valid] = rows[m[valid]]
        keep[s.id] = torch.nonzero(selected).flatten()
    return constrain(final_spec, keep, rank=_rank(history_or_tracker, final_spec, model))


def _rank(source: HistorySource, spec: ArchSpec, model: GrowNet | None
          ) -> dict[str, Tensor] | None:
    """Prune order when the tracker state (and the model) are at hand, else ``None``."""
    state = source.state_dict() if isinstance(source, SupportTracker) else source
    if not isinstance(state, Mapping) or "entry_epoch" not in state:
        return None
    if model is not None:
        return prune_orders(model, state)
    return {k: -v.double() for k, v in entry_epochs(state, spec).items()}
