"""The architecture graph of a spec: a ``networkx.DiGraph``, saved as GraphML / JSON / PNG.

One node per conv/linear layer (node id = layer id) plus an ``input`` and an ``output``
node. Edges follow the data: ``kind="data"`` along the main path, ``kind="shortcut"``
for a residual block's side path (with ``projection`` True when it runs through a 1x1
projection conv). Nodes carry the layer's resolved shape, its parameter and MAC counts
and, when a support is given, how many of its filters are selected.

The graph is built from :func:`grownet.spec.resolve` only, so it knows nothing of
training; ``support`` is plain data (ratios or boolean masks) or any object with a
``ratios()`` method such as the support tracker.

See ``docs/graph.md`` for the attribute list and the file formats.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import networkx as nx
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.path import Path as MplPath

from grownet.spec import INPUT, ArchSpec, LayerShape

OUTPUT = "output"
GRAPHML_NAME = "graph.graphml"
JSON_NAME = "graph.json"

__all__ = ["GRAPHML_NAME", "INPUT", "JSON_NAME", "OUTPUT", "arch_graph", "draw_graph",
           "save_graph"]


# --------------------------------------------------------------------------- building
def _layer_cost(s: LayerShape) -> tuple[int, int]:
    """(params, MACs) of one layer: weight + bias + BatchNorm affine; MACs per sample.

    A private copy of the formulas: ``grownet.cost.count`` is the public API for costs
    (the graph must not depend on the cost room, which sits beside it).
    """
    if s.kind == "conv":
        weight = s.out_ch * s.in_channels * s.kernel * s.kernel
        macs = s.out_hw[0] * s.out_hw[1] * weight
    else:
        weight = s.out_ch * s.in_ch
        macs = weight
    params = weight + (s.out_ch if s.bias else 0) + (2 * s.out_ch if s.bn else 0)
    return params, macs


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
    for i, s in enumerate(shapes):
        params, macs = _layer_cost(s)
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


# --------------------------------------------------------------------------- saving
def _graphml_value(value: Any) -> Any:
    """A GraphML-safe scalar: None -> "", tuple/list -> JSON text, numpy -> Python."""
    if value is None:
        return ""
    if isinstance(value, (tuple, list)):
        return json.dumps(list(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def _graphml_ready(graph: nx.DiGraph) -> nx.DiGraph:
    out = nx.DiGraph(**{k: _graphml_value(v) for k, v in graph.graph.items()})
    for node, data in graph.nodes(data=True):
        out.add_node(node, **{k: _graphml_value(v) for k, v in data.items()})
    for u, v, data in graph.edges(data=True):
        out.add_edge(u, v, **{k: _graphml_value(x) for k, x in data.items()})
    return out


def _node_link_kwargs() -> dict[str, str]:
    # networkx >= 3.4 takes edges=..., and warns until 3.6 that its default changes
    # from "links"; older versions only know link=... (default "links").
    params = inspect.signature(nx.node_link_data).parameters
    return {"edges": "edges"} if "edges" in params else {}


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write via a temp file in the same directory, then rename: never a half file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_graph(graph: nx.DiGraph, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``graph.graphml`` and ``graph.json`` into ``directory`` (created if missing).

    Each file is written atomically (temp file in the same directory, then rename).

    GraphML only stores scalars, so the GraphML copy converts ``None`` to ``""`` (e.g.
    ``stage`` of the stem and the linear layers) and tuples to JSON text (the graph's
    ``in_shape`` becomes ``"[1, 28, 28]"``); ``networkx.read_graphml`` returns those
    strings. The JSON file is ``networkx.node_link_data`` (edges under ``"edges"``);
    it keeps ``None`` as ``null`` and tuples as lists, and reads back with
    ``networkx.node_link_graph(json.load(f), edges="edges")``.

    Parameters
    ----------
    graph
        A graph from :func:`arch_graph`.
    directory
        Where to write.

    Returns
    -------
    dict[str, Path]
        ``{"graphml": path, "json": path}``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"graphml": directory / GRAPHML_NAME, "json": directory / JSON_NAME}
    ready = _graphml_ready(graph)
    _atomic_write(paths["graphml"], lambda fh: nx.write_graphml(ready, fh))
    data = nx.node_link_data(graph, **_node_link_kwargs())
    text = json.dumps(data, indent=1, default=_json_default) + "\n"
    _atomic_write(paths["json"], lambda fh: fh.write(text.encode("utf-8")))
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to graph JSON")


# --------------------------------------------------------------------------- drawing
_OTHER_COLORS = {"stem": "#5f6b7a", "hidden": "#8a8a8a", "head": "#3d3d3d"}


def _nullable(value: Any) -> Any:
    # Graphs read back from GraphML carry "" where arch_graph had None.
    return None if value == "" else value


def _si(n: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def _in_shape_text(value: Any) -> str:
    if isinstance(value, str):  # GraphML copy: JSON text
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return "×".join(str(v) for v in value) if value is not None else "?"


def draw_graph(graph: nx.DiGraph, path: str | os.PathLike[str] | None = None,
               title: str | None = None, *, dpi: int = 100) -> Figure:
    """Draw the graph as a width profile: one bar per layer, height ~ its width.

    Layers run left to right in forward order; each bar is centred on the axis with a
    height proportional to ``out_channels`` (to its square root when widths span more
    than 8x, as in VGG's 64..512) and is labelled with the width. Bars are coloured by
    stage; arcs above the bars are residual shortcuts, with a small box on the arc for
    a 1x1 projection. When a layer has a ``ratio``, its bar is drawn pale with the
    selected fraction filled from the bottom. The figure grows with the number of
    layers, and labels thin out when they would crowd (e.g. ResNet-110).

    The figure is a plain :class:`matplotlib.figure.Figure` (no pyplot state, so
    nothing to close and no display needed).

    Parameters
    ----------
    graph
        A graph from :func:`arch_graph` (or read back from its GraphML/JSON files).
    path
        When given, the PNG is written there (atomically).
    title
        Figure title; by default the spec name, input shape, params and MACs.
    dpi
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    layers = sorted((n for n, d in graph.nodes(data=True) if d.get("kind") in
                     ("conv", "linear")), key=lambda n: graph.nodes[n]["order"])
    if not layers:
        raise ValueError("the graph has no conv/linear layer nodes; build it with "
                         "arch_graph(spec)")
    nodes = graph.nodes
    main = [n for n in layers if nodes[n]["role"] != "proj"]
    x_of = {n: float(i) for i, n in enumerate(main)}
    n_main = len(main)

    widths = [int(nodes[n]["out_channels"]) for n in layers]
    w_max = max(widths)
    use_sqrt = w_max / max(min(widths), 1) > 8

    def height(w: int) -> float:
        frac = math.sqrt(w / w_max) if use_sqrt else w / w_max
        return max(frac, 0.03)  # a 1-wide layer should still be visible

    # Stage colours in order of first appearance; stem/fc layers get greys.
    stages: list[str] = []
    for n in layers:
        st = _nullable(nodes[n].get("stage"))
        if st is not None and st not in stages:
            stages.append(st)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
               "#e377c2", "#bcbd22", "#17becf"]
    stage_color = {st: palette[i % len(palette)] for i, st in enumerate(stages)}

    def color(n: str) -> str:
        st = _nullable(nodes[n].get("stage"))
        if st is not None:
            return stage_color[st]
        return _OTHER_COLORS.get(nodes[n]["role"], "#8a8a8a")

    # Shortcuts: (block input, conv2, projection node or None) per residual block.
    shortcuts: list[tuple[str, str, str | None]] = []
    for n in main:
        for src in graph.predecessors(n):
            if graph.edges[src, n].get("kind") != "shortcut":
                continue
            proj = src if nodes[src].get("role") == "proj" else None
            if proj is not None:
                src = next(iter(graph.predecessors(proj)), src)
            shortcuts.append((src, n, proj))

    crowded = n_main > 30
    very_crowded = n_main > 60
    fig_w = min(max(2.0 + 0.17 * n_main, 6.0), 30.0)
    fig = Figure(figsize=(fig_w, 4.6), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    # Vertical layout in data units: bars within [-0.5, 0.5], their labels above, then
    # the shortcut arcs (residual nets only), then the stage names.
    arc_y, arc_h = 0.68, 0.16
    top = arc_y + 2 * arc_h + 0.28 if shortcuts else 0.86

    # Layer groups (stages, then "stem" / "fc"): a pale band and a label per group.
    groups: list[tuple[str, list[str]]] = []
    for n in main:
        st = _nullable(nodes[n].get("stage"))
        key = st if st is not None else ("fc" if nodes[n]["kind"] == "linear" else
                                          nodes[n]["role"])
        if groups and groups[-1][0] == key:
            groups[-1][1].append(n)
        else:
            groups.append((key, [n]))
    for key, members in groups:
        x0, x1 = x_of[members[0]] - 0.5, x_of[members[-1]] + 0.5
        col = stage_color.get(key, "#999999")
        ax.axvspan(x0, x1, color=col, alpha=0.07, lw=0)
        last = nodes[members[-1]]
        text = key if last["kind"] == "linear" else f"{key}\n{last['out_h']}×{last['out_w']}"
        ax.text((x0 + x1) / 2, top - 0.02, text, ha="center", va="top", color=col,
                fontsize=7 if crowded else 8, fontweight="bold")

    # The main path as a line behind the bars.
    ax.plot([-0.7, n_main - 1], [0, 0], color="#bbbbbb", lw=1, zorder=0)

    # Width labels: every layer, or (when crowded) only where the width changes or a
    # new group starts. With a support and room to spare, "selected/width" or the ratio.
    labels: dict[str, str] = {}
    rich: dict[str, str] = {}
    prev_width = prev_group = None
    for n in main:
        d = nodes[n]
        w = int(d["out_channels"])
        group = _nullable(d.get("stage")) or d["role"]
        if not very_crowded or w != prev_width or group != prev_group:
            labels[n] = str(w)
            if d.get("ratio") is not None:
                sel = d.get("selected")
                rich[n] = f"{sel}/{w}" if sel is not None else f"{w}\n{float(d['ratio']):.0%}"
        prev_width, prev_group = w, group
    # Pick the largest font at which horizontal labels fit their slot; else rotate the
    # plain widths (the fill still shows the selection).
    slot_pt = fig_w * 72 * 0.9 / (n_main + 0.3)
    label_size, rotation = 6.5, 90
    stacked = {n: t.replace("/", "\n/") for n, t in rich.items()}
    for size, texts in ((8.0, rich), (6.5, rich), (6.5, stacked), (8.0, {}), (6.5, {})):
        merged = {**labels, **texts}
        longest = max((len(line) for t in merged.values() for line in t.split("\n")),
                      default=1)
        if 0.62 * size * longest <= 0.92 * slot_pt:
            labels, label_size, rotation = merged, size, 0
            break
    for n in main:
        d = nodes[n]
        x, w = x_of[n], int(d["out_channels"])
        hgt = height(w)
        bar_w = 0.72 if d["kind"] == "conv" else 0.5
        _draw_bar(ax, x, 0.0, bar_w, hgt, color(n), d.get("ratio"))
        if n in labels:
            ax.text(x, hgt / 2 + 0.02, labels[n], ha="center", va="bottom",
                    fontsize=label_size, rotation=rotation, color="#222222",
                    linespacing=1.0)

    # Residual shortcuts: arcs above the bars from the block input to conv2.
    for src, dst, proj in shortcuts:
        x0 = x_of.get(src, -0.7)  # a shortcut may start at the input node
        x1 = x_of[dst]
        col = color(dst)
        curve = MplPath([(x0, arc_y), ((x0 + x1) / 2, arc_y + 2 * arc_h), (x1, arc_y)],
                        [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3])
        ax.add_patch(FancyArrowPatch(path=curve, arrowstyle="-|>", mutation_scale=7,
                                     color=col, lw=0.9, alpha=0.8))
        if proj is not None:
            d = nodes[proj]
            bw = min(0.9, max(x1 - x0, 1.0) * 0.5)
            _draw_bar(ax, (x0 + x1) / 2, arc_y + arc_h, bw, 0.1, col, d.get("ratio"),
                      zorder=4)
            if not very_crowded:
                ax.text((x0 + x1) / 2, arc_y + arc_h + 0.06, str(d["out_channels"]),
                        ha="center", va="bottom", fontsize=6.5, color=col)

    # The input, just left of the first layer (outside the axes when space is tight).
    in_text = _in_shape_text(graph.graph.get("in_shape"))
    ax.text(-0.75, 0.0, f"input\n{in_text}", ha="right", va="center", fontsize=7,
            color="#444444", clip_on=False,
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#999999", "lw": 0.6})

    ax.set_xlim(-0.7, n_main - 0.4)
    ax.set_ylim(-0.6, top)
    ax.set_yticks([])
    ax.set_xticks(range(n_main))
    ax.set_xticklabels(main, rotation=90, fontsize=5.5 if very_crowded else
                       (6.5 if crowded else 8))
    if very_crowded:  # ids would overlap at 110 layers: keep every other one
        for i, tick in enumerate(ax.get_xticklabels()):
            tick.set_visible(i % 2 == 0 or i == n_main - 1)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)

    if title is None:
        title = _default_title(graph, layers, in_text, fig_w)
    ax.set_title(title, fontsize=10, loc="left")
    scale = "√width" if use_sqrt else "width"
    note = f"bar height ∝ {scale}"
    if shortcuts:
        note += "; arcs: residual shortcuts"
        if any(p is not None for _, _, p in shortcuts):
            note += " (box on an arc: 1×1 projection)"
    if any("ratio" in nodes[n] for n in layers):
        note += "; filled part: selected filters"
    ax.set_xlabel(note, fontsize=7, color="#555555", loc="left")

    if path is not None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, lambda fh: fig.savefig(fh, format="png", dpi=dpi))
    return fig


def _default_title(graph: nx.DiGraph, layers: list[str], in_text: str, fig_w: float) -> str:
    """Name, input, totals and mean selection; wrapped onto two lines when too long."""
    nodes = graph.nodes
    parts = [str(graph.graph.get("name") or graph.graph.get("family", "network")),
             f"input {in_text}"]
    params, macs = graph.graph.get("params"), graph.graph.get("macs")
    if params is not None and macs is not None:
        parts += [f"{_si(int(params))} params", f"{_si(int(macs))} MACs"]
    ratios = [float(nodes[n]["ratio"]) for n in layers if "ratio" in nodes[n]]
    if ratios:
        parts.append(f"mean selected {np.mean(ratios):.0%} over {len(ratios)} layers")
    one_line = " · ".join(parts)
    if 0.55 * 10 * len(one_line) <= fig_w * 72 * 0.95:
        return one_line
    return " · ".join(parts[:2]) + "\n" + " · ".join(parts[2:])


def _draw_bar(ax: Any, x: float, y: float, width: float, height: float, color: str,
              ratio: Any, zorder: int = 2) -> None:
    """A bar centred at (x, y); with a ratio, pale with the selected part filled."""
    x0, y0 = x - width / 2, y - height / 2
    if ratio is None:
        ax.add_patch(Rectangle((x0, y0), width, height, fc=color, ec=color, lw=0.6,
                               zorder=zorder))
        return
    ax.add_patch(Rectangle((x0, y0), width, height, fc=color, ec=color, lw=0.8,
                           alpha=0.25, zorder=zorder))
    ax.add_patch(Rectangle((x0, y0), width, height * float(ratio), fc=color, ec="none",
                           zorder=zorder + 0.5))
    ax.add_patch(Rectangle((x0, y0), width, height, fc="none", ec=color, lw=0.8,
                           zorder=zorder + 1))
