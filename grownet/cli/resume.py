"""``grownet resume RUN``: continue a run that was stopped or killed."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="continue a stopped or killed run",
                       description="Continue a run from its last checkpoint; it ends as "
                       "the uninterrupted run would have.",
                       epilog="example: grownet resume runs/grow-20261121-120000")
    p.add_argument("run", help="the run directory")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grownet.cli.common import observer_for
    from grownet.grow import resume_job
    from grownet.runs import RunDir

    observer = observer_for(RunDir.open(args.run).config())
    resume_job(args.run, quiet=args.quiet, observer=observer)
    return 0
