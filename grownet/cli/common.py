"""Flags shared by the commands that train, and how they resolve into a RunConfig."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, NamedTuple

from grownet.runs import RunConfig
from grownet.runs.config import read_toml

if TYPE_CHECKING:
    from grownet.grow import GrowthPolicy

# (flag, config key, type, help). Defaults are None so that only flags given on the
# command line override the config file.
TRAINING_FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    ("--data", "data", str, "dataset: mnist5k (default), digits, mnist, fashion-mnist, "
     "cifar10, cifar100, synthetic"),
    ("--data-root", "data_root", str, "folder holding the on-disk datasets"),
    ("--seed", "seed", int, "random seed (default 0)"),
    ("--device", "device", str, "auto (default), cpu or cuda"),
    ("--epochs", "epochs", int, "most epochs in all (grow: fine-tuning included)"),
    ("--batch-size", "batch_size", int, "training batch size (default 64 for train, 128 for grow)"),
    ("--val-frac", "val_frac", float, "share of the training images held out for the run's "
     "decisions (default 0.1 for grow, 0 for train); the test split only reports"),
    ("--augment", "augment", str, "auto (default: shift for MNIST-like data, crop-flip for "
     "CIFAR), none, shift, crop-flip"),
    ("--lr", "lr", float, "step size a (default 0.05)"),
    ("--momentum", "momentum", float, "momentum (default 0.9)"),
    ("--weight-decay", "weight_decay", float, "weight decay (default 0)"),
    ("--kappa", "kappa", float, "DessiLBI kappa (default 1)"),
    ("--nu", "nu", float, "DessiLBI nu (default 100)"),
    ("--lam", "lam", float, "DessiLBI lambda; 0 paces it from --entry-epochs (default)"),
    ("--entry-epochs", "entry_epochs", float, "epochs after which a typical filter enters "
     "Γ's support; paces lambda (default 3)"),
    ("--init", "init", str, "initialisation of a fresh net, the same for every method: "
     "default (PyTorch's, every command's default), kaiming (fan-out normal convs, "
     "N(0, 0.01) linears) or he (fan-in normal, every layer)"),
    ("--schedule", "schedule", str, "lr schedule: cosine (default), step, constant"),
    ("--warmup-epochs", "warmup_epochs", float, "linear lr warm-up at the start "
     "(default: 1 for train, 0 for grow)"),
    ("--compile", "compile", bool, "torch.compile the model (recompiled after each growth "
     "step; pays off on GPUs for long runs)"),
    ("--tensorboard", "tensorboard", bool, "also log scalars and the width/support figures "
     "to RUN/tensorboard (pip install 'grownet[tensorboard]')"),
)


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.toml", help="configuration file; flags "
                        "given here override it")
    parser.add_argument("--out", metavar="DIR", help="run directory (default "
                        "runs/<command>-<timestamp>); must not exist or be empty")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    add_flags(parser, TRAINING_FLAGS)


class TypedFlag(argparse.Action):
    """``store`` (or, with ``const``, ``store_const``) that also remembers the spelling
    the user typed (``--from`` or ``--start``), so that errors name the flag as typed."""

    def __init__(self, option_strings, dest, const=None, **kwargs):
        super().__init__(option_strings, dest, nargs=0 if const is not None else None,
                         const=const, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        typed = dict(getattr(namespace, "typed_flags", None) or {})
        typed[self.dest] = option_string
        namespace.typed_flags = typed


def add_flags(parser: argparse.ArgumentParser, flags: tuple) -> None:
    for flag, key, kind, text in flags:
        names = flag.split("|")  # "--start|--from": one flag, two spellings
        if kind is bool:
            parser.add_argument(*names, dest=key, action=TypedFlag, const=True, help=text)
        else:
            parser.add_argument(*names, dest=key, action=TypedFlag, type=kind, default=None,
                                help=text)


class Resolved(NamedTuple):
    """A command's configuration, its growth policy, and where each key was set."""

    cfg: RunConfig
    policy: GrowthPolicy
    names: dict[str, str]


def resolve_config(args: argparse.Namespace, command: str, flags: tuple) -> Resolved:
    """Defaults, then ``--config``, then the flags given on the command line: the run's
    configuration and its growth policy, each built and checked once, with every
    message naming the flag as typed (or the file a key came from)."""
    from grownet.grow import GrowthPolicy

    layers: list[tuple[dict[str, Any], Any]] = []
    names: dict[str, str] = {}
    if args.config:
        values = read_toml(args.config)
        layers.append((values, str(args.config)))
        names.update({key: str(args.config) for key in values})
        table = values.get("growth")  # [growth] keys come from the file too
        names.update({key: str(args.config) for key in table} if isinstance(table, dict)
                     else {})
    typed = getattr(args, "typed_flags", None) or {}
    given = {key: getattr(args, key) for _, key, _, _ in flags
             if getattr(args, key, None) is not None}
    names.update({key: typed.get(key, "") for key in given})
    layers += [(given, names), ({"command": command}, "")]
    cfg = RunConfig().layered(layers)
    return Resolved(cfg, GrowthPolicy.from_config(cfg.growth, names), names)
