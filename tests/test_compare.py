"""`grownet compare`: backbone jobs, reuse, the measured table, the Pareto path, errors."""

from __future__ import annotations

import shutil
import statistics
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from runfiles import cli, mtimes
from safetensors import safe_open

from grownet.compare import load_given, make_plan, stage_path
from grownet.cost import count
from grownet.runs import RunConfig, RunDir, load_spec

GROW = ["--from", "seed", "--data", "digits", "--epochs", "6", "--finetune-epochs", "2",
        "--epochs-per-stage",
        "1", "--entry-epochs", "1", "--tau", "0.5", "--max-stages", "3", "--quiet"]
BACKBONES = "lenet5,mlp-300-100"
GPU = torch.cuda.is_available()
COLUMNS = (["model", "method", "kind", "seeds", "params", "macs", "latency_cpu_b1_ms",
            "latency_cpu_b64_ms"]
           + (["latency_gpu_b1_ms", "latency_gpu_b64_ms"] if GPU else [])
           + ["train_macs", "acc_mean", "acc_std", "runs"])


def _rows(path: Path) -> int:
    return len(pd.read_csv(path / "metrics.csv"))


def _acc(run: str | Path) -> float:
    with safe_open(str(Path(run) / "final" / "model.safetensors"), framework="pt") as f:
        return float(f.metadata()["test_acc"])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Two grow seeds, a given lenet5/sgd run that matches its backbone job, and one
    compare of all three (trained once for the module)."""
    tmp = tmp_path_factory.mktemp("compare")
    g0, g1, t0, out = tmp / "g0", tmp / "g1", tmp / "t0", tmp / "cmp"
    for seed, path in ((0, g0), (1, g1)):
        assert cli("grow", *GROW, "--seed", str(seed), "--out", str(path))[0] == 0
    epochs = max(_rows(g0), _rows(g1))
    # what compare derives for lenet5/sgd/seed 0: grownet train's own recipe on the first
    # run's data and validation split
    rc, _, _ = cli("train", "--data", "digits", "--val-frac", "0.1", "--arch", "lenet5",
                     "--method", "sgd", "--seed", "0", "--epochs", str(epochs),
                     "--out", str(t0), "--quiet")
    assert rc == 0
    argv = ["compare", str(g0), str(g1), str(t0), "--backbones", BACKBONES, "--out",
            str(out), "--latency-repeats", "2"]
    rc, stdout, stderr = cli(*argv)
    assert rc == 0, stderr
    return {"g0": g0, "g1": g1, "t0": t0, "out": out, "argv": argv, "stdout": stdout,
            "epochs": epochs, "csv": pd.read_csv(out / "compare.csv")}


def test_csv_has_contract_columns_and_one_row_per_model_method(world) -> None:
    table = world["csv"]
    assert list(table.columns) == COLUMNS
    keys = list(zip(table["model"], table["method"]))
    assert len(keys) == len(set(keys))
    assert set(keys) == {("grown(seed)", "dessilbi"), ("lenet5", "sgd"),
                         ("mlp-300-100", "sgd")}
    kinds = dict(zip(table["model"], table["kind"]))
    assert kinds == {"grown(seed)": "grown", "lenet5": "backbone", "mlp-300-100": "backbone"}
    assert (table["seeds"] == 2).all()
    assert (table[[c for c in COLUMNS if c.startswith("latency_")]] > 0).all().all()


def test_accuracy_is_mean_and_sample_std_of_final_test_acc(world) -> None:
    for _, row in world["csv"].iterrows():
        runs = row["runs"].split(";")
        assert row["seeds"] == len(runs) == 2
        accs = [_acc(r) for r in runs]
        assert row["acc_mean"] == pytest.approx(statistics.fmean(accs), abs=1e-12)
        assert row["acc_std"] == pytest.approx(statistics.stdev(accs), abs=1e-12)
        assert 0 <= row["acc_mean"] <= 1


def test_params_macs_train_macs_match_the_runs(world) -> None:
    for _, row in world["csv"].iterrows():
        runs = row["runs"].split(";")
        costs = [count(load_spec(Path(r) / "final" / "arch.json")) for r in runs]
        assert row["params"] == round(statistics.fmean(c.params for c in costs))
        assert row["macs"] == round(statistics.fmean(c.macs for c in costs))
        last = [pd.read_csv(Path(r) / "metrics.csv")["train_macs"].iloc[-1] for r in runs]
        assert row["train_macs"] == pytest.approx(statistics.fmean(last), rel=1e-9)
    grown = world["csv"].set_index("model").loc["grown(seed)"]
    assert set(grown["runs"].split(";")) == {str(world["g0"]), str(world["g1"])}


def test_backbone_jobs_use_the_given_runs_data_epochs_and_seeds(world) -> None:
    base = RunConfig.from_toml(world["g0"] / "config.toml")
    made = sorted(p.name for p in (world["out"] / "backbones").iterdir())
    # lenet5/sgd/seed 0 is the given run t0: not trained again
    assert made == ["lenet5-sgd-seed1", "mlp-300-100-sgd-seed0", "mlp-300-100-sgd-seed1"]
    for name in made:
        cfg = RunConfig.from_toml(world["out"] / "backbones" / name / "config.toml")
        arch, seed = name.rsplit("-sgd-seed", 1)
        assert (cfg.command, cfg.arch, cfg.method, cfg.seed) == ("train", arch, "sgd",
                                                                  int(seed))
        assert cfg.epochs == world["epochs"] == _rows(world["out"] / "backbones" / name)
        for key in ("data", "data_root", "augment"):
            assert getattr(cfg, key) == getattr(base, key), key
        assert cfg.batch_size == 64  # train's own recipe, not the grow run's batches
        assert cfg.validation == base.validation > 0  # the same training images
        # the recipe grownet train gives every net, not the grown run's
        own = RunConfig(command="train").resolved()
        for key in ("lr", "momentum", "weight_decay", "schedule", "init", "lam_pace"):
            assert getattr(cfg, key) == getattr(own, key), key
        assert cfg.warmup_epochs == -1 and cfg.warmup == 1.0
    lenet = world["csv"].set_index("model").loc["lenet5", "runs"].split(";")
    assert str(world["t0"]) in lenet
    assert f"lenet5-sgd-seed0: reused {world['t0']}" in world["stdout"]
    assert world["stdout"].count(": training ") == 3


def test_second_compare_trains_nothing(world) -> None:
    before = mtimes(world["out"] / "backbones")
    rc, stdout, _ = cli(*world["argv"])
    assert rc == 0
    assert mtimes(world["out"] / "backbones") == before
    assert stdout.count(": reused ") == 4 and ": training " not in stdout
    again = pd.read_csv(world["out"] / "compare.csv")
    cols = ["model", "method", "params", "macs", "train_macs", "acc_mean", "runs"]
    pd.testing.assert_frame_equal(again[cols], world["csv"][cols])


def test_markdown_table_and_printout(world) -> None:
    md = (world["out"] / "compare.md").read_text()
    row = world["csv"].set_index("model").loc["grown(seed)"]
    acc = f"{row['acc_mean'] * 100:.2f} ± {row['acc_std'] * 100:.2f} %"
    assert acc in md and acc in world["stdout"]
    assert "| model" in md and "digits" in md and "grownet compare" in md
    assert md.count("\n| ") == 1 + 3  # header + one line per row


def test_pareto_png_is_written(world) -> None:
    data = (world["out"] / "pareto.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    import matplotlib.image

    assert matplotlib.image.imread(world["out"] / "pareto.png").shape[2] in (3, 4)


def test_stage_path_is_stage_macs_and_last_test_acc(world) -> None:
    run = world["g0"]
    points = stage_path(run)
    metrics = pd.read_csv(run / "metrics.csv")
    last = metrics.groupby("stage")["test_acc"].last()
    specs = RunDir(run).stage_specs()
    assert len(points) == len(specs) >= 2  # it grew
    for point, (stage, spec) in zip(points, specs):
        assert point.stage == stage
        assert point.macs == count(spec).macs
        assert point.acc == pytest.approx(last[stage], abs=1e-12)
    assert specs[0][1].name == "seed"  # the narrow start comes first
    assert points[-1].macs == count(load_spec(run / "final" / "arch.json")).macs


def test_seeds_and_conflicts_in_the_plan(world, tmp_path) -> None:
    given = load_given([world["g0"], world["g1"]])
    plan = make_plan(given, ["lenet5"], ["sgd", "dessilbi"], out=tmp_path / "x", seeds=3)
    assert plan.seeds == [0, 1, 2] and plan.epochs == world["epochs"]
    assert [j.name for j in plan.jobs][:3] == ["lenet5-sgd-seed0", "lenet5-sgd-seed1",
                                               "lenet5-sgd-seed2"]
    assert {j.action for j in plan.jobs} == {"training"}
    # another budget where finished backbones of the old one lie: refuse, write nothing
    before = mtimes(world["out"])
    rc, _, err = cli("compare", str(world["g0"]), str(world["g1"]), "--backbones",
                       "mlp-300-100", "--epochs", str(world["epochs"] + 1), "--out",
                       str(world["out"]))
    assert rc == 2 and err.count("\n") == 1 and "epochs" in err and "--out" in err
    assert mtimes(world["out"]) == before


def test_killed_backbone_is_resumed(world, tmp_path) -> None:
    out = tmp_path / "cmp"
    shutil.copytree(world["out"], out)
    victim = out / "backbones" / "mlp-300-100-sgd-seed1"
    (victim / "final" / "model.safetensors").unlink()  # as if killed before the end
    early = out / "backbones" / "mlp-300-100-sgd-seed0"
    for name in ("final", "checkpoints", "metrics.csv"):  # killed in its first epoch
        if (early / name).is_dir():
            shutil.rmtree(early / name)
        else:
            (early / name).unlink()
    argv = [a if a != str(world["out"]) else str(out) for a in world["argv"]]
    rc, stdout, _ = cli(*argv)
    assert rc == 0
    assert "mlp-300-100-sgd-seed1: resumed" in stdout and stdout.count(": reused ") == 2
    assert "mlp-300-100-sgd-seed0: resumed" in stdout and "from the start" in stdout
    assert (victim / "final" / "model.safetensors").is_file()
    assert _rows(early) == _rows(world["out"] / "backbones" / "mlp-300-100-sgd-seed0")
    table = pd.read_csv(out / "compare.csv").set_index("model")
    assert table.loc["mlp-300-100", "acc_mean"] == pytest.approx(
        world["csv"].set_index("model").loc["mlp-300-100", "acc_mean"], abs=1e-9)


def _broken(world, tmp_path, kind: str) -> list[str]:
    g0 = world["g0"]
    if kind == "data":
        other = tmp_path / "other"
        shutil.copytree(world["g1"], other)
        cfg = (other / "config.toml").read_text().replace('data = "digits"',
                                                          'data = "synthetic"')
        (other / "config.toml").write_text(cfg)
        return [str(g0), str(other), "--backbones", "lenet5"]
    if kind == "unfinished":
        other = tmp_path / "other"
        shutil.copytree(world["g1"], other)
        shutil.rmtree(other / "final")
        return [str(g0), str(other), "--backbones", "lenet5"]
    if kind == "backbone":
        return [str(g0), "--backbones", "lenet5,lenet6"]
    if kind == "method":
        return [str(g0), "--backbones", "lenet5", "--methods", "adam"]
    if kind == "seeds":
        return [str(g0), "--backbones", "lenet5", "--seeds", "0"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, words", [
    ("data", ["disagree on data", "synthetic"]),
    ("unfinished", ["has not finished", "grownet resume"]),
    ("backbone", ["unknown backbone 'lenet6'", "resnet20"]),
    ("method", ["unknown method 'adam'", "dessilbi"]),
    ("seeds", ["--seeds must be >= 1"]),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(world, tmp_path, kind,
                                                            words) -> None:
    out = tmp_path / "out"
    argv = _broken(world, tmp_path, kind)
    before = mtimes(world["g0"])
    if kind != "backbone":  # that one writes (would write) to the default g0/compare
        argv += ["--out", str(out)]
    rc, stdout, err = cli("compare", *argv, "--latency-repeats", "2")
    assert rc == 2, (stdout, err)
    assert err.startswith("grownet: error: ") and err.count("\n") == 1
    for w in words:
        assert w in err
    assert not out.exists() and stdout == ""
    assert mtimes(world["g0"]) == before and not (world["g0"] / "compare").exists()


def test_latency_onnxruntime_adds_columns_beside_eager(world, tmp_path) -> None:
    pytest.importorskip("onnxruntime", reason="the export extra: pip install 'grownet[export]'")
    out = tmp_path / "cmp"
    shutil.copytree(world["out"], out)  # its backbones are reused: nothing trains
    argv = [str(out) if a == str(world["out"]) else a for a in world["argv"]]
    rc, stdout, err = cli(*argv, "--latency", "onnxruntime")
    assert rc == 0, err
    assert ": training " not in stdout
    table = pd.read_csv(out / "compare.csv")
    ort = ["latency_ort_cpu_b1_ms", "latency_ort_cpu_b64_ms"]
    assert list(table.columns) == COLUMNS[:-4] + ort + COLUMNS[-4:]
    assert (table[ort] > 0).all().all() and (table[COLUMNS[6:8]] > 0).all().all()
    md = (out / "compare.md").read_text()
    assert "ORT b1 (ms)" in md and "onnxruntime" in md and "--latency onnxruntime" in md


def test_latency_onnxruntime_without_the_extra_exits_2(world, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    out = tmp_path / "out"
    rc, stdout, err = cli("compare", str(world["g0"]), "--backbones", "lenet5", "--out", str(out),
                            "--latency", "onnxruntime")
    assert rc == 2 and err.count("\n") == 1 and stdout == ""
    assert "--latency onnxruntime needs onnxruntime" in err
    assert "pip install 'grownet[export]'" in err and not out.exists()


def test_uniform_and_random_baselines_match_each_grown_net(world, tmp_path) -> None:
    """`--backbones uniform,random`: per grown run, its start widened uniformly and its
    architecture with random widths, both at its MACs, trained with its recipe."""
    from grownet.compare.baselines import MACS_TOLERANCE

    out = tmp_path / "base"
    rc, stdout, stderr = cli("compare", str(world["g0"]), str(world["g1"]), "--backbones",
                               "uniform,random", "--out", str(out), "--latency-repeats", "1")
    assert rc == 0, stderr
    table = pd.read_csv(out / "compare.csv")
    kinds = dict(zip(table["model"], table["kind"]))
    assert kinds == {"grown(seed)": "grown", "uniform(seed)": "baseline",
                     "random(seed)": "baseline"}
    for kind in ("uniform", "random"):
        for g in (world["g0"], world["g1"]):
            cfg = RunDir(g).config()
            run = RunDir(next((out / "backbones").glob(f"{kind}-dessilbi-seed{cfg.seed}")))
            mine, grown = load_spec(run.final_arch), load_spec(RunDir(g).final_arch)
            assert abs(count(mine).macs - count(grown).macs) <= MACS_TOLERANCE * \
                count(grown).macs
            have = run.config()
            # the grown run's recipe, epochs and training images
            assert have.method == "dessilbi" and have.lr == cfg.lr
            assert have.epochs == RunDir(g).epochs_trained()
            assert have.validation == cfg.validation > 0
            start = load_spec(RunDir(g).stage_arch(0))
            if kind == "uniform":  # one factor for every width of the start
                ratios = [mine.widths()[k] / w for k, w in start.widths().items()
                          if k != "head"]
                assert max(ratios) - min(ratios) <= 1.0 / min(start.widths().values())
            else:  # the grown net's layers
                assert set(mine.widths()) == set(grown.widths())
    assert (out / "pareto.png").stat().st_size > 0
    assert cli("compare", str(world["t0"]), "--backbones", "uniform", "--out",
                 str(tmp_path / "x"))[0] == 2  # a train run has no growth to compare with


def test_labels_of_nets_on_one_spot_are_moved_apart() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from grownet.compare.pareto import _separate

    fig = Figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([1.0, 1.01, 1.02, 3.0], [2.0, 2.0, 2.01, 1.0], "o")
    texts = [ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6))
             for name, x, y in (("uniform", 1.0, 2.0), ("random", 1.01, 2.0),
                                ("grown", 1.02, 2.01), ("far", 3.0, 1.0))]
    fig.tight_layout()
    _separate(fig, texts, dpi=100)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert texts[3].xyann == (6, 6)  # a label alone stays where it was
