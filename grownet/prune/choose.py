"""Which filters a prune keeps: a ticket (of an epoch, or of a size) or a prune by order,
with the refusal of a ticket that leaves a layer fewer than :data:`MIN_UNITS` units."""

from __future__ import annotations

import sys
from typing import Any

from grownet.errors import UserError
from grownet.nets import GrowNet
from grownet.prune.order import by_percent
from grownet.prune.sized import MIN_UNITS, few_units, ticket_of_size
from grownet.prune.slimming import Selection
from grownet.prune.tickets import ticket
from grownet.runs import RunDir
from grownet.spec import ArchSpec


def choose(args: Any, run: RunDir, spec: ArchSpec, model: GrowNet, tracker: dict,
           quiet: bool) -> tuple[Selection, dict[str, Any], str]:
    """The kept filters ``args`` (a :class:`~grownet.prune.run.PruneArgs`) ask for, how
    they were chosen (for the event) and a description."""
    if args.percent is not None:
        sel = by_percent(model, tracker, args.percent)
        return sel, {"percent": float(args.percent)}, f"prune by order, {args.percent}%"
    sel, how, what = _ticket(run, spec, model, tracker, args)
    _check_units(spec, sel, what, args.force, quiet)
    return sel, how, what


def _ticket(run: RunDir, spec: ArchSpec, model: GrowNet, tracker: dict, args: Any
            ) -> tuple[Selection, dict, str]:
    mode = {} if args.layers == "all" else {"layers": args.layers}
    if args.epoch is not None:
        sel = ticket(tracker, int(args.epoch), spec, run.stage_specs(), model=model,
                     layers=args.layers)
        return sel, {"ticket_epoch": int(args.epoch), **mode}, f"ticket of epoch {args.epoch}"
    found = ticket_of_size(tracker, spec, params=args.params, keep=args.keep, model=model,
                           layers=args.layers)
    done = epochs_done(tracker, found.step)
    size = (f"{args.keep:g} of the params" if args.keep is not None
            else f"{args.params:,} params")
    what = (f"ticket of {size}: Γ's support reached it at step {found.step}, after "
            f"{done:.2f} epochs: {found.params:,} of {found.full_params:,} params")
    how = {"ticket_step": found.step, "ticket_epochs_done": round(done, 4), **mode,
           **({"keep": float(args.keep)} if args.keep is not None
              else {"params": int(args.params)})}
    return found.keep, how, what


def epochs_done(tracker: dict, step: int) -> float:
    """Epochs trained (fractional) when optimizer step ``step`` was taken, from the
    steps the tracker recorded at the end of each epoch: ``E + 1`` at the end of the
    0-based epoch ``E``, where ``--epoch E`` takes its ticket."""
    prev = 0
    for done, rec in enumerate(tracker.get("history", [])):
        end = int(rec["step"])
        if end >= step:
            return done + (step - prev) / max(end - prev, 1)
        prev = end
    return float(len(tracker.get("history", [])))


def _check_units(spec: ArchSpec, keep: Selection, what: str, force: bool,
                 quiet: bool) -> None:
    """Refuse (or, forced, warn about) a ticket leaving a layer fewer than 2 units."""
    few = few_units(spec, keep)
    if not few:
        return
    where = ", ".join(f"{k} {n} of {w}" for k, (n, w) in few.items())
    text = (f"the {what.split(':')[0]} leaves {where} unit(s) (fewer than {MIN_UNITS}): "
            "such a layer can hardly carry the signal")
    if not force:
        raise UserError(f"{text}; take a later --epoch, a larger --keep/--params, "
                        "--layers conv, or --force to cut it anyway")
    if not quiet:
        print(f"warning: {text} (--force)", file=sys.stderr, flush=True)
