"""The report's figures: width timeline, Γ support heatmap, loss and accuracy curves.

Every function returns a plain :class:`matplotlib.figure.Figure` built with
``Figure()`` rather than pyplot, so nothing global is touched, nothing needs closing
and no display is needed; the same figure can go to a PNG (:func:`figure_png`, which
renders with Agg) or to TensorBoard's ``add_figure``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import transforms
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

__all__ = ["curves_figure", "figure_png", "support_heatmap_figure", "width_timeline_figure"]

#: figure width in inches; at the report's 100 dpi this is 1100 px, which fits the
#: page's 1184 px content column without scaling the text down
WIDTH_IN = 11.0

# how each event kind is drawn: (colour, line style); unknown kinds get the last entry
_EVENT_STYLE = {"grow": ("#d62728", "--"), "stop": ("#555555", ":"),
                "other": ("#9467bd", "-.")}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # explicit Agg canvas: renders headless, whatever pyplot's backend
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes with Agg.

    Parameters
    ----------
    fig
        Any matplotlib figure.
    dpi
        Resolution; the report uses 100 so that an 11-inch figure is 1100 px wide.

    Returns
    -------
    bytes
        The PNG file's content.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _mark_events(ax: Any, events: Iterable[dict[str, Any]] | None, lo: float, hi: float,
                 label: bool = True, color: str | None = None) -> None:
    """Vertical lines between epoch ``e`` and ``e + 1`` for each event at epoch ``e``
    (an event is decided after its epoch ends, so the next stage starts at ``e + 1``)."""
    for event in events or ():
        try:
            x = float(event["epoch"]) + 0.5
        except (KeyError, TypeError, ValueError):
            continue
        if not lo <= x <= hi:  # e.g. a DST slim after the last epoch
            continue
        kind = str(event.get("kind", "other"))
        c, style = _EVENT_STYLE.get(kind, _EVENT_STYLE["other"])
        ax.axvline(x, color=color or c, linestyle=style, linewidth=1.2, zorder=1)
        if label:
            ax.annotate(kind, (x, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -3), textcoords="offset points", va="top",
                        fontsize=8, color=color or c)


def _layer_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    if n <= 10:
        return list(colormaps["tab10"].colors[:n])
    cmap = colormaps["turbo"]  # many layers: a smooth ramp reads in forward order
    return [cmap(0.05 + 0.9 * i / max(n - 1, 1)) for i in range(n)]


def width_timeline_figure(timeline: pd.DataFrame,
                          events: Iterable[dict[str, Any]] | None = None) -> Figure:
    """The width of every layer against epoch, growth events marked.

    Parameters
    ----------
    timeline
        From :func:`grownet.report.tables.width_timeline` (index epoch, one column per
        layer, ``<NA>`` where a layer does not exist yet).
    events
        ``events.jsonl`` records; ``grow`` and ``stop`` events become vertical lines.

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = timeline.shape[1]
    outside = n > 8  # a long legend goes beside the axes, not over the lines
    fig = _new_figure(WIDTH_IN, 4.2 if n <= 24 else 4.2 + 0.12 * (n - 24))
    ax = fig.add_subplot()
    x = timeline.index.to_numpy(dtype=float)
    values = timeline.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    markers = "osD^v<>ph*"
    # a layer's width changes between the epochs of two stages: steps-mid puts the step
    # on the growth event's line
    for j, (lid, color) in enumerate(zip(timeline.columns, _layer_colors(n), strict=True)):
        # layers often share a width (8 and 8): shift each line by a point or two so
        # that none hides another; the shift is far below one unit of width
        shift = (j - (n - 1) / 2) * 1.6 if n <= 10 else 0.0
        offset = transforms.offset_copy(ax.transData, fig=fig, x=0, y=shift, units="points")
        ax.plot(x, values[:, j], drawstyle="steps-mid", color=color, linewidth=1.6,
                marker=markers[j % len(markers)], markersize=3.5, label=str(lid),
                transform=offset)
    finite = values[np.isfinite(values)]
    # limits set by hand: autoscaling skips lines drawn through an offset transform
    # when they hold NaN (layers that do not exist yet)
    if finite.size and finite.max() / max(finite.min(), 1) > 16:
        ax.set_yscale("log", base=2)  # e.g. VGG's 64..512 next to a 10-way head
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.set_ylim(max(finite.min(), 1) / 1.25, finite.max() * 1.25)
    elif finite.size:
        pad = max(0.06 * (finite.max() - finite.min()), 1.0)
        ax.set_ylim(finite.min() - pad, finite.max() + pad)
    lo, hi = (x.min() - 0.5, x.max() + 0.5) if x.size else (0, 1)
    ax.set_xlim(lo, hi)
    _mark_events(ax, events, lo, hi)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("width (filters / neurons)")
    ax.grid(True, alpha=0.3)
    if outside:
        ncol = math.ceil(n / 22)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, ncol=ncol,
                  frameon=False, title="layer", title_fontsize=8)
    else:
        ax.legend(loc="best", fontsize=8, title="layer", title_fontsize=8)
    return fig


def support_heatmap_figure(matrix: pd.DataFrame, label: str = "selection ratio",
                           events: Iterable[dict[str, Any]] | None = None) -> Figure:
    """A layers × epochs heatmap of a ratio in [0, 1] (Γ's selection ratio, or DST's
    keep ratio).

    Parameters
    ----------
    matrix
        From :func:`grownet.report.tables.layer_epoch_matrix`: index layer, columns
        epochs, NaN where the layer did not exist (drawn grey).
    label
        The colour bar's label.
    events
        ``events.jsonl`` records; growth events become vertical lines.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib import colormaps

    epochs = [int(c) for c in matrix.columns]
    full = list(range(min(epochs), max(epochs) + 1)) if epochs else []
    matrix = matrix.reindex(columns=full)  # missing epochs show as gaps, not squeezed out
    data = matrix.to_numpy(dtype=float, na_value=np.nan)
    n_layers, n_epochs = data.shape
    fig = _new_figure(WIDTH_IN, min(2.0 + 0.26 * n_layers, 16.0))
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
    lo, hi = (full[0] - 0.5, full[-1] + 0.5) if full else (-0.5, 0.5)
    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap=cmap, vmin=0.0,
                      vmax=1.0, interpolation="nearest",
                      extent=(lo, hi, n_layers - 0.5, -0.5))
    # thin the layer labels so that they never overlap (ResNet-110 has 110 rows)
    step = max(1, math.ceil(n_layers / 60))
    ax.set_yticks(range(0, n_layers, step))
    ax.set_yticklabels([str(v) for v in matrix.index[::step]],
                       fontsize=8 if n_layers <= 30 else 6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("layer")
    if n_layers * n_epochs <= 240:  # small runs: the numbers themselves are readable
        for i in range(n_layers):
            for j in range(n_epochs):
                v = data[i, j]
                if np.isfinite(v):
                    ax.text(full[j], i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if v < 0.6 else "black")
    # unlabelled: a label would sit on the first row's numbers (the timeline names them)
    _mark_events(ax, events, lo, hi, label=False, color="#ff4040")
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.01)
    bar.set_label(label)
    return fig


def curves_figure(metrics: pd.DataFrame,
                  events: Iterable[dict[str, Any]] | None = None) -> Figure:
    """Train and test loss (left) and accuracy in percent (right) against epoch.

    Fine-tuning epochs (``phase == "finetune"``) are shaded; growth events are marked.

    Parameters
    ----------
    metrics
        ``metrics.csv`` (``epoch``, ``train_loss``, ``test_loss``, ``train_acc``,
        ``test_acc``; ``phase`` optional).
    events
        ``events.jsonl`` records.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _new_figure(WIDTH_IN, 3.8)
    ax_loss, ax_acc = fig.subplots(1, 2)
    x = metrics["epoch"].to_numpy(dtype=float)
    lo, hi = (x.min() - 0.5, x.max() + 0.5) if x.size else (0, 1)
    colors = {"train": "#1f77b4", "test": "#ff7f0e"}
    for split in ("train", "test"):
        if f"{split}_loss" in metrics:
            ax_loss.plot(x, metrics[f"{split}_loss"], marker="o", markersize=3,
                         color=colors[split], label=split)
        if f"{split}_acc" in metrics:
            ax_acc.plot(x, 100 * metrics[f"{split}_acc"], marker="o", markersize=3,
                        color=colors[split], label=split)
    losses = metrics[[c for c in ("train_loss", "test_loss") if c in metrics]]
    finite = losses.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if finite.size and finite.max() / finite.min() > 20:
        ax_loss.set_yscale("log")  # losses fall by orders of magnitude once fitting
    finetune = x[metrics["phase"].eq("finetune").to_numpy()] if "phase" in metrics else []
    for ax, title, ylabel in ((ax_loss, "loss", "cross-entropy"),
                              (ax_acc, "accuracy", "accuracy (%)")):
        if len(finetune):
            ax.axvspan(min(finetune) - 0.5, max(finetune) + 0.5, color="#2ca02c", alpha=0.08,
                       label="fine-tune")
        ax.set_xlim(lo, hi)
        _mark_events(ax, events, lo, hi)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return fig
