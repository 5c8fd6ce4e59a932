"""DST paced to keep 5 % of the weights against dense SGD with the same recipe, on
mnist5k, over seeds.

    python experiments/dst_mnist5k.py --seeds 0 1 2 --epochs 60 --out runs/exp-dst-mnist5k

Recipe (the DST paper's, ALGORITHMS.md B5): SGD lr 0.01, momentum 0.9, batch 64,
constant lr, no warm-up, PyTorch's default init; mnist5k keeps its shift
augmentation. 60 epochs of mnist5k's 4,000 training images are 3,780 steps (the
paper's 20 epochs of MNIST are 18,760). Per arch and seed: ``grownet train --method
sgd`` and ``grownet train --method dst --keep 0.05``. Writes ``<out>/results.csv`` and
``<out>/results.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PAPER, markdown, mean_std, train_row  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--keep", type=float, default=0.05)
    ap.add_argument("--archs", nargs="+", default=["mlp-300-100", "lenet5"])
    ap.add_argument("--out", type=Path, default=Path("runs/exp-dst-mnist5k"))
    args = ap.parse_args()
    rows = []
    for arch in args.archs:
        for seed in args.seeds:
            base = {"arch": arch, "seed": seed, "epochs": args.epochs, **PAPER}
            for case, cfg in (("sgd", {"method": "sgd"}),
                              (f"dst-keep{args.keep:g}", {"method": "dst",
                                                          "keep": args.keep})):
                row = train_row(args.out / f"{arch}-{case}-s{seed}", **base, **cfg)
                rows.append({"arch": arch, "case": case, "seed": seed, **row})
                print(f"{arch} {case} s{seed}: {row['final_acc']:.4f} keep {row['keep']:.4f}"
                      f" ({row['train_s']:.0f} s)", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "results.csv", index=False)
    out = []
    for arch, g in table.groupby("arch", sort=False):
        dense = g[g["case"] == "sgd"]["final_acc"]
        for case, c in g.groupby("case", sort=False):
            gap = (c["final_acc"].mean() - dense.mean()) * 100
            out.append([arch, case, mean_std(c["final_acc"]), mean_std(c["keep"], 100.0, 2),
                        " ".join(f"{100 * k:.2f}" for k in c["keep"]),
                        f"{gap:+.2f}" if case != "sgd" else "",
                        f"{c['train_s'].mean():.0f}"])
    text = markdown(["arch", "run", "test acc %", "keep % (mean ± std)", "keep % per seed",
                     "vs dense (points)", "train s / run (1 thread)"], out)
    (args.out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
