"""`deepen`: a spec with one more conv layer, residual block or hidden FC layer."""

from __future__ import annotations

from dataclasses import replace

from grownet.spec import ArchSpec, Block, Layer, SpecError
from grownet.surgery._specedit import HIDDEN, as_width, stage_index, with_stage


def deepen(spec: ArchSpec, stage_id: str, position: int, width: int | None = None
           ) -> ArchSpec:
    """The spec with a new layer inserted at ``position`` of stage ``stage_id``.

    The new layer gets a fresh id (:meth:`ArchSpec.fresh_id`); no other layer is
    renamed. :func:`grownet.surgery.transplant` initialises it so that the network
    computes the same function (in eval mode).

    Parameters
    ----------
    spec
        The architecture to deepen.
    stage_id
        A plain stage (inserts a 3x3 conv keeping the width at that point, with
        BatchNorm when the stage's layers have it), a residual stage (inserts a stride-1
        basic block), or ``"hidden"`` (inserts a hidden FC layer as wide as its input).
    position
        Index in the stage's layers / blocks / hidden layers where the new one goes
        (``0`` .. their count).
    width
        Residual blocks only: the new block's inner (conv1) width; default: the stage
        width.

    Returns
    -------
    ArchSpec

    Raises
    ------
    SpecError
        Unknown stage, position out of range, or a position where an identity cannot
        be inserted: before the first layer (the raw input can be negative, so a ReLU
        layer cannot pass it on), or before a residual stage's first block when that
        block changes the resolution or the width.
    """
    if stage_id == HIDDEN and all(st.id != HIDDEN for st in spec.stages):
        return _deepen_hidden(spec, _position(position, len(spec.hidden), "hidden"), width)
    i = stage_index(spec, stage_id)
    st = spec.stages[i]
    if st.blocks:
        return _deepen_residual(spec, i, _position(position, len(st.blocks), stage_id), width)
    if width is not None:
        raise SpecError(f"deepen({stage_id!r}): an inserted conv keeps the width at its "
                        "position; width= applies to residual blocks only")
    position = _position(position, len(st.layers), stage_id)
    if i == 0 and position == 0:
        raise SpecError(f"deepen({stage_id!r}, 0): a layer before the first conv reads the "
                        "raw input, which can be negative, so it cannot start as an "
                        "identity; use position >= 1")
    prev = st.layers[position - 1] if position else spec.stages[i - 1].layers[-1]
    near = st.layers[position - 1] if position else st.layers[0]
    new = Layer(spec.fresh_id(f"{st.id}_l"), prev.width, kernel=3, bn=near.bn)
    layers = st.layers[:position] + (new,) + st.layers[position:]
    return with_stage(spec, i, replace(st, layers=layers))


def _position(position: int, count: int, where: str) -> int:
    if isinstance(position, bool) or not isinstance(position, int) or not (
            0 <= position <= count):
        raise SpecError(f"deepen({where!r}): position must be an integer in 0..{count}, got "
                        f"{position!r}")
    return position


def _deepen_residual(spec: ArchSpec, i: int, position: int, width: int | None) -> ArchSpec:
    st = spec.stages[i]
    if position == 0:
        first = st.blocks[0]
        in_width = spec.stages[i - 1].width if i else spec.stem.width
        if first.stride != 1 or in_width != st.width:
            raise SpecError(f"deepen({st.id!r}, 0): block {first.id!r} changes the resolution "
                            "or the width, so a block in front of it cannot start as an "
                            "identity; use position >= 1")
    inner = st.width if width is None else as_width(width, "deepen: width")
    block = Block(spec.fresh_id(f"{st.id}_b"), inner, stride=1)
    blocks = st.blocks[:position] + (block,) + st.blocks[position:]
    return with_stage(spec, i, replace(st, blocks=blocks))


def _deepen_hidden(spec: ArchSpec, position: int, width: int | None) -> ArchSpec:
    shapes = [s for s in spec.shapes() if s.kind == "linear"]  # hidden layers, then head
    after = shapes[position]  # the layer the new one goes in front of
    if after.inputs[0] == "input":
        raise SpecError("deepen('hidden', 0): the first FC layer of an mlp reads the raw input, "
                        "which can be negative, so a layer in front of it cannot start as an "
                        "identity; use position >= 1")
    if width is not None:
        raise SpecError("deepen('hidden'): an inserted FC layer is as wide as its input; "
                        "width= applies to residual blocks only (widen it afterwards)")
    near = spec.hidden[position - 1] if position else (spec.hidden[0] if spec.hidden else None)
    new = Layer(spec.fresh_id("fc"), after.in_ch, kind="linear",
                bn=near.bn if near is not None else False)
    return spec.replace(hidden=spec.hidden[:position] + (new,) + spec.hidden[position:])
