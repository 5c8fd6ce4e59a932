"""The Pareto figure: test accuracy against MACs per sample (log x).

One point per (model, method) row of ``compare.csv``, with the accuracy's standard
deviation over seeds as an error bar; the Pareto front (no other point is both
cheaper and more accurate) as a dashed step line; and, for each grown model, the
growth path of one of its runs (the one with the smallest seed): one point per
stage at (MACs of the stage's architecture, test accuracy at the last epoch trained
with it), from the narrow start to the final net.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grownet.compare.measure import final_accuracy
from grownet.cost import count, human
from grownet.runs import RunDir, atomic_write_bytes, load_spec


@dataclass(frozen=True)
class StagePoint:
    """One stage of a grown run on the figure.

    Attributes
    ----------
    stage
        Stage number (``stages/NNN``; 0 is the narrow start).
    macs
        MACs per sample of the stage's architecture.
    acc
        Test accuracy (fraction) at the last ``metrics.csv`` epoch of the stage.
    """

    stage: int
    macs: int
    acc: float


def stage_path(run: str | Path) -> list[StagePoint]:
    """The growth path of a run: one :class:`StagePoint` per stage that trained at
    least one epoch, in stage order (the last one is the final net, after fine-tuning).
    """
    run = RunDir(run)
    last_acc: dict[int, float] = {}
    for row in run.rows("metrics.csv"):  # rows are in epoch order: keep each stage's last
        last_acc[int(row["stage"])] = float(row["test_acc"])
    return [StagePoint(stage, count(spec).macs, last_acc[stage])
            for stage, spec in run.stage_specs() if stage in last_acc]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (fewer MACs, higher accuracy),
    sorted by MACs."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def pareto_figure(rows: Sequence[Mapping[str, Any]], paths: Mapping[str, Path],
                  out: str | Path, title: str = "") -> Path:
    """Draw the figure to ``out`` (PNG, written atomically).

    Parameters
    ----------
    rows
        ``compare.csv`` rows (``model``, ``method``, ``macs``, ``acc_mean``, ``acc_std``).
    paths
        ``{model name: run directory}``: the grown runs whose stage paths are drawn.
    out
        Where the PNG goes.
    title
        Second title line (data, epochs, seeds).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(8, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [f"C{i}" for i in range(10)]
    points, names = [], []
    for i, row in enumerate(rows):
        x, y = float(row["macs"]), float(row["acc_mean"]) * 100
        std = float(row["acc_std"])
        color = colors[i % len(colors)]
        label = f"{row['model']} ({row['method']}, {row['seeds']} seed"
        label += "s)" if int(row["seeds"]) != 1 else ")"
        grown = row.get("kind") == "grown"
        # grown: a star; its plain alternatives (uniform / random): a diamond
        marker = {"grown": "*", "baseline": "D"}.get(str(row.get("kind")), "o")
        ax.errorbar([x], [y], yerr=[0.0 if math.isnan(std) else std * 100], fmt=marker,
                    markersize=13 if grown else 7, color=color, capsize=4,
                    label=label, zorder=3)
        names.append(ax.annotate(str(row["model"]), (x, y), textcoords="offset points",
                                 xytext=(6, 6), fontsize=8, color=color))
        points.append((x, y))
        if grown and row["model"] in paths:
            _draw_path(ax, paths[row["model"]], color)
    front = pareto_front(points)
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", ls="--",
                color="0.6", lw=1, zorder=1, label="Pareto front")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human(v)))
    # minor ticks: label 2x and 5x only (every one crowds the axis within a decade)
    ax.xaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: human(v) if v > 0 and round(v / 10 ** math.floor(math.log10(v)))
        in (2, 5) else ""))
    ax.margins(x=0.08, y=0.08)
    ax.tick_params(axis="x", which="both", labelsize=8)
    ax.set_xlabel("MACs per sample (one forward pass, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against compute: grown net vs fixed backbones"
                 + (f"\n{title}" if title else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _separate(fig, names, dpi=120)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return atomic_write_bytes(out, buf.getvalue())


def _separate(fig: Any, texts: list[Any], dpi: float, gap: float = 1.0) -> None:
    """Move overlapping labels up until none overlaps another (nets of about the same
    MACs and accuracy sit on one spot)."""
    fig.set_dpi(dpi)  # measure at the resolution the figure is saved at
    renderer = fig.canvas.get_renderer()
    points_per_px = 72.0 / dpi
    for _ in range(len(texts)):
        boxes = sorted(((t.get_window_extent(renderer), t) for t in texts),
                       key=lambda bt: bt[0].y0)
        moved = False
        for i, (low, _) in enumerate(boxes):
            for high, text in boxes[i + 1:]:
                if low.overlaps(high):
                    dx, dy = text.xyann
                    text.xyann = (dx, dy + (low.y1 - high.y0 + gap) * points_per_px)
                    moved = True
                    break
            if moved:
                break
        if not moved:
            return


def _draw_path(ax: Any, run: Path, color: str) -> None:
    """The stages of ``run`` as a line ending at its final net; the start is hollow."""
    path = stage_path(run)
    if not path:
        return
    xs = [float(p.macs) for p in path]
    ys = [p.acc * 100 for p in path]
    final = (float(count(load_spec(RunDir(run).final_arch)).macs),
             final_accuracy(run) * 100)
    if (xs[-1], round(ys[-1], 4)) != (final[0], round(final[1], 4)):
        xs.append(final[0])
        ys.append(final[1])
    seed = RunDir(run).config().seed
    ax.plot(xs, ys, "-", marker=".", color=color, alpha=0.6, zorder=2,
            label=f"growth path of seed {seed} ({Path(run).name}): a point per stage, "
                  "× its final net")
    ax.plot([xs[0]], [ys[0]], "o", markersize=9, markerfacecolor="white",
            markeredgecolor=color, zorder=4)
    ax.annotate("narrow start", (xs[0], ys[0]), textcoords="offset points",
                xytext=(6, -12), fontsize=8, color=color)
    ax.plot([xs[-1]], [ys[-1]], "x", markersize=7, color=color, zorder=4)
