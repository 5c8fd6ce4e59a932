"""``grownet report RUN``: one self-contained HTML file with the run's tables and figures."""

from __future__ import annotations

import argparse

_EXAMPLES = """\
examples:
  grownet report runs/grow-20261121-120000               # writes RUN/report.html
  grownet report runs/grow-20261121-120000 --compare runs/cmp --out /tmp/report.html
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one self-contained HTML report of a run",
                       description="Write an HTML page (images embedded, no network needed) "
                       "with the run summary, growth timeline, Γ support heatmap, loss and "
                       "accuracy curves, each stage's architecture graph, the per-layer "
                       "table and, when a comparison exists, the comparison table and "
                       "Pareto figure. A run still in progress gets a report of what it "
                       "has logged so far.",
                       epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="the run directory")
    p.add_argument("--compare", metavar="DIR", default=None,
                   help="directory 'grownet compare' wrote (compare.csv, pareto.png); "
                   "default RUN/compare when it exists")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="the HTML file to write (default RUN/report.html); an existing "
                   "file is refused unless --force")
    p.add_argument("--force", action="store_true", help="replace an existing --out FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grownet.report import write_report

    path = write_report(args.run, out=args.out, compare=args.compare, force=args.force)
    print(f"report: {path}")
    return 0
