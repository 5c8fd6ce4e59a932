"""`GrowthPolicy`: when a layer saturates, how much it widens, when a stage deepens,
and the budgets a grown net never exceeds.

Rules (ALGORITHMS.md A11, extended with depth):

* **Check** every ``epochs_per_stage`` epochs of a stage.
* **Saturation**: layer ``L`` saturates when its selection ratio (fraction of its
  filters in Γ's support) is ``>= tau(L)``. A residual stream (the second convs of a
  stage's blocks, which share one width) saturates when any of its convs does.
* **Widen** a saturated layer from ``w`` to ``min(max_width, max(w + grow_num,
  floor(grow_ratio * w)))``; ``grow_num=None`` means 8 for plain nets and 4 for
  residual nets (the reference's numbers).
* **Deepen** a stage when it *stays saturated*: at ``depth_patience`` consecutive
  checks every growable layer of the stage saturated, or a saturated layer of it is
  already at ``max_width``. A plain stage gets a conv layer at its end, a residual
  stage a basic block at its end (both initialised as the identity).
* **Stop** at a check where no layer saturates, or when a budget is reached
  (``max_stages`` growth steps, ``max_epochs`` of growth). Widening that would exceed
  ``max_params`` or ``max_macs`` is clipped to the largest width that fits, or
  skipped; the event says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from grownet.errors import UserError


@dataclass(frozen=True)
class GrowthPolicy:
    """How and when to grow; see the module docstring for the rules.

    ``tau`` is one threshold, or a mapping from layer id or stage id to threshold with
    an optional ``"default"`` entry (the reference's "mix tau").
    """

    tau: float | Mapping[str, float] = 0.8
    epochs_per_stage: int = 10
    grow_num: int | None = None
    grow_ratio: float = 1.1
    depth: bool = True
    depth_patience: int = 2
    max_width: int = 512
    max_params: int | None = None
    max_macs: int | None = None
    max_stages: int | None = None
    max_epochs: int | None = None
    carry_state: bool = True
    init: str = "zero"
    _taus: dict[str, float] = field(default_factory=dict, init=False, repr=False,
                                    compare=False)

    def __post_init__(self) -> None:
        taus = dict(self.tau) if isinstance(self.tau, Mapping) else {"default": self.tau}
        taus.setdefault("default", 0.8)
        for key, value in taus.items():
            if not 0 < float(value) <= 1:
                raise UserError(f"tau for {key!r} is {value}; it must lie in (0, 1]")
        object.__setattr__(self, "_taus", {k: float(v) for k, v in taus.items()})
        if self.epochs_per_stage < 1:
            raise UserError("epochs_per_stage must be >= 1")
        if self.grow_ratio < 1:
            raise UserError(f"grow_ratio is {self.grow_ratio}; it must be >= 1")
        if self.grow_num is not None and self.grow_num < 1:
            raise UserError(f"grow_num is {self.grow_num}; it must be >= 1")
        if self.init not in ("zero", "split", "random"):
            raise UserError(f"unknown widen init {self.init!r}; use zero, split or random")

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
