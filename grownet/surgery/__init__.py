"""Structural surgery: widen, deepen and slim a spec, then transplant the old model's
weights, BatchNorm statistics and optimizer state into the new model by index.

Typical use (a growth controller)::

    new_spec = widen(spec, "s2_l0", 24)               # or deepen(...), slim(...)
    print(plan(spec, new_spec).summary())              # what changed, layer by layer
    model, opt = transplant(model, new_spec, init="zero", old_optimizer=opt,
                            new_optimizer_factory=make_optimizer)

``docs/surgery.md`` has the rules (residual streams, init policies, optimizer state).
"""

from grownet.surgery.change import FRESH, Change, plan
from grownet.surgery.deepen import deepen
from grownet.surgery.slim import slim
from grownet.surgery.transplant import INITS, transplant
from grownet.surgery.widen import widen

__all__ = ["Change", "FRESH", "INITS", "deepen", "plan", "slim", "transplant", "widen"]
