"""The run report: pandas tables and matplotlib figures of a run, and one HTML page.

:mod:`~grownet.report.tables` reads a run directory into pandas,
:mod:`~grownet.report.figures` draws the width timeline, the Γ support heatmap and
the loss / accuracy curves as plain matplotlib figures, and
:mod:`~grownet.report.html` lays everything out as a self-contained page.
:func:`write_report` is what ``grownet report RUN`` calls.

See ``docs/report.md``.
"""

from __future__ import annotations

from pathlib import Path

from grownet.errors import UserError
from grownet.report.figures import (
    curves_figure,
    figure_png,
    support_heatmap_figure,
    width_timeline_figure,
)
from grownet.report.html import SECTIONS, build_report
from grownet.report.tables import (
    RunTables,
    format_compare,
    layer_epoch_matrix,
    read_compare,
    read_run,
    run_summary,
    width_timeline,
)

__all__ = ["SECTIONS", "RunTables", "build_report", "curves_figure", "figure_png",
           "format_compare", "layer_epoch_matrix", "make_report", "read_compare", "read_run",
           "run_summary", "support_heatmap_figure", "width_timeline", "width_timeline_figure",
           "write_report"]

#: where ``grownet compare`` puts its table by default, relative to the first run
COMPARE_DIR = "compare"


def make_report(run: str | Path, compare: str | Path | None = None) -> str:
    """The report page of a run, as HTML text.

    Parameters
    ----------
    run
        A run directory (finished, or in progress with at least one epoch logged).
    compare
        A directory holding ``compare.csv`` (and ``pareto.png``), or the CSV itself. By
        default ``RUN/compare/`` is used when it holds a ``compare.csv``.

    Returns
    -------
    str

    Raises
    ------
    UserError
        When ``run`` is not a usable run directory or ``compare`` has no valid table.
    """
    tables = read_run(run)
    if compare is None and (tables.path / COMPARE_DIR / "compare.csv").is_file():
        compare = tables.path / COMPARE_DIR
    return build_report(tables, read_compare(compare) if compare is not None else None)


def write_report(run: str | Path, out: str | Path | None = None,
                 compare: str | Path | None = None, force: bool = False) -> Path:
    """Build the report and write it atomically (a failure leaves any old file intact).

    Parameters
    ----------
    run, compare
        As in :func:`make_report`.
    out
        The HTML file (default ``RUN/report.html``, which a new report replaces); a
        directory gets ``report.html`` inside it. An ``out`` that exists is refused
        unless ``force``: nothing the report did not write is overwritten.
    force
        Replace an existing ``out``.

    Returns
    -------
    pathlib.Path
        Where the report went.
    """
    from grownet.atomic import atomic_write_text, refuse_existing

    if out is None:
        path = Path(run) / "report.html"
        if path.is_dir():
            raise UserError(f"{path} is a folder; pass --out FILE for the report")
    else:
        path = Path(out) / "report.html" if Path(out).is_dir() else Path(out)
        refuse_existing(path, force, "--out")
    text = make_report(run, compare)  # everything is built before anything is written
    return atomic_write_text(path, text)
