"""``grownet prune RUN``: a winning ticket or a prune-by-order cut of a run, slimmed, with
optional retraining."""

from __future__ import annotations

import argparse

_EXAMPLES = """\
examples:
  grownet prune runs/grow-20250101-120000 --epoch 3 --out runs/ticket-e3
  grownet prune runs/grow-20250101-120000 --percent 50 --retrain-epochs 10
  grownet prune runs/grow-20250101-120000 --epoch 3 --retrain-epochs 10 --retrain-from init
  grownet prune runs/train-20250101-120000 --keep 0.3 --retrain-epochs 15 --retrain-from init
  grownet prune runs/train-20250101-120000 --epoch 7 --layers conv

--epoch E keeps the filters in Γ's support at the end of epoch E (0-based, the epoch
column of metrics.csv), mapped to the final architecture; --keep K / --params N keep
the filters that had entered Γ's support by the first optimizer step at which the
slimmed net reaches that size (K: a share of the net's params); --percent P drops, per
layer, the P% of filters with the lowest prune order (late or never selected, small
norm). A ticket that leaves a layer fewer than 2 units is refused unless --force.
The output directory holds prune.csv (before/after per layer), final/ (the slimmed
net) and, with --retrain-epochs, retrain/ (a train run).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prune`` to the ``grownet`` command."""
    p = subparsers.add_parser(
        "prune", help="a winning ticket / slimmed net from a run, with optional retraining",
        description="Cut a run's final network down to the filters Γ selected by an epoch "
        "or by the first step at which they reach a size (a winning ticket), or to the "
        "best (100-P)% by prune order, remove the rest physically, and optionally "
        "retrain it with SGD.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="a finished grow (or train --method dessilbi) "
                   "run directory")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--epoch", type=int, default=None, metavar="E",
                     help="winning ticket: the support recorded at the end of epoch E")
    how.add_argument("--keep", type=float, default=None, metavar="K",
                     help="ticket of a size: the first step where Γ's support reaches a "
                     "share K of the net's params (0-1]")
    how.add_argument("--params", type=int, default=None, metavar="N",
                     help="ticket of a size: the first step where Γ's support reaches N "
                     "params")
    how.add_argument("--percent", type=float, default=None, metavar="P",
                     help="prune by order: drop P%% of the filters of every layer (0-100)")
    p.add_argument("--layers", choices=("all", "conv"), default="all",
                   help="tickets: cut every tracked layer (default) or convs only (the "
                   "reference lottery procedure: hidden linear layers keep all units)")
    p.add_argument("--force", action="store_true",
                   help="cut a ticket even if it leaves a layer fewer than 2 units")
    p.add_argument("--retrain-epochs", type=int, default=0, metavar="N",
                   help="retrain the slimmed net N epochs with SGD (default 0: no)")
    p.add_argument("--retrain-from", choices=("current", "init"), default="current",
                   help="current: fine-tune the trained weights (default); init: the "
                   "lottery procedure, from the kept filters' initial values")
    p.add_argument("--seed", type=int, default=None, help="retraining seed (default: the "
                   "run's)")
    p.add_argument("--out", metavar="DIR", help="output directory (default "
                   "runs/prune-<timestamp>); must not exist or be empty")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grownet.prune import prune_run

    prune_run(args.run, args.out, epoch=args.epoch, percent=args.percent, keep=args.keep,
              params=args.params, layers=args.layers, force=args.force,
              retrain_epochs=args.retrain_epochs, retrain_from=args.retrain_from,
              seed=args.seed, quiet=args.quiet)
    return 0
