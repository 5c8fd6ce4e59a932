"""Building the architecture graph: :func:`arch_graph`, with an optional support.

Nodes get the layer's resolved shape and its params/MACs; a support (ratios, boolean
masks, or a support tracker) adds ``ratio`` and, from a per-filter mask, ``selected``.
Every attribute value is a str, int, float or bool (an attribute without a value, such
as a linear layer's ``stage``, is left out), so ``networkx.write_graphml`` writes the
graph as it is. See :mod:`grownet.graph` for the overview.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from grownet.cost import count
from grownet.spec import INPUT, ArchSpec, LayerShape

if TYPE_CHECKING:
    import networkx as nx

OUTPUT = "output"

__all__ = ["INPUT", "OUTPUT", "arch_graph"]


# ------------------------------------------------------------------------ support
def _as_array(value: Any) -> np.ndarray | None:
    """``value`` as a numpy array when it is a tensor/array/sequence, else ``None``."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, list, tuple)):
        return np.asarray(value)
    return None


def _support_mapping(support: Any) -> Mapping:
    """The mapping a support stands for: itself, or what a tracker-like object reports."""
    if isinstance(support, Mapping):
        return support
    ratios = getattr(support, "ratios", None)
    if callable(ratios):
        masks = getattr(support, "support", None)
        # A support tracker's masks give exact counts ("selected"); ratios only fractions.
        return masks() if callable(masks) else ratios()
    raise TypeError("support must be a mapping {layer id: ratio or bool mask} or an "
                    f"object with a ratios() method, got {type(support).__name__}")


def _layer_of(key: Any, shapes: dict[str, LayerShape]) -> LayerShape:
    """The layer a support key names (a layer id or its weight's parameter name)."""
    layer_id = str(key)
    if layer_id not in shapes and layer_id.endswith(".weight"):
        layer_id = layer_id[: -len(".weight")]
    if layer_id not in shapes:
        raise ValueError(f"support names layer {key!r}, which this spec does not have; "
                         f"known layers: {', '.join(shapes)}")
    return shapes[layer_id]


def _mask_selection(layer: LayerShape, mask: np.ndarray) -> tuple[int | None, float]:
    """(selected, ratio) of a bool mask per filter, (None, density) of an element mask."""
    width = layer.out_ch
    per_filter = mask.ndim == 1 and mask.shape[0] == width
    if mask.dtype != bool or not (per_filter or tuple(mask.shape) == layer.weight_shape):
        raise ValueError(f"support for layer {layer.id!r} must be a bool mask of shape "
                         f"({width},) or the weight's shape {layer.weight_shape}, got "
                         f"dtype {mask.dtype} shape {tuple(mask.shape)}")
    if per_filter:  # one entry per filter: the count is exact
        selected = int(mask.sum())
        return selected, selected / width
    # An element-wise ("lasso") support: only its density is meaningful.
    return None, float(mask.mean())


def _selection(layer: LayerShape, value: Any) -> tuple[int | None, float]:
    """(selected or None, ratio) of one layer's support value (a ratio or a mask)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"support for layer {layer.id!r} is a lone bool; give a ratio "
                        f"or a bool mask of shape ({layer.out_ch},)")
    arr = _as_array(value)
    if arr is not None and (arr.dtype == bool or arr.size != 1):
        return _mask_selection(layer, arr)
    ratio = float(arr.item() if arr is not None else value)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"support ratio for layer {layer.id!r} must lie in [0, 1], "
                         f"got {ratio}")
    # Only a ratio: the count is not known exactly (the ratio may be an average).
    return None, ratio


def _support_entries(support: Any, shapes: dict[str, LayerShape]
                     ) -> dict[str, tuple[int | None, float]]:
    """Normalise a support to {layer id: (selected or None, ratio)}."""
    if support is None:
        return {}
    out: dict[str, tuple[int | None, float]] = {}
    for key, value in _support_mapping(support).items():
        layer = _layer_of(key, shapes)
        out[layer.id] = _selection(layer, value)
    return out


# ------------------------------------------------------------------------ attributes
def _graph_attrs(spec: ArchSpec) -> dict[str, Any]:
    """The spec's own fields, with the input shape as three ints (GraphML has no tuples)."""
    c, h, w = spec.in_shape
    return {"family": spec.family, "name": spec.name, "in_channels": int(c),
            "in_height": int(h), "in_width": int(w), "num_classes": spec.num_classes,
            "readout": spec.readout, "shortcut": spec.shortcut}


def _end_node(kind: str, order: int, channels: int, hw: tuple[int, int]) -> dict[str, Any]:
    """The ``input`` / ``output`` node: its size, no parameters."""
    return {"kind": kind, "role": kind, "order": order, "out_channels": int(channels),
            "out_h": int(hw[0]), "out_w": int(hw[1]), "params": 0, "macs": 0}


def _layer_attrs(s: LayerShape, order: int, params: int, macs: int,
                 selection: tuple[int | None, float] | None) -> dict[str, Any]:
    """A layer node's attributes; ``stage``/``block``/``selected`` only where they exist."""
    attrs: dict[str, Any] = {"kind": s.kind, "role": s.role}
    if s.stage is not None:
        attrs["stage"] = s.stage
    if s.block is not None:
        attrs["block"] = s.block
    attrs.update({
        "order": order, "in_channels": s.in_channels, "in_features": s.in_ch,
        "out_channels": s.out_ch, "kernel": s.kernel, "stride": s.stride,
        "padding": s.padding, "in_h": s.in_hw[0], "in_w": s.in_hw[1], "out_h": s.out_hw[0],
        "out_w": s.out_hw[1], "bn": s.bn, "bias": s.bias, "params": params, "macs": macs})
    if selection is not None:
        selected, attrs["ratio"] = selection
        if selected is not None:
            attrs["selected"] = selected
    return attrs


def _add_edges(g: nx.DiGraph, shapes: list[LayerShape]) -> None:
    """Data edges along the main path, shortcut edges along residual side paths."""
    for s in shapes:
        # A projection conv lies on its block's side path: its incoming edge is part of
        # the shortcut, so that the "data" edges alone trace the main path.
        kind = "shortcut" if s.role == "proj" else "data"
        for src in s.inputs:
            extra = {"projection": True} if kind == "shortcut" else {}
            g.add_edge(src, s.id, kind=kind, **extra)
        if s.shortcut_from is not None:
            src = s.proj if s.proj is not None else s.shortcut_from
            g.add_edge(src, s.id, kind="shortcut", projection=s.proj is not None)
    g.add_edge(shapes[-1].id, OUTPUT, kind="data")


# ------------------------------------------------------------------------ the graph
def arch_graph(spec: ArchSpec, support: Any = None) -> nx.DiGraph:
    """The architecture graph of ``spec``.

    Every attribute value is a str, int, float or bool, so ``networkx.write_graphml``
    (and :func:`~grownet.graph.save_graph`) writes the graph as it is; an attribute
    without a value (the ``stage`` of a linear layer, say) is absent, not ``None``.

    Parameters
    ----------
    spec
        The architecture.
    support
        Optional per-layer selection: a mapping ``{layer id: ratio}`` (float in
        [0, 1]), a mapping ``{layer id: bool mask}`` (tensor, array or list with one
        entry per output filter; a mask of the weight's shape, i.e. an element-wise
        support, gives only its density as ``ratio``), or an object with a
        ``ratios()`` method returning such a mapping; an object that also has a
        ``support()`` method returning masks (the support tracker) is asked for its
        masks, which also give ``selected``. Keys may also be parameter names
        (``"s1_l0.weight"``). Layers absent from it get no selection attributes.

    Returns
    -------
    networkx.DiGraph
        Nodes: every layer id, plus ``"input"`` and ``"output"``. Layer nodes carry
        ``kind`` (conv/linear), ``role``, ``stage`` and ``block`` (only inside a
        stage / residual block), ``order`` (forward index), ``in_channels``,
        ``in_features`` (the weight's input size: channels, or flattened features for
        a linear layer), ``out_channels``, ``kernel``, ``stride``, ``padding``,
        ``in_h``, ``in_w``, ``out_h``, ``out_w``, ``bn``, ``bias``, ``params`` (weight +
        bias + BatchNorm affine), ``macs`` (per sample) and, with a support, ``ratio``
        (float) and ``selected`` (int, only from a per-filter mask). Edges:
        ``kind="data"`` along the main path; ``kind="shortcut"`` with ``projection``
        (bool) for a residual side path, into the block's conv2 (and into its 1x1
        projection conv when the block has one). Graph attributes: ``family``,
        ``name``, ``in_channels``, ``in_height``, ``in_width`` (the input shape),
        ``num_classes``, ``readout``, ``shortcut``, ``params`` and ``macs`` (totals
        over all layers).

    Raises
    ------
    TypeError
        When ``support`` is neither a mapping nor has ``ratios()``, or maps a layer to
        a lone bool.
    ValueError
        When ``support`` names a layer the spec does not have, or a mask has the
        wrong shape, or a ratio lies outside [0, 1].
    """
    import networkx as nx  # here: importing grownet does not need networkx

    shapes = spec.shapes()
    by_id = {s.id: s for s in shapes}
    if OUTPUT in by_id or INPUT in by_id:
        raise ValueError(f"layer ids {INPUT!r} and {OUTPUT!r} are reserved for the graph's "
                         "end nodes; rename the layer")
    selection = _support_entries(support, by_id)
    costs = count(spec)  # walks the same shapes in the same order: one cost formula

    g = nx.DiGraph(**_graph_attrs(spec))
    g.add_node(INPUT, **_end_node("input", -1, spec.in_shape[0], spec.in_shape[1:]))
    for i, (s, cost) in enumerate(zip(shapes, costs, strict=True)):
        g.add_node(s.id, **_layer_attrs(s, i, cost.params, cost.macs, selection.get(s.id)))
    g.add_node(OUTPUT, **_end_node("output", len(shapes), spec.num_classes, (1, 1)))
    _add_edges(g, shapes)
    g.graph["params"] = costs.params
    g.graph["macs"] = costs.macs
    return g
