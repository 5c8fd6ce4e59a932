"""The defaults, chosen on mnist5k's validation split: the start ``grownet grow`` grows
from, and the lr ``grownet train`` gives every net (with and without BatchNorm).

    python experiments/defaults_mnist5k.py --seeds 0 1 2 --out runs/exp-defaults

1. ``grownet grow --from seed`` against ``--from seed-strided`` (everything else the
   defaults: 30 epochs, 10 % of the training images held out for growth's decisions).
2. ``grownet train --arch lenet5 --method sgd`` (no BatchNorm) with its defaults (no
   split, as a user types it: lr 0.05, batch 64), then lr 0.1 (the former default),
   0.05 and 0.02, with and without ``--weight-decay 5e-4``, at batch 128 (the former
   default) and 64, each with 10 % held out.

Every run is a real ``grownet`` run directory under ``--out`` (a finished one is
reused). Decisions read the validation accuracy; the test accuracy is reported beside
it. Writes ``<out>/results.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, mean_std, train_row  # noqa: E402

STARTS = ("seed", "seed-strided")
# the first: the command exactly as a user types it (no split: all 4,000 training images)
RECIPES = (("defaults (no split)", {"val_frac": -1.0}),
           ("lr 0.1, batch 128", {"lr": 0.1, "batch_size": 128}),
           ("lr 0.05, batch 128", {"lr": 0.05, "batch_size": 128}),
           ("lr 0.05, wd 5e-4, batch 128", {"lr": 0.05, "weight_decay": 5e-4, "batch_size": 128}),
           ("lr 0.1, wd 5e-4, batch 128", {"lr": 0.1, "weight_decay": 5e-4, "batch_size": 128}),
           ("lr 0.05, batch 64", {"lr": 0.05, "batch_size": 64}),
           ("lr 0.02, batch 64", {"lr": 0.02, "batch_size": 64}),
           ("lr 0.05, wd 5e-4, batch 64", {"lr": 0.05, "weight_decay": 5e-4, "batch_size": 64}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/exp-defaults"))
    args = ap.parse_args()
    from grownet.cost import count
    from grownet.runs import RunDir, load_spec

    starts = []
    for start in STARTS:
        for seed in args.seeds:
            folder = args.out / f"grow-{start}-s{seed}"
            row = train_row(folder, command="grow", start=start, seed=seed)
            macs = count(load_spec(RunDir(folder).final_arch)).macs
            starts.append({"start": start, "seed": seed, "macs": macs, **row})
    recipes = []
    for name, recipe in RECIPES:
        for seed in args.seeds:
            tag = name.replace(" ", "").replace(",", "-").replace("(", "").replace(")", "")
            folder = args.out / f"lenet5-sgd-{tag}-s{seed}"
            row = train_row(folder, arch="lenet5", method="sgd", seed=seed,
                            **{"val_frac": 0.1, **recipe})
            recipes.append({"recipe": name, "seed": seed, **row})
    a, b = pd.DataFrame(starts), pd.DataFrame(recipes)
    a.to_csv(args.out / "starts.csv", index=False)
    b.to_csv(args.out / "recipes.csv", index=False)
    text = "### The start of `grownet grow`\n\n" + markdown(
        ["start", "seeds", "final MACs (mean)", "val acc %", "test acc %", "wall s (mean)"],
        [[s, len(g), f"{g['macs'].mean():,.0f}", mean_std(g["val_acc"]),
          mean_std(g["final_acc"]), f"{g['train_s'].mean():.0f}"]
         for s, g in a.groupby("start", sort=False)])
    text += "\n\n### `grownet train --arch lenet5 --method sgd`: the lr and batch\n\n" + markdown(
        ["recipe", "seeds", "val acc %", "test acc %"],
        [[r, len(g), mean_std(g["val_acc"]) if g["val_acc"].notna().all() else "-",
          mean_std(g["final_acc"])]
         for r, g in b.groupby("recipe", sort=False)])
    (args.out / "results.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
