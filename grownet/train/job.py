"""The training jobs behind ``grownet grow`` and ``grownet train``, with resume.

A job is a position (epoch, step, phase) plus the things that move: spec, model,
optimizer, tracker, grower. After every epoch the whole position goes into
``checkpoints/last.pt`` (atomically), so ``grownet resume`` continues a killed run
where its last finished epoch left it and ends exactly as an uninterrupted run would
(on CPU).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from grownet import dst
from grownet.cost import count, training_compute
from grownet.data import Dataset, load_dataset, make_loaders
from grownet.dist import DistContext, context_from_env
from grownet.errors import UserError
from grownet.grow import Grower, GrowthPolicy
from grownet.nets import build
from grownet.optim import DessiLBI, lam_for_entry, lbi_param_groups
from grownet.path import SupportTracker
from grownet.report.tensorboard import TensorBoardLog, require_tensorboard
from grownet.runs import RunConfig, RunDir
from grownet.spec import ArchSpec
from grownet.train.dst_finish import slim_at_finish
from grownet.train.initial import carry_initial, initial_parameters
from grownet.train.loop import (
    evaluate,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    train_epoch,
)
from grownet.train.position import Position, start_spec
from grownet.train.result import JobResult, summary
from grownet.train.runtime import Runtime
from grownet.train.schedule import lr_at, warmed_up


class Job:
    """One run of ``grow`` or ``train`` (see the module docstring)."""

    def __init__(self, cfg: RunConfig, run: RunDir | None = None, quiet: bool = False,
                 dataset: Dataset | None = None,
                 weights: dict[str, torch.Tensor] | None = None,
                 dist: DistContext | None = None):
        self.cfg = cfg.validate()
        self.dist = dist or DistContext(device=resolve_device(cfg.device))
        self.quiet = quiet or not self.dist.is_main  # rank 0 alone prints
        self.device = self.dist.device
        self.runtime = Runtime(self.dist, compile=cfg.compile)
        self.data = dataset or load_dataset(cfg.data, root=cfg.data_root or None,
                                            seed=cfg.seed)
        if cfg.augment != "auto":
            self.data = dataclasses.replace(self.data, augment=cfg.augment)
        self.train_loader, self.test_loader = make_loaders(
            self.data, cfg.batch_size, self.device, cfg.seed, rank=self.dist.rank,
            world_size=self.dist.world_size)
        self.spec = start_spec(cfg.start if cfg.command == "grow" else cfg.arch, self.data)
        self.weights = weights  # start from these instead of a fresh init (prune retraining)
        self._check_budgets()
        if cfg.tensorboard:
            require_tensorboard()  # before anything is written
        self.tb: TensorBoardLog | None = None
        self.run = run
        self.pos = Position(phase="grow" if cfg.command == "grow" else "train")

    # ------------------------------------------------------------------ set-up
    def _check_budgets(self) -> None:
        c = count(self.spec)
        self.cfg.check_start(self.spec, c.params, c.macs)

    def _policy(self) -> GrowthPolicy:
        cfg = self.cfg
        return GrowthPolicy(
            tau=cfg.tau, epochs_per_stage=cfg.epochs_per_stage, grow_num=cfg.grow_num,
            grow_ratio=cfg.grow_ratio, depth=cfg.depth, depth_patience=cfg.depth_patience,
            max_width=cfg.max_width, max_params=cfg.max_params or None,
            max_macs=cfg.max_macs or None, max_stages=cfg.max_stages,
            max_epochs=cfg.epochs - cfg.finetune, carry_state=cfg.carry_state,
            init=cfg.widen_init)

    def _optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        cfg = self.cfg
        if cfg.command == "train" and cfg.method == "sgd":
            return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        if cfg.command == "train" and cfg.method == "dst":  # thresholds train with W (B5)
            return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        return DessiLBI(lbi_param_groups(model), lr=cfg.lr, kappa=cfg.kappa,
                        nu=cfg.nu, lam=self.pos.lam, momentum=cfg.momentum,
                        weight_decay=cfg.weight_decay)

    def _start(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        # DST's thresholds start at 0 against PyTorch's default init (ALGORITHMS B4); the
        # growth example's N(0, 0.01) linears would be masked away at once.
        self.model = build(self.spec, init="default" if self.dst else "kaiming")
        if self.weights is not None:
            self.model.load_state_dict(self.weights)
        self.initial = initial_parameters(self.model)
        self._convert_dst()
        self.runtime.place(self.model)
        # Paced for a filter of norm 1, not the init's typical norm: a wide net's small
        # init would otherwise get a tiny λ, and every filter would enter at once.
        self.pos.lam = cfg.lam or lam_for_entry(cfg.entry_epochs, len(self.train_loader),
                                                cfg.lr, cfg.nu, typical_norm=1.0)
        self._wire(self._optimizer(self.model))
        if self.pos.phase == "train":
            self.pos.phase_epochs = cfg.epochs

    @property
    def dst(self) -> bool:
        return self.cfg.command == "train" and self.cfg.method == "dst"

    def _convert_dst(self) -> None:
        if self.dst:
            dst.convert(self.model)

    def _extra_loss(self):
        if not self.dst:
            return None
        alpha = self.cfg.alpha
        return lambda model: dst.sparsity_loss(model, alpha)

    def _wire(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.net = self.runtime.net(self.model)
        lbi = isinstance(optimizer, DessiLBI)
        self.tracker = SupportTracker(optimizer) if lbi else None
        share = self.dist.broadcast if self.dist.enabled else None  # rank 0's decision
        self.grower = (Grower(self.spec, self.model, optimizer, self._policy(),
                              optimizer_factory=self._optimizer,
                              decider=self.dist.is_main, share=share)
                       if self.cfg.command == "grow" else None)

    # ---------------------------------------------------------------- the loop
    def run_all(self) -> JobResult:
        """Train to the end, writing the run directory as it goes."""
        resumed = hasattr(self, "model")
        if not resumed:
            self._start()
            self.run.write_config(self.cfg.to_toml())
            self._save_stage(0)
        if self.cfg.tensorboard and self.dist.is_main:
            self.tb = TensorBoardLog(self.run.path, self.pos.epoch if resumed else None)
        while not self._finished():
            self._epoch()
        return self._finish()

    def _finished(self) -> bool:
        p = self.pos
        return p.phase != "grow" and p.epoch >= p.phase_start + p.phase_epochs

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
                         extra_loss=self._extra_loss(),
                         after_step=set_lr if pos.step < warmup_steps else None,
                         runtime=self.runtime)
        te = evaluate(self.model, self.test_loader, self.device, runtime=self.runtime)
        pos.wall += time.perf_counter() - t0
        pos.step += len(self.train_loader)
        cost = count(self.spec)
        pos.train_macs += training_compute(cost.macs, tr.samples)
        ratios = self.tracker.ratios() if self.tracker else {}
        if self.tracker:
            self.tracker.end_epoch(pos.epoch)
        stage = self.grower.stage if self.grower else 0
        widths = self.spec.widths()
        for layer, ratio in ratios.items():  # the Γ path, epoch by epoch (report heatmap)
            self.run.append_row("support.csv", {
                "stage": stage, "epoch": pos.epoch,
                "layer": layer, "width": widths[layer],
                "selected": round(ratio * widths[layer]), "ratio": round(ratio, 6)})
        if self.dst:  # DST: the keep ratio plays the selection ratio's part
            ratios = dst.keep_ratios(self.model)
            for layer, keep in ratios.items():
                self.run.append_row("keep.csv", {"epoch": pos.epoch, "layer": layer,
                                                 "keep_ratio": round(keep, 6)})
        row = {"stage": stage, "epoch": pos.epoch, "step": pos.step, "phase": pos.phase,
               "lr": lr, "train_loss": tr.loss, "train_acc": tr.acc, "test_loss": te.loss,
               "test_acc": te.acc, "params": cost.params, "macs": cost.macs,
               "mean_ratio": sum(ratios.values()) / len(ratios) if ratios else 0.0,
               "sparsity": dst.overall_sparsity(self.model) if self.dst else 0.0,
               "train_macs": pos.train_macs, "time_s": round(pos.wall, 3)}
        self.run.append_row("metrics.csv", row)
        if self.tb:
            self.tb.scalars(row)
        self._say(f"{pos.epoch + 1:>4} {stage:>5} {pos.phase:<8} {lr:8.4f} {tr.loss:8.4f} "
                  f"{te.acc * 100:7.2f} {cost.params:>9,} {row['mean_ratio']:6.2f}",
                  header=pos.epoch == 0)
        pos.epoch += 1
        if pos.phase == "grow":
            self._grow_check(ratios)
        self._checkpoint()

    def _grow_check(self, ratios: dict[str, float]) -> None:
        pos = self.pos
        event = self.grower.step(pos.epoch - 1)
        if event is None:
            return
        if event.kind == "grow":  # the stage that ends: one row per layer
            self._write_layers(ratios, epoch=pos.epoch - 1, stage=event.stage - 1)
        record = event.to_dict()
        self.run.log_event(record)
        if event.kind == "grow":
            self.initial = carry_initial(self.initial, self.spec, event.spec, event.model)
            self.spec, self.model = event.spec, self.runtime.place(event.model)
            self.optimizer = event.optimizer
            # a new DDP wrapper (and compiled graph) for the new parameters: the old
            # wrapper's hooks and buckets belong to tensors that no longer train
            self.net = self.runtime.net(self.model)
            # one tracker for the whole run: entry steps/epochs and the per-epoch support
            # history follow the filters through the channel maps of the growth step
            self.tracker.rebind(self.optimizer, keep={
                k: torch.tensor(v) for k, v in self.grower.last_change.out_maps.items()
                if k in self.tracker.layers})
            self._save_stage(self.grower.stage)
            if self.tb:
                self.tb.figures(pos.epoch - 1)
            self._say(f"     grow → stage {self.grower.stage}: {event.reason}")
        else:
            pos.phase, pos.phase_start = "finetune", pos.epoch
            pos.phase_epochs = self.cfg.finetune
            self._say(f"     stop growing: {event.reason}; fine-tune "
                      f"{pos.phase_epochs} epochs")

    def _write_layers(self, ratios: dict[str, float], epoch: int,
                      stage: int | None = None) -> None:
        if stage is None:
            stage = self.grower.stage if self.grower else 0
        table = count(self.spec).to_frame().set_index("layer")
        for layer_id, width in self.spec.widths().items():
            ratio = ratios.get(layer_id)
            self.run.append_row("layers.csv", {
                "stage": stage, "epoch": epoch, "layer": layer_id, "width": width,
                "selected": "" if ratio is None else round(ratio * width),
                "ratio": "" if ratio is None else round(ratio, 4),
                "params": int(table.loc[layer_id, "params"]),
                "macs": int(table.loc[layer_id, "macs"])})

    def _save_stage(self, stage: int) -> None:
        self.run.save_stage(stage, self.spec)

    # ------------------------------------------------------------- checkpoint
    def _checkpoint(self) -> None:
        if not self.dist.is_main:  # every rank holds the same state; rank 0 writes it
            return
        state = {
            "spec": self.spec.to_json(indent=None),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "tracker": self.tracker.state_dict() if self.tracker else {},
            "grower": self.grower.state_dict() if self.grower else {},
            "position": self.pos.as_dict(),
            "initial": self.initial,
            "rng": rng_state(),
        }
        self.run.save_checkpoint(state)

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`_checkpoint`."""
        try:
            self.spec = ArchSpec.from_json(state["spec"])
            self.pos = Position(**state["position"])
            self.model = build(self.spec)
            self._convert_dst()
            self.runtime.place(self.model)
            self.model.load_state_dict(state["model"])
            self.initial = state["initial"]
            self._wire(self._optimizer(self.model))
            self.optimizer.load_state_dict(state["optimizer"])
            if self.tracker:
                self.tracker.load_state_dict(state["tracker"])
            if self.grower:
                self.grower.load_state_dict(state["grower"])
            set_rng_state(state["rng"])
        except (KeyError, TypeError, RuntimeError, ValueError) as err:
            raise UserError(f"checkpoint of {self.run.path} does not match this grownet "
                            f"({type(err).__name__}: {err}); start the run again") from None

    # ------------------------------------------------------------------ finish
    def _finish(self) -> JobResult:
        if self.dst:
            self._slim_dst()
        te = evaluate(self.model, self.test_loader, self.device, runtime=self.runtime)
        ratios = self.tracker.ratios() if self.tracker else {}
        # epoch = epochs done: a resume cuts these rows if the finish was interrupted
        self._write_layers(ratios, epoch=self.pos.epoch)
        if self.initial:  # before final/: the final model is the mark of a finished run
            self.run.save_initial(self.spec, self.initial)
        self.run.save_final(self.spec, self.model, extra={"test_acc": f"{te.acc:.6f}"})
        if self.tb:
            self.tb.figures(self.pos.epoch - 1)
            self.tb.close()
        self.dist.barrier()  # rank 0's files are complete before any rank returns
        cost = count(self.spec)
        result = JobResult(self.run, self.spec, te.acc, cost.params, cost.macs,
                           self.pos.epoch, self.run.events(), model=self.model)
        if self.dist.is_main:  # the summary is printed even when quiet
            print(summary(result, cost), flush=True)
        return result

    def _slim_dst(self) -> None:
        """Remove fully masked filters physically; report what sparsity remains."""
        self.spec, self.model, event, text = slim_at_finish(self.spec, self.model.eval(),
                                                            self.pos.epoch)
        self.run.log_event(event)
        self._say(text)
        self.initial = {}  # the slimmed net has no initialisation of its own

    def _say(self, text: str, header: bool = False) -> None:
        if self.quiet:
            return
        if header:
            print("epoch stage phase          lr     loss  test%    params  ratio")
        print(text, flush=True)


def start_job(cfg: RunConfig, out: str | Path | None, quiet: bool = False,
              dataset: Dataset | None = None,
              weights: dict[str, torch.Tensor] | None = None) -> JobResult:
    """Validate everything (data, presets, budgets) before writing anything, then run.

    ``weights`` (a state dict of the start architecture) replaces the fresh init."""
    ctx = context_from_env(resolve_device(cfg.validate().device))
    run = None
    try:
        job = Job(cfg, quiet=quiet, dataset=dataset, weights=weights, dist=ctx)
        job.run = run = _writer(ctx, lambda: RunDir.create(out, cfg.command))
        return job.run_all()
    except UserError:
        if run is not None:
            run.discard()  # a run that failed before its first checkpoint leaves nothing
        raise
    finally:
        if run is not None:
            run.release()
        ctx.close()


def _writer(ctx: DistContext, make: Callable[[], RunDir]) -> RunDir:
    """Rank 0 makes the (locked) run directory; the others learn its path and never
    write. A refusal on rank 0 stops every rank."""
    if not ctx.enabled:
        return make()
    made: RunDir | UserError | None = None
    if ctx.is_main:
        try:
            made = make()
        except UserError as err:  # every rank must stop, not wait for a broadcast
            made = err
    shared = ctx.broadcast(made.path if isinstance(made, RunDir) else made)
    if isinstance(shared, UserError):
        raise shared
    return made if ctx.is_main else RunDir.follower(shared)


def resume_job(path: str | Path, quiet: bool = False) -> JobResult:
    """Continue a stopped or killed run from its checkpoint (from the start when it was
    killed before its first one; its finish when only that was left undone)."""
    cfg = RunDir.open(path).config()
    ctx = context_from_env(resolve_device(cfg.device))
    run = None
    try:
        run = _writer(ctx, lambda: RunDir.open_to_resume(path))
        state = run.resume_point()
        job = Job(cfg, run=run, quiet=quiet, dist=ctx)
        if state is not None:
            job.restore(state)
        return job.run_all()
    finally:
        if run is not None:
            run.release()
        ctx.close()
