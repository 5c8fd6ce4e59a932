"""``grownet inspect RUN``: the filter configuration per layer, stage by stage."""

from __future__ import annotations

import argparse

from grownet.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="per-layer filter configuration of every stage",
                       description="Print width, selected filters, selection ratio, params "
                       "and MACs of every layer, per stage of a run.",
                       epilog="example: grownet inspect runs/grow-20261121-120000 --stage 2")
    p.add_argument("run", help="the run directory")
    p.add_argument("--stage", type=int, default=None, help="only this stage")
    p.set_defaults(func=run)


def layer_table(run_path: str, stage: int | None = None):
    """layers.csv of a run as a DataFrame (one row per stage and layer)."""
    from grownet.runs import RunDir

    run = RunDir.open(run_path)
    path = run.layers
    table = run.table("layers.csv")  # checked: a damaged file is one line, exit 2
    if table is None:
        raise UserError(f"{path} has no rows: the run has not finished a stage yet")
    if stage is not None:
        if stage not in set(table["stage"]):
            raise UserError(f"stage {stage} is not in {path}; stages: "
                            f"{', '.join(map(str, sorted(set(table['stage']))))}")
        table = table[table["stage"] == stage]
    return table


def run(args: argparse.Namespace) -> int:
    table = layer_table(args.run, args.stage)
    for stage, rows in table.groupby("stage", sort=True):
        total_p, total_m = int(rows["params"].sum()), int(rows["macs"].sum())
        print(f"stage {stage} (after epoch {int(rows['epoch'].iloc[0])}): "
              f"params {total_p:,}  MACs {total_m:,}")
        shown = rows[["layer", "width", "selected", "ratio", "params", "macs"]]
        print(shown.to_string(index=False, na_rep="-"))
        print()
    return 0
