"""``grownet train``: a fixed backbone, trained with SGD or DessiLBI."""

from __future__ import annotations

import argparse

from grownet.cli.common import (
    TRAINING_FLAGS,
    add_flags,
    add_training_flags,
    observer_for,
    resolve_config,
)

TRAIN_FLAGS = (
    ("--arch", "arch", str, "preset to train (default lenet5); see 'grownet count --help'"),
    ("--method", "method", str, "sgd, dessilbi (default) or dst"),
    ("--alpha", "alpha", float, "DST sparsity strength alpha (default 5e-4)"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a fixed backbone (baseline)",
                       description="Train a fixed preset with SGD or DessiLBI; the run "
                       "directory has the same format as 'grownet grow'.",
                       epilog="examples:\n  grownet train --arch lenet5 --method sgd --epochs 30\n"
                       "  grownet train --arch lenet5 --method dst --alpha 5e-4",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_flags(p)
    add_flags(p, TRAIN_FLAGS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grownet.train.job import TrainJob

    cfg = resolve_config(args, "train", TRAINING_FLAGS + TRAIN_FLAGS).cfg
    TrainJob.start(cfg, args.out, quiet=args.quiet, observer=observer_for(cfg))
    return 0
