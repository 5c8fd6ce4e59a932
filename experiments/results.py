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
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_text import COMPARE, DEFAULTS, GROW, HEADER, NO_CIFAR, PARETO, SPARSITY  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# On a 2-core CPU a resnet20 at 28x28 (31 M MACs) takes ~12 min per seed: mnist5k
# compares the cheaper backbones; digits (8x8) affords resnet20.
BACKBONES = {"mnist5k": "uniform,random,lenet5,mlp-300-100,vgg16-narrow",
             "digits": "uniform,random,lenet5,mlp-300-100,vgg16-narrow,resnet20",
             "cifar10": "vgg11,vgg16,resnet20,resnet56"}
START = {"mnist5k": "seed-strided", "digits": "seed", "cifar10": "vgg16-narrow"}
# growth's checks and Γ's entry paced in epochs of a 60,000-image dataset, not mnist5k's
FAST_GROWTH = "--epochs-per-stage 1 --mature-epochs 1 --entry-epochs 1"


def sh(cmd: list[str], done: Path | None = None) -> str:
    """Run ``cmd`` (from the repository root) unless ``done`` exists; the command as text
    (as a user would type it: ``python``, ``grownet``, paths relative to the root)."""
    text = shlex.join(cmd).replace(f"{sys.executable} -m grownet", "grownet")
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
    """The full-MNIST Pareto sweeps (``--mnist-root``): growth with its defaults, then
    paced for a large dataset; their commands, tables and figure."""
    if mnist_root is None:
        return PARETO.format(command="python experiments/pareto_mnist.py --data-root DIR "
                             "--out runs/results/pareto   # not run: no --mnist-root",
                             table="(not run)", figure="", fast_command="", fast_table="")
    tables = {}
    for name, extra in (("pareto", []), ("pareto-fast", ["--grow-flags", FAST_GROWTH,
                                                         "--lenet-dir", str(out / "pareto")])):
        folder = out / name
        command = sh([sys.executable, "experiments/pareto_mnist.py", "--data-root",
                      str(mnist_root), "--out", str(folder), "--jobs", "2", *extra],
                     done=folder / "pareto.md")
        tables[name] = (command, _table_of(folder / "pareto.md").split("\n\nCommands:")[0])
    figure = ROOT / "docs" / "img" / "pareto-mnist.png"
    shutil.copyfile(out / "pareto" / "pareto.png", figure)
    return PARETO.format(command=tables["pareto"][0], table=tables["pareto"][1],
                         figure=f"![growth against its plain alternatives, full MNIST]"
                                f"(img/{figure.name})", fast_command=tables["pareto-fast"][0],
                         fast_table=tables["pareto-fast"][1])


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


if __name__ == "__main__":
    main()
