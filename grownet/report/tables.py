"""A run directory read into pandas: the tables the report (and a notebook) works from.

:func:`read_run` loads everything a run has written so far; :func:`width_timeline`,
:func:`layer_epoch_matrix` and :func:`run_summary` turn it into the frames the
figures and the HTML page show; :func:`read_compare` and :func:`format_compare` read
the table ``grownet compare`` writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from grownet.compare.measure import accuracy_text, columns
from grownet.errors import UserError
from grownet.runs import RunDir, final_test_acc, load_spec
from grownet.runs.config import read_toml
from grownet.spec import ArchSpec

__all__ = ["COMPARE_COLUMNS", "RunTables", "format_compare", "human_seconds",
           "layer_epoch_matrix", "read_compare", "read_run", "run_summary",
           "width_timeline"]

#: the columns ``compare.csv`` must have (GPU latency columns are optional)
COMPARE_COLUMNS = tuple(c for c in columns(gpu=False) if c != "runs")


@dataclass
class RunTables:
    """Everything a run directory holds, as data.

    Attributes
    ----------
    path
        The run directory.
    config
        ``config.toml`` as a dict.
    metrics
        ``metrics.csv``: one row per finished epoch (at least one row).
    layers, support, keep
        ``layers.csv`` / ``support.csv`` (DessiLBI) / ``keep.csv`` (DST), or ``None``
        when the run has not written that file.
    events
        The records of ``events.jsonl``, in order.
    stages
        ``(stage number, ArchSpec)`` of every ``stages/NNN/arch.json``.
    final_spec
        ``final/arch.json``, or ``None`` while the run is in progress.
    final_test_acc
        ``test_acc`` from ``final/model.safetensors``'s metadata, when there.
    """

    path: Path
    config: dict[str, Any]
    metrics: pd.DataFrame
    layers: pd.DataFrame | None = None
    support: pd.DataFrame | None = None
    keep: pd.DataFrame | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    stages: list[tuple[int, ArchSpec]] = field(default_factory=list)
    final_spec: ArchSpec | None = None
    final_test_acc: float | None = None

    @property
    def finished(self) -> bool:
        """Whether the run had completed when it was read (its final spec was read)."""
        return self.final_spec is not None

    @property
    def last_spec(self) -> ArchSpec | None:
        """The final spec, else the latest stage's (a run in progress)."""
        if self.final_spec is not None:
            return self.final_spec
        return self.stages[-1][1] if self.stages else None


def _read_csv(path: Path) -> pd.DataFrame | None:
    """A CSV that is not one of a run's tables (``compare.csv``)."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{path} cannot be read ({type(err).__name__}); the file is "
                        "damaged: write it again with 'grownet compare'") from None
    return frame if len(frame) else None


def read_run(path: str | Path) -> RunTables:
    """Read a run directory (finished or still in progress).

    Parameters
    ----------
    path
        A directory a training command wrote.

    Returns
    -------
    RunTables

    Raises
    ------
    UserError
        When ``path`` is not a run directory or has no finished epoch yet.
    """
    run = RunDir.open(path)
    path = run.path
    config = read_toml(run.config_path)
    test_acc = final_test_acc(path)  # first: a damaged final model is reported as such
    metrics = run.table("metrics.csv")
    if metrics is None:
        raise UserError(f"{path} has no finished epoch yet (metrics.csv is missing or "
                        "empty); wait for the first epoch to finish, then run the report")
    final_arch = run.final_arch
    return RunTables(
        path=path, config=config, metrics=metrics, layers=run.table("layers.csv"),
        support=run.table("support.csv"), keep=run.table("keep.csv"),
        events=run.events(), stages=run.stage_specs(),
        final_spec=load_spec(final_arch) if run.finished else None,
        final_test_acc=test_acc)


# ------------------------------------------------------------------ timelines
def width_timeline(metrics: pd.DataFrame, stages: list[tuple[int, ArchSpec]]) -> pd.DataFrame:
    """The width of every layer at every epoch.

    Each epoch's widths are those of the stage it trained in (``metrics.csv``'s
    ``stage`` column), read from that stage's spec.

    Parameters
    ----------
    metrics
        ``metrics.csv`` (columns ``epoch`` and ``stage``).
    stages
        ``(stage, spec)`` pairs, as :meth:`RunDir.stage_specs` returns them.

    Returns
    -------
    pandas.DataFrame
        Index ``epoch``; one nullable-int column per layer id, in forward order of
        first appearance; ``<NA>`` where the layer does not exist yet (deepening) or the
        stage's spec is missing.
    """
    widths = {stage: spec.widths() for stage, spec in stages}
    columns: list[str] = []
    for _, spec in stages:
        # a layer inserted by deepening goes right after its predecessor in that spec
        order = list(spec.widths())
        for i, lid in enumerate(order):
            if lid not in columns:
                prev = next((p for p in reversed(order[:i]) if p in columns), None)
                columns.insert(columns.index(prev) + 1 if prev else 0, lid)
    rows = {}
    for epoch, stage in zip(metrics["epoch"], metrics["stage"], strict=False):
        w = widths.get(int(stage), {})
        rows[int(epoch)] = [w.get(lid) for lid in columns]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns, dtype="Int64")
    frame.index.name = "epoch"
    return frame.sort_index()


def layer_epoch_matrix(frame: pd.DataFrame, value: str,
                       order: list[str] | None = None) -> pd.DataFrame:
    """A long per-(epoch, layer) table as a layers × epochs matrix.

    Parameters
    ----------
    frame
        ``support.csv`` (``value="ratio"``) or ``keep.csv`` (``value="keep_ratio"``).
    value
        The column that fills the matrix.
    order
        Layer ids in the order the rows should take; by default the order of first
        appearance in ``frame`` (forward order, as the run writes them).

    Returns
    -------
    pandas.DataFrame
        Index ``layer``, one column per epoch, NaN where a layer did not exist.
    """
    matrix = frame.pivot_table(index="layer", columns="epoch", values=value, aggfunc="last")
    first_seen = list(dict.fromkeys(frame["layer"]))
    rows = [lid for lid in (order or []) if lid in matrix.index]
    rows += [lid for lid in first_seen if lid not in rows]
    matrix = matrix.reindex(rows)
    matrix.columns = [int(c) for c in matrix.columns]
    matrix.columns.name = "epoch"
    return matrix


# ------------------------------------------------------------------ summary
def human_seconds(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 07 s`` or ``12.3 s``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.3g} s"


def run_summary(run: RunTables) -> dict[str, str]:
    """The run at a glance, as ``{label: text}`` in display order.

    Parameters
    ----------
    run
        From :func:`read_run`.

    Returns
    -------
    dict
        Status, command, start/architecture, method, data, seed, epochs, stages, final
        widths, params, MACs, test accuracy, training compute and wall time.
    """
    from grownet.cost import count, human

    cfg, last = run.config, run.metrics.iloc[-1]
    command = str(cfg.get("command", "?"))
    out: dict[str, str] = {}
    out["status"] = "finished" if run.finished else "in progress (no final/ yet)"
    out["command"] = f"grownet {command}  (re-run: grownet {command} --config " \
                     f"{RunDir(run.path).config_path})"
    if command == "grow":
        out["start"] = str(cfg.get("start", "?"))
    else:
        out["architecture"] = str(cfg.get("arch", "?"))
    out["method"] = str(cfg.get("method", "?"))
    out["data"] = str(cfg.get("data", "?"))
    out["seed"] = str(cfg.get("seed", "?"))
    planned = cfg.get("epochs")
    done = len(run.metrics)
    out["epochs done"] = f"{done} of {planned}" if planned else str(done)
    n_grow = sum(1 for e in run.events if e.get("kind") == "grow")
    out["stages"] = f"{len(run.stages)} ({n_grow} growth events)"
    spec = run.last_spec
    if spec is not None:
        label = "" if run.finished else " (latest stage)"
        out["final widths" + label] = ", ".join(f"{k}={v}" for k, v in spec.widths().items())
        cost = count(spec)
        out["params" + label] = f"{cost.params:,} ({human(cost.params)})"
        out["MACs / sample" + label] = f"{cost.macs:,} ({human(cost.macs)})"
    if run.final_test_acc is not None:
        out["final test accuracy"] = f"{100 * run.final_test_acc:.2f} %"
    elif "test_acc" in run.metrics:
        out["test accuracy (last epoch)"] = f"{100 * float(last['test_acc']):.2f} %"
    if "train_macs" in run.metrics:
        tm = float(last["train_macs"])
        out["training compute"] = f"{human(tm)} MACs ({human(2 * tm)} FLOPs)"
    if "time_s" in run.metrics:
        out["wall time"] = human_seconds(float(last["time_s"]))
    return out


# ------------------------------------------------------------------ comparison
def read_compare(where: str | Path) -> tuple[pd.DataFrame, Path | None]:
    """The table ``grownet compare`` wrote, and its Pareto figure.

    Parameters
    ----------
    where
        The comparison directory (holding ``compare.csv``, ``pareto.png``) or the
        ``compare.csv`` file itself.

    Returns
    -------
    (pandas.DataFrame, pathlib.Path or None)
        ``compare.csv`` and the path of ``pareto.png`` (``None`` when absent).

    Raises
    ------
    UserError
        When there is no ``compare.csv``, or it lacks a required column.
    """
    where = Path(where)
    csv = where if where.is_file() else where / "compare.csv"
    if not csv.is_file():
        raise UserError(f"{csv} not found; pass --compare the directory 'grownet compare' "
                        "wrote (it holds compare.csv)")
    table = _read_csv(csv)
    if table is None:
        raise UserError(f"{csv} has no rows; run 'grownet compare' again")
    missing = [c for c in COMPARE_COLUMNS if c not in table.columns]
    if missing:
        raise UserError(f"{csv} lacks the columns {', '.join(missing)}; it was not written "
                        "by 'grownet compare' — run it again")
    pareto = csv.parent / "pareto.png"
    return table, pareto if pareto.is_file() else None


def _ms(value: Any) -> str:
    return "–" if _missing(value) else f"{float(value):.3g}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def format_compare(table: pd.DataFrame) -> pd.DataFrame:
    """``compare.csv`` formatted for reading: accuracy as percent mean ± std, params
    and MACs with k/M/G suffixes, latencies in ms.

    Parameters
    ----------
    table
        From :func:`read_compare`.

    Returns
    -------
    pandas.DataFrame
        Display strings, one row per model, ``runs`` left out.
    """
    from grownet.cost import human

    def acc(row: pd.Series) -> str:
        mean, std = row["acc_mean"], row["acc_std"]
        if _missing(mean):
            return "–"
        return accuracy_text(float(mean), math.nan if _missing(std) else float(std))

    def count_text(value: Any) -> str:
        return "–" if _missing(value) else human(float(value))

    out = pd.DataFrame({
        "model": table["model"].astype(str), "method": table["method"].astype(str),
        "kind": table["kind"].astype(str), "seeds": table["seeds"].astype(str),
        "accuracy": table.apply(acc, axis=1),
        "params": table["params"].map(count_text), "MACs": table["macs"].map(count_text),
        "CPU b1 ms": table["latency_cpu_b1_ms"].map(_ms),
        "CPU b64 ms": table["latency_cpu_b64_ms"].map(_ms),
    })
    for col, label in (("latency_gpu_b1_ms", "GPU b1 ms"), ("latency_gpu_b64_ms", "GPU b64 ms"),
                       ("latency_ort_cpu_b1_ms", "ORT b1 ms"),
                       ("latency_ort_cpu_b64_ms", "ORT b64 ms")):
        if col in table.columns and not table[col].isna().all():
            out[label] = table[col].map(_ms)
    out["train MACs"] = table["train_macs"].map(count_text)
    return out
