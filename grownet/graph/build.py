"""Building the architecture graph: :func:`arch_graph`, with an optional support.

Nodes get the layer's resolved shape and its params/MACs; a support (ratios, boolean
masks, or an object with ``ratios()``) adds ``ratio`` and, from a per-filter mask,
``selected``. See :mod:`grownet.graph` for the overview.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import numpy as np

from grownet.cost import count
from grownet.spec import INPUT, ArchSpec, LayerShape

OUTPUT = "output"

__all__ = ["INPUT", "OUTPUT", "arch_graph"]


def _as_array(value: Any) -> np.ndarray | None:
    """``value`` as a numpy array when it is a tensor/array/sequence, else ``None``."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, list, tuple)):
        return np.asarray(value)
    return None


def _support_entries(support: Any, shapes: dict[str, LayerShape]
                     ) -> dict[str, tuple[int | None, float]]:
    """Normalise a support to {layer id: (selected or None, ratio)}."""
    if support is None:
        return {}
    if not isinstance(support, Mapping) and callable(getattr(support, "ratios", None)):
        support = support.ratios()
    if not isinstance(support, Mapping):
        raise TypeError("support must be a mapping {layer id: ratio or bool mask} or an "
                        f"object with a ratios() method, got {type(support).__name__}")
    out: dict[str, tuple[int | None, float]] = {}
    for key, value in support.items():
        layer_id = str(key)
        if layer_id not in shapes and layer_id.endswith(".weight"):
            layer_id = layer_id[: -len(".weight")]  # tolerate parameter names
        if layer_id not in shapes:
            raise ValueError(f"support names layer {key!r}, which this spec does not have; "
                             f"known layers: {', '.join(shapes)}")
        width = shapes[layer_id].out_ch
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"support for layer {layer_id!r} is a lone bool; give a ratio "
                             f"or a bool mask of shape ({width},)")
        arr = _as_array(value)
        if arr is not None and (arr.dtype == bool or arr.size != 1):
            if arr.dtype != bool or arr.ndim < 1 or arr.shape[0] != width:
                raise ValueError(f"support for layer {layer_id!r} must be a bool mask of "
                                 f"shape ({width},) (or the weight's shape), got dtype "
                                 f"{arr.dtype} shape {tuple(arr.shape)}")
            if arr.ndim == 1:  # one entry per filter: the count is exact
                selected = int(arr.sum())
                out[layer_id] = (selected, selected / width)
            else:  # an element-wise ("lasso") support: only its density is meaningful
                out[layer_id] = (None, float(arr.mean()))
            continue
        ratio = float(arr.item() if arr is not None else value)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"support ratio for layer {layer_id!r} must lie in [0, 1], "
                             f"got {ratio}")
        # Only a ratio: the count is not known exactly (the ratio may be an average).
        out[layer_id] = (None, ratio)
    return out


def arch_graph(spec: ArchSpec, support: Any = None) -> nx.DiGraph:
    """The architecture graph of ``spec``.

    Parameters
    ----------
    spec
        The architecture.
    support
        Optional per-layer selection: a mapping ``{layer id: ratio}`` (float in
        [0, 1]), a mapping ``{layer id: bool mask}`` (tensor, array or list with one
        entry per output filter; a mask of the weight's shape, i.e. an element-wise
        support, gives only its density as ``ratio``), or an object with a
        ``ratios()`` method returning such a mapping (e.g. the support tracker; its
        ``support()`` mapping of masks works too and also gives ``selected``). Keys
        may also be parameter names (``"s1_l0.weight"``). Layers absent from it get
        no selection attributes.

    Returns
    -------
    networkx.DiGraph
        Nodes: every layer id, plus ``"input"`` and ``"output"``. Layer nodes carry
        ``kind`` (conv/linear), ``role``, ``stage``, ``block``, ``order`` (forward
        index), ``in_channels``, ``in_features`` (the weight's input size: channels,
        or flattened features for a linear layer), ``out_channels``, ``kernel``,
        ``stride``, ``padding``, ``in_h``, ``in_w``, ``out_h``, ``out_w``, ``bn``,
        ``bias``, ``params`` (weight + bias + BatchNorm affine), ``macs`` (per sample)
        and, with a support, ``ratio`` (float) and ``selected`` (int, only from a mask).
        Edges: ``kind="data"`` along the main path; ``kind="shortcut"`` with
        ``projection`` (bool) for a residual side path, into the block's conv2 (and
        into its 1x1 projection conv when the block has one). Graph attributes:
        ``family``, ``name``, ``in_shape``, ``num_classes``, ``readout``, ``shortcut``,
        ``params`` and ``macs`` (totals over all layers).

    Raises
    ------
    TypeError
        When ``support`` is neither a mapping nor has ``ratios()``, or maps a layer to
        a lone bool.
    ValueError
        When ``support`` names a layer the spec does not have, or a mask has the
        wrong length, or a ratio lies outside [0, 1].
    """
    shapes = spec.shapes()
    by_id = {s.id: s for s in shapes}
    if OUTPUT in by_id or INPUT in by_id:
        raise ValueError(f"layer ids {INPUT!r} and {OUTPUT!r} are reserved for the graph's "
                         "end nodes; rename the layer")
    selection = _support_entries(support, by_id)

    c, h, w = spec.in_shape
    g = nx.DiGraph(family=spec.family, name=spec.name, in_shape=tuple(spec.in_shape),
                   num_classes=spec.num_classes, readout=spec.readout,
                   shortcut=spec.shortcut)
    g.add_node(INPUT, kind="input", role="input", stage=None, block=None, order=-1,
               out_channels=c, out_h=h, out_w=w, params=0, macs=0)
    total_params = total_macs = 0
    # count() walks the same shapes in the same order: one cost formula for the project
    for i, (s, cost) in enumerate(zip(shapes, count(spec), strict=True)):
        params, macs = cost.params, cost.macs
        total_params += params
        total_macs += macs
        attrs: dict[str, Any] = {
            "kind": s.kind, "role": s.role, "stage": s.stage, "block": s.block, "order": i,
            "in_channels": s.in_channels, "in_features": s.in_ch, "out_channels": s.out_ch,
            "kernel": s.kernel, "stride": s.stride, "padding": s.padding,
            "in_h": s.in_hw[0], "in_w": s.in_hw[1], "out_h": s.out_hw[0], "out_w": s.out_hw[1],
            "bn": s.bn, "bias": s.bias, "params": params, "macs": macs}
        if s.id in selection:
            selected, ratio = selection[s.id]
            attrs["ratio"] = ratio
            if selected is not None:
                attrs["selected"] = selected
        g.add_node(s.id, **attrs)
    g.add_node(OUTPUT, kind="output", role="output", stage=None, block=None,
               order=len(shapes), out_channels=spec.num_classes, out_h=1, out_w=1,
               params=0, macs=0)

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
    g.graph["params"] = total_params
    g.graph["macs"] = total_macs
    return g
