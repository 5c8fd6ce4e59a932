"""The grow job behind ``grownet grow``: the training job plus growth.

Where growth happens, in order, after every epoch of the ``grow`` phase:

1. the :class:`~grownet.grow.Grower` checks (when a stage's epochs are done) and
   decides from Γ's support, which it reads through the run's
   :class:`~grownet.path.SupportTracker`;
2. on a growth step the job logs the stage that ends (``layers.csv``, its graph with
   the support it ended with), takes the new model and optimizer, carries each
   parameter's initial value (``init/``, for lottery tickets) and starts the next stage
   (``stages/NNN/``);
3. on a stop it switches to the ``finetune`` phase for every epoch left: a run trains
   ``--epochs`` in all, and what growth does not use goes to fine-tuning (at least the
   policy's ``finetune_epochs``, which shrink to half the run when it is short).

Everything else (the epoch loop, checkpoints, resume, the finish) is
:class:`~grownet.train.job.TrainJob`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grownet.errors import UserError
from grownet.grow.controller import Grower, GrowthEvent
from grownet.grow.initial import carry_initial
from grownet.grow.policy import GrowthPolicy
from grownet.runs import RunConfig, RunDir
from grownet.runs.config import Names
from grownet.train.job import TrainJob
from grownet.train.loop import EpochResult
from grownet.train.methods import EpochLog
from grownet.train.result import JobResult


class GrowJob(TrainJob):
    """One run of ``grownet grow``; ``policy`` defaults to ``cfg.growth``'s, ``names``
    says where its settings were set (flags as typed, or a config file) for messages."""

    command = "grow"

    def __init__(self, cfg: RunConfig, *args: Any, policy: GrowthPolicy | None = None,
                 names: str | Names | None = None, **kwargs: Any) -> None:
        self.names = {k: names for k in cfg.growth} if isinstance(names, str) else names
        self.policy = (policy if policy is not None else
                       GrowthPolicy.from_config(cfg.growth, self.names))
        finetune = self.policy.finetune(cfg.epochs)
        if finetune >= cfg.epochs:
            raise UserError(f"{self.policy.describe('finetune_epochs', self.names)} leaves no "
                            f"epoch to grow in {cfg.describe('epochs', self.names)}; pass a "
                            "smaller --finetune-epochs (or leave it out: it shrinks to fit)")
        # growth may use the epochs that the fine-tuning reserve leaves
        cap = cfg.epochs - finetune
        self.growth_epochs = min(self.policy.max_epochs or cap, cap)
        super().__init__(cfg, *args, **kwargs)
        self._check_start()

    # ------------------------------------------------------------- the hooks
    @property
    def start_name(self) -> str:
        return self.cfg.start

    @property
    def first_phase(self) -> str:
        return "grow"

    @property
    def stage(self) -> int:
        return self.grower.stage

    def resolved_config(self) -> RunConfig:
        return recorded_config(self.cfg, self.policy)

    def on_start(self) -> None:
        pass  # the grow phase ends at a stop decision, not after a number of epochs

    def wire(self, optimizer: Any) -> None:
        super().wire(optimizer)
        share = self.dist.broadcast if self.dist.enabled else None  # rank 0's decision
        policy = self.policy.replace(max_epochs=self.growth_epochs)
        self.grower = Grower(self.spec, self.model, optimizer, policy, tracker=self.tracker,
                             optimizer_factory=self.make_optimizer,
                             decider=self.dist.is_main, share=share)

    def after_epoch(self, log: EpochLog, val: EpochResult | None) -> None:
        if self.pos.phase != "grow":
            return
        event = self.grower.step(self.pos.epoch - 1, score=None if val is None else val.acc)
        if event is None:
            return
        if event.kind == "grow":
            self._grown(event, log.ratios)
        else:
            self._stopped(event)

    def extra_state(self) -> dict[str, Any]:
        return {"grower": self.grower.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.grower.load_state_dict(state["grower"])


    # --------------------------------------------------------------- growth
    def _check_start(self) -> None:
        """Settings the start must fit: budgets above its cost, ``max_width`` at least
        its widest layer (else growth could only ignore them)."""
        c, pol, spec = self.cost, self.policy, self.spec
        for key, have in (("max_params", c.params), ("max_macs", c.macs)):
            budget = getattr(pol, key)
            if budget is not None and have > budget:
                raise UserError(f"{pol.describe(key, self.names)} is smaller than the start "
                                f"{spec.name!r} ({have:,}); raise it or start smaller")
        widths = {s.id: s.out_ch for s in spec.shapes() if s.role != "head"}
        layer = max(widths, key=widths.get, default=None)
        if layer is not None and widths[layer] > pol.max_width:
            raise UserError(f"{pol.describe('max_width', self.names)} is narrower than the "
                            f"start {spec.name!r} ({layer} has {widths[layer]} filters); "
                            f"pass --max-width {widths[layer]} or more, or start narrower")

    @classmethod
    def resume_kwargs(cls, run: RunDir) -> dict[str, Any]:
        return {"names": str(run.config_path)}  # a bad setting is a key of that file

    def _grown(self, event: GrowthEvent, ratios: dict[str, float]) -> None:
        """The stage that ends is logged; the next one starts from the event's net."""
        pos, ended = self.pos, event.stage - 1
        self.write_layers(ratios, epoch=pos.epoch - 1, stage=ended)
        self.run.save_stage_weights(self.spec, self.model)  # what the last row evaluated
        # the tracker follows the new net already; its history has the ended stage's
        self.run.save_stage_graph(ended, self.spec, self.tracker.support_at(pos.epoch - 1))
        self.run.log_event(event.to_dict())
        self.initial = carry_initial(self.initial, event.model, event.change)
        self.spec, self.model = event.spec, self.runtime.place(event.model)
        self.optimizer = event.optimizer
        # a new DDP wrapper (and compiled graph) for the new parameters: the old
        # wrapper's hooks and buckets belong to tensors that no longer train
        self.net = self.runtime.net(self.model)
        self.run.save_stage(self.stage, self.spec)
        if self.observer:
            self.observer.figures(pos.epoch - 1)
        self.say(f"     grow → stage {self.stage}: {event.reason}")

    def _stopped(self, event: GrowthEvent) -> None:
        pos = self.pos
        self.run.log_event(event.to_dict())
        pos.phase, pos.phase_start = "finetune", pos.epoch
        pos.phase_epochs = self.cfg.epochs - pos.epoch  # every epoch growth left
        self.say(f"     stop growing: {event.reason}; fine-tune {pos.phase_epochs} epochs")


def job_for(cfg: RunConfig) -> type[TrainJob]:
    """The job class of a configuration's command (``grow`` or ``train``)."""
    return GrowJob if cfg.command == "grow" else TrainJob


def recorded_config(cfg: RunConfig, policy: GrowthPolicy | None = None) -> RunConfig:
    """The configuration a run of ``cfg`` writes to its ``config.toml``: resolved, with
    its growth policy in full (a fixed net has none); compare a finished run's
    :meth:`RunDir.config` with it to know whether the run is ``cfg``'s."""
    if cfg.command != "grow":
        return cfg.resolved().replace(growth={})
    policy = policy if policy is not None else GrowthPolicy.from_config(cfg.growth)
    return cfg.resolved().replace(growth=policy.to_config())


def start_job(cfg: RunConfig, out: str | Path | None, **kwargs: Any) -> JobResult:
    """Run ``cfg``'s command (grow or train) in a new run directory ``out`` (see
    :meth:`TrainJob.start <grownet.train.job.TrainJob.start>` for the keywords)."""
    return job_for(cfg).start(cfg, out, **kwargs)


def resume_job(path: str | Path, **kwargs: Any) -> JobResult:
    """Continue the (grow or train) run in ``path`` from its last checkpoint."""
    return job_for(RunDir.open(path).config()).resume(path, **kwargs)


__all__ = ["GrowJob", "job_for", "recorded_config", "resume_job", "start_job"]
