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
  checks), or when the validation accuracy (the run's held-out split) has not beaten
  its best by ``min_gain`` at ``stop_patience`` consecutive checks; or at a budget
  (``max_stages`` architectures, the start included; ``max_epochs`` of growth). A
  check that finds nothing to grow and no reason to stop waits: the stage trains on.
* **Fine-tune** ``finetune_epochs`` epochs after growth stops (the grow job).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from grownet.errors import UserError
from grownet.runs.config import RunConfig, coerce

WIDEN_INITS = ("zero", "split", "random")
# The config type of each optional field (None means "no budget" / "family default").
_OPTIONAL = {"grow_num": "int", "max_params": "int", "max_macs": "int",
             "max_stages": "int", "max_epochs": "int", "macs_step": "float"}


@dataclass(frozen=True)
class GrowthPolicy:
    """How and when to grow; see the module docstring for the rules.

    ``tau`` is one threshold, or a mapping from layer id or stage id to threshold with
    an optional ``"default"`` entry (the reference's "mix tau").
    """

    tau: float | Mapping[str, float] = 0.8
    epochs_per_stage: int = 3
    grow_num: int | None = None
    grow_ratio: float = 1.5
    depth: bool = True
    depth_patience: int = 2
    stop_patience: int = 2
    mature_epochs: float = 4.0
    min_gain: float = 0.001
    macs_step: float | None = 1.0
    max_width: int = 128
    max_params: int | None = None
    max_macs: int | None = None
    max_stages: int | None = 6
    max_epochs: int | None = None
    finetune_epochs: int = 6
    carry_state: bool = True  # carry V, Γ and momentum across growth (False: reset)
    widen_init: str = "zero"
    _taus: dict[str, float] = field(default_factory=dict, init=False, repr=False,
                                    compare=False)

    def __post_init__(self) -> None:
        taus = dict(self.tau) if isinstance(self.tau, Mapping) else {"default": self.tau}
        taus.setdefault("default", 0.8)
        for key, value in taus.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < float(value) <= 1:
                raise UserError(f"tau for {key!r} is {value!r}; it must lie in (0, 1]")
        object.__setattr__(self, "_taus", {k: float(v) for k, v in taus.items()})

        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise UserError(f"growth setting {key!r} = {getattr(self, key)!r}: {what}")

        need(self.epochs_per_stage >= 1, "epochs_per_stage", "must be >= 1")
        need(self.grow_num is None or self.grow_num >= 1, "grow_num", "must be >= 1")
        need(self.grow_ratio >= 1, "grow_ratio", "must be >= 1")
        need(self.depth_patience >= 1, "depth_patience", "must be >= 1")
        need(self.stop_patience >= 1, "stop_patience", "must be >= 1")
        need(self.mature_epochs >= 0, "mature_epochs", "must be >= 0")
        need(0 <= self.min_gain < 1, "min_gain", "must lie in [0, 1)")
        need(self.macs_step is None or self.macs_step > 0, "macs_step",
             "must be > 0 (or absent: no limit per check)")
        need(self.max_width >= 1, "max_width", "must be >= 1")
        for key in ("max_params", "max_macs", "max_stages", "max_epochs"):
            need(getattr(self, key) is None or getattr(self, key) >= 1, key,
                 "must be >= 1 (or absent: no budget)")
        need(self.finetune_epochs >= 0, "finetune_epochs", "must be >= 0")
        need(self.widen_init in WIDEN_INITS, "widen_init",
             f"use one of {', '.join(WIDEN_INITS)}")

    # ---------------------------------------------------------- the config's table
    @classmethod
    def from_config(cls, values: Mapping[str, Any], source: str = "the configuration"
                    ) -> GrowthPolicy:
        """The policy of a configuration's growth settings (``RunConfig.growth``): every
        key a field of this class, of its type; absent keys take the defaults above."""
        known = {f.name: f for f in fields(cls) if f.init}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                others = [f.name for f in fields(RunConfig) if f.name != "growth"]
                raise UserError(f"unknown config key {key!r} in {source}; known keys: "
                                f"{', '.join(others)}; growth settings: "
                                f"{', '.join(known)}")
            if key == "tau" and isinstance(value, Mapping):
                kwargs[key] = dict(value)
            elif key == "tau":
                kwargs[key] = coerce(key, value, "float", source)
            elif key in _OPTIONAL:
                kwargs[key] = None if value is None else coerce(key, value, _OPTIONAL[key],
                                                                source)
            else:
                kwargs[key] = coerce(key, value, known[key].type, source)
        return cls(**kwargs)

    def to_config(self) -> dict[str, Any]:
        """``{field: value}`` for a ``[growth]`` table; unset budgets are left out."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.init and value is not None:
                out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out

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
