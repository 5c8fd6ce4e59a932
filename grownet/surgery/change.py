"""`plan`: which channel of a new spec continues which channel of an old one.

A :class:`Change` is computed from two specs (plus, when filters are removed, the
indices kept); :func:`grownet.surgery.transplant` reads it to copy weights and
optimizer state by index. Widening appends channels at the end of a layer;
slimming keeps the given (sorted) channels; layers present only in the new spec
are *inserted* (identity-initialised).

Residual streams. A stage's conv2s (and its projection) write one stream and share
one map. Where a shortcut is an identity or an option-A zero-pad, channel ``p`` of
the stream continues channel ``p`` of the stage's input, so the two maps are
*linked*: the stream's map starts with its input's map (including the input's new
channels) and is followed by the stream's other kept channels, then by its own new
ones. Widening the stem or a stream by ``d`` therefore inserts ``d`` channels at the
same positions in every later linked stream; those positions are new channels
there too, which is what keeps growth exact without silencing the new channels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from grownet.spec import HEAD_ID, INPUT, ArchSpec, LayerShape, SpecError

FRESH = -1  # map entry of a channel with no old counterpart

Keep = Mapping[str, "Sequence[int] | torch.Tensor"]


def producer_key(s: LayerShape) -> str:
    """The unit that owns a layer's output channels: its stream group or itself."""
    return s.group or s.id


@dataclass(frozen=True)
class _Meaning:
    """What a tensor of the new network holds, in old terms."""

    tensor: str | None  # the old tensor it equals channel-wise (producer id or INPUT)
    key: str | None  # producer whose init policy governs its new channels
    map: tuple[int, ...]  # per channel: old channel, or FRESH
    spatial: int = 1  # features per channel (a flatten readout seen through an inserted FC)


@dataclass(frozen=True)
class Change:
    """How the channels of ``new`` relate to those of ``old`` (built by :func:`plan`).

    Attributes
    ----------
    old, new
        The two specs.
    out_maps
        For every layer of ``new`` that also exists in ``old``, and every member of a
        residual stream: per new output channel, the old channel it continues, or
        ``-1`` for a new channel.
    in_maps, in_spatial, in_keys
        For every layer of ``new`` that exists in ``old`` (and every inserted
        projection): per new input channel, the old input channel or ``-1``; the
        number of input features per channel (``in_spatial`` of a linear layer fed by
        a flatten readout); and the producer (layer id, ``"<stage>.stream"`` or
        ``"input"``) whose new channels these are.
    inserted
        Ids of layers present only in ``new`` (from :func:`~grownet.surgery.deepen`, or
        a projection shortcut that option B needs after a width change).
    inserted_blocks
        Ids of residual blocks present only in ``new``.
    unsplittable
        Producers whose new channels reach other channels through identity or
        zero-pad shortcuts; ``init="split"`` cannot copy them exactly and uses
        ``"zero"`` for them.
    """

    old: ArchSpec
    new: ArchSpec
    out_maps: Mapping[str, tuple[int, ...]]
    in_maps: Mapping[str, tuple[int, ...]]
    in_spatial: Mapping[str, int]
    in_keys: Mapping[str, str | None]
    inserted: tuple[str, ...]
    inserted_blocks: frozenset[str] = field(default_factory=frozenset)
    unsplittable: frozenset[str] = field(default_factory=frozenset)

    def widths(self) -> dict[str, tuple[int, int]]:
        """``{layer id: (old width, new width)}`` for kept layers whose width changed."""
        old = self.old.widths()
        return {i: (old[i], w) for i, w in self.new.widths().items()
                if i in old and old[i] != w}

    def removed(self) -> dict[str, tuple[int, ...]]:
        """``{layer id: old channels removed}`` for layers that lost channels."""
        old = self.old.widths()
        out = {}
        for i, m in self.out_maps.items():
            if i in old:
                gone = sorted(set(range(old[i])) - set(m))
                if gone:
                    out[i] = tuple(gone)
        return out

    def summary(self) -> str:
        """One line per changed layer or stream (``id: old -> new``), then one per
        inserted layer (``+ id``)."""
        lines: dict[str, str] = {}
        for i, (a, b) in self.widths().items():
            s = self.new.shape(i)
            lines.setdefault(producer_key(s), f"{producer_key(s)}: {a} -> {b}")
        out = list(lines.values())
        out += [f"+ {i} ({self.new.shape(i).out_ch} wide)" for i in self.inserted]
        return "\n".join(out) if out else "(no change)"


def normalise_keep(spec: ArchSpec, keep: Keep | None) -> dict[str, tuple[int, ...]]:
    """``keep`` per producer key (stream members merged), as sorted unique indices."""
    if not keep:
        return {}
    by_id = {s.id: s for s in spec.shapes()}
    out: dict[str, tuple[int, ...]] = {}
    for layer_id, idx in keep.items():
        s = by_id.get(layer_id)
        if s is None:
            raise SpecError(f"keep names layer {layer_id!r}, which is not in the spec; known "
                            f"layers: {', '.join(by_id)}")
        if s.role == "head":
            raise SpecError(f"the classifier {HEAD_ID!r} keeps all num_classes outputs; remove "
                            "it from keep")
        vals = idx.tolist() if isinstance(idx, torch.Tensor) else list(idx)
        if not vals:
            raise SpecError(f"keep[{layer_id!r}] is empty; a layer needs at least one filter")
        if any(isinstance(v, bool) or int(v) != v for v in vals):
            raise SpecError(f"keep[{layer_id!r}] must hold integer filter indices")
        vals = [int(v) for v in vals]
        if len(set(vals)) != len(vals):
            raise SpecError(f"keep[{layer_id!r}] lists an index twice; list each kept filter "
                            "once")
        if min(vals) < 0 or max(vals) >= s.out_ch:
            raise SpecError(f"keep[{layer_id!r}] has indices outside 0..{s.out_ch - 1} (the "
                            f"layer has {s.out_ch} filters)")
        key = producer_key(s)
        kept = tuple(sorted(vals))
        if key in out and out[key] != kept:
            raise SpecError(f"keep gives different channels for members of {key!r}; the convs "
                            "of one residual stream share their channels: give one list")
        out[key] = kept
    return out


def _proj_of_first_block(spec: ArchSpec, shapes: dict[str, LayerShape], stage_id: str
                         ) -> str | None:
    st = next(st for st in spec.stages if st.id == stage_id)
    return shapes[st.blocks[0].conv2].proj


def _stream_maps(old: ArchSpec, new: ArchSpec, old_by: dict[str, LayerShape],
                 new_by: dict[str, LayerShape], kept: dict[str, tuple[int, ...]],
                 maps: dict[str, tuple[int, ...]], unsplittable: set[str]) -> None:
    """Fill ``maps`` for the residual streams, linking them along shortcuts."""
    old_stages = {st.id: st for st in old.stages}
    up_key = new.stem.id if new.stem is not None else None
    for st in new.stages:
        key = f"{st.id}.stream"
        ost = old_stages[st.id]
        keep = kept.get(key, tuple(range(ost.width)))
        new_proj = _proj_of_first_block(new, new_by, st.id)
        old_proj = _proj_of_first_block(old, old_by, st.id)
        linked = new_proj is None and old_proj is None  # option A pad, or B identity
        if linked and up_key is not None:
            up = maps[up_key]
            lost = sorted(set(up) - {FRESH} - set(keep))
            if lost:
                raise SpecError(
                    f"stage {st.id!r}: its shortcut carries channels {lost} of {up_key!r} into "
                    f"the same channels of the stream, so the stream must keep them; add them "
                    f"to its keep list or remove them from {up_key!r} as well")
            carried = list(up) + [c for c in keep if c not in set(up)]
            unsplittable.update({key, up_key})
        else:
            carried = list(keep)
            if new_proj is not None and new_proj not in old_by:
                unsplittable.add(key)  # an identity-initialised projection cannot copy
        if len(carried) > st.width:
            why = (f"it continues {len(maps[up_key])} channels of {up_key!r} through the "
                   "shortcut" if linked and up_key else f"keep lists {len(carried)} channels")
            raise SpecError(f"stage {st.id!r}: stream width {st.width} is too small ({why}); "
                            f"make it at least {len(carried)} wide")
        maps[key] = tuple(carried) + (FRESH,) * (st.width - len(carried))
        up_key = key


def _resize(m: _Meaning, width: int, what: str) -> _Meaning:
    if width < len(m.map):
        raise SpecError(f"{what} is {width} wide but its input has {len(m.map)} channels; an "
                        "inserted layer must be at least as wide as its input (deepen before "
                        "widening the layer in front of it)")
    return _Meaning(m.tensor, m.key, m.map + (FRESH,) * (width - len(m.map)), m.spatial)


def _check_frame(old: ArchSpec, new: ArchSpec, old_by: dict[str, LayerShape],
                 new_by: dict[str, LayerShape]) -> None:
    """Refuse what surgery cannot carry: another family/input/classes/readout/shortcut,
    dropped layers, or added/removed/reordered stages."""
    for attr in ("family", "in_shape", "num_classes", "readout", "shortcut"):
        if getattr(old, attr) != getattr(new, attr):
            raise SpecError(f"surgery keeps {attr} ({getattr(old, attr)!r} -> "
                            f"{getattr(new, attr)!r}); build a new model for a different one")
    gone = [i for i in old_by if i not in new_by]
    if gone:
        raise SpecError(f"the new spec drops layers {gone}; surgery only widens, slims and "
                        "inserts (slim a layer instead of removing it)")
    if [st.id for st in new.stages] != [st.id for st in old.stages]:
        raise SpecError("the new spec adds, removes or reorders stages; surgery works within "
                        "the old stages")


def _own_maps(new_shapes: list[LayerShape], old_by: dict[str, LayerShape],
              kept: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Output maps of the kept layers that own their width (streams are linked later):
    the kept old channels, then new ones."""
    maps: dict[str, tuple[int, ...]] = {}
    for s in new_shapes:
        if s.group is not None or s.id not in old_by:
            continue
        keep_s = kept.get(s.id, tuple(range(old_by[s.id].out_ch)))
        if len(keep_s) > s.out_ch:
            if s.id in kept:
                raise SpecError(f"keep[{s.id!r}] lists {len(keep_s)} filters but the new spec "
                                f"gives the layer {s.out_ch}; use the spec slim(spec, keep) "
                                "returns")
            raise SpecError(f"layer {s.id!r} shrinks from {len(keep_s)} to {s.out_ch} filters; "
                            f"say which to keep: keep={{{s.id!r}: [...]}}")
        maps[s.id] = keep_s + (FRESH,) * (s.out_ch - len(keep_s))
    return maps


def _inserted_meaning(s: LayerShape, m: _Meaning, spatial: int,
                      meaning: dict[str, _Meaning]) -> _Meaning:
    """What the output of a layer present only in ``new`` holds, given its input's ``m``."""
    if s.role in ("conv", "hidden"):  # inserted identity layer: passes its input on
        if s.inputs[0] == INPUT:
            raise SpecError(f"inserted layer {s.id!r} reads the raw input, which can be "
                            "negative, so a ReLU layer cannot pass it on unchanged; insert "
                            "it after the first layer")
        if spatial > 1:
            if s.out_ch != len(m.map) * spatial:
                raise SpecError(f"inserted layer {s.id!r} must be {len(m.map) * spatial} "
                                "wide (one unit per readout feature)")
            return _Meaning(m.tensor, m.key, m.map, spatial)
        return _resize(m, s.out_ch, f"inserted layer {s.id!r}")
    if s.role == "conv1":  # inserted block: its inner channels are all new
        return _Meaning(None, None, (FRESH,) * s.out_ch)
    # inserted block's conv2: the block passes its input on (its last BN is zero)
    return _resize(meaning[s.shortcut_from], s.out_ch, f"inserted block {s.block!r}")


@dataclass
class _Maps:
    """The per-layer maps of a :class:`Change`, filled by :func:`_follow_data`."""

    out: dict[str, tuple[int, ...]] = field(default_factory=dict)
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    spatial: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str | None] = field(default_factory=dict)


def _follow_data(new: ArchSpec, new_shapes: list[LayerShape], old_by: dict[str, LayerShape],
                 maps: dict[str, tuple[int, ...]]) -> _Maps:
    """Walk ``new`` forward, tracking what each tensor holds in old terms, and record
    every kept layer's input and output maps."""
    out = _Maps()
    meaning: dict[str, _Meaning] = {
        INPUT: _Meaning(INPUT, INPUT, tuple(range(new.in_shape[0])))}
    for s in new_shapes:
        m = meaning[s.inputs[0]]
        spatial = m.spatial * (s.in_spatial if s.kind == "linear" else 1)
        if s.id in old_by or s.role == "proj":
            if s.id in old_by and m.tensor != old_by[s.id].inputs[0]:
                raise SpecError(f"layer {s.id!r} reads a different tensor than before; "
                                "surgery cannot carry its weights (insert layers with deepen)")
            out.inputs[s.id], out.spatial[s.id], out.keys[s.id] = m.map, spatial, m.key
        if s.group is not None:
            out.out[s.id] = maps[s.group]
        elif s.id in old_by:
            out.out[s.id] = maps[s.id]
        if s.role == "proj":
            continue  # its output is consumed by the block's conv2
        if s.id in old_by:
            meaning[s.id] = _Meaning(s.id, producer_key(s), out.out[s.id])
        else:
            meaning[s.id] = _inserted_meaning(s, m, spatial, meaning)
    return out


def plan(old: ArchSpec, new: ArchSpec, keep: Keep | None = None) -> Change:
    """The channel correspondence between ``old`` and ``new``.

    Parameters
    ----------
    old, new
        The spec before and after surgery (``new`` from :func:`widen`, :func:`deepen`,
        :func:`slim`, or any spec with the same layers plus inserted ones).
    keep
        ``{layer id: old indices kept}`` for layers that lose filters (as given to
        :func:`slim`); the other layers keep all their filters.

    Returns
    -------
    Change

    Raises
    ------
    SpecError
        If ``new`` removes layers or stages, changes the family, input, classes,
        readout or shortcut option, or shrinks a layer without a ``keep`` entry.
    """
    old_by = {s.id: s for s in old.shapes()}
    new_shapes = new.shapes()
    new_by = {s.id: s for s in new_shapes}
    _check_frame(old, new, old_by, new_by)
    kept = normalise_keep(old, keep)
    inserted = tuple(s.id for s in new_shapes if s.id not in old_by)
    old_blocks = {b.id for st in old.stages for b in st.blocks}
    inserted_blocks = frozenset(b.id for st in new.stages for b in st.blocks
                                if b.id not in old_blocks)

    maps = _own_maps(new_shapes, old_by, kept)
    unsplittable: set[str] = set()
    if new.family == "residual":
        _stream_maps(old, new, old_by, new_by, kept, maps, unsplittable)
    follow = _follow_data(new, new_shapes, old_by, maps)
    return Change(old=old, new=new, out_maps=follow.out, in_maps=follow.inputs,
                  in_spatial=follow.spatial, in_keys=follow.keys, inserted=inserted,
                  inserted_blocks=inserted_blocks, unsplittable=frozenset(unsplittable))
