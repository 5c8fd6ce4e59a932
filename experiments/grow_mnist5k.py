"""Growth on mnist5k over seeds: grown net vs narrow start vs the final architecture
trained from scratch, and carried vs reset optimizer state.

    python experiments/grow_mnist5k.py --seeds 0 1 2 --out runs/exp-grow --jobs 2

Writes ``<out>/results.csv`` (one row per run) and ``<out>/results.md`` (mean ± std
per variant), the table that ``docs/results.md`` quotes. Each variant is a real
``grownet`` run directory under ``<out>``.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd


def _run(variant: str, seed: int, out: Path, extra: dict) -> dict:
    import torch

    torch.set_num_threads(1)  # several runs side by side on a small CPU
    from grownet.grow.job import start_job
    from grownet.runs import RunConfig

    folder = out / f"{variant}-s{seed}"
    if variant in ("grow", "grow-reset"):
        cfg = RunConfig(seed=seed, growth={"carry_state": variant == "grow"}, **extra)
    else:  # fixed architectures, trained as many epochs as the grown run took
        grown = out / f"grow-s{seed}"
        arch = str(grown / "stages" / "000" / "arch.json") if variant == "narrow" else str(
            grown / "final" / "arch.json")
        epochs = len(pd.read_csv(grown / "metrics.csv"))
        cfg = RunConfig(command="train", arch=arch, method="dessilbi", seed=seed,
                        epochs=epochs)
    r = start_job(cfg, folder, quiet=True)
    wall = float(pd.read_csv(folder / "metrics.csv")["time_s"].iloc[-1])
    return {"variant": variant, "seed": seed, "test_acc": r.test_acc * 100,
            "params": r.params, "macs": r.macs, "epochs": r.epochs, "wall_s": wall,
            "widths": " ".join(f"{k}={v}" for k, v in r.spec.widths().items()),
            "run": str(folder)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/exp-grow"))
    ap.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with ProcessPoolExecutor(args.jobs) as pool:
        first = [pool.submit(_run, v, s, args.out, {}) for s in args.seeds
                 for v in ("grow", "grow-reset")]
        rows += [f.result() for f in first]
        second = [pool.submit(_run, v, s, args.out, {}) for s in args.seeds
                  for v in ("narrow", "final-from-scratch")]
        rows += [f.result() for f in second]
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "results.csv", index=False)
    agg = table.groupby("variant", sort=False).agg(
        acc_mean=("test_acc", "mean"), acc_std=("test_acc", "std"),
        params=("params", "mean"), macs=("macs", "mean"), epochs=("epochs", "mean"),
        wall_s=("wall_s", "mean"))
    lines = ["| variant | test acc % (mean ± std) | params | MACs | epochs | wall s |",
             "|---|---|---|---|---|---|"]
    for name, r in agg.iterrows():
        lines.append(f"| {name} | {r.acc_mean:.2f} ± {r.acc_std:.2f} | {r.params:,.0f} | "
                     f"{r.macs:,.0f} | {r.epochs:.0f} | {r.wall_s:.0f} |")
    lines += ["", "Per run:", "", "| variant | seed | test acc % | params | MACs | epochs | "
              "widths |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.variant} | {r.seed} | {r.test_acc:.2f} | {r.params:,} | {r.macs:,} | "
              f"{r.epochs} | {r.widths} |" for r in table.itertuples()]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
