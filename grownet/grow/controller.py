"""`Grower`: reads Γ's support at checks, decides with the policy, and calls surgery.

Growth as named steps (collect → propose → budget → apply):

* ``collect``: each growable unit judged from Γ's support among its filters that had
  the time to enter (one host sync, through the support tracker);
* ``propose``: widen saturated units, deepen stages that stay saturated
  (:mod:`grownet.grow.propose`), most filters per MAC first;
* ``budget``: within the check's MAC allowance and ``max_params``/``max_macs``, clipped
  or skipped;
* ``apply``: build the new spec, transplant weights and (by default) optimizer state.

A check that proposes nothing waits, or stops growth (the policy's stop rules: Γ, the
validation score, the budgets).

The first three make a :class:`Decision` (plain data, nothing changed yet); ``apply``
enacts it. Under data parallelism only rank 0 decides, the decision is broadcast, and
every rank enacts the same one (``decider`` and ``share`` of :class:`Grower`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from grownet import surgery
from grownet.cost import count
from grownet.grow.policy import GrowthPolicy
from grownet.grow.propose import (
    Judged,
    Proposal,
    Unit,
    depth_candidates,
    growable_units,
    saturated,
    widen_candidates,
)
from grownet.path import SupportTracker
from grownet.spec import ArchSpec


@dataclass
class GrowthEvent:
    """What one check decided. ``kind`` is ``"grow"`` (a new spec/model/optimizer) or
    ``"stop"`` (growth is over; the same model goes on to fine-tuning). A growth event
    carries the :class:`~grownet.surgery.Change` it made, which a
    :class:`~grownet.path.SupportTracker` follows (:meth:`SupportTracker.follow`)."""

    epoch: int
    kind: str
    reason: str
    spec: ArchSpec
    model: nn.Module
    optimizer: torch.optim.Optimizer
    changes: list[dict[str, Any]] = field(default_factory=list)
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    stage: int = 0
    change: surgery.Change | None = None  # grow: which channel continues which

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for ``events.jsonl`` (no tensors)."""
        return {"epoch": self.epoch, "kind": self.kind, "reason": self.reason,
                "stage": self.stage, "changes": self.changes, "before": self.before,
                "after": self.after}


@dataclass
class Decision:
    """What a check decided, before anything changed: picklable (it is what rank 0
    broadcasts), so it holds the new spec and records, never modules or tensors."""

    epoch: int
    kind: str  # "grow" | "stop" | "wait"
    reason: str
    changes: list[dict[str, Any]]
    before: dict[str, int]
    streak: dict[str, int]  # the depth rule's counters after this check
    spec: ArchSpec | None = None  # the new spec (grow)
    calm: int = 0  # consecutive checks with no layer saturated, this one included
    flat: int = 0  # consecutive checks whose score did not beat the best by min_gain
    best: float | None = None  # the best score of any check so far
    next_check: int = -1  # wait: the epoch whose end is the next check (-1: the cadence)


def default_optimizer_factory(template: torch.optim.Optimizer
                              ) -> Callable[[nn.Module], torch.optim.Optimizer]:
    """A factory that builds an optimizer like ``template`` (class, hyperparameters,
    current lr) for a new model, with the growth parameter groups."""
    from grownet.optim import lbi_param_groups

    defaults = dict(template.defaults)
    defaults["lr"] = template.param_groups[0]["lr"]

    def factory(model: nn.Module) -> torch.optim.Optimizer:
        return type(template)(lbi_param_groups(model), **defaults)

    return factory


class Grower:
    """Grows ``model`` during the user's own training loop.

    Call :meth:`step` after every epoch; it returns ``None`` between checks, else a
    :class:`GrowthEvent` whose ``model``/``optimizer`` replace the old ones.

    Γ is read through ``tracker`` (a :class:`~grownet.path.SupportTracker` of
    ``optimizer``; one is made when none is given): pass the tracker your loop keeps,
    and it follows every growth step itself, with its entry history.
    """

    def __init__(self, spec: ArchSpec, model: nn.Module, optimizer: torch.optim.Optimizer,
                 policy: GrowthPolicy | None = None, *,
                 tracker: SupportTracker | None = None,
                 optimizer_factory: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
                 decider: bool = True,
                 share: Callable[[Decision | None], Decision] | None = None) -> None:
        self.spec, self.model, self.optimizer = spec, model, optimizer
        # the one reader of Γ; it follows every growth step (entry history carried)
        self.tracker = tracker if tracker is not None else SupportTracker(optimizer)
        # data parallel: only the decider reads Γ and decides; ``share`` hands its
        # decision to every rank (a broadcast from rank 0)
        self.decider, self.share = decider, share
        self.policy = policy or GrowthPolicy()
        self.optimizer_factory = optimizer_factory or default_optimizer_factory(optimizer)
        self.stage = 0  # growth steps taken so far (stage 0 is the start)
        self.stage_start = 0  # first epoch of the current stage
        self.done = False
        self.stop_reason = ""
        self.streak: dict[str, int] = {}  # consecutive fully-saturated checks per stage
        self.last_check = -1  # epoch of the last check
        self.next_check = -1  # an extra check when waited-for filters mature
        self.calm = 0  # consecutive checks with no layer saturated
        self.flat = 0  # consecutive checks without a better validation score
        self.best: float | None = None  # the best validation score at a check
        self.window: float | None = None  # the best score since the last check

    # ----------------------------------------------------------------- collect
    def judge(self) -> dict[str, Judged]:
        """Every growable unit judged from the support among filters that had their time
        (``policy.mature_epochs``); one host sync."""
        census = self.tracker.census(self.policy.mature_epochs)
        return {u.id: Judged.of(u, census) for u in growable_units(self.spec)}

    # ----------------------------------------------------------------- the step
    def step(self, epoch: int, score: float | None = None) -> GrowthEvent | None:
        """Check (when due) and grow; see the policy's rules. ``score`` is this epoch's
        validation accuracy (``None``: Γ and budgets alone): a check compares the best
        score of the epochs since the previous check with the best of earlier ones (one
        epoch's accuracy at a constant lr is too noisy to compare)."""
        if score is not None:
            self.window = score if self.window is None else max(self.window, score)
        if self.done or not self.due(epoch):
            return None
        decision = self.decide(epoch, self.window) if self.decider else None
        if self.share is not None:
            decision = self.share(decision)
        if decision is None:
            raise RuntimeError("Grower: no decision; a non-deciding grower needs share=")
        return self.apply(decision)

    def due(self, epoch: int) -> bool:
        """Whether the end of ``epoch`` is a check: ``epochs_per_stage`` epochs after the
        stage started or after the previous check, when the young filters a check waited
        for have matured, or at the growth epoch budget."""
        since = max(self.stage_start, self.last_check + 1)
        return (epoch + 1 - since >= self.policy.epochs_per_stage
                or 0 <= self.next_check <= epoch or self._at_epoch_budget(epoch))

    def _at_epoch_budget(self, epoch: int) -> bool:
        return self.policy.max_epochs is not None and epoch + 1 >= self.policy.max_epochs

    def decide(self, epoch: int, score: float | None = None) -> Decision:
        """Collect, propose and budget: what :meth:`apply` would do now (nothing changes)."""
        pol = self.policy
        judged = self.judge()
        units = growable_units(self.spec)
        full = saturated(units, judged, pol)
        pending = [u.id for u in units if judged[u.id].pending]
        # Γ: no unit saturated, and none waits on young filters, at consecutive checks
        calm = 0 if full or pending else self.calm + 1
        best, flat = self.best, self.flat
        if score is not None:
            flat = 0 if best is None or score >= best + pol.min_gain else flat + 1
            best = score if best is None else max(best, score)
        ratios = {k: (v.ratio if v.ratio is not None else 0.0) for k, v in judged.items()}

        def stop(reason: str) -> Decision:
            return Decision(epoch, "stop", reason, [{"op": "none", "ratios": _rounded(ratios)}],
                            _cost(self.spec), dict(self.streak), calm=calm, flat=flat,
                            best=best)

        if self._at_epoch_budget(epoch):
            return stop(f"growth epoch budget reached (max_epochs={pol.max_epochs})")
        if calm >= pol.stop_patience:
            return stop(f"Γ: no layer saturated at {calm} consecutive checks")
        if flat >= pol.val_patience:
            return stop(f"validation accuracy did not improve by {pol.min_gain} over "
                        f"{flat} consecutive checks (best {best:.4f})")
        if full and pol.max_stages is not None and self.stage + 1 >= pol.max_stages:
            return stop(f"stage budget reached (max_stages={pol.max_stages})")
        if not full:
            why = (f"waiting for young filters of {', '.join(pending)}" if pending else
                   f"no layer saturated ({calm} of {pol.stop_patience} checks)")
            # young filters: check again as soon as the first of those units is ready
            ready = [judged[u].ready for u in pending]
            return Decision(epoch, "wait", why, [], _cost(self.spec), dict(self.streak),
                            calm=calm, flat=flat, best=best,
                            next_check=min(ready) if ready else -1)
        # a stop here keeps the changes that did not fit: the event says what and why
        decision = self._grow(epoch, units, full, judged)
        decision.calm, decision.flat, decision.best = calm, flat, best
        return decision

    # -------------------------------------------------------- propose + budget
    def allowance(self) -> int | None:
        """The MACs one check may add: ``macs_step`` times the net's MACs (``None``
        without a limit)."""
        if self.policy.macs_step is None:
            return None
        return int(self.policy.macs_step * count(self.spec).macs)

    def _grow(self, epoch: int, units: list[Unit], full: list[Unit],
              judged: dict[str, Judged]) -> Decision:
        pol = self.policy
        before = _cost(self.spec)
        proposal = Proposal(self.spec, pol, self.allowance())
        widen, capped = widen_candidates(self.spec, full, judged, pol)
        streak = dict(self.streak)
        deepen = (depth_candidates(self.spec, units, {u.id for u in full},
                                   {c["layer"] for c in capped}, streak, pol)
                  if pol.depth else [])
        proposal.changes.extend(capped)
        proposal.take(widen + deepen)
        for change in proposal.changes:
            if change["op"] == "deepen" and change["applied"]:
                streak[change["stage"]] = 0
        if not proposal.applied:
            return Decision(epoch, "stop", "saturated layers cannot grow within the budgets",
                            proposal.changes, before, streak)
        return Decision(epoch, "grow", "", proposal.changes, before, streak, proposal.spec)

    # ------------------------------------------------------------------ apply
    def apply(self, decision: Decision) -> GrowthEvent | None:
        """Enact a decision of :meth:`decide` (on every rank, the same one); ``None`` for
        a check that waits (no layer saturated, patience left)."""
        self.streak = dict(decision.streak)
        self.last_check, self.calm, self.window = decision.epoch, decision.calm, None
        self.next_check = decision.next_check
        self.flat, self.best = decision.flat, decision.best
        if decision.kind == "wait":
            return None
        if decision.kind == "stop":
            self.done, self.stop_reason = True, decision.reason
            return GrowthEvent(decision.epoch, "stop", decision.reason, self.spec,
                               self.model, self.optimizer, changes=decision.changes,
                               before=decision.before, after=decision.before,
                               stage=self.stage)
        return self._apply(decision.epoch, decision.spec, decision.changes, decision.before)

    def _apply(self, epoch: int, new_spec: ArchSpec, changes: list[dict[str, Any]],
               before: dict[str, int]) -> GrowthEvent:
        change = surgery.plan(self.spec, new_spec)
        old_opt = self.optimizer if self.policy.carry_state else None
        model, optimizer = surgery.transplant(
            self.model, new_spec, init=self.policy.widen_init, old_optimizer=old_opt,
            new_optimizer_factory=self.optimizer_factory, change=change)
        if optimizer is None:  # reset: the reference's fresh optimizer per stage
            optimizer = self.optimizer_factory(model)
        self.spec, self.model, self.optimizer = new_spec, model, optimizer
        self.stage += 1
        self.stage_start = epoch + 1
        # Every width that moved (option-A streams downstream of a widened one move too)
        widths = {k: list(v) for k, v in change.widths().items()}
        reason = "; ".join(change.summary().splitlines())
        event = GrowthEvent(epoch, "grow", f"saturated → {reason}", new_spec, model,
                            optimizer, changes=changes + [{"op": "result", "widths": widths,
                                                           "inserted": list(change.inserted)}],
                            before=before, after=_cost(new_spec), stage=self.stage,
                            change=change)
        self.tracker.follow(event)
        return event

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "stage_start": self.stage_start, "done": self.done,
                "stop_reason": self.stop_reason, "streak": dict(self.streak),
                "last_check": self.last_check, "next_check": self.next_check,
                "calm": self.calm, "flat": self.flat,
                "window": -1.0 if self.window is None else self.window,
                "best": -1.0 if self.best is None else self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = int(state["stage"])
        self.stage_start = int(state["stage_start"])
        self.done = bool(state["done"])
        self.stop_reason = str(state["stop_reason"])
        self.streak = {str(k): int(v) for k, v in state["streak"].items()}
        self.last_check = int(state["last_check"])
        self.next_check = int(state["next_check"])
        self.calm = int(state["calm"])
        self.flat = int(state["flat"])
        self.window = None if state["window"] < 0 else float(state["window"])
        self.best = None if state["best"] < 0 else float(state["best"])


def _cost(spec: ArchSpec) -> dict[str, int]:
    c = count(spec)
    return {"params": int(c.params), "macs": int(c.macs)}



def _rounded(ratios: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in ratios.items()}
