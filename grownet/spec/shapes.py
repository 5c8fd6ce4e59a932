"""Resolve an :class:`ArchSpec` into per-layer shapes, and validate it on the way.

`resolve` is the one place that walks a spec's data flow; networks, surgery, cost
and the graph all read its :class:`LayerShape` list instead of walking specs again.
"""

from __future__ import annotations

from dataclasses import dataclass

from grownet.spec.model import (
    FAMILIES,
    HEAD_ID,
    POOLS,
    READOUTS,
    SHORTCUTS,
    ArchSpec,
    Layer,
    SpecError,
    check_id,
)

INPUT = "input"


@dataclass(frozen=True)
class LayerShape:
    """One conv/linear layer with every shape resolved.

    ``role`` is one of ``conv`` (plain stage), ``stem``, ``conv1``, ``conv2``, ``proj``
    (residual), ``hidden`` (FC) and ``head`` (classifier). ``in_spatial`` is the number
    of input features per input channel (H*W of the map a flatten readout feeds, 1
    otherwise), so ``in_ch == in_channels * in_spatial``. ``inputs`` are the producing
    layers (``"input"`` for the data); ``shortcut_from`` is, for a residual ``conv2``,
    the layer whose output the shortcut carries (through ``proj`` when it exists).
    ``group`` names the layers that must share their output width (a residual
    stream); ``None`` when the layer's width is its own.
    """

    id: str
    kind: str
    role: str
    stage: str | None
    block: str | None
    in_channels: int
    in_spatial: int
    out_ch: int
    kernel: int
    stride: int
    padding: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    bn: bool
    bias: bool
    dropout: float
    inputs: tuple[str, ...]
    shortcut_from: str | None = None
    proj: str | None = None
    group: str | None = None

    @property
    def in_ch(self) -> int:
        """Input features of the weight: channels (conv) or flattened features (linear)."""
        return self.in_channels * self.in_spatial

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.kind == "conv":
            return (self.out_ch, self.in_channels, self.kernel, self.kernel)
        return (self.out_ch, self.in_ch)


def _conv_out(h: int, k: int, s: int, p: int) -> int:
    return (h + 2 * p - k) // s + 1


def _conv_shape(layer: Layer, role: str, stage: str | None, block: str | None,
                in_ch: int, hw: tuple[int, int], inputs: tuple[str, ...],
                group: str | None = None, width: int | None = None,
                **extra: str | None) -> LayerShape:
    check_id(layer.id, "layer")
    if layer.kind != "conv":
        raise SpecError(f"layer {layer.id!r} sits in a conv stage but has kind "
                        f"{layer.kind!r}; use kind='conv'")
    if layer.kernel < 1 or layer.stride < 1 or layer.pad < 0:
        raise SpecError(f"layer {layer.id!r}: kernel and stride must be >= 1 and padding "
                        ">= 0")
    out_hw = (_conv_out(hw[0], layer.kernel, layer.stride, layer.pad),
              _conv_out(hw[1], layer.kernel, layer.stride, layer.pad))
    if min(out_hw) < 1:
        raise SpecError(f"layer {layer.id!r}: a {layer.kernel}x{layer.kernel} conv on a "
                        f"{hw[0]}x{hw[1]} map leaves nothing; use a smaller kernel, more "
                        "padding or fewer pooling stages for this input shape")
    w = layer.width if width is None else width
    return LayerShape(
        id=layer.id, kind="conv", role=role, stage=stage, block=block,
        in_channels=in_ch, in_spatial=1, out_ch=w, kernel=layer.kernel,
        stride=layer.stride, padding=layer.pad, in_hw=hw, out_hw=out_hw, bn=layer.bn,
        bias=layer.has_bias, dropout=0.0, inputs=inputs, group=group, **extra,
    )


def _linear_shape(layer: Layer, role: str, in_channels: int, in_spatial: int,
                  inputs: tuple[str, ...]) -> LayerShape:
    check_id(layer.id, "layer")
    if layer.kind != "linear":
        raise SpecError(f"hidden layer {layer.id!r} has kind {layer.kind!r}; use "
                        "kind='linear'")
    if not 0.0 <= layer.dropout < 1.0:
        raise SpecError(f"layer {layer.id!r}: dropout must lie in [0, 1)")
    return LayerShape(
        id=layer.id, kind="linear", role=role, stage=None, block=None,
        in_channels=in_channels, in_spatial=in_spatial, out_ch=layer.width, kernel=1,
        stride=1, padding=0, in_hw=(1, 1), out_hw=(1, 1), bn=layer.bn,
        bias=layer.has_bias, dropout=layer.dropout, inputs=inputs,
    )


def _pool(hw: tuple[int, int], pool: str, stage_id: str) -> tuple[int, int]:
    if pool not in POOLS:
        raise SpecError(f"stage {stage_id!r}: unknown pool {pool!r}; use one of {POOLS}")
    if pool == "none":
        return hw
    if min(hw) < 2:
        raise SpecError(f"stage {stage_id!r}: pooling would shrink the {hw[0]}x{hw[1]} map "
                        "below 1x1; set pool='none' on this stage or use a larger input")
    return (hw[0] // 2, hw[1] // 2)


def _plain_convs(spec: ArchSpec) -> tuple[list[LayerShape], int, tuple[int, int], str]:
    shapes: list[LayerShape] = []
    ch, hw, last = spec.in_shape[0], (spec.in_shape[1], spec.in_shape[2]), INPUT
    for st in spec.stages:
        check_id(st.id, "stage")
        if st.blocks or not st.layers:
            raise SpecError(f"plain stage {st.id!r} needs conv layers and no blocks")
        for layer in st.layers:
            s = _conv_shape(layer, "conv", st.id, None, ch, hw, (last,))
            shapes.append(s)
            ch, hw, last = s.out_ch, s.out_hw, s.id
        hw = _pool(hw, st.pool, st.id)
    return shapes, ch, hw, last


def _residual_convs(spec: ArchSpec) -> tuple[list[LayerShape], int, tuple[int, int], str]:
    if spec.stem is None:
        raise SpecError("a residual spec needs a stem conv layer")
    if spec.shortcut not in SHORTCUTS:
        raise SpecError(f"unknown shortcut option {spec.shortcut!r}; use 'A' or 'B'")
    hw = (spec.in_shape[1], spec.in_shape[2])
    stem = _conv_shape(spec.stem, "stem", None, None, spec.in_shape[0], hw, (INPUT,))
    shapes = [stem]
    ch, hw, last = stem.out_ch, stem.out_hw, stem.id
    for st in spec.stages:
        check_id(st.id, "stage")
        if st.layers or not st.blocks:
            raise SpecError(f"residual stage {st.id!r} needs blocks and no plain layers")
        if st.width < 1:
            raise SpecError(f"stage {st.id!r}: width must be >= 1 (got {st.width})")
        group = f"{st.id}.stream"
        for blk in st.blocks:
            check_id(blk.id, "block")
            if blk.width < 1:
                raise SpecError(f"block {blk.id!r}: width must be >= 1 (got {blk.width})")
            needs_proj = spec.shortcut == "B" and (ch != st.width or blk.stride != 1)
            if spec.shortcut == "A" and ch > st.width:
                raise SpecError(
                    f"block {blk.id!r}: option-A shortcut cannot map {ch} channels onto a "
                    f"{st.width}-wide stage; widen stage {st.id!r} to >= {ch} or use "
                    "shortcut='B'")
            c1 = _conv_shape(Layer(blk.conv1, blk.width, stride=blk.stride), "conv1", st.id,
                             blk.id, ch, hw, (last,))
            c2 = _conv_shape(Layer(blk.conv2, st.width), "conv2", st.id, blk.id, c1.out_ch,
                             c1.out_hw, (c1.id,), group=group, shortcut_from=last,
                             proj=blk.proj if needs_proj else None)
            shapes += [c1]
            if needs_proj:
                shapes.append(_conv_shape(Layer(blk.proj, st.width, kernel=1,
                                                stride=blk.stride, padding=0), "proj", st.id,
                                          blk.id, ch, hw, (last,), group=group))
            shapes.append(c2)
            ch, hw, last = st.width, c2.out_hw, c2.id
    return shapes, ch, hw, last


def resolve(spec: ArchSpec) -> list[LayerShape]:
    """Per-layer shapes in forward order, classifier last; raises :class:`SpecError`."""
    if spec.family not in FAMILIES:
        raise SpecError(f"unknown family {spec.family!r}; use one of {', '.join(FAMILIES)}")
    if len(spec.in_shape) != 3 or min(spec.in_shape) < 1:
        raise SpecError(f"in_shape must be (channels, height, width) with positive sizes, "
                        f"got {spec.in_shape}")
    if spec.readout not in READOUTS:
        raise SpecError(f"unknown readout {spec.readout!r}; use one of {READOUTS}")
    if spec.family == "plain":
        shapes, ch, hw, last = _plain_convs(spec)
    elif spec.family == "residual":
        shapes, ch, hw, last = _residual_convs(spec)
    else:
        if spec.stages or spec.stem is not None:
            raise SpecError("an mlp spec has no conv stages or stem")
        shapes, ch, hw, last = [], spec.in_shape[0], spec.in_shape[1:], INPUT
    spatial = 1 if (spec.readout == "avg" and shapes) else hw[0] * hw[1]
    for layer in spec.hidden:
        s = _linear_shape(layer, "hidden", ch, spatial, (last,))
        shapes.append(s)
        ch, spatial, last = s.out_ch, 1, s.id
    head = Layer(HEAD_ID, spec.num_classes, kind="linear", bn=False, bias=True)
    shapes.append(_linear_shape(head, "head", ch, spatial, (last,)))
    return shapes


def validate(spec: ArchSpec) -> None:
    """Raise :class:`SpecError` naming the problem if ``spec`` cannot be built."""
    if spec.num_classes < 1:
        raise SpecError(f"num_classes must be >= 1, got {spec.num_classes}")
    shapes = resolve(spec)
    seen: set[str] = set()
    for s in shapes:
        if s.out_ch < 1:
            raise SpecError(f"layer {s.id!r}: width must be >= 1 (got {s.out_ch})")
        if s.id in seen:
            raise SpecError(f"layer id {s.id!r} is used twice; give every layer its own id")
        seen.add(s.id)
    for s in shapes:  # nets names a layer's BatchNorm "<id>_bn": a layer of that id would
        if s.bn and f"{s.id}_bn" in seen:  # silently replace it
            raise SpecError(f"layer id '{s.id}_bn' clashes with the BatchNorm of layer "
                            f"{s.id!r}; rename it")
    others = [st.id for st in spec.stages] + [b.id for st in spec.stages for b in st.blocks]
    for ident in others:
        if ident in seen or others.count(ident) > 1:
            raise SpecError(f"id {ident!r} is used twice; give every stage/block its own id")
