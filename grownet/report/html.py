"""The report page: one self-contained HTML file (inline CSS, PNGs as data URIs, no JS).

:func:`build_report` takes the tables of :mod:`grownet.report.tables` and the figures
of :mod:`grownet.report.figures` and lays them out in fixed sections
(:data:`SECTIONS`); nothing on the page refers to the network or to other files, so
the file can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import datetime as _dt
import struct
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from grownet.report.figures import (
    curves_figure,
    figure_png,
    support_heatmap_figure,
    width_timeline_figure,
)
from grownet.report.tables import (
    RunTables,
    format_compare,
    layer_epoch_matrix,
    run_summary,
    width_timeline,
)
from grownet.runs import RunDir

__all__ = ["SECTIONS", "build_report"]

#: (anchor id, heading) of every section, in page order
SECTIONS = (
    ("summary", "Summary"),
    ("timeline", "Growth timeline"),
    ("support", "Γ support"),
    ("curves", "Loss and accuracy"),
    ("stages", "Architecture per stage"),
    ("layers", "Per-layer table"),
    ("compare", "Comparison"),
)

# The page is read at 1280 px and up: a 1240 px column (1184 px inside its padding)
# keeps 1100 px figures at their natural size, so text stays the size matplotlib drew
# it, and fits two 600 px stage graphs side by side almost unscaled.
_CSS = """
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1d1f23;
       font: 15px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 40px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e3e6ea; }
h3 { font-size: 16px; margin: 18px 0 6px; }
p.sub { color: #5b6270; margin: 0 0 12px; word-break: break-all; }
p.note { color: #5b6270; margin: 6px 0; }
nav { margin: 10px 0 0; font-size: 14px; }
nav a { color: #1f5fbf; text-decoration: none; margin-right: 14px; }
code { font: 13px/1.3 "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #f1f3f5;
       padding: 1px 4px; border-radius: 3px; }
figure { margin: 10px 0 18px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #e3e6ea; }
figcaption { font-size: 13px; color: #5b6270; margin-top: 4px; }
.stages { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr));
          gap: 6px 24px; }
.stages figure.wide { grid-column: 1 / -1; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 13.5px; margin: 4px 0 12px; }
table.grid th, table.grid td { padding: 3px 10px; border-bottom: 1px solid #e6e8eb;
                               text-align: right; font-variant-numeric: tabular-nums;
                               white-space: nowrap; }
table.grid th { background: #f1f3f5; border-bottom: 2px solid #d5d9de; }
table.grid tr:nth-child(even) td { background: #fafbfc; }
table.grid td:first-child, table.grid th:first-child { text-align: left; }
table.compare td:nth-child(-n+3), table.compare th:nth-child(-n+3) { text-align: left; }
table.events td:nth-child(-n+3), table.events th:nth-child(-n+3) { text-align: left; }
table.events td:nth-child(3) { white-space: normal; min-width: 260px; }
table.summary th { text-align: left; padding: 3px 18px 3px 0; color: #5b6270;
                   font-weight: 600; white-space: nowrap; vertical-align: top; }
table.summary td { padding: 3px 0; word-break: break-word; }
footer { margin-top: 36px; font-size: 12px; color: #8a909b; }
"""


# ------------------------------------------------------------------ pieces
def _png_width(data: bytes) -> int:
    # the IHDR chunk sits at a fixed offset: width is bytes 16..20, big-endian
    return struct.unpack(">I", data[16:20])[0] if data[:8] == b"\x89PNG\r\n\x1a\n" else 0


def _img(png: bytes, alt: str, caption: str = "", wide: bool = False) -> str:
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    cls = ' class="wide"' if wide else ""
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure{cls}><img src="{src}" alt="{escape(alt)}">{cap}</figure>'


def _table(frame: pd.DataFrame, *classes: str, table_id: str | None = None) -> str:
    body = frame.to_html(index=False, classes=["grid", *classes], border=0, na_rep="–",
                         escape=True, table_id=table_id, justify="left")
    return f'<div class="scroll">{body}</div>'


def _int(value: Any) -> str:
    return "–" if pd.isna(value) else f"{int(value):,}"


def _text(value: Any) -> str:
    return "–" if value is None or value == "" else str(value)


def _reason(value: Any) -> str:
    # "8 -> 16" wraps between "-" and ">" in a narrow column; an arrow does not
    return _text(value).replace(" -> ", " → ")


def _section(anchor: str, body: str) -> str:
    heading = dict(SECTIONS)[anchor]
    return f'<section id="{anchor}"><h2>{escape(heading)}</h2>\n{body}\n</section>'


# ------------------------------------------------------------------ sections
def _summary(run: RunTables) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>"
                   for k, v in run_summary(run).items())
    return f'<table class="summary">{rows}</table>'


def _events_table(events: list[dict[str, Any]]) -> str:
    rows = []
    for e in events:
        before, after = e.get("before") or {}, e.get("after") or {}
        rows.append({
            "epoch": _text(e.get("epoch")), "kind": _text(e.get("kind")),
            "reason": _reason(e.get("reason")), "stage": _text(e.get("stage")),
            "params": f"{_int(before.get('params'))} → {_int(after.get('params'))}",
            "MACs": f"{_int(before.get('macs'))} → {_int(after.get('macs'))}",
        })
    return _table(pd.DataFrame(rows), "events")


def _timeline(run: RunTables) -> str:
    frame = width_timeline(run.metrics, run.stages)
    if frame.shape[1] == 0:
        return '<p class="note">No stage specs (stages/NNN/arch.json) yet.</p>'
    png = figure_png(width_timeline_figure(frame, run.events))
    parts = [_img(png, "layer widths per epoch",
                  "Width of every layer at each epoch (the spec of the stage it trained "
                  "in); a dashed line marks a growth event, decided after that epoch.")]
    if run.events:
        parts.append("<h3>Events</h3>" + _events_table(run.events))
    else:
        parts.append('<p class="note">No growth events: the architecture stayed fixed.</p>')
    return "\n".join(parts)


def _support(run: RunTables) -> str:
    method = escape(str(run.config.get("method", "?")))
    order = list(run.last_spec.widths()) if run.last_spec is not None else None
    if run.support is not None:
        matrix = layer_epoch_matrix(run.support, "ratio", order)
        png = figure_png(support_heatmap_figure(matrix, "selection ratio", run.events))
        return _img(png, "Γ support heatmap",
                    "Fraction of each layer's filters in Γ's support (selected) at the end "
                    "of each epoch; grey: the layer did not exist yet; red dashed lines: "
                    "growth events. A layer near 1 is saturated and is a candidate for "
                    "widening.")
    if run.keep is not None:
        matrix = layer_epoch_matrix(run.keep, "keep_ratio", order)
        png = figure_png(support_heatmap_figure(matrix, "keep ratio", run.events))
        return (f'<p class="note">This run used <code>{method}</code> (Dynamic Sparse '
                "Training), which has no Γ path; shown instead is each layer's keep ratio "
                "(fraction of weights its trainable threshold keeps), from keep.csv.</p>"
                + _img(png, "DST keep-ratio heatmap", "Keep ratio per layer and epoch."))
    return (f'<p class="note">No Γ path: this run used <code>{method}</code>, which has no '
            "structure parameter Γ (support.csv is written by DessiLBI runs only).</p>")


def _curves(run: RunTables) -> str:
    png = figure_png(curves_figure(run.metrics, run.events))
    caption = "Train and test loss and accuracy per epoch"
    if "phase" in run.metrics and run.metrics["phase"].eq("finetune").any():
        caption += "; the shaded span is fine-tuning"
    if any(e.get("kind") == "grow" for e in run.events):
        caption += "; dashed lines are growth events"
    return _img(png, "loss and accuracy curves", caption + ".")


def _stages(run: RunTables) -> str:
    from grownet.cost import count

    if not run.stages:
        return '<p class="note">No stages logged yet.</p>'
    reasons = {int(e["stage"]): str(e.get("reason", "")) for e in run.events
               if e.get("kind") == "grow" and e.get("stage") is not None}
    figures = []
    for stage, spec in run.stages:
        path = RunDir(run.path).stage_dir(stage) / "graph.png"
        if path.is_file():
            png = path.read_bytes()
        else:  # a run killed mid-stage: draw it from the spec, which is all it needs
            from grownet.graph import arch_graph, draw_graph

            png = figure_png(draw_graph(arch_graph(spec), None, title=f"stage {stage}"))
        cost = count(spec)
        caption = (f"<b>stage {stage}</b>: params {cost.params:,}, MACs {cost.macs:,}"
                   + (f"<br>{escape(_reason(reasons[stage]))}" if stage in reasons else ""))
        figures.append(_img(png, f"architecture of stage {stage}", caption,
                            wide=_png_width(png) > 700))
    return '<div class="stages">' + "\n".join(figures) + "</div>"


def _layers(run: RunTables) -> str:
    if run.layers is None:
        return '<p class="note">layers.csv is not written yet (it gets a row per layer ' \
               "when a stage ends).</p>"
    parts = []
    for stage, rows in run.layers.groupby("stage", sort=True):
        shown = pd.DataFrame({
            "layer": rows["layer"].astype(str), "width": rows["width"].map(_int),
            "selected": rows["selected"].map(_int),
            "ratio": rows["ratio"].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}"),
            "params": rows["params"].map(_int), "MACs": rows["macs"].map(_int),
        })
        parts.append(f"<h3>stage {int(stage)} (after epoch {int(rows['epoch'].iloc[0])}): "
                     f"params {_int(rows['params'].sum())}, MACs {_int(rows['macs'].sum())}"
                     "</h3>" + _table(shown, "layers", table_id=f"layers-stage-{int(stage)}"))
    return "\n".join(parts)


def _compare(compare: tuple[pd.DataFrame, Path | None] | None, run_path: Path) -> str:
    if compare is None:
        return ('<p class="note">No comparison yet: run <code>grownet compare '
                f"{escape(str(run_path))} --backbones ...</code> (it writes "
                "compare/compare.csv), then this report again.</p>")
    table, pareto = compare
    parts = [_table(format_compare(table), "compare"),
             '<p class="note">accuracy: test accuracy, mean ± std over seeds; MACs per '
             "sample; latency in ms at batch 1 and 64; train MACs: total training "
             "compute.</p>"]
    if pareto is not None:
        parts.append(_img(pareto.read_bytes(), "Pareto figure: accuracy against cost",
                          "Accuracy against cost; the grown nets against fixed backbones."))
    return "\n".join(parts)


# ------------------------------------------------------------------ the page
def build_report(run: RunTables,
                 compare: tuple[pd.DataFrame, Path | None] | None = None) -> str:
    """The whole report page as HTML text.

    Parameters
    ----------
    run
        From :func:`grownet.report.tables.read_run`.
    compare
        ``(compare.csv, pareto.png path or None)`` from
        :func:`grownet.report.tables.read_compare`, or ``None`` (the section then says
        how to make one).

    Returns
    -------
    str
        A complete HTML document with every image embedded.
    """
    from grownet import __version__

    status = "" if run.finished else " — in progress"
    title = f"grownet report — {run.path.name}{status}"
    nav = " ".join(f'<a href="#{a}">{escape(h)}</a>' for a, h in SECTIONS)
    bodies = {"summary": _summary(run), "timeline": _timeline(run), "support": _support(run),
              "curves": _curves(run), "stages": _stages(run), "layers": _layers(run),
              "compare": _compare(compare, run.path)}
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{escape(str(run.path.resolve()))}</p>', f"<nav>{nav}</nav>",
        *(_section(anchor, bodies[anchor]) for anchor, _ in SECTIONS),
        f"<footer>grownet {escape(__version__)} · generated {stamp} · self-contained: "
        "images are embedded, nothing is fetched.</footer>",
        "</main></body></html>", ""])
