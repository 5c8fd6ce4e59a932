"""Regenerate ``docs/results.md`` end to end: every experiment, then the page.

    python experiments/results.py --out runs/results            # CPU: mnist5k + digits
    python experiments/results.py --out runs/results --data-root DATA --device cuda
                                                                # + CIFAR-10 (GPU)

Steps (each a real command, printed as it runs; a step whose output already exists
under ``--out`` is reused, so an interrupted regeneration continues):

1. ``experiments/grow_mnist5k.py``: growth on mnist5k over seeds (grow, reset state,
   narrow start, final architecture from scratch).
2. Sparsity (``docs/results.md``'s "Sparsity paced to the run"):
   ``experiments/init_mnist5k.py`` (one init for every method),
   ``experiments/dst_mnist5k.py`` (DST ``--keep 0.05`` vs dense SGD),
   ``experiments/tickets_mnist5k.py`` (tickets with λ paced per layer vs dense SGD) and,
   with ``--mnist-root`` holding the MNIST IDX files, ``experiments/dst_mnist.py`` (the
   DST paper's protocol on full MNIST).
3. For mnist5k and digits: ``grownet grow`` per seed (mnist5k reuses step 1's runs),
   then ``grownet compare`` against the plain alternatives (``uniform``, ``random``)
   and fixed backbones, and ``grownet report`` of seed 0.
4. With ``--mnist-root``: ``experiments/pareto_mnist.py``, growth against its plain
   alternatives at four MAC budgets on full MNIST, and LeNet-5 with its best recipe.
5. With ``--data-root`` holding ``cifar-10-batches-py``: the same on CIFAR-10, growing
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
BACKBONES = {"mnist5k": "uniform,random,lenet5,mlp-300-100,vgg16-narrow",
             "digits": "uniform,random,lenet5,mlp-300-100,vgg16-narrow,resnet20",
             "cifar10": "vgg11,vgg16,resnet20,resnet56"}
START = {"mnist5k": "seed-strided", "digits": "seed", "cifar10": "vgg16-narrow"}


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


def sparsity_steps(out: Path, seeds: list[str], mnist_root: Path | None) -> dict[str, str]:
    """The sparsity experiments (one thread each, one after the other): their commands
    and tables."""
    found = {}
    for key, script, extra in (
            ("init", "init_mnist5k.py", ["--seeds", *seeds]),
            ("dst5k", "dst_mnist5k.py", ["--seeds", *seeds, "--epochs", "60"]),
            ("tickets", "tickets_mnist5k.py", ["--seeds", *seeds]),
            ("mnist", "dst_mnist.py", ["--data-root", str(mnist_root)] if mnist_root
             else None)):
        if extra is None:
            found[f"{key}_cmd"] = ("python experiments/dst_mnist.py --data-root DIR "
                                   "--out runs/results/dst-mnist   # not run: no --mnist-root")
            found[f"{key}_table"] = "(not run)"
            continue
        folder = out / key
        found[f"{key}_cmd"] = sh([sys.executable, f"experiments/{script}", *extra, "--out",
                                  str(folder)], done=folder / "results.md")
        found[f"{key}_table"] = _table_of(folder / "results.md")
    return found


def pareto_section(out: Path, mnist_root: Path | None) -> str:
    """The full-MNIST Pareto sweep (``--mnist-root``): its command, table and figure."""
    if mnist_root is None:
        return PARETO.format(command="python experiments/pareto_mnist.py --data-root DIR "
                             "--out runs/results/pareto   # not run: no --mnist-root",
                             table="(not run)", figure="")
    folder = out / "pareto"
    command = sh([sys.executable, "experiments/pareto_mnist.py", "--data-root",
                  str(mnist_root), "--out", str(folder), "--jobs", "2"],
                 done=folder / "pareto.md")
    figure = ROOT / "docs" / "img" / "pareto-mnist.png"
    shutil.copyfile(folder / "pareto.png", figure)
    text = _table_of(folder / "pareto.md")
    return PARETO.format(command=command, table=text.split("\n\nCommands:")[0],
                         figure=f"![growth against its plain alternatives, full MNIST]"
                                f"(img/{figure.name})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/results"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data-root", type=Path, help="folder with cifar-10-batches-py")
    ap.add_argument("--mnist-root", type=Path, help="folder with the four MNIST IDX files")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--page", type=Path, default=ROOT / "docs" / "results.md")
    args = ap.parse_args()
    out = args.out.resolve()
    os.chdir(ROOT)  # the commands run from the root, and relative paths mean the same
    if out.is_relative_to(ROOT):  # commands and tables then name runs/... paths
        out = out.relative_to(ROOT)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [str(s) for s in args.seeds]

    defaults_cmd = sh([sys.executable, "experiments/defaults_mnist5k.py", "--seeds", *seeds,
                       "--out", str(out / "defaults")], done=out / "defaults" / "results.md")
    grow_cmd = sh([sys.executable, "experiments/grow_mnist5k.py", "--seeds", *seeds,
                   "--out", str(out / "grow"), "--jobs", "1"],
                  done=out / "grow" / "results.md")
    sparsity = sparsity_steps(out, seeds, args.mnist_root)
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
    page.append(DEFAULTS.format(command=defaults_cmd,
                                table=_table_of(out / "defaults" / "results.md")))
    page.append(GROW.format(command=grow_cmd, table=_table_of(out / "grow" / "results.md")))
    for title, data, section in (("mnist5k", "mnist5k", mnist), ("digits", "digits", digits),
                                 ("CIFAR-10", "cifar10", cifar)):
        if section is None:
            page.append(NO_CIFAR)
            continue
        page.append(COMPARE.format(title=title, data=data, **section))
    page.append(pareto_section(out, args.mnist_root))
    page.append(SPARSITY.format(**sparsity))
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

DEFAULTS = """
## Starts: the defaults, chosen on the validation split (mnist5k)

```
{command}
```

{table}

The validation split (400 images) decides; the test split (1,000 images, about 0.3
points per disagreement) is reported beside it. `grownet grow` starts from
`seed-strided` (a 5x5 stride-2 stem, 4 filters, then one 3x3 conv of 8 at 7x7, a
flatten readout; 38 k MACs) rather than `seed` (two stride-1 3x3 convs of 8 at 28x28
and 14x14; 173 k MACs): as accurate on validation, at a fraction of the MACs and of the
training time. `grownet train` (every method) uses lr 0.05: LeNet-5, which has no
BatchNorm, is unstable at 0.1.
"""

GROW = """
## Growth on mnist5k

```
{command}
```

`grow` = `grownet grow --seed S` with its defaults (from `seed-strided`, 30 epochs, 10 %
of the training images held out for growth's decisions); `grow-reset` = the same with
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

Each grown run (one per seed) against its plain alternatives at its own MACs
(`uniform`: its start widened uniformly; `random`: its architecture with the MACs
allocated at random; both with the grown run's method, recipe and epochs) and against
fixed backbones trained with SGD under `grownet train`'s own recipe (lr 0.05, momentum
0.9, cosine schedule, 1 warm-up epoch), all on the same training images and epoch
budget (`grownet compare`). Latency:
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

PARETO = """
## Growth against its plain alternatives on full MNIST

The question growth has to answer: is the grown net better for its cost than what a
user gets without growing? Full MNIST (60,000 / 10,000), 3 seeds, 15 epochs, one
thread per run; every model holds out the same 6,000 training images for decisions
(growth, LeNet-5's recipe), and the test set is read only for this table.

```
{command}
```

{table}

{figure}

**The goal is not met.** At no budget does the grown net beat the uniform widening of
its start by more than one std (−0.20, −0.03, −0.03 points), and no grown net at ≤ ½ of
LeNet-5's MACs reaches LeNet-5 (best: 99.12 % at 163 k MACs against 99.39 % at 417 k).
The causes, measured in the table:

- **Where growth puts the MACs** (the `grown arch from scratch` rows: the grown
  architecture trained from scratch with the same recipe and epochs, against `uniform`
  trained the same way). At 50 k, growth widens only the second conv (at 7×7; 4/13
  filters) and that allocation is worse than uniform's (98.54 ± 0.05 against 98.69 ± 0.08). At
  100 k it picks exactly uniform's 7/16. At the 200 k budget it picks 13/16, which
  *does* beat uniform's allocation by more than one std (99.24 ± 0.03 against
  99.15 ± 0.07, with 23 % fewer params): Γ found a better net there.
- **What growing costs.** The grown net trains its final architecture for 10–13 of
  the 15 epochs; it ends 0.03–0.12 points under the same architecture trained from scratch
  for all 15, which erases the 200 k win. In return it spends 9–24 % less training
  compute than the uniform net (`compare-*/compare.csv`, `train_macs`).
- **Budgets past 163 k go unused.** The 200 k and 400 k runs are identical: growth
  stops at the growth-epoch budget (9 of 15 epochs, the rest fine-tunes), and with a
  check every 2 epochs and new filters given 3 epochs to enter Γ's support, a run makes
  three decisions (`events.jsonl`: 4→5 / 8→16 at epoch 2, 5→13 at epoch 5, then the
  budget at epoch 8 with s2_l0 at 0.875 ≥ τ). More epochs, or checks paced in steps
  rather than epochs on a 60,000-image dataset, are the levers; neither was tuned
  here.

What a user gets today on full MNIST: `grownet grow --max-macs 200000` finds an
allocation worth training from scratch (the sweep's `scratch-*` command: `grownet
train --config <the uniform run's config.toml> --arch RUN/final/arch.json`), and a
grown net costs 9–24 % less to train than its uniform alternative at
−0.03 to −0.20 points.
"""

SPARSITY = """
## Sparsity paced to the run (DST `--keep`, tickets with λ per layer, one init)

```
{init_cmd}
{dst5k_cmd}
{tickets_cmd}
{mnist_cmd}
python bench/dst_step.py
```

These four experiments were measured at commit 52750aa (before issue 14's branch
merged with the rooms and growth changes of issues 11–13; `git checkout 52750aa`
reruns them as printed). Since then `grownet train`'s default lr is 0.05 (it was 0.1:
the init table's `sgd` and `dessilbi` rows ran with 0.1; every other recipe below
names its lr), the validation split is seeded by 0 for every run (it followed the
run's seed), `--val-fraction` is `--val-frac`, and growth starts from the default init
under new rules (the init table's `grow` row is the old rules'; see "Starts" below).
Each script's docstring has its protocol; each run is a `grownet train` / `grow` /
`prune` run directory under `--out`, trained on one thread (the machine was shared
with other jobs, and for a few runs with another of these experiments, so wall times
are indicative; `bench/dst_step.py` gives clean per-step ratios). Accuracies are the
final model's test accuracy; nothing was chosen on the test set (the init choice
below is made on a validation split, the tickets' entry pace on Γ's support size).

### One initialisation for every method

Every run holds out 20 % of mnist5k's training images (`--val-frac 0.2`) and is
judged by its final validation accuracy (mean ± std over seeds 0, 1, 2; 20 epochs;
`grow` with its defaults). "epochs to 90 %" is the first epoch reaching 90 %
validation accuracy: how long the start stalls. 81 runs, 18 min of training.

{init_table}

PyTorch's default initialisation is the best or within noise of it for every
training method and both recipes. The growth example's init (`kaiming`: N(0, 0.01)
linears) stalls (8–16 epochs to 90 % where the default takes 3–7), leaves DST at
5 % keep 2–4 points lower, and one DessiLBI LeNet-5 seed never left chance (10 %);
`he` starts fastest but one LeNet-5 SGD seed ended at 75 % (lr 0.1). So `--init`
defaults to `default`, whatever the method. Under the growth rules of that commit
growth did better on `kaiming` (98.38 ± 0.54 against 97.42 ± 2.03; with the default
init one seed stopped growing after 9 epochs); the rules that replaced them judge a
filter only once it has had its time, which needs every filter born at one norm, and
the default init gives exactly that (≈ 0.58 whatever the layer's width;
`docs/growth.md`), so growth starts from `default` too and every method is compared
from the same initialisation.

### DST paced to keep 5 % against dense SGD (mnist5k)

The DST paper's recipe (SGD lr 0.01, momentum 0.9, batch 64, constant lr) for 60
epochs (3,780 steps; at 20 epochs DST at 5 % was still 1.2 points behind on
mlp-300-100, on the validation split above), the same for both. 12 runs, 4.5 min of training.

{dst5k_table}

Both within 1 point of dense SGD (−0.17 and −0.23), at 4.91–5.27 % of the masked
layers' weights for a target of 5 %: the goal is met. (Measured before, in the issue:
with a fixed α = 5e-4, LeNet-5 kept 55 % after 20 epochs, and 93.6 % with lr 0.1 and
a cosine schedule.)

### Tickets that survive retraining (mnist5k)

The recipe of the issue (lr 0.05, 15 epochs, cosine, batch 128), dense SGD and the
retraining from init (SGD, 15 epochs) alike; DessiLBI with λ paced per layer
(`--entry-epochs 6.5` for LeNet-5, 7 for vgg16-narrow: the pace at which Γ's support
at epoch 7 holds at most 30 % / 50 % of the params on seed 0; a count, no accuracy).
`ticket-e7` is `grownet prune RUN --epoch 7`; `ticket-sizeK` is `grownet prune RUN
--keep K` (the first step at which the support reaches K of the params, so a little
more than K). 30 runs, 8 min of training.

{tickets_table}

- **LeNet-5, epoch 7**: retrained from init it matches dense SGD (97.23 ± 0.23
  against 97.23 ± 0.42), but at 36.2 ± 6.2 % of the params (29.6, 37.1, 42.0 % per
  seed): **the ≤ 30 % goal is met on seed 0 only.** Cause, measured: around epoch 7
  the support grows by ~15 % of the params per epoch (seed 0: 15 %, 30 %, 50 % at
  epochs 6, 7, 8), so one epoch is too coarse a knob to pin a size across seeds. A
  ticket of a size is not: `--keep 0.3` gives 30.0–32.6 % of the params at
  97.23 ± 0.57 %, within 1 point on every seed. (Before: λ paced for a filter of
  norm 1, the same command kept 4.4 % of the params, fc2 cut to one neuron, and
  retrained to 13.10 ± 5.37 %.) `--keep 0.25` was refused on seed 0 (s1_l0 would keep
  1 of 6 filters) and gives 96.90 ± 0.71 on the other two.
- **vgg16-narrow**: **the ≤ 50 % goal is missed by a little.** The epoch-7 ticket
  (27.0 ± 2.5 % of the params) retrains to 95.63 ± 0.99, 2.0 points under dense
  SGD; cause, measured: its thinnest layer is s3_l1, with 3, 3 and 4 of its 16
  filters per seed (`prune.csv`), a bottleneck for everything after it. The ticket
  of 40 % is 1.36 points under (s3_l1 still at 5, 5, 8); the ticket of 50 % lands
  at 50.5–52.0 % of the params and 97.57 ± 0.12, within 0.06 points. (Before: λ
  paced for norm 1 put 12 of 13 convs in the support by epoch 2, and the ticket kept
  95 % of the params.)

### DST on full MNIST with the paper's protocol

SGD lr 0.01, momentum 0.9, batch 64, constant lr, no augmentation, 20 epochs, all
60,000 training images, PyTorch's default init, every layer masked; one seed (the
CPU budget). The published figures are those a reproduction reports (ALGORITHMS B6:
the paper's own tables could not be retrieved). 6 runs, 28 min of training.

{mnist_table}

- **LeNet-300-100**: `--keep 0.025` keeps 2.57 % at 97.82 %, against 2.5 % at
  97.9 %: 0.08 points and 0.07 points of keep from the reproduction. The paper's
  fixed α = 5e-4 keeps 4.21 % (97.73 %) in the same 20 epochs; the reproduction's
  2.5 % took 60.
- **LeNet-5-Caffe**: **1.5 % is not reached.** The paper's α keeps 3.68 % at 99.09 %
  (2.5x the reproduction's keep at its accuracy); `--keep 0.015` holds at 4.31 %
  (99.11 %). Cause, measured (`keep.csv`): one α lifts every threshold at the same
  rate, and fc1 (93 % of the weights, fan-in 800, the smallest weights) reaches the
  pacer's guard margin (1.5 %, above DST's 1 % dead-layer guard) when the net is at
  5 %, while conv2 keeps 26–28 % and the classifier 100 %; the pacer then stops
  rather than push fc1 onto the guard. Without that margin (the first run of this
  command) fc1 hit the guard, was reset to dense, α rose to its cap and the cycle
  went on to the end (final 2.07 %, 98.86 %). The paper's α run, slower, shares the
  sparsity differently (fc1 2.8 %, conv2 6.7 %, classifier 54 %) and its fc1 was
  reset by the guard once too (epoch 18).
- **Cost** (one thread): LeNet-300-100 0.6 min dense, 1.6 min DST paced (the α run's
  3.1 min overlapped another job); LeNet-5-Caffe 7.3–8.1 min per run. Per step
  (`bench/dst_step.py`, batch 64): DST costs 2.91x a dense SGD step on LeNet-300-100
  (the masks are as much work as its tiny matmuls) and 1.29x on LeNet-5-Caffe; the
  pacer adds 24 % and 6 % on top (it counts the masks every step).
"""


if __name__ == "__main__":
    main()
