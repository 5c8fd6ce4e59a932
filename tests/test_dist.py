"""Data parallelism: sharded loaders, rank-0 growth decisions, and 2-process torchrun
runs on CPU (gloo) checked against one process with the same global batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import grownet as gn
from grownet.data import DeviceLoader
from grownet.dist import DistContext, unwrap
from grownet.grow import Decision
from grownet.grow.job import start_job
from grownet.runs import RunConfig

WORKER = Path(__file__).with_name("dist_worker.py")
# Without BatchNorm: under gloo each rank normalises over its own shard, which one
# process with the whole batch does not; every other part of the step is the same sum.
# lr 0.05: at 0.1 this BN-free toy is chaotic after its growth steps (a 1e-6 difference
# of summation order grew to 0.1 in two epochs), and no tolerance would mean anything.
CFG = {"data": "digits", "epochs": 10, "batch_size": 64, "entry_epochs": 3.0, "seed": 0, "lr": 0.05,
       "device": "cpu", "growth": {"epochs_per_stage": 2, "finetune_epochs": 2, "max_stages": 3}}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node=2", *args]


@pytest.fixture(scope="module")
def tiny_start(tmp_path_factory) -> str:
    stages = tuple(gn.Stage(f"s{i}", layers=(gn.Layer(f"s{i}_l0", 2, bn=False),))
                   for i in (1, 2))
    spec = gn.ArchSpec("plain", (1, 8, 8), 10, stages=stages, name="tiny-nobn")
    path = tmp_path_factory.mktemp("start") / "tiny.json"
    path.write_text(spec.to_json())
    return str(path)


@pytest.fixture(scope="module")
def ddp_run(tiny_start, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ddp")
    config = root / "config.toml"
    config.write_text(RunConfig(start=tiny_start, **CFG).to_toml())
    out, dump = root / "run", root / "dump"
    dump.mkdir()
    proc = subprocess.run(torchrun(str(WORKER), str(config), str(out), str(dump)),
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, dump


@pytest.fixture(scope="module")
def single_run(tiny_start, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    return start_job(RunConfig(start=tiny_start, **CFG), out, quiet=True)


def _pids_with_arg(arg: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and arg.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # the process ended meanwhile
            continue
    return pids


def _events(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------- loaders
@pytest.mark.parametrize("augment", ["none", "shift", "crop-flip"])
def test_shards_of_two_ranks_make_up_the_single_process_batches(augment):
    x, y = torch.randn(21, 1, 6, 6), torch.arange(21)
    one = DeviceLoader(x, y, 8, augment=augment, seed=3)
    ranks = [DeviceLoader(x, y, 8, augment=augment, seed=3, rank=r, world_size=2)
             for r in (0, 1)]
    for loader in (one, *ranks):
        loader.set_epoch(2)
    batches = list(one)
    shards = [list(loader) for loader in ranks]
    assert len(ranks[0]) == len(one) == len(batches) == 3
    for b, (xb, yb) in enumerate(batches):
        (x0, y0), (x1, y1) = shards[0][b], shards[1][b]
        assert torch.equal(torch.cat([x0, x1]), xb) and torch.equal(torch.cat([y0, y1]), yb)
    # the last batch (5 images) splits 3 + 2: weights make the mean of means exact
    assert [len(shards[r][-1][1]) for r in (0, 1)] == [3, 2]
    assert ranks[0].shard_weight == pytest.approx(3 * 2 / 5)
    assert ranks[1].shard_weight == pytest.approx(2 * 2 / 5)


def test_a_global_batch_smaller_than_the_world_is_dropped():
    x, y = torch.randn(9, 3), torch.arange(9)
    loaders = [DeviceLoader(x, y, 4, shuffle=False, rank=r, world_size=2) for r in (0, 1)]
    assert all(len(loader) == 2 for loader in loaders)  # 4 + 4, the lone 9th is left out
    assert torch.cat([yb for _, yb in loaders[0]] + [yb for _, yb in loaders[1]]).tolist() \
        == [0, 1, 4, 5, 2, 3, 6, 7]
    with pytest.raises(gn.UserError, match="rank"):
        DeviceLoader(x, y, 4, rank=2, world_size=2)


# ---------------------------------------------------------------- the grower
def test_a_non_deciding_grower_enacts_the_shared_decision(tiny_start):
    spec = gn.ArchSpec.from_json(Path(tiny_start).read_text())
    model = gn.build(spec)
    opt = gn.DessiLBI(gn.lbi_param_groups(model), lr=0.1)
    policy = gn.GrowthPolicy(epochs_per_stage=1)
    decided = Decision(0, "grow", "", [{"op": "widen", "layer": "s1_l0", "old": 2,
                                        "new": 10}], {"params": 0, "macs": 0}, {"s1": 0},
                       gn.surgery.widen(spec, "s1_l0", 10))
    seen = []

    def share(decision):
        seen.append(decision)
        return decided

    follower = gn.Grower(spec, model, opt, policy, decider=False, share=share)
    event = follower.step(0)
    assert seen == [None]  # it did not decide itself
    assert event.kind == "grow" and event.spec.widths()["s1_l0"] == 10
    assert event.model.s1_l0.weight.shape[0] == 10 and follower.stage == 1
    with pytest.raises(RuntimeError, match="share"):
        gn.Grower(spec, model, opt, policy, decider=False).step(0)


def test_single_process_context_is_a_no_op():
    ctx = DistContext()
    model = torch.nn.Linear(2, 2)
    assert not ctx.enabled and ctx.is_main
    assert ctx.wrap(model) is model and ctx.broadcast("x") == "x"
    t = torch.ones(2)
    assert ctx.all_reduce_sum(t) is t and t.tolist() == [1.0, 1.0]
    assert unwrap(torch.compile(model)) is model


# ----------------------------------------------------- torchrun, 2 processes
def test_ranks_hold_identical_weights_after_growth(ddp_run):
    out, dump = ddp_run
    assert any(e["kind"] == "grow" for e in _events(out)), "the tiny start must grow"
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    final = gn.ArchSpec.from_json((out / "final" / "arch.json").read_text())
    assert rank0["s1_l0.weight"].shape[0] == final.widths()["s1_l0"]


def test_growth_decisions_match_one_process_with_the_same_global_batch(ddp_run, single_run):
    out, dump = ddp_run
    one = single_run.run.path
    assert _events(out) == _events(one)
    assert (out / "final" / "arch.json").read_text() == (one / "final" / "arch.json").read_text()
    ddp_weights = torch.load(dump / "rank0.pt", weights_only=True)
    for key, value in single_run.model.state_dict().items():
        torch.testing.assert_close(ddp_weights[key], value, rtol=1e-3, atol=1e-4)
    a, b = pd.read_csv(out / "metrics.csv"), pd.read_csv(one / "metrics.csv")
    pd.testing.assert_frame_equal(a.drop(columns="time_s"), b.drop(columns="time_s"),
                                  check_exact=False, rtol=1e-4)


def test_only_rank_zero_writes(ddp_run):
    out, _ = ddp_run
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].tolist() == list(range(CFG["epochs"]))  # no second writer
    support = pd.read_csv(out / "support.csv")
    assert not support.duplicated(["epoch", "layer"]).any()
    events = _events(out)
    assert len(events) == len({(e["epoch"], e["kind"]) for e in events})


def test_a_killed_ddp_run_resumes_to_the_same_end(ddp_run, tiny_start, tmp_path):
    out, _ = ddp_run
    killed = tmp_path / "killed"
    flags = ["grow", "--from", tiny_start, "--quiet", "--out", str(killed)]
    for key, value in {**CFG, **CFG["growth"]}.items():
        if key != "growth":
            flags += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(torchrun("-m", "grownet", *flags), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, deadline = killed / "metrics.csv", time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") - 1 >= 4:
            break
        time.sleep(0.05)
    # torchrun starts each worker in a session of its own: kill them by their command line
    for pid in _pids_with_arg(str(killed)):
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "final").exists(), "the run finished before it was killed"
    resumed = subprocess.run(torchrun("-m", "grownet", "resume", str(killed), "--quiet"),
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _events(killed) == _events(out)
    assert (killed / "final" / "arch.json").read_text() == \
        (out / "final" / "arch.json").read_text()
    a, b = pd.read_csv(killed / "metrics.csv"), pd.read_csv(out / "metrics.csv")
    pd.testing.assert_frame_equal(a.drop(columns="time_s"), b.drop(columns="time_s"),
                                  check_exact=False, rtol=1e-6)


def test_a_user_error_under_torchrun_is_one_line_from_rank_0(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(torchrun("-m", "grownet", "grow", "--data", "digits", "--tau", "1.5",
                                   "--out", str(out)),
                          env=ENV, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if "grownet: error" in line]
    assert errors == ["grownet: error: --tau 1.5: must be a number in (0, 1]"]
    # rank 0 exits 2 first (the others wait for it); torchrun's own summary says so
    root_cause = proc.stderr.split("Root Cause")[1]
    assert "rank      : 0" in root_cause and "exitcode  : 2" in root_cause
    assert "grownet/" not in "".join(line for line in proc.stderr.splitlines()
                                     if line.strip().startswith("File "))
    assert not out.exists()
