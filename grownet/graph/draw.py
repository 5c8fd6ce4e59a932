"""Drawing the architecture graph: :func:`draw_graph`, a width profile as a PNG.

Works on a graph from :func:`~grownet.graph.arch_graph` or one read back from its
GraphML / JSON files. matplotlib is imported when a graph is drawn, not with grownet.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grownet.atomic import atomic_write

if TYPE_CHECKING:
    import networkx as nx
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw_graph"]


_OTHER_COLORS = {"stem": "#5f6b7a", "hidden": "#8a8a8a", "head": "#3d3d3d"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#bcbd22", "#17becf")
# Vertical layout in data units: bars within [-0.5, 0.5], their labels above, then the
# shortcut arcs (residual nets only), then the stage names.
_ARC_Y, _ARC_H = 0.68, 0.16


def _si(n: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def _in_shape_text(graph: nx.DiGraph) -> str:
    """``C×H×W`` from the graph's ``in_channels``/``in_height``/``in_width``."""
    dims = [graph.graph.get(k) for k in ("in_channels", "in_height", "in_width")]
    return "×".join(str(d) for d in dims) if None not in dims else "?"


@dataclass
class _Profile:
    """What every part of the drawing needs: the layers, their places and colours."""

    graph: nx.DiGraph
    layers: list[str]  # every conv/linear layer, in forward order
    main: list[str]  # the layers on the main path (projections sit on arcs)
    shortcuts: list[tuple[str, str, str | None]]  # (block input, conv2, projection)
    fig_w: float
    x_of: dict[str, float] = field(init=False)
    stage_color: dict[str, str] = field(init=False)
    use_sqrt: bool = field(init=False)
    w_max: int = field(init=False)

    def __post_init__(self) -> None:
        self.x_of = {n: float(i) for i, n in enumerate(self.main)}
        widths = [int(self.nodes[n]["out_channels"]) for n in self.layers]
        self.w_max = max(widths)
        self.use_sqrt = self.w_max / max(min(widths), 1) > 8
        # Stage colours in order of first appearance; stem/fc layers get greys.
        stages = list(dict.fromkeys(s for n in self.layers if (s := self.stage(n))))
        self.stage_color = {st: _PALETTE[i % len(_PALETTE)] for i, st in enumerate(stages)}

    @property
    def nodes(self) -> Any:
        return self.graph.nodes

    @property
    def crowded(self) -> bool:
        return len(self.main) > 30

    @property
    def very_crowded(self) -> bool:
        return len(self.main) > 60

    @property
    def top(self) -> float:
        return _ARC_Y + 2 * _ARC_H + 0.28 if self.shortcuts else 0.86

    def stage(self, n: str) -> str | None:
        return self.nodes[n].get("stage") or None

    def height(self, width: int) -> float:
        frac = math.sqrt(width / self.w_max) if self.use_sqrt else width / self.w_max
        return max(frac, 0.03)  # a 1-wide layer should still be visible

    def color(self, n: str) -> str:
        st = self.stage(n)
        if st is not None:
            return self.stage_color[st]
        return _OTHER_COLORS.get(self.nodes[n]["role"], "#8a8a8a")


def _shortcuts(graph: nx.DiGraph, main: list[str]) -> list[tuple[str, str, str | None]]:
    """(block input, conv2, projection node or None) per residual block."""
    out = []
    for n in main:
        for src in graph.predecessors(n):
            if graph.edges[src, n].get("kind") != "shortcut":
                continue
            proj = src if graph.nodes[src].get("role") == "proj" else None
            if proj is not None:
                src = next(iter(graph.predecessors(proj)), src)
            out.append((src, n, proj))
    return out


def _profile(graph: nx.DiGraph) -> _Profile:
    layers = sorted((n for n, d in graph.nodes(data=True) if d.get("kind") in
                     ("conv", "linear")), key=lambda n: graph.nodes[n]["order"])
    if not layers:
        raise ValueError("the graph has no conv/linear layer nodes; build it with "
                         "arch_graph(spec)")
    main = [n for n in layers if graph.nodes[n]["role"] != "proj"]
    fig_w = min(max(2.0 + 0.17 * len(main), 6.0), 30.0)
    return _Profile(graph, layers, main, _shortcuts(graph, main), fig_w)


def _draw_groups(ax: Axes, p: _Profile) -> None:
    """Layer groups (stages, then "stem" / "fc"): a pale band and a label per group."""
    groups: list[tuple[str, list[str]]] = []
    for n in p.main:
        key = p.stage(n) or ("fc" if p.nodes[n]["kind"] == "linear" else p.nodes[n]["role"])
        if groups and groups[-1][0] == key:
            groups[-1][1].append(n)
        else:
            groups.append((key, [n]))
    for key, members in groups:
        x0, x1 = p.x_of[members[0]] - 0.5, p.x_of[members[-1]] + 0.5
        col = p.stage_color.get(key, "#999999")
        ax.axvspan(x0, x1, color=col, alpha=0.07, lw=0)
        last = p.nodes[members[-1]]
        text = key if last["kind"] == "linear" else f"{key}\n{last['out_h']}×{last['out_w']}"
        ax.text((x0 + x1) / 2, p.top - 0.02, text, ha="center", va="top", color=col,
                fontsize=7 if p.crowded else 8, fontweight="bold")


def _width_labels(p: _Profile) -> tuple[dict[str, str], dict[str, str]]:
    """Plain width labels and, for layers with a support, "selected/width" or the ratio.

    Every layer is labelled, or (when very crowded) only where the width changes or a
    new group starts.
    """
    labels: dict[str, str] = {}
    rich: dict[str, str] = {}
    prev_width = prev_group = None
    for n in p.main:
        d = p.nodes[n]
        w = int(d["out_channels"])
        group = p.stage(n) or d["role"]
        if not p.very_crowded or w != prev_width or group != prev_group:
            labels[n] = str(w)
            if d.get("ratio") is not None:
                sel = d.get("selected")
                rich[n] = f"{sel}/{w}" if sel is not None else f"{w}\n{float(d['ratio']):.0%}"
        prev_width, prev_group = w, group
    return labels, rich


def _fit_labels(p: _Profile) -> tuple[dict[str, str], float, int]:
    """(labels, font size, rotation): the richest labels at the largest font that fits
    horizontally in a bar's slot; else the plain widths rotated (the fill still shows
    the selection)."""
    labels, rich = _width_labels(p)
    slot_pt = p.fig_w * 72 * 0.9 / (len(p.main) + 0.3)
    stacked = {n: t.replace("/", "\n/") for n, t in rich.items()}
    for size, texts in ((8.0, rich), (6.5, rich), (6.5, stacked), (8.0, {}), (6.5, {})):
        merged = {**labels, **texts}
        longest = max((len(line) for t in merged.values() for line in t.split("\n")),
                      default=1)
        if 0.62 * size * longest <= 0.92 * slot_pt:
            return merged, size, 0
    return labels, 6.5, 90


def _draw_bars(ax: Axes, p: _Profile) -> None:
    """The main path: a line, one bar per layer and its label."""
    ax.plot([-0.7, len(p.main) - 1], [0, 0], color="#bbbbbb", lw=1, zorder=0)
    labels, size, rotation = _fit_labels(p)
    for n in p.main:
        d = p.nodes[n]
        x, hgt = p.x_of[n], p.height(int(d["out_channels"]))
        bar_w = 0.72 if d["kind"] == "conv" else 0.5
        _draw_bar(ax, x, 0.0, bar_w, hgt, p.color(n), d.get("ratio"))
        if n in labels:
            ax.text(x, hgt / 2 + 0.02, labels[n], ha="center", va="bottom", fontsize=size,
                    rotation=rotation, color="#222222", linespacing=1.0)


def _draw_shortcuts(ax: Axes, p: _Profile) -> None:
    """Residual shortcuts: arcs above the bars from the block input to conv2, with a
    small box on the arc for a projection."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MplPath

    for src, dst, proj in p.shortcuts:
        x0 = p.x_of.get(src, -0.7)  # a shortcut may start at the input node
        x1 = p.x_of[dst]
        col = p.color(dst)
        curve = MplPath([(x0, _ARC_Y), ((x0 + x1) / 2, _ARC_Y + 2 * _ARC_H), (x1, _ARC_Y)],
                        [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3])
        ax.add_patch(FancyArrowPatch(path=curve, arrowstyle="-|>", mutation_scale=7,
                                     color=col, lw=0.9, alpha=0.8))
        if proj is None:
            continue
        d = p.nodes[proj]
        bw = min(0.9, max(x1 - x0, 1.0) * 0.5)
        _draw_bar(ax, (x0 + x1) / 2, _ARC_Y + _ARC_H, bw, 0.1, col, d.get("ratio"), zorder=4)
        if not p.very_crowded:
            ax.text((x0 + x1) / 2, _ARC_Y + _ARC_H + 0.06, str(d["out_channels"]),
                    ha="center", va="bottom", fontsize=6.5, color=col)


def _style_axes(ax: Axes, p: _Profile) -> None:
    """Limits, layer ids on the x axis (every other one when very crowded), no frame."""
    n_main = len(p.main)
    ax.set_xlim(-0.7, n_main - 0.4)
    ax.set_ylim(-0.6, p.top)
    ax.set_yticks([])
    ax.set_xticks(range(n_main))
    ax.set_xticklabels(p.main, rotation=90, fontsize=5.5 if p.very_crowded else
                       (6.5 if p.crowded else 8))
    if p.very_crowded:  # ids would overlap at 110 layers: keep every other one
        for i, tick in enumerate(ax.get_xticklabels()):
            tick.set_visible(i % 2 == 0 or i == n_main - 1)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _note(p: _Profile) -> str:
    """The x-axis caption: what the bar heights, arcs and fills mean."""
    note = f"bar height ∝ {'√width' if p.use_sqrt else 'width'}"
    if p.shortcuts:
        note += "; arcs: residual shortcuts"
        if any(proj is not None for _, _, proj in p.shortcuts):
            note += " (box on an arc: 1×1 projection)"
    if any("ratio" in p.nodes[n] for n in p.layers):
        note += "; filled part: selected filters"
    return note


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
    from matplotlib.figure import Figure

    p = _profile(graph)
    fig = Figure(figsize=(p.fig_w, 4.6), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    _draw_groups(ax, p)
    _draw_bars(ax, p)
    _draw_shortcuts(ax, p)
    # The input, just left of the first layer (outside the axes when space is tight).
    in_text = _in_shape_text(graph)
    ax.text(-0.75, 0.0, f"input\n{in_text}", ha="right", va="center", fontsize=7,
            color="#444444", clip_on=False,
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#999999", "lw": 0.6})
    _style_axes(ax, p)
    if title is None:
        title = _default_title(graph, p.layers, in_text, p.fig_w)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel(_note(p), fontsize=7, color="#555555", loc="left")

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


def _draw_bar(ax: Axes, x: float, y: float, width: float, height: float, color: str,
              ratio: Any, zorder: int = 2) -> None:
    """A bar centred at (x, y); with a ratio, pale with the selected part filled."""
    from matplotlib.patches import Rectangle

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
