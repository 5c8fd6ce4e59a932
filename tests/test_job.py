"""`grownet grow` / `train` end to end on small data: growth, artefacts, resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import grownet as gn
from grownet.cli import main
from grownet.data import load_dataset
from grownet.grow.job import start_job
from grownet.runs import RunConfig, load_final_model
from grownet.train.loop import evaluate

# Real 8x8 digits: a width-2 start squeezes them through 8 features; growth must widen.
IN_SHAPE = (1, 8, 8)
FAST = {"epochs": 14, "batch_size": 64, "entry_epochs": 3.0,
        "growth": {"epochs_per_stage": 2, "finetune_epochs": 2, "max_width": 48}}


@pytest.fixture(scope="module")
def task():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def tiny_start(tmp_path_factory):
    """A too-narrow start: the seed preset's shape with 2 filters per conv."""
    stages = tuple(gn.Stage(f"s{i}", layers=(gn.Layer(f"s{i}_l0", 2),)) for i in (1, 2))
    spec = gn.ArchSpec("plain", IN_SHAPE, 10, stages=stages, name="tiny")
    path = tmp_path_factory.mktemp("start") / "tiny.json"
    path.write_text(spec.replace(stages=stages).to_json())
    return str(path)


@pytest.fixture(scope="module")
def grown(task, tiny_start, tmp_path_factory):
    cfg = RunConfig(data="digits", start=tiny_start, seed=0, **FAST)
    out = tmp_path_factory.mktemp("runs") / "grow"
    return start_job(cfg, out, quiet=True, dataset=task)


def test_growth_happens_and_is_logged(grown):
    run = grown.run.path
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    grows = [e for e in events if e["kind"] == "grow"]
    assert grows, "a too-narrow start must grow"
    assert all(e["after"]["params"] > e["before"]["params"] for e in grows)
    final = gn.ArchSpec.from_json((run / "final" / "arch.json").read_text())
    assert final.widths()["s1_l0"] > 2 or final.widths()["s2_l0"] > 2
    stages = sorted(p.name for p in (run / "stages").iterdir())
    assert stages == [f"{i:03d}" for i in range(len(grows) + 1)]


def test_artifacts_read_back(grown):
    run = grown.run.path
    for stage in (run / "stages").iterdir():
        g = nx.read_graphml(stage / "graph.graphml")
        spec = gn.ArchSpec.from_json((stage / "arch.json").read_text())
        assert set(spec.layer_ids()) <= set(g.nodes)
        data = json.loads((stage / "graph.json").read_text())
        assert len(data["nodes"]) == len(g.nodes)
        assert (stage / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["epoch"]) == list(range(len(metrics)))
    assert {"stage", "step", "lr", "train_loss", "test_acc", "params", "macs",
            "mean_ratio"} <= set(metrics.columns)
    assert metrics["stage"].is_monotonic_increasing
    layers = pd.read_csv(run / "layers.csv")
    assert {"stage", "layer", "width", "selected", "ratio", "params", "macs"} <= set(
        layers.columns)
    last = layers[layers["stage"] == layers["stage"].max()]
    assert dict(zip(last["layer"], last["width"])) == grown.spec.widths()
    cfg = RunConfig.from_toml(run / "config.toml")
    assert cfg.epochs == FAST["epochs"] and cfg.command == "grow"


def test_final_model_reproduces_saved_accuracy(grown, task):
    run = grown.run.path
    tensors = load_file(str(run / "final" / "model.safetensors"))
    with safe_open(str(run / "final" / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert gn.ArchSpec.from_json(meta["arch"]) == grown.spec
    spec, model = load_final_model(run)
    assert set(tensors) == set(model.state_dict())
    _, test = gn.make_loaders(task, 256, "cpu", 0)
    acc = evaluate(model, test, torch.device("cpu")).acc
    assert acc == pytest.approx(float(meta["test_acc"]), abs=1e-6)
    assert acc == pytest.approx(grown.test_acc, abs=1e-6)


def test_growth_beats_the_narrow_start(grown, task, tiny_start, tmp_path):
    cfg = RunConfig(command="train", arch=tiny_start, method="dessilbi", seed=0,
                    **{**FAST, "growth": {}, "epochs": grown.epochs})
    narrow = start_job(cfg, tmp_path / "narrow", quiet=True, dataset=task)
    assert narrow.params < grown.params
    assert grown.test_acc > narrow.test_acc + 0.05


def test_inspect_prints_each_stage(grown, capsys):
    assert main(["inspect", str(grown.run.path)]) == 0
    out = capsys.readouterr().out
    assert "stage 0" in out and "s1_l0" in out and "ratio" in out
    assert main(["inspect", str(grown.run.path), "--stage", "99"]) == 2


# --------------------------------------------------------------------------- resume
def _grow_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "grownet", "grow", "--data", "digits", "--epochs", "7",
            "--epochs-per-stage", "2", "--finetune-epochs", "2", "--entry-epochs", "0.5",
            "--batch-size", "64", "--out", str(out), "--quiet"]


def _metrics(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns=["time_s"])


def test_sigkill_and_resume_match_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"
    subprocess.run(_grow_cmd(full), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_grow_cmd(killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    # kill in the middle of a stage, once a few epochs are checkpointed
    while time.time() < deadline:
        rows = (killed / "metrics.csv").read_text().count("\n") - 1 if (
            killed / "metrics.csv").exists() else 0
        if rows >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "final").exists(), "the run finished before it was killed"
    subprocess.run([sys.executable, "-m", "grownet", "resume", str(killed), "--quiet"],
                   check=True, env=env, capture_output=True)
    assert (killed / "final" / "arch.json").read_text() == (
        full / "final" / "arch.json").read_text()
    pd.testing.assert_frame_equal(_metrics(killed), _metrics(full))
    assert (killed / "events.jsonl").read_text() == (full / "events.jsonl").read_text()


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("argv, words", [
    (["grow", "--start", "nope"], "neither a preset"),
    (["grow", "--data", "imagenet"], "imagenet"),
    (["grow", "--tau", "1.5"], "tau"),
    (["grow", "--max-params", "10"], "smaller than the start"),
    (["train", "--arch", "nope"], "neither a preset"),
    (["grow", "--epochs", "0"], "epochs"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err
    assert not out.exists()


def test_bad_config_key_and_existing_output(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("tau = 0.5\nwidth_factor = 3\n")
    assert main(["grow", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "width_factor" in capsys.readouterr().err
    wrong_type = tmp_path / "type.toml"
    wrong_type.write_text('epochs = "ten"\n')
    assert main(["grow", "--config", str(wrong_type), "--out", str(tmp_path / "o")]) == 2
    assert "epochs" in capsys.readouterr().err
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("precious")
    assert main(["grow", "--data", "digits", "--out", str(existing)]) == 2
    assert (existing / "keep.txt").read_text() == "precious"
    assert "not empty" in capsys.readouterr().err


def test_config_file_is_rerunnable_and_flags_override(tmp_path):
    from grownet.cli import make_parser
    from grownet.cli.common import resolve_config
    from grownet.cli.grow import ALL_FLAGS

    cfg = RunConfig(epochs=9, growth={"tau": 0.6, "finetune_epochs": 3})
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    assert RunConfig.from_toml(path) == cfg
    args = make_parser().parse_args(["grow", "--config", str(path), "--epochs", "5",
                                     "--finetune-epochs", "2"])
    resolved, policy, _ = resolve_config(args, "grow", ALL_FLAGS)
    assert policy.tau_for("s1_l0", "s1") == 0.6 and resolved.epochs == 5
    assert policy.finetune_epochs == 2


def test_initialisation_is_carried_through_growth(grown, tiny_start):
    from grownet.train.loop import seed_everything

    run = grown.run.path
    init = load_file(str(run / "init" / "model.safetensors"))
    final = load_file(str(run / "final" / "model.safetensors"))
    assert {k for k in final if "running" not in k and "num_batches" not in k} == set(init)
    seed_everything(0)  # the job's seed: rebuild the start exactly as the job built it
    start = gn.build(gn.ArchSpec.from_json(Path(tiny_start).read_text()), init="default")
    w0 = start.s1_l0.weight.detach()
    # the start's filters keep their initial values; filters added later have their own
    assert torch.equal(init["s1_l0.weight"][: w0.shape[0], : w0.shape[1]], w0)
    assert init["s1_l0.weight"].shape == final["s1_l0.weight"].shape
    assert not torch.equal(init["s1_l0.weight"], final["s1_l0.weight"])


def test_train_dst_logs_keep_ratios_and_slims(task, tmp_path):
    cfg = RunConfig(command="train", arch="lenet5", method="dst", alpha=5e-3, lr=0.05,
                    epochs=3, batch_size=64, seed=0)
    result = start_job(cfg, tmp_path / "dst", quiet=True, dataset=task)
    run = result.run.path
    metrics = pd.read_csv(run / "metrics.csv")
    assert (metrics["sparsity"] > 0).all() and (metrics["sparsity"] < 1).all()
    keep = pd.read_csv(run / "keep.csv")
    assert set(keep["layer"]) == {"s1_l0", "s2_l0", "fc1", "fc2", "head"}
    assert len(keep) == 5 * 3 and keep["keep_ratio"].between(0, 1).all()
    slim = [e for e in result.events if e["kind"] == "dst-slim"]
    assert len(slim) == 1 and slim[0]["after"]["params"] <= slim[0]["before"]["params"]
    assert slim[0]["unstructured_sparsity"] == pytest.approx(metrics["sparsity"].iloc[-1],
                                                             abs=1e-6)
    spec, model = load_final_model(run)  # a dense model: no thresholds left
    assert not any(k.endswith("threshold") for k in model.state_dict())
    assert result.params == gn.count(spec).params == slim[0]["after"]["params"]


def test_tracker_history_spans_every_stage(grown):
    state = torch.load(grown.run.path / "checkpoints" / "last.pt", weights_only=True)
    epochs = [rec["epoch"] for rec in state["tracker"]["history"]]
    assert epochs == list(range(grown.epochs))  # one record per epoch, across growth
    shapes = {tuple(tuple(s) for s in rec["shapes"]) for rec in state["tracker"]["history"]}
    assert len(shapes) == len([e for e in grown.events if e["kind"] == "grow"]) + 1


def test_inspect_prints_selected_counts_as_integers(grown, capsys):
    assert main(["inspect", str(grown.run.path), "--stage", "0"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    selected = [line.split()[2] for line in rows if line.split()[:1] != ["head"] and line]
    assert selected and all(v.isdigit() for v in selected)  # "8", never "8.0"


def test_a_budget_never_shortens_training(task, tiny_start, tmp_path):
    """Growth that stops early (here at its MACs budget) hands its epochs to
    fine-tuning: the run trains --epochs in all."""
    start = gn.count(gn.ArchSpec.from_json(Path(tiny_start).read_text())).macs
    cfg = RunConfig(data="digits", start=tiny_start, seed=0,
                    **{**FAST, "growth": {**FAST["growth"], "max_macs": 2 * start}})
    result = start_job(cfg, tmp_path / "budget", quiet=True, dataset=task)
    stop = next(e for e in result.events if e["kind"] == "stop")
    metrics = pd.read_csv(result.run.path / "metrics.csv")
    assert len(metrics) == result.epochs == FAST["epochs"]
    assert stop["epoch"] < FAST["epochs"] - FAST["growth"]["finetune_epochs"] - 1
    finetune = metrics[metrics["phase"] == "finetune"]
    assert list(finetune["epoch"]) == list(range(stop["epoch"] + 1, FAST["epochs"]))
    assert result.macs <= 2 * start
