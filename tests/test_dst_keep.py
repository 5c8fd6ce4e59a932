"""DST paced to a keep ratio (``--keep``), the weighted ``keep`` column, the best and
sparsest models, and the validation split they are chosen on."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from runfiles import assert_same_weights
from safetensors import safe_open

import grownet as gn
from grownet import dst
from grownet.cli import main
from grownet.data import load_dataset
from grownet.errors import UserError
from grownet.runs import RunConfig, RunDir, load_final_model
from grownet.spec import preset

TARGET = 0.1
#: the paper's MNIST recipe on 8x8 digits; 8 epochs of 23 steps
PAPER = ["--lr", "0.01", "--batch-size", "64", "--schedule", "constant",
         "--warmup-epochs", "0", "--augment", "none"]


@pytest.fixture(scope="module")
def paced(tmp_path_factory) -> tuple[Path, str]:
    """``grownet train --method dst --keep 0.1`` on digits, 20 % held out (about 3 s)."""
    out = tmp_path_factory.mktemp("runs") / "dst"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["train", "--data", "digits", "--arch", "mlp-300-100", "--method", "dst",
                   "--keep", str(TARGET), "--epochs", "8", "--val-frac", "0.2", *PAPER,
                   "--out", str(out)])
    assert rc == 0
    return out, buf.getvalue()


def test_keep_reaches_its_target(paced):
    """Tolerance: the final keep ratio is within 10 % (relative) of the target; on this
    run of 184 steps it ends 5 % under it."""
    run, _ = paced
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["keep"].iloc[-1] == pytest.approx(TARGET, rel=0.1)
    assert metrics["keep_target"].iloc[-1] == pytest.approx(TARGET)
    assert metrics["keep_target"].is_monotonic_decreasing
    assert metrics["keep"].iloc[0] > 0.5  # dense while it learns: the ramp starts late
    assert (metrics["alpha"] > 0).all()


def test_keep_column_is_kept_over_all_masked_weights(paced):
    run, out = paced
    metrics = pd.read_csv(run / "metrics.csv")
    layers = pd.read_csv(run / "keep.csv")
    assert set(layers["layer"]) == {"fc1", "fc2", "head"}
    sums = layers.groupby("epoch")[["kept", "weights"]].sum()
    np.testing.assert_allclose(metrics["keep"], sums["kept"] / sums["weights"], rtol=1e-12)
    np.testing.assert_allclose(layers["keep_ratio"], layers["kept"] / layers["weights"],
                               atol=1e-6)
    assert (sums["weights"] == 64 * 300 + 300 * 100 + 100 * 10).all()
    unweighted = layers.groupby("epoch")["keep_ratio"].mean()
    assert not np.allclose(metrics["keep"], unweighted, atol=1e-3)  # not the old mean
    np.testing.assert_allclose(metrics["sparsity"], 1 - metrics["keep"], rtol=1e-12)
    # the finish reports the same numbers, and the summary prints them
    event = [e for e in RunDir(run).events() if e["kind"] == "dst-slim"][0]
    last = sums.iloc[-1]
    assert (event["kept_weights"], event["masked_weights"]) == (last["kept"], last["weights"])
    assert event["keep"] == pytest.approx(metrics["keep"].iloc[-1], abs=1e-6)
    assert f"DST keep {100 * event['keep']:.2f}%" in out
    spec, model = load_final_model(run)
    nonzero = sum(int(torch.count_nonzero(m.weight)) for m in model.modules()
                  if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    assert f"nonzero weights {nonzero:,} of" in out
    assert nonzero <= event["kept_weights"]  # slimming only removes all-zero rows' inputs


def test_best_and_sparsest_models_are_chosen_on_validation(paced):
    run, _ = paced
    metrics = pd.read_csv(run / "metrics.csv")
    assert {"val_acc", "val_loss"} <= set(metrics.columns)
    best = int(metrics["val_acc"].idxmax())  # the first epoch with the best accuracy
    with safe_open(str(run / "best" / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["chosen_by"] == "val_acc" and int(meta["epoch"]) == best
    near = metrics["keep"] <= metrics["keep"].min() * (1 + dst.SPARSEST_TOLERANCE)
    with safe_open(str(run / "sparsest" / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    chosen = metrics.iloc[int(meta["epoch"])]
    assert near[int(meta["epoch"])] and chosen["val_acc"] == metrics[near]["val_acc"].max()
    # a plain model holding W * M: its nonzero weights are the masks' kept count then
    _, model = load_final_model(run, "sparsest")
    kept = pd.read_csv(run / "keep.csv").query(f"epoch == {int(meta['epoch'])}")["kept"].sum()
    assert sum(int(torch.count_nonzero(p)) for n, p in model.named_parameters()
               if n.endswith("weight")) == kept


def test_keep_schedule_shape():
    steps = 1000
    k = [dst.keep_target(s, steps, 0.05) for s in range(steps + 1)]
    assert k[0] == k[100] == 1.0  # dense for the first 10 %
    assert k[750] == pytest.approx(0.05) and k[-1] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(k, k[1:]))


def test_pacer_state_round_trip_continues_identically():
    torch.manual_seed(0)
    model = dst.convert(gn.build(preset("mlp-300-100", (1, 8, 8), 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pacer = dst.KeepPacer(model, 0.2, total_steps=60, lr=0.05)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y) + pacer(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    again = dst.KeepPacer(model, 0.2, total_steps=60, lr=0.05)
    again.load_state_dict(json.loads(json.dumps(pacer.state_dict())))  # primitives only
    assert again.step == 30
    assert float(again(model).detach()) == float(pacer(model).detach())
    assert float(again.alpha) == float(pacer.alpha)


def test_hold_out_is_stratified_and_disjoint():
    data = load_dataset("digits")
    held = data.hold_out(0.2, seed=3)
    assert held.n_val == int(np.ceil(0.2 * data.n_train))
    assert held.n_train + held.n_val == data.n_train
    rows = {tuple(r) for r in held.x_train.flatten(1).tolist()}
    assert not any(tuple(r) in rows for r in held.x_val.flatten(1).tolist()[:50])
    share = np.bincount(held.y_val.numpy(), minlength=10) / held.n_val
    np.testing.assert_allclose(share, np.bincount(data.y_train.numpy()) / data.n_train,
                               atol=0.01)
    assert torch.equal(held.x_test, data.x_test)  # the test split is untouched
    assert data.hold_out(0.0) is data


@pytest.mark.parametrize("argv, words", [
    (["--method", "dst", "--keep", "1.5"], "--keep 1.5"),
    (["--init", "orthogonal"], "--init orthogonal"),
    (["--val-frac", "1"], "--val-frac"),
    (["--hidden-linear", "row"], "--hidden-linear row"),
    (["--lam-pace", "fast"], "--lam-pace fast"),
])
def test_bad_new_flags_exit_2(argv, words, tmp_path, capsys):
    rc = main(["train", "--data", "digits", *argv, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and words in err
    assert not (tmp_path / "x").exists()


def test_grow_refuses_layer_pacing():
    with pytest.raises(UserError, match="'layer' pacing is for train"):
        RunConfig(command="grow", lam_pace="layer")
    assert RunConfig(command="grow").lam_pacing == "unit"
    assert RunConfig(command="train").lam_pacing == "layer"


def test_lenet5_caffe_preset():
    spec = preset("lenet5-caffe", (1, 28, 28), 10)
    assert spec.widths() == {"s1_l0": 20, "s2_l0": 50, "fc1": 500, "head": 10}
    assert gn.count(spec).params == 431_080  # the papers' 431 K
    shapes = {s.id: s for s in spec.shapes()}
    assert shapes["fc1"].in_ch == 800 and shapes["s1_l0"].kernel == 5


def _metrics(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns=["time_s"])


@pytest.mark.parametrize("extra", [
    {"method": "dst", "keep": 0.2, "val_frac": 0.2, "arch": "mlp-300-100"},
    {"method": "dessilbi", "arch": "lenet5", "entry_epochs": 1.0},
], ids=["dst-keep", "dessilbi-layer-pace"])
def test_resume_continues_the_pacing_exactly(extra, tmp_path):
    """Stopped after 2 of 4 epochs (its checkpoint written) and resumed: the same
    metrics as an uninterrupted run, so α's controller and λ's re-pacing carry over."""
    from grownet.train.job import TrainJob

    data = load_dataset("digits")
    cfg = RunConfig(command="train", data="digits", epochs=4, batch_size=64, lr=0.02,
                    **extra)
    with contextlib.redirect_stdout(io.StringIO()):
        TrainJob.start(cfg, tmp_path / "full", quiet=True, dataset=data)
        job = TrainJob(cfg, run=RunDir.create(tmp_path / "cut", "train"), quiet=True,
                       dataset=data)
        job._start()
        job.run.write_config(job.resolved_config().to_toml())
        job.run.save_stage(0, job.spec)
        for _ in range(2):
            job._epoch()
        del job  # "killed" after the checkpoint of epoch 2
        TrainJob.resume(tmp_path / "cut", quiet=True)
    pd.testing.assert_frame_equal(_metrics(tmp_path / "cut"), _metrics(tmp_path / "full"))
    if extra["method"] == "dst":
        for name in ("best", "sparsest"):
            assert_same_weights(*(tmp_path / run / name / "model.safetensors"
                                  for run in ("cut", "full")))
