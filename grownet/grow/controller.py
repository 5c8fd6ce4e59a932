"""`Grower`: reads Γ's support at checks, decides with the policy, and calls surgery.

Growth as named steps (collect → propose → budget → apply):

* ``collect``: each growable unit's selection ratio, all read in one host sync;
* ``propose``: widen saturated units, deepen stages that stay saturated;
* ``budget``: clip or skip a proposal that would exceed ``max_params``/``max_macs``;
* ``apply``: build the new spec, transplant weights and (by default) optimizer state.

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
from grownet.path import SupportTracker
from grownet.spec import ArchSpec, LayerShape


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


@dataclass(frozen=True)
class Unit:
    """A growable width: one layer, or a residual stream (several convs, one width)."""

    id: str  # the layer id that `surgery.widen` takes
    members: tuple[str, ...]
    stage: str | None
    width: int


def growable_units(spec: ArchSpec) -> list[Unit]:
    """The widths growth may change: every conv and hidden FC layer except the
    classifier; a residual stream counts once (its convs share one width)."""
    units: dict[str, list[LayerShape]] = {}
    for s in spec.shapes():
        if s.role == "head":
            continue
        units.setdefault(s.group or s.id, []).append(s)
    out = []
    for members in units.values():
        first = next((m for m in members if m.role != "proj"), members[0])
        out.append(Unit(first.id, tuple(m.id for m in members), first.stage, first.out_ch))
    return out


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
        self.calm = 0  # consecutive checks with no layer saturated

    # ----------------------------------------------------------------- collect
    def ratios(self) -> dict[str, float]:
        """Selection ratio of every growable coupled layer, as the tracker reads it (one
        host sync)."""
        growable = {m for u in growable_units(self.spec) for m in u.members}
        return {k: v for k, v in self.tracker.ratios().items() if k in growable}

    # ----------------------------------------------------------------- the step
    def step(self, epoch: int) -> GrowthEvent | None:
        """Check (when a stage's epochs are done) and grow; see the policy's rules."""
        if self.done or not self.due(epoch):
            return None
        decision = self.decide(epoch) if self.decider else None
        if self.share is not None:
            decision = self.share(decision)
        if decision is None:
            raise RuntimeError("Grower: no decision; a non-deciding grower needs share=")
        return self.apply(decision)

    def due(self, epoch: int) -> bool:
        """Whether the end of ``epoch`` is a check: ``epochs_per_stage`` epochs after the
        stage started or after the previous check, or the growth epoch budget."""
        since = max(self.stage_start, self.last_check + 1)
        return epoch + 1 - since >= self.policy.epochs_per_stage or self._at_epoch_budget(epoch)

    def _at_epoch_budget(self, epoch: int) -> bool:
        return self.policy.max_epochs is not None and epoch + 1 >= self.policy.max_epochs

    def decide(self, epoch: int) -> Decision:
        """Collect, propose and budget: what :meth:`apply` would do now (nothing changes)."""
        pol = self.policy
        at_epoch_budget = self._at_epoch_budget(epoch)
        ratios = self.ratios()
        units = growable_units(self.spec)
        saturated = [u for u in units if self._unit_ratio(u, ratios) >= self._tau(u)]
        if not saturated:
            calm = self.calm + 1
            if calm < pol.stop_patience and not at_epoch_budget:
                return Decision(epoch, "wait", f"no layer saturated ({calm} of "
                                f"{pol.stop_patience} checks)", [], _cost(self.spec),
                                dict(self.streak), calm=calm)
            return self._stop(epoch, f"no layer saturated at {calm} consecutive checks",
                              ratios)
        if at_epoch_budget:
            return self._stop(epoch, f"growth epoch budget reached (max_epochs="
                                     f"{pol.max_epochs})", ratios)
        if pol.max_stages is not None and self.stage + 1 >= pol.max_stages:
            return self._stop(epoch, f"stage budget reached (max_stages={pol.max_stages})",
                              ratios)
        return self._grow(epoch, units, saturated, ratios)

    def _tau(self, unit: Unit) -> float:
        return self.policy.tau_for(unit.id, unit.stage)

    @staticmethod
    def _unit_ratio(unit: Unit, ratios: dict[str, float]) -> float:
        return max((ratios[m] for m in unit.members if m in ratios), default=0.0)

    def _stop(self, epoch: int, reason: str, ratios: dict[str, float]) -> Decision:
        return Decision(epoch, "stop", reason, [{"op": "none", "ratios": _rounded(ratios)}],
                        _cost(self.spec), dict(self.streak), calm=self.calm)

    # -------------------------------------------------------- propose + budget
    def _grow(self, epoch: int, units: list[Unit], saturated: list[Unit],
              ratios: dict[str, float]) -> Decision:
        pol, spec = self.policy, self.spec
        before = _cost(spec)
        changes: list[dict[str, Any]] = []
        sat_ids = {u.id for u in saturated}
        for unit in saturated:
            record = {"op": "widen", "layer": unit.id, "ratio": round(
                self._unit_ratio(unit, ratios), 4), "tau": self._tau(unit), "old": unit.width}
            target = pol.widened(unit.width, spec.family)
            if target <= unit.width:
                record.update(new=unit.width, note=f"at max_width={pol.max_width}")
                changes.append(record)
                continue
            new_spec, width, note = self._fit(spec, unit, target)
            record.update(new=width, note=note)
            if new_spec is not None:
                spec = new_spec
            changes.append(record)
        streak = dict(self.streak)
        if pol.depth:
            spec = self._propose_depth(spec, units, sat_ids, changes, streak)
        if not any(_applied(c) for c in changes):
            stop = self._stop(epoch, "saturated layers cannot grow within the budgets",
                              ratios)
            stop.streak = streak
            return stop
        return Decision(epoch, "grow", "", changes, before, streak, spec)

    def _fit(self, spec: ArchSpec, unit: Unit, target: int
             ) -> tuple[ArchSpec | None, int, str]:
        """Widen ``unit`` toward ``target``, clipped to the largest width within budget."""
        current = spec.shape(unit.id).out_ch
        for width in range(target, current, -1):
            candidate = surgery.widen(spec, unit.id, width)
            if self._within_budget(candidate):
                return candidate, width, "" if width == target else \
                    f"clipped from {target} by the params/MACs budget"
        return None, current, f"skipped: widening to {target} exceeds the params/MACs budget"

    def _within_budget(self, spec: ArchSpec) -> bool:
        pol = self.policy
        if pol.max_params is None and pol.max_macs is None:
            return True
        c = count(spec)
        return ((pol.max_params is None or c.params <= pol.max_params)
                and (pol.max_macs is None or c.macs <= pol.max_macs))

    def _propose_depth(self, spec: ArchSpec, units: list[Unit], sat_ids: set[str],
                       changes: list[dict[str, Any]], streak: dict[str, int]) -> ArchSpec:
        pol = self.policy
        capped = {c["layer"] for c in changes if c["op"] == "widen" and
                  c["new"] >= pol.max_width}
        for stage in spec.stages:
            members = [u for u in units if u.stage == stage.id]
            all_sat = bool(members) and all(u.id in sat_ids for u in members)
            streak[stage.id] = streak.get(stage.id, 0) + 1 if all_sat else 0
            at_cap = any(u.id in capped for u in members)
            if streak[stage.id] < pol.depth_patience and not at_cap:
                continue
            why = ("a saturated layer is at max_width" if at_cap else
                   f"all layers saturated at {streak[stage.id]} consecutive checks")
            position = len(stage.blocks) if stage.blocks else len(stage.layers)
            candidate = surgery.deepen(spec, stage.id, position)
            if not self._within_budget(candidate):
                changes.append({"op": "deepen", "stage": stage.id, "applied": False,
                                "reason": why, "note": "skipped: exceeds the params/MACs "
                                "budget"})
                continue
            new_ids = sorted(set(candidate.layer_ids()) - set(spec.layer_ids()))
            changes.append({"op": "deepen", "stage": stage.id, "applied": True,
                            "reason": why, "inserted": new_ids, "position": position})
            streak[stage.id] = 0
            spec = candidate
        return spec

    # ------------------------------------------------------------------ apply
    def apply(self, decision: Decision) -> GrowthEvent | None:
        """Enact a decision of :meth:`decide` (on every rank, the same one); ``None`` for
        a check that waits (no layer saturated, patience left)."""
        self.streak = dict(decision.streak)
        self.last_check, self.calm = decision.epoch, decision.calm
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
                "last_check": self.last_check, "calm": self.calm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = int(state["stage"])
        self.stage_start = int(state["stage_start"])
        self.done = bool(state["done"])
        self.stop_reason = str(state["stop_reason"])
        self.streak = {str(k): int(v) for k, v in state["streak"].items()}
        self.last_check = int(state["last_check"])
        self.calm = int(state["calm"])


def _cost(spec: ArchSpec) -> dict[str, int]:
    c = count(spec)
    return {"params": int(c.params), "macs": int(c.macs)}


def _applied(change: dict[str, Any]) -> bool:
    """Whether a proposed change took effect: a widening that grew, an inserted layer."""
    if change["op"] == "widen":
        return change["new"] > change["old"]
    return bool(change.get("applied"))


def _rounded(ratios: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in ratios.items()}
