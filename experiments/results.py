"""Regenerate ``docs/results.md`` end to end: every experiment, then the page.

    python experiments/results.py --out runs/results            # CPU: mnist5k + digits
    python experiments/results.py --out runs/results --data-root DATA --device cuda
                                                                # + CIFAR-10 (GPU)

Steps (each a real command, printed as it runs; a step whose output already exists
under ``--out`` is reused, so an interrupted regeneration continues):

1. ``experiments/grow_mnist5k.py``: growth on mnist5k over seeds (grow, reset state,
   narrow start, final architecture from scratch).
2. ``experiments/tickets_mnist5k.py``: tickets vs DST vs dense SGD on fixed backbones.
3. For mnist5k and digits: ``grownet grow`` per seed (mnist5k reuses step 1's runs),
   then ``grownet compare`` against fixed backbones, and ``grownet report`` of seed 0.
4. With ``--data-root`` holding ``cifar-10-batches-py``: the same on CIFAR-10, growing
   from ``vgg16-narrow`` (meant for a GPU).

The page quotes the tables these steps write (``results.md``, ``compare.md``) and
copies the Pareto figures to ``docs/img/``; each section names the command that
produced its numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# On a 2-core CPU a resnet20 at 28x28 (31 M MACs) takes ~12 min per seed: mnist5k
# compares the cheaper backbones; digits (8x8) affords resnet20.
BACKBONES = {"mnist5k": "lenet5,mlp-300-100,vgg16-narrow",
             "digits": "lenet5,mlp-300-100,vgg16-narrow,resnet20",
             "cifar10": "vgg11,vgg16,resnet20,resnet56"}
START = {"mnist5k": "seed", "digits": "seed", "cifar10": "vgg16-narrow"}


def sh(cmd: list[str], done: Path | None = None) -> str:
    """Run ``cmd`` (from the repository root) unless ``done`` exists; the command as text
    (as a user would type it: ``python``, ``grownet``, paths relative to the root)."""
    text = " ".join(cmd).replace(f"{sys.executable} -m grownet", "grownet")
    text = text.replace(sys.executable, "python").replace(f"{ROOT}/", "")
    if done is not None and done.exists():
        print(f"[reuse] {text}", flush=True)
        return text
    print(f"[run]   {text}", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return text


def grownet(*args: str) -> list[str]:
    return [sys.executable, "-m", "grownet", *args]


def compare_section(data: str, out: Path, seeds: list[int], extra: list[str],
                    grow_runs: list[Path] | None = None) -> dict[str, str]:
    """Grow per seed (unless given), compare, report; the commands and the table."""
    commands = []
    if grow_runs is None:
        grow_runs = []
        for seed in seeds:
            run = out / f"grow-{data}-s{seed}"
            commands.append(sh(grownet("grow", "--data", data, "--from", START[data],
                                       "--seed", str(seed), "--out", str(run), "--quiet",
                                       *extra), done=run / "final" / "model.safetensors"))
            grow_runs.append(run)
    where = out / f"compare-{data}"
    commands.append(sh(grownet("compare", *map(str, grow_runs), "--backbones",
                               BACKBONES[data], "--out", str(where)),
                       done=where / "compare.md"))
    commands.append(sh(grownet("report", str(grow_runs[0]), "--compare", str(where)),
                       done=None))
    figure = ROOT / "docs" / "img" / f"pareto-{data}.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(where / "pareto.png", figure)
    return {"commands": "\n".join(commands), "table": _table_of(where / "compare.md"),
            "reading": _reading(where / "compare.csv"),
            "figure": f"img/{figure.name}",
            "report": str(grow_runs[0] / "report.html").replace(f"{ROOT}/", "")}


def _reading(csv: Path) -> str:
    """The grown net against each backbone, as ratios computed from ``compare.csv``."""
    import pandas as pd

    table = pd.read_csv(csv)
    grown = table[table["kind"] == "grown"].iloc[0]
    lines = [f"Read off the table: the grown net ({grown['model']}) against each backbone:"]
    for row in table[table["kind"] == "backbone"].itertuples():
        params, macs = grown["params"] / row.params, grown["macs"] / row.macs
        compute = grown["train_macs"] / row.train_macs
        points = 100 * (grown["acc_mean"] - row.acc_mean)
        unstable = (f" (unstable with this recipe: its seeds spread {100 * row.acc_std:.1f} "
                    "points)" if row.acc_std > 0.05 else "")
        lines.append(f"- {row.model} ({row.method}): {params:.2f}x its params, {macs:.2f}x "
                     f"its MACs, {compute:.2f}x its training compute, accuracy "
                     f"{points:+.2f} points{unstable}")
    return "\n".join(lines)


def _table_of(markdown: Path) -> str:
    """The markdown table (and its notes) of a file written by an experiment, without
    its own top-level heading, absolute paths made relative to the repository."""
    lines = markdown.read_text(encoding="utf-8").strip().splitlines()
    text = "\n".join(line for line in lines if not line.startswith("# ")).strip()
    return text.replace(f"{ROOT}/", "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/results"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data-root", type=Path, help="folder with cifar-10-batches-py")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--page", type=Path, default=ROOT / "docs" / "results.md")
    args = ap.parse_args()
    out = args.out.resolve()
    os.chdir(ROOT)  # the commands run from the root, and relative paths mean the same
    if out.is_relative_to(ROOT):  # commands and tables then name runs/... paths
        out = out.relative_to(ROOT)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [str(s) for s in args.seeds]

    grow_cmd = sh([sys.executable, "experiments/grow_mnist5k.py", "--seeds", *seeds,
                   "--out", str(out / "grow"), "--jobs", "1"],
                  done=out / "grow" / "results.md")
    tickets_cmd = sh([sys.executable, "experiments/tickets_mnist5k.py", "--seeds", *seeds,
                      "--epochs", "15", "--out", str(out / "tickets"), "--jobs", "1"],
                     done=out / "tickets" / "results.md")
    mnist = compare_section("mnist5k", out, args.seeds, [],
                            [out / "grow" / f"grow-s{s}" for s in args.seeds])
    mnist["commands"] = grow_cmd + "\n" + mnist["commands"]
    digits = compare_section("digits", out, args.seeds, ["--device", args.device])
    cifar = None
    if args.data_root and (args.data_root / "cifar-10-batches-py").is_dir():
        cifar = compare_section("cifar10", out, args.seeds,
                                ["--data-root", str(args.data_root), "--device", args.device,
                                 "--epochs", "60"])

    page = [HEADER.format(command=" ".join(["python", "experiments/results.py", *sys.argv[1:]]))]
    page.append(GROW.format(command=grow_cmd, table=_table_of(out / "grow" / "results.md")))
    for title, data, section in (("mnist5k", "mnist5k", mnist), ("digits", "digits", digits),
                                 ("CIFAR-10", "cifar10", cifar)):
        if section is None:
            page.append(NO_CIFAR)
            continue
        page.append(COMPARE.format(title=title, data=data, **section))
    page.append(TICKETS.format(command=tickets_cmd,
                               table=_table_of(out / "tickets" / "results.md")))
    args.page.write_text("\n".join(page), encoding="utf-8")
    print(f"wrote {args.page}")


HEADER = """# Results

Generated by `{command}` (see `experiments/results.py`): every table below is the
output of the command printed above it, copied verbatim. CPU numbers come from this
project's 2-core development VM (torch 2.13.0+cpu, one thread per run); wall times
and latencies are indicative only (the machine was shared). Accuracies are test
accuracy on held-out images: the 1,000 of the `mnist5k` split (real MNIST digits,
400/100 per class) or the 360 of `digits` (scikit-learn's 8×8 digits).
"""

GROW = """
## Growth on mnist5k

```
{command}
```

`grow` = `grownet grow --seed S` with its defaults; `grow-reset` = the same with
`--reset-state` (a fresh optimizer per stage, the reference behaviour); `narrow` =
the narrow start trained as many epochs as the grown run, without growth;
`final-from-scratch` = the grown run's final architecture trained from scratch
(`grownet train --method dessilbi`, as many epochs).

{table}
"""

COMPARE = """
## Grown nets against fixed backbones: {title}

```
{commands}
```

Each grown run (one per seed) against fixed backbones trained with SGD on the same
split, recipe and epoch budget (`grownet compare`): the grown runs' lr 0.1, momentum
0.9, cosine schedule, 1 warm-up epoch, not a recipe tuned per backbone. Latency:
median forward time on the CPU; training compute counts 3 × MACs × images over all
epochs and every growth stage.

{table}

{reading}

![accuracy against MACs, {data}]({figure})

The full report of seed 0 (`{report}`) holds the growth timeline, the Γ support
heatmap and each stage's graph.
"""

NO_CIFAR = """
## CIFAR-10

Not run: CIFAR-10 cannot be downloaded on the development machine, and no GPU was
available. `python experiments/results.py --data-root DATA --device cuda` adds this
section (grow from `vgg16-narrow`, 60 epochs, against vgg11, vgg16, resnet20 and
resnet56).
"""

TICKETS = """
## Tickets, DST and dense SGD on fixed backbones (mnist5k)

```
{command}
```

Per arch and seed: `sgd` = dense SGD; `dst` = Dynamic Sparse Training (α = 5e-4, lr
0.01), fully masked filters then removed; `ticket` = DessiLBI, the support of Γ at
epoch 7 cut out physically (`grownet prune RUN --epoch 7`) and retrained from each
kept filter's initial value (the lottery procedure; its epochs count both runs).

{table}
"""


if __name__ == "__main__":
    main()
