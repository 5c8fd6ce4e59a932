"""The training job behind ``grownet train`` (and the base of the grow job), with resume.

A job is a position (epoch, step, phase) plus the things that move: spec, model,
optimizer, tracker. Every epoch runs the same loop (:func:`~grownet.train.loop.train_epoch`,
evaluation, the method's per-epoch log); after it the whole position goes into
``checkpoints/last.pt`` (atomically), so ``grownet resume`` continues a killed run where
its last finished epoch left it and ends exactly as an uninterrupted run would (on CPU).
What differs between SGD, DessiLBI and DST is the method object
(:mod:`grownet.train.methods`); what growth adds is :class:`grownet.grow.GrowJob`,
which overrides the hooks marked below.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from grownet.cost import ComputeMeter, CostTable, count
from grownet.data import Dataset, load_dataset, make_loaders, make_val_loader
from grownet.dist import DistContext, context_from_env
from grownet.errors import UserError
from grownet.nets import build, parameters_of
from grownet.runs import RunConfig, RunDir
from grownet.spec import ArchSpec
from grownet.train.loop import (
    EpochResult,
    evaluate,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    train_epoch,
)
from grownet.train.methods import SGD, EpochLog, method_for
from grownet.train.position import Position, start_spec
from grownet.train.result import JobResult, summary
from grownet.train.runtime import Runtime, writer
from grownet.train.schedule import lr_at, warmed_up


class Observer(Protocol):
    """Something that watches a run as it trains (``--tensorboard``'s logger)."""

    def scalars(self, row: dict[str, Any]) -> None: ...
    def figures(self, epoch: int) -> None: ...
    def close(self) -> None: ...


#: ``(run directory, first epoch trained again on resume or None) -> Observer``
ObserverFactory = Callable[[Path, "int | None"], Observer]


def tensorboard_for(cfg: RunConfig) -> ObserverFactory | None:
    """``cfg.tensorboard``'s logger, checked to be installed before anything is written.
    Imported only when asked for: the report room draws what it logs."""
    if not cfg.tensorboard:
        return None
    from grownet.report.tensorboard import TensorBoardLog, require_tensorboard

    require_tensorboard()
    return TensorBoardLog


class TrainJob:
    """One run of ``grownet train`` (see the module docstring).

    Parameters
    ----------
    cfg
        The resolved configuration (checked when it was built).
    run
        The run directory (:meth:`start` creates it).
    quiet
        Print only the summary.
    dataset
        Use this dataset instead of loading ``cfg.data``.
    weights
        A state dict of the start architecture that replaces the fresh init (prune
        retraining).
    dist
        The data-parallel context (default: one process on ``cfg.device``).
    observer
        Made when the run starts; sees every metrics row. Default: the TensorBoard log
        when ``cfg.tensorboard`` (:func:`tensorboard_for`), else none.
    """

    command = "train"

    def __init__(self, cfg: RunConfig, run: RunDir | None = None, quiet: bool = False,
                 dataset: Dataset | None = None,
                 weights: dict[str, torch.Tensor] | None = None,
                 dist: DistContext | None = None,
                 observer: ObserverFactory | None = None) -> None:
        self.cfg = cfg
        self.method: SGD = method_for(cfg)
        self.dist = dist or DistContext(device=resolve_device(cfg.device))
        self.quiet = quiet or not self.dist.is_main  # rank 0 alone prints
        self.device = self.dist.device
        self.runtime = Runtime(self.dist, compile=cfg.compile)
        self.data = dataset or load_dataset(cfg.data, root=cfg.data_root or None,
                                            seed=cfg.seed)
        if cfg.augment != "auto":
            self.data = dataclasses.replace(self.data, augment=cfg.augment)
        # decisions read a split of the training images; the test split only reports
        self.data = self.data.hold_out(cfg.validation)
        self.train_loader, self.test_loader = make_loaders(
            self.data, cfg.batch, self.device, cfg.seed, rank=self.dist.rank,
            world_size=self.dist.world_size)
        self.val_loader = make_val_loader(self.data, cfg.batch, self.device,
                                          rank=self.dist.rank, world_size=self.dist.world_size)
        self.spec = start_spec(self.start_name, self.data)
        cfg.check_start(self.spec)
        self.weights = weights
        self.observer_factory = observer if observer is not None else tensorboard_for(cfg)
        self.observer: Observer | None = None
        self.run = run
        self.pos = Position(phase=self.first_phase)
        self.compute = ComputeMeter()
        self._cost: tuple[ArchSpec, CostTable] | None = None

    # ------------------------------------------------------- hooks (GrowJob)
    @property
    def start_name(self) -> str:
        """The preset (or arch.json) the run starts from."""
        return self.cfg.arch

    @property
    def first_phase(self) -> str:
        return "train"

    @property
    def stage(self) -> int:
        """The architecture stage (growth steps so far; 0 for a fixed net)."""
        return 0

    def resolved_config(self) -> RunConfig:
        """The configuration written to ``config.toml`` (a fixed net has no growth
        settings, even when its ``--config`` came from a grow run); the validation split
        it held out is written as a number, so a run derived from this file keeps it."""
        return self.cfg.resolved().replace(growth={})

    def on_start(self) -> None:
        """After the model and optimizer exist, before the first epoch."""
        self.pos.phase_epochs = self.cfg.epochs

    def after_epoch(self, log: EpochLog, val: EpochResult | None) -> None:
        """After an epoch's rows are written, before its checkpoint; ``val`` is the
        epoch's validation result (``None`` without a validation split)."""

    def finished(self) -> bool:
        p = self.pos
        return p.phase != "grow" and p.epoch >= p.phase_start + p.phase_epochs

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # ------------------------------------------------------------------ set-up
    @property
    def cost(self) -> CostTable:
        """Params and MACs of the current spec (counted when the spec changes)."""
        if self._cost is None or self._cost[0] is not self.spec:
            self._cost = (self.spec, count(self.spec))
        return self._cost[1]

    def _start(self) -> None:
        seed_everything(self.cfg.seed)
        self.model = build(self.spec, init=self.method.init)
        if self.weights is not None:
            self.model.load_state_dict(self.weights)
        self.initial = parameters_of(self.model)
        self.method.prepare(self.model)
        self.runtime.place(self.model)
        self.pos.lam = self.method.lam(len(self.train_loader))
        self.wire(self.make_optimizer(self.model))
        self.on_start()

    def make_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        return self.method.optimizer(model, len(self.train_loader), self.pos.lam)

    def wire(self, optimizer: torch.optim.Optimizer) -> None:
        """Take ``optimizer`` (and its tracker) for the current model."""
        self.optimizer = optimizer
        self.net = self.runtime.net(self.model)
        self.tracker = self.method.tracker(optimizer)

    # ---------------------------------------------------------------- the loop
    def run_all(self) -> JobResult:
        """Train to the end, writing the run directory as it goes."""
        resumed = hasattr(self, "model")
        if not resumed:
            self._start()
            self.run.write_config(self.resolved_config().to_toml())
            self.run.save_stage(0, self.spec)
        if self.observer_factory is not None and self.dist.is_main:
            self.observer = self.observer_factory(self.run.path,
                                                  self.pos.epoch if resumed else None)
        while not self.finished():
            self._epoch()
        return self._finish()

    def _epoch(self) -> None:
        cfg, pos = self.cfg, self.pos
        lr = lr_at(cfg, pos.phase, pos.epoch, pos.phase_start, pos.phase_epochs)
        warmup_steps = round(cfg.warmup * len(self.train_loader))
        step = pos.step

        def set_lr() -> None:  # per step while warming up; once per epoch after that
            nonlocal step
            for group in self.optimizer.param_groups:
                group["lr"] = warmed_up(lr, step, warmup_steps)
            step += 1

        set_lr()
        self.train_loader.set_epoch(pos.epoch)
        t0 = time.perf_counter()
        tr = train_epoch(self.net, self.train_loader, self.optimizer, self.device,
                         desc=f"epoch {pos.epoch + 1}" if self.dist.is_main else None,
                         extra_loss=self.method.extra_loss(),
                         after_step=set_lr if pos.step < warmup_steps else None,
                         runtime=self.runtime)
        va = self.validate()
        te = evaluate(self.model, self.test_loader, self.device, runtime=self.runtime)
        pos.wall += time.perf_counter() - t0
        pos.step += len(self.train_loader)
        self.compute.add(self.cost.macs, tr.samples)
        log = self.method.epoch_log(self.model, self.spec, self.tracker, self.stage,
                                    pos.epoch)
        if self.tracker is not None:
            self.tracker.end_epoch(pos.epoch)
        for row in log.rows:  # the method's per-layer path (support.csv / keep.csv)
            self.run.append_row(log.table, row)
        row = {"stage": self.stage, "epoch": pos.epoch, "step": pos.step, "phase": pos.phase,
               "lr": lr, "train_loss": tr.loss, "train_acc": tr.acc,
               # a run without a validation split has no val_* columns
               **({} if va is None else {"val_loss": va.loss, "val_acc": va.acc}),
               "test_loss": te.loss, "test_acc": te.acc,
               "params": self.cost.params, "macs": self.cost.macs,
               **log.columns, "train_macs": self.compute.total, "time_s": round(pos.wall, 3)}
        self.run.append_row("metrics.csv", row)
        self.method.epoch_end(self.run, row, self.spec, self.model)
        if self.observer:
            self.observer.scalars(row)
        self.say(f"{pos.epoch + 1:>4} {self.stage:>5} {pos.phase:<8} {lr:8.4f} "
                 f"{tr.loss:8.4f} {te.acc * 100:7.2f} {self.cost.params:>9,} "
                 f"{row['mean_ratio']:6.2f} {row['keep'] * 100:6.2f}", header=pos.epoch == 0)
        pos.epoch += 1
        self.after_epoch(log, va)
        self._checkpoint()

    def validate(self) -> EpochResult | None:
        """Loss and accuracy on the validation split (``None`` without one)."""
        if self.val_loader is None:
            return None
        return evaluate(self.model, self.val_loader, self.device, runtime=self.runtime)

    def write_layers(self, ratios: dict[str, float], epoch: int,
                     stage: int | None = None) -> None:
        """One ``layers.csv`` row per layer of the current spec."""
        stage = self.stage if stage is None else stage
        for layer, cost in zip(self.spec.shapes(), self.cost, strict=True):
            ratio = ratios.get(layer.id)
            self.run.append_row("layers.csv", {
                "stage": stage, "epoch": epoch, "layer": layer.id, "width": layer.out_ch,
                "selected": "" if ratio is None else round(ratio * layer.out_ch),
                "ratio": "" if ratio is None else round(ratio, 4),
                "params": cost.params, "macs": cost.macs})

    # ------------------------------------------------------------- checkpoint
    def _checkpoint(self) -> None:
        if not self.dist.is_main:  # every rank holds the same state; rank 0 writes it
            return
        self.run.save_checkpoint({
            "spec": self.spec.to_json(indent=None),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "tracker": self.tracker.state_dict() if self.tracker else {},
            "position": self.pos.as_dict(),
            "compute": self.compute.state_dict(),
            "initial": self.initial,
            "rng": rng_state(),
            "method": self.method.state_dict(),
            **self.extra_state(),
        })

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`_checkpoint`."""
        try:
            self.spec = ArchSpec.from_json(state["spec"])
            self.pos = Position(**state["position"])
            self.compute.load_state_dict(state["compute"])
            self.model = self.method.prepare(build(self.spec))
            self.runtime.place(self.model)
            self.model.load_state_dict(state["model"])
            self.initial = state["initial"]
            self.wire(self.make_optimizer(self.model))
            self.optimizer.load_state_dict(state["optimizer"])
            if self.tracker:
                self.tracker.load_state_dict(state["tracker"])
            self.method.load_state_dict(state.get("method", {}))
            self.load_extra_state(state)
            set_rng_state(state["rng"])
        except (KeyError, TypeError, RuntimeError, ValueError) as err:
            raise UserError(f"checkpoint of {self.run.path} does not match this grownet "
                            f"({type(err).__name__}: {err}); start the run again") from None

    # ------------------------------------------------------------------ finish
    def _finish(self) -> JobResult:
        # the last stage as it ended (before DST slims it): its weights, as the last
        # metrics row evaluated them, and its graph with the support it ended with
        self.run.save_stage_weights(self.spec, self.model)
        support = self.tracker.support() if self.tracker is not None else None
        self.run.save_stage_graph(self.stage, self.spec, support)
        done = self.method.finish(self.spec, self.model, self.pos.epoch)
        if done is not None:
            self.spec, self.model = done.spec, done.model
            self.run.log_event(done.event)
            self.say(done.message)
            self.initial = {}  # the slimmed net has no initialisation of its own
        te = evaluate(self.model, self.test_loader, self.device, runtime=self.runtime)
        # epoch = epochs done: a resume cuts these rows if the finish was interrupted
        self.write_layers(self.tracker.ratios() if self.tracker else {}, epoch=self.pos.epoch)
        if self.initial:  # before final/: the final model is the mark of a finished run
            self.run.save_initial(self.spec, self.initial)
        self.run.save_final(self.spec, self.model, extra={"test_acc": f"{te.acc:.6f}"})
        if self.observer:
            self.observer.figures(self.pos.epoch - 1)
            self.observer.close()
        self.dist.barrier()  # rank 0's files are complete before any rank returns
        result = JobResult(self.run, self.spec, te.acc, self.cost.params, self.cost.macs,
                           self.pos.epoch, self.run.events(), model=self.model)
        if self.dist.is_main:  # the summary is printed even when quiet
            print(summary(result, self.cost), flush=True)
        return result

    def say(self, text: str, header: bool = False) -> None:
        if self.quiet:
            return
        if header:
            print("epoch stage phase          lr     loss  test%    params  ratio  keep%")
        print(text, flush=True)

    # ------------------------------------------------------------- entry points
    @classmethod
    def start(cls, cfg: RunConfig, out: str | Path | None, *, quiet: bool = False,
              dataset: Dataset | None = None, weights: dict[str, torch.Tensor] | None = None,
              observer: ObserverFactory | None = None, **kwargs: Any) -> JobResult:
        """Check everything (data, presets, budgets) before writing anything, then run
        in a new run directory ``out``. ``weights`` (a state dict of the start
        architecture) replaces the fresh init."""
        ctx = context_from_env(resolve_device(cfg.device))
        run = None
        try:
            job = cls(cfg, quiet=quiet, dataset=dataset, weights=weights, dist=ctx,
                      observer=observer, **kwargs)
            job.run = run = writer(ctx, lambda: RunDir.create(out, cfg.command))
            return job.run_all()
        except UserError:
            if run is not None:
                run.discard()  # a run that failed before its first checkpoint leaves nothing
            raise
        finally:
            if run is not None:
                run.release()
            ctx.close()

    @classmethod
    def resume(cls, path: str | Path, *, quiet: bool = False,
               observer: ObserverFactory | None = None) -> JobResult:
        """Continue a stopped or killed run from its checkpoint (from the start when it
        was killed before its first one; its finish when only that was left undone)."""
        opened = RunDir.open(path)
        cfg = opened.config()
        ctx = context_from_env(resolve_device(cfg.device))
        run = None
        try:
            # every check (the growth settings too) before the run is locked and cut back
            job = cls(cfg, quiet=quiet, dist=ctx, observer=observer,
                      **cls.resume_kwargs(opened))
            job.run = run = writer(ctx, lambda: RunDir.open_to_resume(path))
            state = run.resume_point()
            if state is not None:
                job.restore(state)
            return job.run_all()
        finally:
            if run is not None:
                run.release()
            ctx.close()

    @classmethod
    def resume_kwargs(cls, run: RunDir) -> dict[str, Any]:
        """What a resumed job of this kind needs besides the config (GrowJob: where its
        growth settings come from)."""
        return {}
