"""``grownet resume RUN``: continue a run that was stopped or killed."""

from __future__ import annotations

import argparse
from pathlib import Path

_EPILOG = """\
examples:
  grownet resume runs/grow-20261121-120000
  grownet resume runs/ticket-e3          # a killed 'grownet prune ... --retrain-epochs N'

A run killed before its first checkpoint starts again from the beginning; one killed
inside its finish completes it; a damaged final/model.safetensors is written again.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="continue a stopped or killed run",
                       description="Continue a run (grow, train, or prune with retraining) "
                       "from its last checkpoint; it ends as the uninterrupted run would "
                       "have.", epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="the run directory")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=run)


def prune_folder(path: Path) -> Path | None:
    """The prune directory ``path`` belongs to: itself, or the parent of its
    ``retrain/`` run; ``None`` for a training run."""
    from grownet.runs.layout import RunLayout

    if RunLayout(path).prune_plan.is_file():
        return path
    if path.name == "retrain" and RunLayout(path.parent).prune_plan.is_file():
        return path.parent  # the prune must log the retraining's end as well
    return None


def run(args: argparse.Namespace) -> int:
    prune = prune_folder(Path(args.run))
    if prune is not None:
        from grownet.prune import resume_prune

        resume_prune(prune, quiet=args.quiet)
        return 0
    from grownet.grow import resume_job

    resume_job(args.run, quiet=args.quiet)
    return 0
