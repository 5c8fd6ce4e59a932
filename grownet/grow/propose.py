"""The propose step of growth: which units are saturated, and what to add where,
weighed by what it costs there.

A *unit* is a width growth may change (a layer, or a residual stream). At a check each
unit is *judged* from Γ's support among its filters that had the time to enter
(:class:`~grownet.path.Census`): a unit whose unselected filters are all old enough
is judged, its ratio is ``selected / width``; a unit with unselected filters younger
than ``mature_epochs`` is *pending* (growth just added them: neither a reason to grow
it again nor a sign that it has room).

Proposals are candidates with a cost (the MACs they add) and a pressure (how
saturated their unit or stage is); they are taken in order of capacity bought per MAC
(the log of the width ratio: a narrow layer gains more from a filter than a wide one),
times pressure (widenings, then insertions), while the check's MAC allowance lasts, so
a budget is spent where capacity is cheapest (after pooling, at low resolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from grownet import surgery
from grownet.cost import count
from grownet.grow.policy import GrowthPolicy
from grownet.path import Census
from grownet.spec import ArchSpec, LayerShape


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


@dataclass(frozen=True)
class Judged:
    """A unit at a check: its selection ratio among filters that had their time
    (``None``: none had), and whether young unselected filters keep it pending."""

    ratio: float | None
    pending: bool
    ready: int = -1  # the epoch at whose end its waiting filters have had their time

    @staticmethod
    def of(unit: Unit, census: dict[str, Census]) -> Judged:
        """A stream saturates when any of its convs does (they share one width)."""
        members = [census[m] for m in unit.members if m in census]
        ratios = [c.ratio for c in members if c.ratio is not None]
        return Judged(max(ratios) if ratios else None, any(c.waiting for c in members),
                      max((c.ready for c in members), default=-1))


def saturated(units: list[Unit], judged: dict[str, Judged], policy: GrowthPolicy
              ) -> list[Unit]:
    """The judged units whose ratio reaches their τ."""
    return [u for u in units if not judged[u.id].pending and judged[u.id].ratio is not None
            and judged[u.id].ratio >= policy.tau_for(u.id, u.stage)]


@dataclass
class Candidate:
    """One proposed change: widen a unit to ``width`` or deepen a stage."""

    op: str  # "widen" | "deepen"
    target: str  # unit id or stage id
    width: int  # the widened width, or the inserted layer's width
    pressure: float
    record: dict[str, Any]

    def apply(self, spec: ArchSpec, width: int | None = None) -> ArchSpec:
        if self.op == "widen":
            return surgery.widen(spec, self.target, width or self.width)
        stage = next(s for s in spec.stages if s.id == self.target)
        position = len(stage.blocks) if stage.blocks else len(stage.layers)
        return surgery.deepen(spec, self.target, position)


class Proposal:
    """Builds one growth step on ``spec`` within ``allowance`` MACs (``None``: no limit
    per check) and the policy's budgets; :attr:`changes` records every candidate, taken
    or not, for the event log."""

    def __init__(self, spec: ArchSpec, policy: GrowthPolicy, allowance: int | None) -> None:
        self.spec, self.policy, self.allowance = spec, policy, allowance
        self.start_macs = count(spec).macs
        self.changes: list[dict[str, Any]] = []
        self.applied = 0

    def value(self, cand: Candidate) -> float:
        """Capacity bought per MAC, times pressure (ranked on the spec before any change).

        Capacity is the log of the width ratio: adding 8 filters to a layer of 2 buys
        more than adding them to a layer of 64 (a widening doubles what a narrow layer
        can represent); an inserted layer counts as a doubling of its stage."""
        added = count(cand.apply(self.spec)).macs - self.start_macs
        old = cand.record.get("old")
        gain = math.log(cand.width / old) if old else math.log(2.0)
        return cand.pressure * gain / max(added, 1)

    def take(self, candidates: list[Candidate]) -> None:
        """Apply candidates, most valuable first, while the allowance and budgets last;
        widenings before insertions (an inserted layer takes the width in front of it,
        so it must see that width's final value)."""
        for op in ("widen", "deepen"):
            for cand in sorted((c for c in candidates if c.op == op), key=self.value,
                               reverse=True):
                self._take(cand)

    def _take(self, cand: Candidate) -> None:
        record = dict(cand.record)
        low = (record.get("old") or 0) + 1 if cand.op == "widen" else cand.width
        # a width that fits: the full step, else the widest that fits (widen only)
        for width in range(cand.width, low - 1, -1):
            new = cand.apply(self.spec, width)
            if self._fits(new):
                if width != cand.width:
                    record["note"] = f"clipped from {cand.width} by the budget"
                if cand.op == "deepen":
                    record["inserted"] = sorted(set(new.layer_ids()) - set(self.spec.layer_ids()))
                record.update(new=width, applied=True)
                self.spec, self.applied = new, self.applied + 1
                self.changes.append(record)
                return
        record.update(new=record.get("old"), applied=False,
                      note="skipped: exceeds this check's allowance or the budgets")
        self.changes.append(record)

    def _fits(self, spec: ArchSpec) -> bool:
        pol, c = self.policy, count(spec)
        if pol.max_params is not None and c.params > pol.max_params:
            return False
        if pol.max_macs is not None and c.macs > pol.max_macs:
            return False
        # the first change of a check may exceed the allowance (growth never stalls)
        return (self.allowance is None or self.applied == 0
                or c.macs - self.start_macs <= self.allowance)


def widen_candidates(spec: ArchSpec, units: list[Unit], judged: dict[str, Judged],
                     policy: GrowthPolicy) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """A candidate per saturated unit below ``max_width``; records of the capped ones."""
    out, capped = [], []
    for unit in units:
        ratio = judged[unit.id].ratio or 0.0
        record = {"op": "widen", "layer": unit.id, "ratio": round(ratio, 4),
                  "tau": policy.tau_for(unit.id, unit.stage), "old": unit.width}
        target = policy.widened(unit.width, spec.family)
        if target <= unit.width:
            capped.append({**record, "new": unit.width, "applied": False,
                           "note": f"at max_width={policy.max_width}"})
            continue
        out.append(Candidate("widen", unit.id, target, ratio, record))
    return out, capped


def depth_candidates(spec: ArchSpec, units: list[Unit], saturated_ids: set[str],
                     capped_ids: set[str], streak: dict[str, int], policy: GrowthPolicy
                     ) -> list[Candidate]:
    """A candidate per stage that stays saturated (``depth_patience`` checks with every
    unit saturated, or a saturated unit at ``max_width``); updates ``streak``."""
    out = []
    for stage in spec.stages:
        members = [u for u in units if u.stage == stage.id]
        all_sat = bool(members) and all(u.id in saturated_ids for u in members)
        streak[stage.id] = streak.get(stage.id, 0) + 1 if all_sat else 0
        at_cap = any(u.id in capped_ids for u in members)
        if streak[stage.id] < policy.depth_patience and not at_cap:
            continue
        why = ("a saturated layer is at max_width" if at_cap else
               f"all layers saturated at {streak[stage.id]} consecutive checks")
        width = stage.width if stage.blocks else stage.layers[-1].width
        out.append(Candidate("deepen", stage.id, width, 1.0,
                             {"op": "deepen", "stage": stage.id, "reason": why}))
    return out
