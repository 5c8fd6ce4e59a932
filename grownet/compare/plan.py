"""Which backbone jobs ``grownet compare`` runs, their configuration, and what it reuses.

The given runs (usually grow runs, one per seed) fix the data and the training
recipe. Every backbone job is one (preset, method, seed); its :class:`RunConfig` is
the first given run's configuration with ``command="train"``, the preset, the
method, the seed, the epoch budget and the device set, and the growth budgets
(``max_params``, ``max_macs``) cleared: they limit growth and would refuse a fixed
backbone larger than the budget.

Two backbone names are not presets but the plain alternatives a grown run must beat
(:mod:`grownet.compare.baselines`): ``uniform`` (each given grown run's start widened
uniformly to its final MACs) and ``random`` (its final architecture with the MACs
allocated at random), one job per grown run, with its seed, method, recipe and epochs.
Their specs are written to ``<out>/specs/`` (named by content) just before training.

A job is not trained again when a finished run with an equal resolved
configuration (``device`` and ``compile`` aside) exists among the given runs or at its place under
``<out>/backbones/``; an unfinished run there (a killed compare) is resumed.
Everything is checked before anything is trained or written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grownet.atomic import atomic_write_text
from grownet.compare import baselines
from grownet.compare.baselines import BASELINES
from grownet.compare.measure import check_finished
from grownet.cost import count
from grownet.errors import UserError
from grownet.runs import RunConfig, RunDir, load_spec
from grownet.runs.config import METHODS
from grownet.runs.rundir import MARKERS
from grownet.spec import PRESETS, ArchSpec, SpecError, preset

#: keys every given run must share: the same data (the batch size is each method's
#: recipe: a train run at 64 compares with a grow run at 128)
AGREE = ("data", "data_root", "augment")


#: how a run executed, not what it is: ignored when deciding whether a run can be reused
EXECUTION_KEYS = ("device", "compile")


def same_config(a: RunConfig, b: RunConfig) -> bool:
    """Equal resolved configurations, :data:`EXECUTION_KEYS` (where and how a run
    trained) aside."""
    return not config_differences(a, b, ignore=EXECUTION_KEYS)


def config_differences(a: RunConfig, b: RunConfig, ignore: Sequence[str] = ()) -> list[str]:
    """Keys whose values differ between ``a`` and ``b`` (minus ``ignore``)."""
    da, db = dataclasses.asdict(a), dataclasses.asdict(b)
    return [k for k in da if k not in ignore and da[k] != db[k]]


@dataclass(frozen=True)
class GivenRun:
    """A finished run named on the command line.

    Attributes
    ----------
    path
        Its directory (absolute).
    cfg
        Its resolved ``config.toml``.
    epochs
        Epochs it trained (rows of ``metrics.csv``).
    spec
        Its final architecture.
    """

    path: Path
    cfg: RunConfig
    epochs: int
    spec: ArchSpec

    @property
    def kind(self) -> str:
        """``grown`` for a grow run, ``backbone`` for a train run."""
        return "grown" if self.cfg.command == "grow" else "backbone"

    @property
    def model(self) -> str:
        """The table's model name: ``grown(<start preset>)`` or the trained preset."""
        if self.cfg.command == "grow":
            return f"grown({_arch_name(self.cfg.start)})"
        return _arch_name(self.cfg.arch)

    @property
    def method(self) -> str:
        """The optimizer: grow runs always train with DessiLBI."""
        return "dessilbi" if self.cfg.command == "grow" else self.cfg.method

    @property
    def seed(self) -> int:
        return self.cfg.seed


def _arch_name(name: str) -> str:
    return Path(name).name if name.endswith(".json") else name


def load_given(paths: Sequence[str | Path]) -> list[GivenRun]:
    """The given runs, checked: run directories, finished, on the same data.

    Raises
    ------
    UserError
        A path is not a run directory, a run has not finished (resume it), or two runs
        disagree on one of :data:`AGREE`.
    """
    if not paths:
        raise UserError("no runs given; pass one or more run directories "
                        "(e.g. grownet compare runs/grow-... --backbones lenet5)")
    runs: list[GivenRun] = []
    seen: set[Path] = set()
    for p in paths:
        run = RunDir.open(p)
        path = run.path.resolve()
        if path in seen:
            continue
        seen.add(path)
        if not run.finished:
            raise UserError(f"{p} has not finished (no {run.final_weights}); run "
                            f"'grownet resume {p}' first")
        check_finished(path)  # a damaged run stops the comparison before any training
        # a grow run may stop growing, hence train, fewer than its ``epochs``
        runs.append(GivenRun(path, run.config(), run.epochs_trained(),
                             load_spec(run.final_arch)))
    first = runs[0]
    for run in runs[1:]:
        for key in AGREE:
            a, b = getattr(first.cfg, key), getattr(run.cfg, key)
            if a != b:
                raise UserError(f"the runs disagree on {key}: {first.path} has {a!r}, "
                                f"{run.path} has {b!r}; compare runs trained on the same "
                                "data")
        if first.spec.in_shape != run.spec.in_shape or \
                first.spec.num_classes != run.spec.num_classes:
            raise UserError(f"the runs disagree on the input: {first.path} is for "
                            f"{first.spec.in_shape} / {first.spec.num_classes} classes, "
                            f"{run.path} for {run.spec.in_shape} / {run.spec.num_classes}; "
                            "compare runs trained on the same data")
    return runs


# ------------------------------------------------------------------ backbone jobs
@dataclass
class BackboneJob:
    """One fixed backbone to train (or reuse) for the comparison.

    Attributes
    ----------
    arch, method, seed
        What it is.
    cfg
        Its resolved configuration.
    path
        Its run directory: a given run (reused) or ``<out>/backbones/<name>``.
    action
        ``reused`` (finished run with an equal config), ``resumed`` (unfinished one
        under ``<out>/backbones``) or ``training``.
    note
        Why (printed after the action).
    """

    arch: str
    method: str
    seed: int
    cfg: RunConfig
    path: Path
    action: str
    note: str = ""
    spec: ArchSpec | None = None  # a baseline's spec, written to cfg.arch before training

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.method}-seed{self.seed}"


@dataclass
class Plan:
    """Backbone jobs and the budget they share."""

    jobs: list[BackboneJob]
    epochs: int
    seeds: list[int]
    out: Path


def parse_list(text: str | Sequence[str], what: str) -> list[str]:
    """``"a,b , c"`` → ``["a", "b", "c"]`` without repeats, in order."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if item and item not in out:
            out.append(item)
    if not out:
        raise UserError(f"no {what} given; pass a comma-separated list, e.g. "
                        f"--{what} {'lenet5,resnet20' if what == 'backbones' else 'sgd'}")
    return out


#: what a backbone shares with the given run: its data, where it ran (its batch size is
#: its recipe's: ``grownet train``'s default)
SHARED_KEYS = (*AGREE, *EXECUTION_KEYS)


def backbone_config(base: RunConfig, arch: str, method: str, seed: int, epochs: int,
                    device: str | None = None, own_recipe: bool = True) -> RunConfig:
    """A fixed-backbone train config on ``base``'s data (a given run's config): its
    data and validation split (the same training images), ``epochs`` and
    ``seed``. ``own_recipe``: the recipe ``grownet train`` gives every net (its
    defaults: initialisation, lr, schedule, ...), so a backbone trains with a recipe good
    for it, not with the grown run's; else (the grown run's own plain alternatives)
    the given run's recipe, resolved."""
    values: dict[str, object] = {"command": "train", "arch": arch, "method": method,
                                 "seed": seed, "epochs": epochs, "val_frac": base.validation}
    if device is not None:
        values["device"] = device
    if own_recipe:
        shared = {k: getattr(base, k) for k in SHARED_KEYS}
        made = RunConfig(command="train").updated({**shared, **values}, "grownet compare")
    else:  # growth settings limit growth only; a fixed net has none
        made = base.resolved().replace(growth={}).updated(values, "grownet compare")
    return made.resolved()  # as the run records it, so a finished one is found again


def make_plan(given: Sequence[GivenRun], backbones: Sequence[str], methods: Sequence[str],
              out: str | Path | None = None, epochs: int | None = None,
              seeds: int | None = None, device: str | None = None) -> Plan:
    """Check every input, then decide each backbone job's config and action.

    Parameters
    ----------
    given
        From :func:`load_given`.
    backbones, methods
        Preset names and training methods (one job per pair and seed).
    out
        The comparison's folder (default ``<first run>/compare``).
    epochs
        Epoch budget; default: the most epochs a given run trained.
    seeds
        Number of seeds starting at the smallest given seed; default: the given seeds.
    device
        Where to train (default: the first run's ``device``).

    Raises
    ------
    UserError
        Unknown preset or method, ``epochs`` / ``seeds`` < 1, a preset that does not fit
        the input, or a run in ``<out>/backbones`` that conflicts with its job.
    """
    backbones = parse_list(backbones, "backbones")
    methods = parse_list(methods, "methods")
    baselines = [b for b in backbones if b in BASELINES]
    backbones = [b for b in backbones if b not in BASELINES]
    for name in backbones:
        if name not in PRESETS:
            raise UserError(f"unknown backbone {name!r}; choose from {', '.join(PRESETS)}, "
                            f"or {' / '.join(BASELINES)} (the grown runs' plain alternatives)")
    if baselines and not any(r.kind == "grown" for r in given):
        raise UserError(f"--backbones {','.join(baselines)} needs a grow run among the runs "
                        "(they are built from its start and its final MACs)")
    for m in methods:
        if m not in METHODS:
            raise UserError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    if epochs is not None and epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {epochs}")
    if seeds is not None and seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    first = given[0]
    for name in backbones:  # presets adapt to the input; still, fail before training
        try:
            preset(name, in_shape=first.spec.in_shape, num_classes=first.spec.num_classes)
        except SpecError as err:
            raise UserError(f"backbone {name!r} does not fit the input "
                            f"{first.spec.in_shape}: {err}") from None
    budget = epochs if epochs is not None else max(r.epochs for r in given)
    if budget < 1:
        raise UserError(f"{first.path}/metrics.csv has no rows; pass --epochs N")
    seed_list = (sorted({r.seed for r in given}) if seeds is None
                 else list(range(min(r.seed for r in given),
                                 min(r.seed for r in given) + seeds)))
    out = Path(out) if out is not None else first.path / "compare"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder")
    if any((out / marker).is_file() for marker in MARKERS):
        raise UserError(f"--out {out} is a run directory; pass a folder of its own for the "
                        "comparison (default: <first RUN>/compare)")
    jobs = []
    for arch in backbones:
        for method in methods:
            for seed in seed_list:
                cfg = backbone_config(first.cfg, arch, method, seed, budget, device)
                jobs.append(_decide(cfg, given, out))
    jobs += [_decide_baseline(kind, run, out, device) for kind in baselines
             for run in given if run.kind == "grown"]
    from grownet.train.loop import resolve_device

    for job in jobs:  # e.g. cuda asked for on a machine without one: say so up front
        if job.action != "reused":
            resolve_device(job.cfg.device)
    return Plan(jobs, budget, seed_list, out)


def _decide_baseline(kind: str, run: GivenRun, out: Path, device: str | None) -> BackboneJob:
    """The ``uniform`` or ``random`` job of a grown run (see the module docstring)."""
    start = load_spec(RunDir(run.path).stage_arch(0))
    macs = count(run.spec).macs
    spec = (baselines.uniform(start, macs) if kind == "uniform" else
            baselines.random_allocation(run.spec, start, macs, run.seed))
    text = spec.to_json()
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    arch = out / "specs" / f"{kind}-seed{run.seed}-{digest}.json"
    cfg = backbone_config(run.cfg, str(arch.resolve()), run.method, run.seed, run.epochs,
                          device, own_recipe=False)
    name = f"{kind}({_arch_name(run.cfg.start)})"
    return _decide(cfg, [], out, name=name, folder=f"{kind}-{run.method}-seed{run.seed}",
                   spec=spec)


def _decide(cfg: RunConfig, given: Sequence[GivenRun], out: Path, name: str | None = None,
            folder: str | None = None, spec: ArchSpec | None = None) -> BackboneJob:
    folder = folder or f"{cfg.arch}-{cfg.method}-seed{cfg.seed}"
    job = BackboneJob(name or cfg.arch, cfg.method, cfg.seed, cfg,
                      out / "backbones" / folder, "training", spec=spec)
    for run in given:
        if same_config(run.cfg, cfg):
            job.path, job.action, job.note = run.path, "reused", "(a given run)"
            return job
    path = job.path
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return job
    fix = "choose another --out or delete it"
    existing = RunDir(path)
    if not existing.config_path.is_file():
        raise UserError(f"{path} exists but is not a grownet run; {fix}")
    have = existing.config()
    if not same_config(have, cfg):
        diff = ", ".join(config_differences(have, cfg, ignore=EXECUTION_KEYS))
        raise UserError(f"{path} holds a run with a different config ({diff}); {fix}")
    if existing.finished:
        check_finished(path)
        job.action, job.cfg = "reused", have
    else:  # a resume keeps the run's own device; with no checkpoint it starts again
        job.action, job.cfg = "resumed", have
        if not existing.has_checkpoint():
            job.note = "(from the start: killed before its first epoch ended)"
    return job


def run_plan(plan: Plan, verbose: bool = False,
             say: Callable[[str], None] = print) -> None:
    """Train or resume the jobs that need it; one line per job (reused / resumed /
    training). The jobs' own output is shown only when ``verbose``."""
    from grownet.train.job import TrainJob

    n = len(plan.jobs)
    for i, job in enumerate(plan.jobs, 1):
        say(f"[{i}/{n}] {job.name}: {job.action} {job.path}"
            + (f" {job.note}" if job.note else ""))
        if job.action == "reused":
            continue
        t0 = time.perf_counter()
        sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(
            io.StringIO())
        if job.spec is not None:  # a baseline: its spec is its --arch file
            atomic_write_text(job.cfg.arch, job.spec.to_json())
        with sink:
            if job.action == "resumed":
                result = TrainJob.resume(job.path, quiet=not verbose)
            else:
                result = TrainJob.start(job.cfg, job.path, quiet=not verbose)
        say(f"      test accuracy {result.test_acc * 100:.2f}%, "
            f"{time.perf_counter() - t0:.1f} s")
