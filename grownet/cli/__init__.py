"""The ``grownet`` command: thin; parses arguments and calls the rooms.

Each subcommand lives in its own module with ``register(subparsers)``, which adds
its parser and sets ``func`` (``args -> int`` exit code). A :class:`UserError`
anywhere becomes one line on stderr and exit code 2 (under torchrun, from rank 0 only:
every rank exits 2).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from grownet.errors import UserError

# Module names under grownet.cli, in the order `grownet --help` lists them.
COMMANDS = ("grow", "train", "prune", "export", "compare", "inspect", "report", "resume",
            "count")


#: how long a rank other than 0 waits, after a user error, for rank 0 to report it
FOLLOWER_GRACE_S = 20.0


def report_error(message: str) -> None:
    """Print one ``grownet: error:`` line. Under torchrun every rank meets the same
    error: rank 0 prints it, and the others wait for torchrun to stop them once rank 0
    has exited (were they to exit first, torchrun could stop rank 0 before it printed).
    A rank still running after :data:`FOLLOWER_GRACE_S` met an error of its own, and
    says so."""
    rank = os.environ.get("RANK", "0")
    if rank != "0":
        time.sleep(FOLLOWER_GRACE_S)
        message = f"(rank {rank}) {message}"
    one_line = message.replace("\r", "\\r").replace("\n", "\\n")  # e.g. a path with one
    print(f"grownet: error: {one_line}", file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors also exit 2, in one line
        report_error(f"{message} (see '{self.prog} --help')")
        self.exit(2)


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="grownet", description="Grow compact CNNs from scratch with "
                     "DessiLBI; compare them with fixed backbones.")
    from grownet import __version__

    parser.add_argument("--version", action="version", version=f"grownet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"grownet.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"grownet.cli.{name}":
                raise
            continue  # not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        report_error(str(err))
        return 2
    except KeyboardInterrupt:
        print("grownet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `grownet inspect RUN | head`: the reader left; not an error
        sys.stderr.close()
        return 0


__all__ = ["COMMANDS", "main", "make_parser"]
