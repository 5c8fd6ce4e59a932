"""Compact nets from a fixed backbone on mnist5k: a DessiLBI ticket (support at an early
epoch, retrained from the initialisation — the lottery procedure) vs Dynamic Sparse
Training vs dense SGD.

    python experiments/tickets_mnist5k.py --seeds 0 1 2 --epochs 15 --out runs/exp-tickets

Writes ``<out>/results.csv`` and ``<out>/results.md`` (mean ± std per arch and method).
"kept params %" is the params of the physically slimmed dense net over the backbone's;
for DST the remaining unstructured sparsity is reported separately (it does not lower
dense MACs).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd


def _run(arch: str, method: str, seed: int, epochs: int, out: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    from grownet.cost import count
    from grownet.grow.job import start_job
    from grownet.prune import prune_run
    from grownet.runs import RunConfig
    from grownet.spec import preset

    dense = count(preset(arch, (1, 28, 28), 10))
    folder = out / f"{arch}-{method}-s{seed}"
    lr = 0.01 if method == "dst" else 0.05  # DST: the paper's MNIST lr
    base = dict(command="train", arch=arch, seed=seed, epochs=epochs, lr=lr)
    sparsity = 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        if method == "ticket":
            start_job(RunConfig(method="dessilbi", **base), folder / "full", quiet=True)
            early = max(1, epochs // 2)  # the support has formed (entry pace: 3 epochs)
            prune_run(folder / "full", folder / "ticket", epoch=early, retrain_epochs=epochs,
                      retrain_from="init")
            final = folder / "ticket" / "retrain"
        else:
            start_job(RunConfig(method=method, **base), folder, quiet=True)
            final = folder
            if method == "dst":
                events = [json.loads(x) for x in (folder / "events.jsonl").read_text()
                          .splitlines()]
                sparsity = [e for e in events if e["kind"] == "dst-slim"][0][
                    "unstructured_sparsity"]
    metrics = pd.read_csv(final / "metrics.csv")
    last = metrics.iloc[-1]
    wall = float(last["time_s"])
    if method == "ticket":
        wall += float(pd.read_csv(folder / "full" / "metrics.csv")["time_s"].iloc[-1])
    return {"arch": arch, "method": method, "seed": seed, "test_acc": last["test_acc"] * 100,
            "kept_params_pct": 100 * last["params"] / dense.params, "params": last["params"],
            "macs": last["macs"], "unstructured_sparsity_pct": 100 * sparsity,
            "epochs": len(metrics) * (2 if method == "ticket" else 1), "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--archs", nargs="+", default=["lenet5", "vgg16-narrow"])
    ap.add_argument("--out", type=Path, default=Path("runs/exp-tickets"))
    ap.add_argument("--jobs", type=int, default=max(1, os.cpu_count() or 2))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(a, m, s) for a in args.archs for m in ("sgd", "dst", "ticket") for s in args.seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(_run, *zip(*jobs), [args.epochs] * len(jobs),
                             [args.out] * len(jobs)))
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "results.csv", index=False)
    lines = ["| arch | method | test acc % | kept params % | params | MACs | "
             "unstructured sparsity % | epochs | wall s |", "|---" * 9 + "|"]
    for (arch, method), g in table.groupby(["arch", "method"], sort=False):
        lines.append(
            f"| {arch} | {method} | {g.test_acc.mean():.2f} ± {g.test_acc.std():.2f} | "
            f"{g.kept_params_pct.mean():.1f} | {g.params.mean():,.0f} | {g.macs.mean():,.0f} | "
            f"{g.unstructured_sparsity_pct.mean():.1f} | {g.epochs.mean():.0f} | "
            f"{g.wall_s.mean():.0f} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
