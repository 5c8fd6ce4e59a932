"""The ``grownet`` command: thin; parses arguments and calls the rooms.

Each subcommand lives in its own module with ``register(subparsers)``, which adds
its parser and sets ``func`` (``args -> int`` exit code). A :class:`UserError`
anywhere becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from grownet.errors import UserError

# Module names under grownet.cli, in the order `grownet --help` lists them.
COMMANDS = ("grow", "train", "prune", "export", "compare", "inspect", "report", "resume",
            "count")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors also exit 2, in one line
        self.exit(2, f"grownet: error: {message} (see '{self.prog} --help')\n")


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
        print(f"grownet: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grownet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `grownet inspect RUN | head`: the reader left; not an error
        sys.stderr.close()
        return 0


__all__ = ["COMMANDS", "main", "make_parser"]
