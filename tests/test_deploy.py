"""`gn.load`, `grownet export` (ONNX, torch.export) and their checks, on the three
families, a grown run (every stage), a pruned run and DST runs; bad input."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from runfiles import cli, mtimes
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import grownet as gn
from grownet import dst
from grownet.data import load_dataset
from grownet.deploy import (
    FORMATS,
    TOLERANCE,
    OnnxModule,
    export_run,
    onnx_bytes,
    session,
    weights_metadata,
)
from grownet.errors import UserError
from grownet.grow.job import start_job
from grownet.prune import prune_run
from grownet.runs import RunConfig, RunDir
from grownet.train.loop import evaluate

pytest.importorskip("onnxruntime", reason="the export extra: pip install 'grownet[export]'")

IN_SHAPE = (1, 8, 8)  # real 8x8 digits
GROW = {"data": "digits", "epochs": 6, "entry_epochs": 1.0, "batch_size": 64, "seed": 0,
        "growth": {"finetune_epochs": 2, "epochs_per_stage": 1, "tau": 0.5, "max_stages": 3,
                   "mature_epochs": 1}}
# DST settings that remove whole units within 3-4 epochs (measured: fc1 300 -> 216,
# s2_l0 16 -> 9), so loading a DST stage exercises folding and removal both.
DST = {"mlp-300-100": {"alpha": 5e-3, "lr": 0.1, "epochs": 3},
       "lenet5": {"alpha": 1e-2, "lr": 0.05, "epochs": 4}}


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def task():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def grown(task, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "grow"
    start_job(RunConfig(**GROW), out, quiet=True, dataset=task)
    assert len(list((out / "stages").iterdir())) == 3  # two growth steps
    return out


@pytest.fixture(scope="module")
def pruned(grown, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "pruned"
    prune_run(grown, out, percent=50, quiet=True)
    return out


@pytest.fixture(scope="module")
def dst_runs(task, tmp_path_factory) -> dict[str, Path]:
    runs = {}
    for arch, knobs in DST.items():
        out = tmp_path_factory.mktemp("deploy") / f"dst-{arch}"
        cfg = RunConfig(command="train", arch=arch, method="dst", data="digits",
                        batch_size=64, seed=0, **knobs)
        start_job(cfg, out, quiet=True, dataset=task)
        runs[arch] = out
    return runs


def _family_run(root: Path, preset: str) -> tuple[Path, gn.GrowNet]:
    """A finished run directory written by hand: a preset on digits' shape with random
    weights and BatchNorm statistics (so eval mode differs from train mode)."""
    torch.manual_seed(0)
    spec = gn.ArchSpec.preset(preset, in_shape=IN_SHAPE, num_classes=10)
    model = gn.build(spec)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    run = RunDir.create(root / preset, "train")
    run.write_config(RunConfig(command="train", arch=preset, data="digits").to_toml())
    run.save_final(spec, model)
    return run.path, model.eval()


def _read_back(fmt: str, path: Path) -> torch.nn.Module:
    """The written file, loaded the way a deployment would (not through grownet)."""
    if fmt == "onnx":
        return OnnxModule(session(path.read_bytes()))
    return torch.export.load(str(path)).module()


@torch.inference_mode()
def _max_diff(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    return (a(x) - b(x)).abs().max().item()


# ------------------------------------------------------------------ families
@pytest.mark.parametrize("preset", ["lenet5", "resnet20-narrow", "mlp-300-100"])
def test_load_and_export_round_trip_per_family(preset, task, tmp_path) -> None:
    run, model = _family_run(tmp_path, preset)
    x = task.x_test[:64]
    for where in (run, run / "final", run / "final" / "model.safetensors"):
        spec, loaded = gn.load(where)
        assert spec == model.spec and not loaded.training
        with torch.inference_mode():
            assert torch.equal(loaded(x), model(x))
    assert {p.device.type for p in gn.load(run, device="cpu").model.parameters()} == {"cpu"}
    for fmt in FORMATS:
        result = export_run(run, fmt)
        assert result.path == run / "export" / f"final.{fmt}"
        assert result.images == 64 and result.data == "digits"
        assert 0 <= result.max_abs_diff <= TOLERANCE
        assert result.size == result.path.stat().st_size
        assert _max_diff(_read_back(fmt, result.path), model, x) <= TOLERANCE
        assert _max_diff(_read_back(fmt, result.path), model, x[:5]) <= TOLERANCE  # dynamic


# ------------------------------------------------------------------ a grown run
def test_each_stage_reproduces_its_recorded_test_accuracy(grown, task) -> None:
    rows = RunDir(grown).rows("metrics.csv")
    _, test = gn.make_loaders(task, 256, "cpu", 0)
    stages = RunDir(grown).stage_specs()
    assert [s for s, _ in stages] == [0, 1, 2]
    for stage, arch in stages:
        last = [r for r in rows if int(r["stage"]) == stage][-1]
        spec, model = gn.load(grown, stage=stage)
        assert spec == arch and not model.training
        meta = weights_metadata(grown / "stages" / f"{stage:03d}" / "model.safetensors")
        assert (meta["stage"], meta["epoch"], meta["test_acc"]) == (
            str(stage), last["epoch"], last["test_acc"])
        assert evaluate(model, test, torch.device("cpu")).acc == pytest.approx(
            float(last["test_acc"]), abs=1e-12)
    # the last stage ends where the run ends: the same weights as final/
    final = load_file(str(grown / "final" / "model.safetensors"))
    last_stage = load_file(str(grown / "stages" / "002" / "model.safetensors"))
    assert final.keys() == last_stage.keys()
    assert all(torch.equal(final[k], last_stage[k]) for k in final)


@pytest.mark.parametrize("fmt", FORMATS)
def test_grown_run_exports_final_and_a_stage(grown, task, fmt, tmp_path) -> None:
    x = task.x_test[:64]
    for stage in (None, 1):
        out = tmp_path / f"net-{stage}.{fmt}"
        result = export_run(grown, fmt, stage=stage, out=out)
        assert result.path == out and result.max_abs_diff <= TOLERANCE
        _, model = gn.load(grown, stage=stage)
        assert _max_diff(_read_back(fmt, out), model, x) <= TOLERANCE
    assert result.spec == RunDir(grown).stage_specs()[1][1]
    assert not (grown / "export").exists()


# ------------------------------------------------------------------ pruned, DST
@pytest.mark.parametrize("fmt", FORMATS)
def test_pruned_run_loads_and_exports(grown, pruned, task, fmt, tmp_path) -> None:
    spec, model = gn.load(pruned)
    assert gn.count(spec).params < gn.count(gn.load(grown).spec).params
    _, test = gn.make_loaders(task, 256, "cpu", 0)
    recorded = float(weights_metadata(pruned / "final" / "model.safetensors")["test_acc"])
    assert evaluate(model, test, torch.device("cpu")).acc == pytest.approx(recorded,
                                                                           abs=1e-6)
    # a pruned run has no config.toml: the test images come from the run it was cut from
    result = export_run(pruned, fmt, out=tmp_path / f"p.{fmt}")
    assert result.data == "digits" and result.max_abs_diff <= TOLERANCE
    assert _max_diff(_read_back(fmt, result.path), model, task.x_test[:64]) <= TOLERANCE


@pytest.mark.parametrize("arch", list(DST))
def test_dst_stage_is_folded_slimmed_and_reproduces_its_accuracy(dst_runs, task,
                                                                 arch) -> None:
    run = dst_runs[arch]
    file = run / "stages" / "000" / "model.safetensors"
    tensors = load_file(str(file))
    assert any(k.endswith(".threshold") for k in tensors)  # saved as trained: masked
    masked_spec = RunDir(run).stage_specs()[0][1]
    masked = dst.convert(gn.build(masked_spec))
    masked.load_state_dict(tensors)
    masked.eval()
    spec, model = gn.load(run, stage=0)
    assert not any(isinstance(m, dst.MaskedLayer) for m in model.modules())
    assert not any(k.endswith("threshold") for k in model.state_dict())
    narrower = {k for k, w in spec.widths().items() if w < masked_spec.widths()[k]}
    assert narrower, "fully masked units are removed"
    x = task.x_test
    assert _max_diff(model, masked, x) <= TOLERANCE
    assert spec == gn.load(run).spec  # the run's own finish slims the same way
    _, test = gn.make_loaders(task, 256, "cpu", 0)
    last = RunDir(run).rows("metrics.csv")[-1]
    assert evaluate(model, test, torch.device("cpu")).acc == pytest.approx(
        float(last["test_acc"]), abs=1e-12)


@pytest.mark.parametrize("fmt", FORMATS)
def test_dst_run_exports_final_and_stage(dst_runs, task, fmt, tmp_path) -> None:
    run = dst_runs["lenet5"]
    for stage in (None, 0):
        result = export_run(run, fmt, stage=stage, out=tmp_path / f"{stage}.{fmt}")
        assert result.max_abs_diff <= TOLERANCE
        _, model = gn.load(run, stage=stage)
        assert _max_diff(_read_back(fmt, result.path), model, task.x_test[:64]) <= TOLERANCE


# ------------------------------------------------------------------ run directory
def test_stage_weights_follow_the_last_metrics_row(tmp_path) -> None:
    spec = gn.ArchSpec.preset("seed", in_shape=IN_SHAPE)
    run = RunDir.create(tmp_path / "r", "grow")
    assert run.save_stage_weights(spec, gn.build(spec)) is None  # no row yet: nothing
    assert not (run.path / "stages").exists()
    for epoch, stage, acc in ((0, 0, 0.25), (1, 0, 0.5), (2, 1, 0.75)):
        run.append_row("metrics.csv", {"stage": stage, "epoch": epoch, "test_acc": acc})
    path = run.save_stage_weights(spec, gn.build(spec))
    assert path == run.path / "stages" / "001" / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert (meta["stage"], meta["epoch"], meta["test_acc"]) == ("1", "2", "0.75")
    assert gn.ArchSpec.from_json(meta["arch"]) == spec
    follower = RunDir.follower(run.path)
    run.append_row("metrics.csv", {"stage": 2, "epoch": 3, "test_acc": 0.8})
    assert follower.save_stage_weights(spec, gn.build(spec)) is None
    assert not (run.path / "stages" / "002").exists()


# ------------------------------------------------------------------ the CLI
def test_cli_export_prints_the_check_and_refuses_to_overwrite(grown, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(grown, run)
    rc, out, err = cli("export", str(run), "--format", "onnx", "--opset", "18")
    assert rc == 0, err
    diff = float(re.search(r"max \|Δlogits\| = (\S+)", out).group(1))
    assert 0 <= diff <= TOLERANCE and "64 test images of digits" in out
    path = run / "export" / "final.onnx"
    assert f"wrote {path} (onnx, opset 18" in out
    import onnx

    assert onnx.load(str(path)).opset_import[0].version == 18
    before = path.read_bytes()
    rc, out, err = cli("export", str(run), "--format", "onnx")
    assert rc == 2 and "already exists" in err and "--force" in err
    assert path.read_bytes() == before
    rc, out, err = cli("export", str(run), "--format", "onnx", "--force")
    assert rc == 0 and path.stat().st_size > 0
    rc, out, err = cli("export", str(run), "--format", "pt2", "--stage", "0")
    assert rc == 0 and (run / "export" / "stage-000.pt2").is_file()


def _broken(kind: str, grown: Path, tmp: Path) -> list[str]:
    run = tmp / "run"
    shutil.copytree(grown, run)
    if kind == "unfinished":
        shutil.rmtree(run / "final")
    elif kind == "corrupt":
        (run / "final" / "model.safetensors").write_bytes(b"\x00\x01not safetensors")
    elif kind == "pickle":  # a pickle in place of the weights: refused, never unpickled
        torch.save({"w": torch.zeros(2)}, run / "final" / "model.safetensors")
    elif kind == "misfit":  # valid file, weights of another net
        other = gn.ArchSpec.preset("seed", in_shape=IN_SHAPE)
        spec = gn.ArchSpec.from_json((run / "final" / "arch.json").read_text())
        save_file({k: v.contiguous() for k, v in gn.build(other).state_dict().items()},
                  str(run / "final" / "model.safetensors"),
                  metadata={"arch": spec.to_json(indent=None)})
    elif kind == "folder":
        return [str(run / "final"), "--format", "pt2"]
    elif kind == "unwritable":
        (tmp / "plain-file").write_text("x")
        return [str(run), "--format", "pt2", "--out", str(tmp / "plain-file" / "net.pt2")]
    args = {"format": ["--format", "tflite"], "stage": ["--format", "pt2", "--stage", "9"],
            "opset": ["--format", "pt2", "--opset", "18"],
            "badopset": ["--format", "onnx", "--opset", "7"]}.get(kind, ["--format", "pt2"])
    return [str(run), *args]


@pytest.mark.parametrize("kind, words", [
    ("format", ["invalid choice: 'tflite'", "onnx", "pt2"]),
    ("unfinished", ["final/model.safetensors not found", "grownet resume"]),
    ("corrupt", ["final/model.safetensors cannot be read", "damaged"]),
    ("pickle", ["final/model.safetensors cannot be read", "damaged"]),
    ("misfit", ["final/model.safetensors: the weights do not fit", "damaged"]),
    ("stage", ["stages/009/model.safetensors not found", "stages with weights: 0, 1, 2"]),
    ("opset", ["--opset applies to --format onnx only"]),
    ("badopset", ["cannot convert this model to opset 7", "--opset"]),
    ("unwritable", ["plain-file is not a writable directory", "another --out"]),
    ("folder", ["final holds one net's weights", "pass its run directory"]),
])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(grown, tmp_path, kind,
                                                             words) -> None:
    argv = _broken(kind, grown, tmp_path)
    before = mtimes(tmp_path)
    rc, out, err = cli("export", *argv)
    assert rc == 2, (out, err)
    assert err.startswith("grownet: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err
    assert out == "" and mtimes(tmp_path) == before


def test_missing_extra_says_how_to_install(grown, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    run = tmp_path / "run"
    shutil.copytree(grown, run)
    before = mtimes(tmp_path)
    rc, out, err = cli("export", str(run), "--format", "onnx")
    assert rc == 2 and err.count("\n") == 1
    assert "onnxruntime (not installed)" in err and "pip install 'grownet[export]'" in err
    assert mtimes(tmp_path) == before
    rc, out, err = cli("export", str(run), "--format", "pt2")  # needs no extra
    assert rc == 0, err


# ------------------------------------------------------------------ gn.load errors
def test_load_errors_name_the_file_and_the_fix(grown, tmp_path) -> None:
    with pytest.raises(UserError, match="not found; pass a run directory"):
        gn.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is not a run directory"):
        gn.load(tmp_path / "empty")
    with pytest.raises(UserError, match="needs a run directory"):
        gn.load(grown / "final", stage=1)
    with pytest.raises(UserError, match="stage must be an integer >= 0"):
        gn.load(grown, stage=-1)
    with pytest.raises(UserError, match="unknown device"):
        gn.load(grown, device="tpu9")
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(UserError, match=r"bare.safetensors has no 'arch'"):
        gn.load(bare)
    old = tmp_path / "old"
    shutil.copytree(grown, old)
    for f in (old / "stages").glob("*/model.safetensors"):
        f.unlink()
    with pytest.raises(UserError, match="written before grownet saved stage weights"):
        gn.load(old, stage=0)


def test_onnx_export_of_a_train_mode_model_exports_eval_mode(task) -> None:
    spec = gn.ArchSpec.preset("resnet20-narrow", in_shape=IN_SHAPE)
    model = gn.build(spec).train()
    data = onnx_bytes(model, spec.in_shape)
    assert model.training  # mode restored
    x = task.x_test[:8]
    assert _max_diff(OnnxModule(session(data)), model.eval(), x) <= TOLERANCE
