"""One measurement per run, their aggregation over seeds, and ``compare.csv`` / ``.md``.

Per run: params and MACs of the final net (:func:`grownet.cost.count`), the median
latency of one forward pass at batch 1 and 64 on the CPU (and on the GPU when there
is one; and, when asked, of the net exported to ONNX under onnxruntime on the CPU,
:func:`grownet.deploy.onnx_latency`), the training compute of the whole run (the
last ``train_macs`` of ``metrics.csv``: every growth stage included) and the final
test accuracy (the ``test_acc`` stored in ``final/model.safetensors``). Runs of one
(model, method) are averaged; the accuracy's spread is the sample standard deviation
(ddof=1).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from grownet.cost import count, human, latency
from grownet.errors import UserError
from grownet.runs import RunDir, atomic_write_text, final_test_acc, load_final_model

BATCHES = (1, 64)


def columns(gpu: bool, ort: bool = False) -> list[str]:
    """``compare.csv``'s columns, in order (GPU latency only when ``gpu``, onnxruntime
    latency only when ``ort``)."""
    lat = [f"latency_cpu_b{b}_ms" for b in BATCHES]
    if gpu:
        lat += [f"latency_gpu_b{b}_ms" for b in BATCHES]
    if ort:
        lat += [f"latency_ort_cpu_b{b}_ms" for b in BATCHES]
    return ["model", "method", "kind", "seeds", "params", "macs", *lat, "train_macs",
            "acc_mean", "acc_std", "runs"]


def final_accuracy(run: str | Path) -> float:
    """The final evaluation's test accuracy (a fraction), from the ``test_acc`` metadata
    of ``final/model.safetensors``."""
    path = RunDir(run).final_weights
    if not path.is_file():
        raise UserError(f"{path} not found: the run has not finished; "
                        f"run 'grownet resume {run}' first")
    acc = final_test_acc(run)
    if acc is None:
        raise UserError(f"{path} has no test_acc in its metadata; train the run again "
                        "with this grownet")
    return acc


def last_train_macs(run: str | Path) -> float:
    """Training compute of the whole run in MACs: the last row's ``train_macs`` of
    ``metrics.csv`` (a running total over every epoch and growth stage)."""
    path = RunDir(run).metrics
    if not path.is_file():
        raise UserError(f"{path} not found; pass a run directory a training command wrote")
    table = RunDir(run).table("metrics.csv")  # checked: numbers where numbers belong
    if table is None:
        raise UserError(f"{path} has no rows; the run trained no epoch")
    if "train_macs" not in table.columns:
        raise UserError(f"{path} has no train_macs column; the run was made by an older "
                        "grownet: train it again")
    return float(table["train_macs"].iloc[-1])


def check_finished(run: str | Path) -> None:
    """Everything :func:`measure_run` reads, read once: the final model, its accuracy,
    ``metrics.csv`` (so that a damaged run stops a comparison before any training)."""
    load_final_model(run)
    final_accuracy(run)
    last_train_macs(run)


@dataclass(frozen=True)
class RunMeasure:
    """What :func:`measure_run` finds for one run."""

    path: Path
    model: str
    method: str
    kind: str
    seed: int
    params: int
    macs: int
    latency_ms: dict[str, float]  # column name -> ms
    train_macs: float
    acc: float


@dataclass
class LatencyCache:
    """Latency depends on the architecture, not the weights: time each spec once."""

    repeats: int = 20
    gpu: bool = field(default_factory=torch.cuda.is_available)
    ort: bool = False  # also time the net exported to ONNX, under onnxruntime (CPU)
    seen: dict[str, dict[str, float]] = field(default_factory=dict)

    def __call__(self, spec: Any, model: torch.nn.Module) -> dict[str, float]:
        key = spec.to_json(indent=None)
        if key not in self.seen:
            out = {}
            for device in ("cpu", "cuda") if self.gpu else ("cpu",):
                times = latency(model, spec.in_shape, BATCHES, device=device,
                                repeats=self.repeats)
                short = "gpu" if device == "cuda" else "cpu"
                out.update({f"latency_{short}_b{b}_ms": t * 1e3 for b, t in times.items()})
            model.to("cpu")
            if self.ort:
                from grownet.deploy import onnx_latency

                times = onnx_latency(model, spec.in_shape, BATCHES, repeats=self.repeats)
                out.update({f"latency_ort_cpu_b{b}_ms": t * 1e3 for b, t in times.items()})
            self.seen[key] = out
        return self.seen[key]


def measure_run(path: str | Path, model: str, method: str, kind: str, seed: int,
                timer: LatencyCache) -> RunMeasure:
    """Measure one finished run (see the module docstring)."""
    spec, net = load_final_model(path)
    cost = count(spec)
    return RunMeasure(Path(path), model, method, kind, seed, cost.params, cost.macs,
                      timer(spec, net), last_train_macs(path), final_accuracy(path))


def aggregate(measures: Sequence[RunMeasure], gpu: bool,
              ort: bool = False) -> list[dict[str, Any]]:
    """One row per (model, method), in first-seen order, with :func:`columns` as keys.

    ``params``, ``macs``, the latencies and ``train_macs`` are means over the group's
    runs (grown nets may differ per seed); ``acc_std`` is the sample standard deviation
    (NaN for one run).
    """
    groups: dict[tuple[str, str], list[RunMeasure]] = {}
    for m in measures:
        groups.setdefault((m.model, m.method), []).append(m)
    rows = []
    for (model, method), ms in groups.items():
        accs = [m.acc for m in ms]
        row: dict[str, Any] = {
            "model": model, "method": method, "kind": ms[0].kind, "seeds": len(ms),
            "params": round(statistics.fmean(m.params for m in ms)),
            "macs": round(statistics.fmean(m.macs for m in ms)),
        }
        for col in columns(gpu, ort):
            if col.startswith("latency_"):
                row[col] = statistics.fmean(m.latency_ms[col] for m in ms)
        row["train_macs"] = round(statistics.fmean(m.train_macs for m in ms))
        row["acc_mean"] = statistics.fmean(accs)
        row["acc_std"] = statistics.stdev(accs) if len(accs) > 1 else math.nan
        row["runs"] = ";".join(str(m.path) for m in ms)
        rows.append(row)
    return rows


# ------------------------------------------------------------------ files
def csv_text(rows: Sequence[dict[str, Any]], gpu: bool, ort: bool = False) -> str:
    """``compare.csv``: :func:`columns`, one line per row; NaN is written ``nan``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(gpu, ort), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def accuracy_text(mean: float, std: float) -> str:
    """``98.23 ± 0.06 %`` (``98.23 %`` for a single run)."""
    if math.isnan(std):
        return f"{mean * 100:.2f} %"
    return f"{mean * 100:.2f} ± {std * 100:.2f} %"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   right: Sequence[bool]) -> str:
    """A GitHub markdown table, padded so that it also reads as plain text."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w)
                                 for c, w, r in zip(cells, widths, right)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                          for w, r in zip(widths, right)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def markdown(rows: Sequence[dict[str, Any]], gpu: bool, notes: Sequence[str] = (),
             ort: bool = False) -> str:
    """``compare.md``: a title, the table, then ``notes`` (data, epochs, seeds,
    command) and how each column was measured."""
    header = ["model", "method", "seeds", "params", "MACs", "CPU b1 (ms)", "CPU b64 (ms)"]
    if gpu:
        header += ["GPU b1 (ms)", "GPU b64 (ms)"]
    if ort:
        header += ["ORT b1 (ms)", "ORT b64 (ms)"]
    header += ["train compute (MACs)", "test accuracy"]
    body = []
    for r in rows:
        cells = [r["model"], r["method"], str(r["seeds"]), human(r["params"]),
                 human(r["macs"])]
        cells += [f"{r[c]:.3f}" for c in columns(gpu, ort) if c.startswith("latency_")]
        cells += [human(r["train_macs"]), accuracy_text(r["acc_mean"], r["acc_std"])]
        body.append(cells)
    right = [False, False] + [True] * (len(header) - 2)
    lines = ["# grownet compare", "", markdown_table(header, body, right), ""]
    lines += [f"- {n}" for n in notes]
    lines += [
        "- params: weights, biases, BatchNorm affine; MACs: one forward pass of one sample "
        "(conv and linear layers); both of the final net, averaged over seeds.",
        f"- latency: median wall-clock time of one forward pass (batch 1 / 64, eval mode) "
        f"on the CPU with {torch.get_num_threads()} torch thread(s)"
        + (" and on the GPU" if gpu else "") + ".",
        *(["- ORT: the same net exported to ONNX (torch.onnx.export) and run by onnxruntime "
           f"on the CPU with {torch.get_num_threads()} intra-op thread(s), timed alike."]
          if ort else []),
        "- train compute: 3 × MACs × samples summed over every training epoch, all "
        "growth stages and fine-tuning included (evaluation excluded); mean over seeds.",
        "- test accuracy: the final evaluation, mean ± sample standard deviation over "
        "seeds.",
    ]
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[dict[str, Any]], out: Path, gpu: bool,
                 notes: Sequence[str] = (), ort: bool = False) -> tuple[Path, Path, str]:
    """Write ``compare.csv`` and ``compare.md`` atomically; returns their paths and the
    markdown text."""
    md = markdown(rows, gpu, notes, ort)
    csv_path = atomic_write_text(out / "compare.csv", csv_text(rows, gpu, ort))
    md_path = atomic_write_text(out / "compare.md", md)
    return csv_path, md_path, md
