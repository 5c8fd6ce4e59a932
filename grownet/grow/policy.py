"""`GrowthPolicy`: when a layer saturates, how much it widens, when a stage deepens,
the budgets a grown net never exceeds, and how long it is fine-tuned. It is the one
source of growth settings and their defaults: ``grownet grow``'s flags and the
``[growth]`` table of a run's ``config.toml`` map onto its fields by name.

Rules (ALGORITHMS.md A11, extended with depth):

* **Check** every ``epochs_per_stage`` epochs of a stage (or after the previous check).
* **Saturation**: layer ``L`` saturates when its selection ratio (fraction of its
  filters in Γ's support) is ``>= tau(L)``, judged only when every filter of ``L``
  still out of the support has trained ``mature_epochs`` epochs (the paced path's time
  to enter, with room for filters below norm 1); until then ``L`` is *pending* (it just
  grew: its new filters neither ask for more nor say there is room). A residual stream
  (the second convs of a stage's blocks, which share one width) saturates when any of
  its convs does.
* **Widen** a saturated layer from ``w`` to ``min(max_width, max(w + grow_num,
  floor(grow_ratio * w)))``; ``grow_num=None`` means 8 for plain nets and 4 for
  residual nets (the reference's numbers).
* **Deepen** a stage when it *stays saturated*: at ``depth_patience`` consecutive
  checks every growable layer of the stage saturated, or a saturated layer of it is
  already at ``max_width``. A plain stage gets a conv layer at its end, a residual
  stage a basic block at its end (both initialised as the identity).
* **Cost**: the changes of one check are taken most filters-per-MAC first (times the
  unit's ratio), while the MACs they add stay within ``macs_step`` times the net's MACs
  (the first change is always taken) and the budgets ``max_params`` / ``max_macs``
  (a change that does not fit is clipped to the widest that does, or skipped; the event
  says so). A budget is thus spent where filters are cheap: at low resolution, after
  pooling.
* **Stop** (what decides the size; the budgets are only caps): when Γ says no layer
  needs more (no layer saturated and none pending at ``stop_patience`` consecutive
  checks), or when the validation accuracy (the run's held-out split; at a check, the
  best of the epochs since the previous one) has not beaten its best by ``min_gain`` at
  ``val_patience`` consecutive checks; or at a budget
  (``max_stages`` architectures, the start included; ``max_epochs`` of growth). A
  check that finds nothing to grow and no reason to stop waits: the stage trains on.
* **Fine-tune** ``finetune_epochs`` epochs after growth stops (the grow job).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field, fields
from typing import Any

from grownet.errors import UserError
from grownet.runs.config import (
    RULES,
    Names,
    Rule,
    at_least,
    check,
    choice,
    coerce,
    describe,
)

WIDEN_INITS = ("zero", "split", "random")


@dataclass(frozen=True)
class GrowthPolicy:
    """How and when to grow; see the module docstring for the rules.

    ``tau`` is one threshold, or a mapping from layer id or stage id to threshold with
    an optional ``"default"`` entry (the reference's "mix tau"). ``names`` (not stored)
    says where each setting was set, for the messages (see :meth:`from_config`).
    """

    tau: float | Mapping[str, float] = 0.8
    epochs_per_stage: int = 2
    grow_num: int | None = None
    grow_ratio: float = 1.5
    depth: bool = True
    depth_patience: int = 2
    stop_patience: int = 2
    val_patience: int = 3
    mature_epochs: float = 3.0
    min_gain: float = 0.001
    macs_step: float | None = 1.0
    max_width: int = 128
    max_params: int | None = None
    max_macs: int | None = None
    max_stages: int | None = 6
    max_epochs: int | None = None
    finetune_epochs: int = -1  # -1: min(6, epochs // 2) (see finetune())
    carry_state: bool = True  # carry V, Γ and momentum across growth (False: reset)
    widen_init: str = "zero"
    names: InitVar[Names | None] = None
    _taus: dict[str, float] = field(default_factory=dict, init=False, repr=False,
                                    compare=False)

    def __post_init__(self, names: Names | None) -> None:
        taus = dict(self.tau) if isinstance(self.tau, Mapping) else {"default": self.tau}
        taus.setdefault("default", 0.8)
        for key, value in taus.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < float(value) <= 1:
                shown = (f"tau for {key!r} = {value!r}" if key != "default" else
                         f"tau = {value!r}" if names is None else
                         describe("tau", value, "--tau", names))
                raise UserError(f"{shown}: must be {GROWTH_RULES['tau'].accepts}")
        object.__setattr__(self, "_taus", {k: float(v) for k, v in taus.items()})
        check(self, GROWTH_RULES, names,
              [f for f in fields(self) if f.name in GROWTH_RULES and f.name != "tau"])

    # ---------------------------------------------------------- the config's table
    @classmethod
    def from_config(cls, values: Mapping[str, Any], names: str | Names | None = None
                    ) -> GrowthPolicy:
        """The policy of a configuration's growth settings (``RunConfig.growth``): every
        key a field of this class, of its type; absent keys take the defaults above.
        ``names``: the config file they came from, or per key the flag as typed."""
        if isinstance(names, str):
            names = {key: names for key in values}
        names = dict(names or {})
        known = {f.name: f for f in fields(cls) if f.init}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            where = names.get(key, "")
            if key not in known:
                others = [k for k in RULES if k != "command"]
                raise UserError(f"unknown config key {key!r}" + (f" in {where}" if where
                                                                 else "") +
                                f"; known keys: {', '.join(others)}; growth settings: "
                                f"{', '.join(known)}")
            if key == "tau" and isinstance(value, Mapping):
                kwargs[key] = dict(value)
            elif key == "tau":
                kwargs[key] = coerce(key, value, "float", where)
            elif known[key].type.endswith(" | None"):  # None: no budget / family default
                kwargs[key] = None if value is None else coerce(
                    key, value, known[key].type.removesuffix(" | None"), where)
            else:
                kwargs[key] = coerce(key, value, known[key].type, where)
        return cls(**kwargs, names=names)

    def to_config(self) -> dict[str, Any]:
        """``{field: value}`` for a config file; unset budgets are left out."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.init and value is not None:
                out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out

    def describe(self, key: str, names: Names | None = None) -> str:
        """``--max-width 2`` or ``max_width = 2 in FILE``: a setting and its value, named
        as the user set it."""
        return describe(key, getattr(self, key), GROWTH_RULES[key].flag, names)

    def finetune(self, epochs: int) -> int:
        """Fine-tuning epochs reserved in a run of ``epochs``: ``finetune_epochs``, or with
        -1 (the default) ``min(6, epochs // 2)``, so a short run still has room to grow."""
        return self.finetune_epochs if self.finetune_epochs >= 0 else min(6, epochs // 2)

    def replace(self, **changes: Any) -> GrowthPolicy:
        """A copy with fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------- rules
    def tau_for(self, layer_id: str, stage_id: str | None) -> float:
        """τ of a layer: its own entry, else its stage's, else the default."""
        for key in (layer_id, stage_id):
            if key is not None and key in self._taus:
                return self._taus[key]
        return self._taus["default"]

    def widened(self, width: int, family: str) -> int:
        """The width a saturated layer of ``width`` filters grows to (before budgets)."""
        step = self.grow_num if self.grow_num is not None else (4 if family == "residual"
                                                                 else 8)
        return min(self.max_width, max(width + step, int(self.grow_ratio * width)))


#: every growth setting: its flag and what it accepts
GROWTH_RULES: dict[str, Rule] = {key: Rule(flag, *rule) for key, flag, rule in (
    ("tau", "--tau", ("a number in (0, 1]", lambda v: 0 < v <= 1)),
    ("epochs_per_stage", "--epochs-per-stage", at_least(1)),
    ("grow_num", "--grow-num", at_least(1)),
    ("grow_ratio", "--grow-ratio", at_least(1, "a number")),
    ("depth", "--no-depth", ("true or false", lambda v: True)),
    ("depth_patience", "--depth-patience", at_least(1)),
    ("stop_patience", "--stop-patience", at_least(1)),
    ("val_patience", "--val-patience", at_least(1)),
    ("mature_epochs", "--mature-epochs", at_least(0, "a number")),
    ("min_gain", "--min-gain", ("a number in [0, 1)", lambda v: 0 <= v < 1)),
    ("macs_step", "--macs-step", ("a number > 0 (or left out: no limit per check)",
                                  lambda v: v > 0)),
    ("max_width", "--max-width", at_least(1)),
    ("max_params", "--max-params", at_least(1, note=" (or left out: no budget)")),
    ("max_macs", "--max-macs", at_least(1, note=" (or left out: no budget)")),
    ("max_stages", "--max-stages", at_least(1)),
    ("max_epochs", "", at_least(1)),
    ("finetune_epochs", "--finetune-epochs", ("an integer >= 0 (or -1: min(6, epochs // 2))",
                                              lambda v: v >= -1)),
    ("carry_state", "--reset-state", ("true or false", lambda v: True)),
    ("widen_init", "--widen-init", choice(*WIDEN_INITS)),
)}
