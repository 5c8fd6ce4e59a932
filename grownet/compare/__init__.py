"""``grownet compare``: grown nets against fixed backbones trained on the same data.

:func:`compare` checks the given runs and every option, trains (or reuses, or
resumes) one fixed-backbone run per (preset, method, seed) with the given runs'
data split, recipe and epoch budget (:mod:`~grownet.compare.plan`), measures every
run (:mod:`~grownet.compare.measure`) and writes ``compare.csv``, ``compare.md``
and ``pareto.png`` (:mod:`~grownet.compare.pareto`) into its folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grownet.atomic import write_error
from grownet.compare.measure import (
    LatencyCache,
    RunMeasure,
    aggregate,
    columns,
    final_accuracy,
    measure_run,
    write_tables,
)
from grownet.compare.pareto import StagePoint, pareto_figure, pareto_front, stage_path
from grownet.compare.plan import (
    EXECUTION_KEYS,
    BackboneJob,
    GivenRun,
    Plan,
    config_differences,
    load_given,
    make_plan,
    run_plan,
)
from grownet.runs import RunConfig, RunDir
from grownet.runs.lock import DirLock

LATENCY_BACKENDS = ("torch", "onnxruntime")


@dataclass
class CompareResult:
    """What :func:`compare` wrote and found."""

    out: Path
    plan: Plan
    rows: list[dict[str, Any]]
    measures: list[RunMeasure]
    markdown: str
    files: dict[str, Path]


def compare(runs: Sequence[str | Path], backbones: str | Sequence[str],
            methods: str | Sequence[str] = ("sgd",), epochs: int | None = None,
            seeds: int | None = None, out: str | Path | None = None,
            device: str | None = None, latency_repeats: int = 20, verbose: bool = False,
            command: str = "", say: Callable[[str], None] = print,
            latency: str = "torch") -> CompareResult:
    """Compare ``runs`` with fixed ``backbones`` trained on the same data and budget.

    Parameters
    ----------
    runs
        Finished run directories (grow runs, possibly several seeds; train runs too).
    backbones, methods
        Presets and methods (``sgd``, ``dessilbi``, ``dst``), lists or comma-separated.
    epochs
        Backbone epochs (default: the most epochs a given run trained).
    seeds
        Backbone seeds: this many from the smallest given seed (default: the given
        runs' seeds).
    out
        Folder of the results (default ``<first run>/compare``); backbone runs go to
        ``<out>/backbones/<arch>-<method>-seed<S>``.
    device
        Where backbones train (default: the first run's ``device``).
    latency_repeats
        Timed forwards per latency measurement.
    latency
        ``"torch"``: eager PyTorch (CPU, and GPU when there is one); ``"onnxruntime"``:
        also each net exported to ONNX and run by onnxruntime on the CPU (needs the
        ``export`` extra).
    verbose
        Show the backbone jobs' per-epoch output.
    command
        The command line, recorded in ``compare.md``.
    say
        Where progress lines go.

    Returns
    -------
    CompareResult

    Raises
    ------
    UserError
        Any bad input, before anything is trained or written.
    """
    from grownet.errors import UserError

    if latency_repeats < 1:
        raise UserError(f"--latency-repeats must be >= 1, got {latency_repeats}")
    if latency not in LATENCY_BACKENDS:
        raise UserError(f"unknown --latency {latency!r}; use torch or onnxruntime")
    if latency == "onnxruntime":
        from grownet.deploy import require_onnx

        require_onnx("--latency onnxruntime")
    given = load_given(runs)
    plan = make_plan(given, backbones, methods, out=out, epochs=epochs, seeds=seeds,
                     device=device)
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(plan.out, err, "choose a writable --out DIR") from None
    lock = DirLock(plan.out).acquire("comparison folder")  # one compare per folder
    try:
        timer = LatencyCache(repeats=latency_repeats, ort=latency == "onnxruntime")
        return _compare(given, plan, timer, verbose, command, say)
    finally:
        lock.release()


def _compare(given: Sequence[GivenRun], plan: Plan, timer: LatencyCache, verbose: bool,
             command: str, say: Callable[[str], None]) -> CompareResult:
    run_plan(plan, verbose=verbose, say=say)
    todo: list[tuple[Path, str, str, str, int, RunConfig]] = []
    seen: set[Path] = set()
    for g in given:
        seen.add(g.path)
        todo.append((g.path, g.model, g.method, g.kind, g.seed, g.cfg))
    for job in plan.jobs:
        if job.path.resolve() not in seen:
            seen.add(job.path.resolve())
            kind = "backbone" if job.spec is None else "baseline"  # uniform / random
            todo.append((job.path.resolve(), job.arch, job.method, kind, job.seed,
                         RunDir(job.path).config()))
    say(f"measuring {len(todo)} runs (latency: median of {timer.repeats} forwards)")
    measures = [measure_run(p, model, method, kind, seed, timer)
                for p, model, method, kind, seed, _ in todo]
    rows = aggregate(measures, timer.gpu, timer.ort)

    first = given[0].cfg
    notes = [f"data: {first.data}" + (f" (root {first.data_root})" if first.data_root
                                       else "")
             + f"; backbones trained {plan.epochs} epochs on "
             + ("seeds " if len(plan.seeds) > 1 else "seed ")
             + ", ".join(map(str, plan.seeds))
             + "; given runs: " + ", ".join(str(g.path) for g in given)]
    notes += _mixed_configs(todo)
    if command:
        notes.append(f"command: `{command}`")
    csv_path, md_path, md = write_tables(rows, plan.out, timer.gpu, notes, timer.ort)

    grown_paths: dict[str, Path] = {}
    for m in sorted((m for m in measures if m.kind == "grown"), key=lambda m: m.seed):
        grown_paths.setdefault(m.model, m.path)  # the smallest seed's run
    title = (f"{first.data}, backbones {plan.epochs} epochs, "
             f"seed{'s' if len(plan.seeds) > 1 else ''} {', '.join(map(str, plan.seeds))}")
    png = pareto_figure(rows, grown_paths, plan.out / "pareto.png", title=title)
    return CompareResult(plan.out, plan, rows, measures, md,
                         {"csv": csv_path, "md": md_path, "png": png})


def _mixed_configs(todo: Sequence[tuple[Path, str, str, str, int, RunConfig]]) -> list[str]:
    """A note per (model, method) whose runs differ in more than seed and device."""
    groups: dict[tuple[str, str], list[RunConfig]] = {}
    for _, model, method, _, _, cfg in todo:
        groups.setdefault((model, method), []).append(cfg)
    notes = []
    for (model, method), cfgs in groups.items():
        keys = sorted({k for c in cfgs[1:] for k in
                       config_differences(cfgs[0], c, ignore=("seed", *EXECUTION_KEYS))})
        if keys:
            notes.append(f"note: the {model} / {method} runs differ in {', '.join(keys)} "
                         "besides the seed")
    return notes


__all__ = ["BackboneJob", "CompareResult", "GivenRun", "LatencyCache", "Plan", "RunMeasure",
           "StagePoint", "aggregate", "columns", "compare", "final_accuracy", "load_given",
           "make_plan", "measure_run", "pareto_figure", "pareto_front", "run_plan",
           "stage_path"]
