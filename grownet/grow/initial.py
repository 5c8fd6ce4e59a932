"""The initialisation of a growing network, carried through every growth step.

The lottery procedure (ALGORITHMS A10) retrains a ticket from the weights each filter
had when it was created. In a grown net filters are created at different stages, so
the "initial" network is assembled: old entries keep the initial values they already
had, entries that growth created take the values they were created with.
"""

from __future__ import annotations

import torch

from grownet import surgery
from grownet.nets import GrowNet, build, parameters_of


@torch.no_grad()
def carry_initial(initial: dict[str, torch.Tensor], created: GrowNet,
                  change: surgery.Change) -> dict[str, torch.Tensor]:
    """The initial parameters of ``created.spec`` after the growth step ``change``.

    Parameters
    ----------
    initial
        Initial parameters of ``change.old`` (name → tensor).
    created
        The new model right after surgery: its new entries hold their creation values.
    change
        The growth step's channel maps (``GrowthEvent.change``).
    """
    old = build(change.old)
    old.load_state_dict(initial, strict=False)
    # Every entry with an old source takes the old initial value; the rest (new filters,
    # their input slices, inserted layers) keep the values ``created`` was made with.
    # init="random" copies exactly the entries with an old source and leaves the others.
    carried, _ = surgery.transplant(old, change.new, init="random", change=change,
                                    into=created)
    return parameters_of(carried)
