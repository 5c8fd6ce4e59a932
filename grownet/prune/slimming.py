"""Kept-filter sets that a residual network can honour, the masked network, and the
physically slimmed network.

A *keep* is ``{layer id: LongTensor of kept filter indices}``. :func:`constrain`
turns any keep into one that :func:`grownet.surgery.slim` accepts, by only ever
*adding* filters (never removing one the caller asked for):

1. every non-classifier layer gets an entry (a layer not named keeps all filters);
2. the members of a residual stream (``LayerShape.group``: a stage's conv2s and its
   projection) keep the union of their sets, since they write the same channels;
3. a layer left with no filter keeps its best one (highest prune order / norm), so
   the network stays connected;
4. a stream joined to its input by a weightless shortcut (option-A zero-pad or an
   option-B identity) keeps every channel its input keeps: channel ``p`` of the
   input *is* channel ``p`` of the stream there;
5. an option-B projection with stride 1 must not become an identity (its learned
   weights could not be kept): when the stream and its input would end equally
   wide, the stream keeps one more channel (its best), else its input does;
6. if :func:`grownet.surgery.slim` still refuses, the stem and every stream are kept
   whole (always valid) and the table says so.

Under these rules a pruned channel of the *masked network* (:func:`mask_network`)
is exactly zero after its activation, everywhere, and the slimmed network computes
the same function.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from grownet.errors import UserError
from grownet.nets import GrowNet, bn_name
from grownet.spec import HEAD_ID, ArchSpec, SpecError
from grownet.surgery import slim, transplant
from grownet.surgery.change import producer_key

__all__ = ["Selection", "constrain", "mask_network", "slim_network"]

KeepLike = Mapping[str, "Sequence[int] | Tensor"]


class Selection(dict):
    """``{layer id: sorted LongTensor of kept filters}`` plus ``notes``.

    A plain ``dict`` (pass it to :func:`grownet.surgery.slim` as ``keep``); ``notes``
    maps a layer id to why its set differs from what was asked for (a fallback
    filter, filters added for a shortcut, a stream kept whole).
    """

    def __init__(self, *args: object, notes: dict[str, str] | None = None, **kw: object):
        super().__init__(*args, **kw)
        self.notes: dict[str, str] = dict(notes or {})

    def note(self, layer_id: str, text: str) -> None:
        """Add ``text`` to the note of ``layer_id``."""
        old = self.notes.get(layer_id)
        if not old:
            self.notes[layer_id] = text
        elif text not in old.split("; "):
            self.notes[layer_id] = f"{old}; {text}"


def _indices(layer_id: str, idx: Sequence[int] | Tensor, width: int) -> set[int]:
    vals = idx.tolist() if isinstance(idx, Tensor) else list(idx)
    if any(isinstance(v, bool) or int(v) != v for v in vals):
        raise UserError(f"keep[{layer_id!r}] must hold integer filter indices")
    out = {int(v) for v in vals}
    if out and (min(out) < 0 or max(out) >= width):
        raise UserError(f"keep[{layer_id!r}] has indices outside 0..{width - 1} (the layer "
                        f"has {width} filters)")
    return out


def _best(rank: Tensor | None, exclude: set[int], width: int) -> int | None:
    """The highest-ranked channel not in ``exclude`` (lowest index on ties / no rank)."""
    free = [c for c in range(width) if c not in exclude]
    if not free:
        return None
    if rank is None:
        return free[0]
    scores = rank[free]
    return free[int(torch.argmax(scores))]  # argmax returns the first maximum


@dataclass
class _Keeps:
    """The kept channels per producer (a layer, or a residual stream's members), with
    why each set differs from what was asked for."""

    members: dict[str, list[str]]  # producer key -> its layer ids
    width: dict[str, int]
    rank: Mapping[str, Tensor]
    sets: dict[str, set[int]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def note(self, key: str, why: str) -> None:
        self.notes[key] = f"{self.notes[key]}; {why}" if key in self.notes else why

    def key_rank(self, key: str) -> Tensor | None:
        """The best score per channel over the members' ranks of the right length."""
        scores = [self.rank[i].detach().cpu().double().flatten() for i in self.members[key]
                  if i in self.rank and self.rank[i].numel() == self.width[key]]
        return torch.stack(scores).amax(0) if scores else None

    def add_best(self, key: str, why: str) -> bool:
        """Keep the best channel of ``key`` not kept yet; False when all are kept."""
        c = _best(self.key_rank(key), self.sets[key], self.width[key])
        if c is None:
            return False
        self.sets[key].add(c)
        self.note(key, why)
        return True

    def selection(self) -> Selection:
        sel = Selection()
        for key, ids in self.members.items():
            kept = torch.tensor(sorted(self.sets[key]), dtype=torch.long)
            for i in ids:
                sel[i] = kept.clone()
                if key in self.notes:
                    sel.note(i, self.notes[key])
        return sel


def _asked(spec: ArchSpec, keep: KeepLike, rank: Mapping[str, Tensor] | None) -> _Keeps:
    """Rules 1 and 2: the sets ``keep`` asks for, per producer; all filters where it
    names none."""
    shapes = spec.shapes()
    by_id = {s.id: s for s in shapes}
    members: dict[str, list[str]] = {}
    for s in shapes:
        if s.role != "head":
            members.setdefault(producer_key(s), []).append(s.id)
    width = {key: by_id[ids[0]].out_ch for key, ids in members.items()}
    keeps = _Keeps(members, width, dict(rank or {}))
    for layer_id, idx in keep.items():
        s = by_id.get(layer_id)
        if s is None:
            raise UserError(f"keep names layer {layer_id!r}, which is not in the spec; known "
                            f"layers: {', '.join(by_id)}")
        got = _indices(layer_id, idx, s.out_ch)
        if s.role == "head":
            if len(got) != s.out_ch:
                raise UserError(f"the classifier {HEAD_ID!r} keeps all {s.out_ch} outputs; "
                                "remove it from keep")
            continue
        key = producer_key(s)
        if key in keeps.sets and keeps.sets[key] != got:
            keeps.notes[key] = "stream: union of its convs' filters"
        keeps.sets[key] = keeps.sets.get(key, set()) | got
    for key in members:
        keeps.sets.setdefault(key, set(range(width[key])))
    return keeps


def constrain(spec: ArchSpec, keep: KeepLike,
              rank: Mapping[str, Tensor] | None = None) -> Selection:
    """A keep that :func:`grownet.surgery.slim` accepts, adding as few filters as needed.

    Parameters
    ----------
    spec
        The architecture being pruned.
    keep
        ``{layer id: kept indices}``; layers not named keep all filters. The classifier
        ``head`` may only be named with all its outputs.
    rank
        ``{layer id: score per filter}`` (higher = more important, e.g. the prune order
        of :func:`grownet.prune.prune_orders`); picks the filter a rule must add.
        Without it the lowest free index is added.

    Returns
    -------
    Selection
        Every non-classifier layer, sorted indices; ``notes`` say what was added.
        The rules are in the module docstring.
    """
    keeps = _asked(spec, keep, rank)
    for key in keeps.members:  # rule 3
        if not keeps.sets[key]:
            keeps.add_best(key, "nothing selected: kept its best filter")
    _shortcut_rules(spec, keeps)
    sel = keeps.selection()
    try:
        slim(spec, sel)
    except SpecError:  # rule 6: the surgery's own checks have the last word
        for s in spec.shapes():
            if s.group is not None or s.role == "stem":
                key = producer_key(s)
                keeps.sets[key] = set(range(keeps.width[key]))
                keeps.notes[key] = "kept whole: residual shortcut constraints"
        sel = keeps.selection()
        slim(spec, sel)  # cannot fail: every shortcut keeps its widths
    return sel


def _shortcut_rules(spec: ArchSpec, keeps: _Keeps) -> None:
    """Rules 4 and 5, repeated until nothing changes (sets only grow, so it ends)."""
    if spec.family != "residual":
        return
    shapes = spec.shapes()
    by_id = {s.id: s for s in shapes}
    first_conv2 = [by_id[st.blocks[0].conv2] for st in spec.stages]
    projs = [s for s in shapes if s.role == "proj" and s.stride == 1]
    sets = keeps.sets
    changed = True
    while changed:
        changed = False
        for c2 in first_conv2:  # rule 4: weightless shortcut = channel p is channel p
            if c2.proj is not None:
                continue
            up, key = producer_key(by_id[c2.shortcut_from]), producer_key(c2)
            extra = sets[up] - sets[key]
            if extra:
                sets[key] |= extra
                keeps.note(key, f"kept {len(extra)} for the shortcut from {up}")
                changed = True
        for p in projs:  # rule 5: a projection must stay a projection
            up, key = producer_key(by_id[p.inputs[0]]), producer_key(p)
            if up != key and len(sets[up]) == len(sets[key]):
                if not keeps.add_best(key, f"+1 so projection {p.id} stays"):
                    keeps.add_best(up, f"+1 so projection {p.id} stays")
                changed = True


def _pruned(spec: ArchSpec, keep: KeepLike) -> dict[str, Tensor]:
    """``{layer id: bool mask of pruned filters}`` for the layers that lose some."""
    out = {}
    for s in spec.shapes():
        if s.id in keep and s.role != "head":
            mask = torch.ones(s.out_ch, dtype=torch.bool)
            mask[torch.as_tensor(keep[s.id], dtype=torch.long)] = False
            if mask.any():
                out[s.id] = mask
    return out


@torch.no_grad()
def mask_network(model: GrowNet, keep: KeepLike) -> GrowNet:
    """A copy of ``model`` whose pruned filters output exactly zero.

    Each pruned filter's weight row and bias are zeroed, and so are its BatchNorm's
    ``weight`` (γ) and ``bias`` (β): then its pre-activation output is exactly 0 in
    train and eval mode alike (zeroing the filter alone would leave BN's
    ``β - γμ/σ``). With a keep from :func:`constrain` every pruned channel is then
    also 0 *after* its activation (for a residual stream: after the add and ReLU,
    because its shortcut brings a pruned or padded channel). This is "the masked
    network" that :func:`slim_network`'s output equals.

    Parameters
    ----------
    model
        A model from :func:`grownet.build`.
    keep
        ``{layer id: kept indices}`` (layers not named keep all).

    Returns
    -------
    GrowNet
    """
    if not isinstance(model, GrowNet):
        raise UserError(f"mask_network needs a model built by grownet.build, got "
                        f"{type(model).__name__}")
    out = copy.deepcopy(model)
    for layer_id, mask in _pruned(model.spec, keep).items():
        layer = getattr(out, layer_id)
        m = mask.to(layer.weight.device)
        layer.weight[m] = 0
        if layer.bias is not None:
            layer.bias[m] = 0
        bn = getattr(out, bn_name(layer_id), None)
        if bn is not None:
            bn.weight[m] = 0
            bn.bias[m] = 0
    return out


def slim_network(spec: ArchSpec, model: GrowNet, keep: KeepLike
                 ) -> tuple[ArchSpec, GrowNet]:
    """The physically slimmed dense network: only the kept filters remain.

    ``keep`` goes through :func:`constrain` first (a no-op for the keeps that
    :func:`grownet.prune.ticket` and :func:`grownet.prune.by_percent` return), then
    :func:`grownet.surgery.slim` edits the spec and :func:`grownet.surgery.transplant`
    carries the kept filters, their BatchNorm entries and the matching input slices
    of the next layers.

    Parameters
    ----------
    spec
        ``model``'s architecture.
    model
        A model from :func:`grownet.build` for ``spec``.
    keep
        ``{layer id: kept indices}``.

    Returns
    -------
    (ArchSpec, GrowNet)
        In eval mode its outputs equal those of ``mask_network(model, constrain(spec,
        keep))``; its params and MACs are ``grownet.count(new_spec)``'s.
    """
    if not isinstance(model, GrowNet) or model.spec != spec:
        raise UserError("slim_network: the model was not built from this spec; pass "
                        "model.spec (or rebuild the model with grownet.build(spec))")
    sel = constrain(spec, keep)  # idempotent: a ticket's keep comes back unchanged
    new_spec = slim(spec, sel)
    new_model, _ = transplant(model, new_spec, keep=sel)
    return new_spec, new_model
