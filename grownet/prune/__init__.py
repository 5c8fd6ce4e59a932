"""Pruning from Γ's path: winning tickets, prune-by-order, physical slimming.

Typical use::

    from grownet.prune import ticket, by_percent, slim_network
    keep = ticket(tracker, epoch=3, final_spec=spec, stage_specs=run.stage_specs())
    # or: keep = by_percent(model, tracker, percent=50)
    # or: keep = ticket_of_size(tracker, spec, keep=0.3, model=model).keep
    small_spec, small_model = slim_network(spec, model, keep)

``prune_run`` does the same for a run directory (``grownet prune RUN``) and can retrain
the slimmed net from its current weights or from its initialisation (the lottery
procedure). ``docs/prune.md`` has the rules.
"""

from grownet.prune.order import (
    by_percent,
    entry_epochs,
    entry_steps,
    prune_orders,
    tracker_state,
)
from grownet.prune.run import PruneArgs, PruneResult, prune_run, resume_prune
from grownet.prune.sized import MIN_UNITS, SizedTicket, few_units, ticket_at_step, ticket_of_size
from grownet.prune.slimming import Selection, constrain, mask_network, slim_network
from grownet.prune.tickets import (
    TICKET_LAYERS,
    channel_maps,
    recorded_epochs,
    support_at,
    ticket,
)

__all__ = ["MIN_UNITS", "TICKET_LAYERS", "PruneArgs", "PruneResult", "Selection",
           "SizedTicket", "by_percent", "channel_maps", "constrain", "entry_epochs",
           "entry_steps", "few_units", "mask_network", "prune_orders", "prune_run",
           "recorded_epochs", "resume_prune", "slim_network", "support_at", "ticket",
           "ticket_at_step", "ticket_of_size", "tracker_state"]
