"""Small spec edits shared by widen / deepen / slim (specs are frozen: copy and replace)."""

from __future__ import annotations

from dataclasses import replace

from grownet.spec import ArchSpec, LayerShape, SpecError, Stage

HIDDEN = "hidden"  # pseudo stage id of the hidden FC layers in deepen()


def as_width(value: object, what: str) -> int:
    """``value`` as a positive int, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{what} must be a positive integer, got {value!r}")
    return value


def stage_index(spec: ArchSpec, stage_id: str) -> int:
    for i, st in enumerate(spec.stages):
        if st.id == stage_id:
            return i
    known = [st.id for st in spec.stages] + [HIDDEN]
    raise SpecError(f"no stage {stage_id!r} in this spec; known stages: {', '.join(known)}")


def with_widths(spec: ArchSpec, layers: dict[str, int] | None = None,
                streams: dict[str, int] | None = None) -> ArchSpec:
    """A copy of ``spec`` with layer widths (stem, plain conv, hidden FC, residual conv1 by
    its layer id) and residual stream widths (by stage id) replaced."""
    layers, streams = dict(layers or {}), dict(streams or {})

    def lay(layer):  # Layer -> Layer
        return replace(layer, width=layers.pop(layer.id)) if layer.id in layers else layer

    stages = []
    for st in spec.stages:
        blocks = tuple(replace(b, width=layers.pop(b.conv1)) if b.conv1 in layers else b
                       for b in st.blocks)
        stages.append(replace(st, layers=tuple(lay(ly) for ly in st.layers), blocks=blocks,
                              width=streams.pop(st.id, st.width)))
    stem = lay(spec.stem) if spec.stem is not None else None
    hidden = tuple(lay(ly) for ly in spec.hidden)
    if layers or streams:  # a caller bug, not a user mistake
        raise AssertionError(f"unknown ids {sorted(layers) + sorted(streams)}")
    return spec.replace(stages=tuple(stages), stem=stem, hidden=hidden)


def with_stage(spec: ArchSpec, index: int, stage: Stage) -> ArchSpec:
    stages = list(spec.stages)
    stages[index] = stage
    return spec.replace(stages=tuple(stages))


def projections(spec: ArchSpec) -> set[str]:
    """Ids of the projection shortcuts (option B) of ``spec``."""
    return {s.id for s in spec.shapes() if s.role == "proj"}


def later_stages(spec: ArchSpec, s: LayerShape) -> list[Stage]:
    """The stages after the one ``s`` belongs to (all stages for the stem)."""
    if s.stage is None:
        return list(spec.stages)
    i = stage_index(spec, s.stage)
    return list(spec.stages[i + 1:])
