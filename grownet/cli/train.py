"""``grownet train``: a fixed backbone, trained with SGD, DessiLBI or DST."""

from __future__ import annotations

import argparse

from grownet.cli.common import (
    TRAINING_FLAGS,
    add_flags,
    add_training_flags,
    resolve_config,
)

TRAIN_FLAGS = (
    ("--arch", "arch", str, "preset to train (default lenet5); see 'grownet count --help'"),
    ("--method", "method", str, "sgd, dessilbi (default) or dst"),
    ("--alpha", "alpha", float, "DST sparsity strength alpha, fixed (default 5e-4)"),
    ("--keep", "keep", float, "DST: share of the masked layers' weights kept at the end, "
     "in (0, 1); alpha is then steered to reach it (default 0: fixed --alpha)"),
    ("--lam-pace", "lam_pace", str, "DessiLBI: layer (default for train: each layer's "
     "typical filter enters at --entry-epochs) or unit (one lambda, for a filter of "
     "norm 1)"),
    ("--hidden-linear", "hidden_linear", str, "DessiLBI groups of hidden linear layers: "
     "neuron (default) or element (lasso)"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a fixed backbone (baseline)",
                       description="Train a fixed preset with SGD, DessiLBI or DST; the run "
                       "directory has the same format as 'grownet grow'.",
                       epilog="examples:\n  grownet train --arch lenet5 --method sgd --epochs 30\n"
                       "  grownet train --arch lenet5 --method dst --keep 0.05\n"
                       "  grownet train --arch lenet5 --method dst --alpha 5e-4\n"
                       "  grownet train --arch lenet5-caffe --method dst --data mnist "
                       "--data-root DIR \\\n      --epochs 20 --lr 0.01 --batch-size 64 "
                       "--schedule constant --warmup-epochs 0 --augment none\n"
                       "      (the DST paper's MNIST protocol)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_flags(p)
    add_flags(p, TRAIN_FLAGS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grownet.train.job import TrainJob

    cfg = resolve_config(args, "train", TRAINING_FLAGS + TRAIN_FLAGS).cfg
    TrainJob.start(cfg, args.out, quiet=args.quiet)
    return 0
