"""How far a 2-process torchrun run (gloo, CPU) lands from one process with the same
global batch, with and without BatchNorm.

Run from the repository root::

    python bench/ddp_batchnorm.py                     # digits, 10 epochs, batch 64
    python bench/ddp_batchnorm.py --data mnist5k --epochs 6 --batch-size 128

For each start (the ``seed`` preset, which has BatchNorm after every conv, and the
same net without BatchNorm) it runs ``grownet grow`` once in one process and once
under ``torchrun --nproc_per_node=2``, then prints, per epoch, the largest difference
of train loss and test accuracy, whether the growth events agree, and both final
test accuracies. Without BatchNorm the two differ by float rounding only (gradients
are sums either way); with it, every rank normalises over its own half of each
batch, and evaluation uses rank 0's running statistics (DDP broadcasts rank 0's
buffers), so the runs drift apart. Not run by CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

import grownet as gn
from grownet.data import load_dataset
from grownet.runs import RunDir


def start_without_bn(data: str, folder: Path) -> str:
    ds = load_dataset(data)
    spec = gn.ArchSpec.preset("seed", in_shape=ds.in_shape, num_classes=ds.num_classes)
    # dataclasses.replace keeps every other field (a stage's pool, width, blocks)
    stages = tuple(dataclasses.replace(st, layers=tuple(
        dataclasses.replace(layer, bn=False) for layer in st.layers)) for st in spec.stages)
    path = folder / "seed-nobn.json"
    path.write_text(spec.replace(stages=stages, name="seed-nobn").to_json())
    return str(path)


def grow(argv: list[str], out: Path, ranks: int) -> Path:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={ranks}", "-m", "grownet"] if ranks > 1
                else [sys.executable, "-m", "grownet"])
    subprocess.run([*launcher, "grow", *argv, "--out", str(out), "--quiet"], env=env,
                   check=True, capture_output=True)
    return out


def compare(one: Path, two: Path) -> dict[str, object]:
    a, b = pd.read_csv(one / "metrics.csv"), pd.read_csv(two / "metrics.csv")
    n = min(len(a), len(b))
    per_epoch = (a.train_loss[:n] - b.train_loss[:n]).abs()
    events, events2 = ([e["reason"] for e in RunDir(run).events()] for run in (one, two))
    return {
        "epochs": f"{len(a)} / {len(b)}",
        "|d train_loss| per epoch": " ".join(f"{d:.0e}" for d in per_epoch),
        "max |d train_loss|": f"{per_epoch.max():.2e}",
        "max |d test_acc| (pts)": f"{100 * (a.test_acc[:n] - b.test_acc[:n]).abs().max():.2f}",
        "same growth events": events == events2,
        "final test acc, 1 process": f"{100 * a.test_acc.iloc[-1]:.2f} %",
        "final test acc, 2 ranks": f"{100 * b.test_acc.iloc[-1]:.2f} %",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    flags = ["--data", args.data, "--epochs", str(args.epochs), "--batch-size",
             str(args.batch_size), "--epochs-per-stage", "2", "--seed", "0", "--device", "cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = {}
        for name, key, start in (("seed (BatchNorm)", "bn", "seed"),
                                 ("seed without BatchNorm", "nobn",
                                  start_without_bn(args.data, root))):
            one = grow([*flags, "--from", start], root / f"{key}-1", 1)
            two = grow([*flags, "--from", start], root / f"{key}-2", 2)
            rows[name] = compare(one, two)
    print(f"grownet grow --data {args.data} --epochs {args.epochs} --batch-size "
          f"{args.batch_size} --epochs-per-stage 2, seed 0: 1 process vs torchrun 2 ranks")
    print(pd.DataFrame(rows).to_string())


if __name__ == "__main__":
    main()
