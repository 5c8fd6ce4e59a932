"""``grownet grow``: grow a compact net from a narrow start (the main job)."""

from __future__ import annotations

import argparse

from grownet.cli.common import (
    TRAINING_FLAGS,
    TypedFlag,
    add_flags,
    add_training_flags,
    resolve_config,
)

GROW_FLAGS = (
    # --from: under torchrun, whose own parser mistakes --start for --start-method
    ("--start|--from", "start", str, "narrow start preset, arch.json or run directory "
     "(default seed-strided; also seed, vgg16-narrow, resnet20-narrow, or any preset); "
     "spell it --from under torchrun"),
    ("--tau", "tau", float, "saturation threshold in (0, 1] (default 0.8)"),
    ("--epochs-per-stage", "epochs_per_stage", int, "epochs between growth checks "
     "(default 2)"),
    ("--grow-num", "grow_num", int, "filters added at least (default 8 for plain nets, "
     "4 for residual nets)"),
    ("--grow-ratio", "grow_ratio", float, "width factor at least (default 1.5)"),
    ("--mature-epochs", "mature_epochs", float, "epochs a filter trains before its layer "
     "is judged without it (default 3)"),
    ("--stop-patience", "stop_patience", int, "checks with nothing saturated before growth "
     "stops (default 2)"),
    ("--val-patience", "val_patience", int, "checks without a better validation accuracy "
     "before growth stops (default 3)"),
    ("--min-gain", "min_gain", float, "validation accuracy gain per check that counts as "
     "better (default 0.001)"),
    ("--macs-step", "macs_step", float, "MACs one check may add, times the net's (default "
     "1: at most double)"),
    ("--depth-patience", "depth_patience", int, "checks a stage must stay saturated "
     "before a layer is inserted (default 2)"),
    ("--max-width", "max_width", int, "widest a layer may grow (default 128)"),
    ("--max-params", "max_params", int, "params budget (default none)"),
    ("--max-macs", "max_macs", int, "MACs budget (default none)"),
    ("--max-stages", "max_stages", int, "most architectures, the start included "
     "(default 6)"),
    ("--finetune-epochs", "finetune_epochs", int, "fine-tuning epochs after growth "
     "(default: 6, or half of --epochs when that is smaller)"),
    ("--widen-init", "widen_init", str, "new filters: zero (default, function-preserving), "
     "split, random"),
)
ALL_FLAGS = TRAINING_FLAGS + GROW_FLAGS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "grow", help="grow a compact CNN from a narrow start (the main job)",
        description="Grow a compact CNN with DessiLBI: train, watch Γ's support, widen "
        "saturated layers and deepen saturated stages, then fine-tune.",
        epilog="examples:\n  grownet grow --data digits --epochs 20 --out runs/digits-grow\n"
        "  torchrun --nproc_per_node=2 -m grownet grow --from vgg16-narrow --data cifar10 "
        "--data-root DATA   # data parallel, one process per GPU (gloo on CPU)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_flags(p)
    add_flags(p, GROW_FLAGS)
    p.add_argument("--reset-state", dest="carry_state", action=TypedFlag, const=False,
                   help="give each stage a fresh optimizer (the reference behaviour) "
                   "instead of carrying V, Γ and momentum")
    p.add_argument("--no-depth", dest="depth", action=TypedFlag, const=False,
                   help="widen only; never insert layers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grownet.grow import GrowJob

    flags = ALL_FLAGS + (("", "carry_state", bool, ""), ("", "depth", bool, ""))
    cfg, policy, names = resolve_config(args, "grow", flags)
    GrowJob.start(cfg, args.out, quiet=args.quiet, policy=policy,
                  names=names)
    return 0
