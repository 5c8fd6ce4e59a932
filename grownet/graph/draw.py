"""Drawing the architecture graph: :func:`draw_graph`, a width profile as a PNG.

Works on a graph from :func:`~grownet.graph.arch_graph` or one read back from its
GraphML / JSON files.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.path import Path as MplPath

from grownet.atomic import atomic_write

__all__ = ["draw_graph"]


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
        atomic_write(target, lambda fh: fig.savefig(fh, format="png", dpi=dpi))
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
