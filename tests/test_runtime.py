"""The runtime of a job: torch.compile recompiled after each growth step, layouts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

import grownet as gn
from grownet.dist import DistContext, unwrap
from grownet.runs import RunConfig
from grownet.train.job import start_job
from grownet.train.runtime import Runtime

CFG = {"data": "digits", "epochs": 3, "batch_size": 128, "epochs_per_stage": 1, "max_stages": 2,
       "finetune_epochs": 1, "entry_epochs": 1.0, "seed": 0, "device": "cpu"}


def _start(tmp_path: Path) -> str:
    stages = tuple(gn.Stage(f"s{i}", layers=(gn.Layer(f"s{i}_l0", 2),)) for i in (1, 2))
    path = tmp_path / "tiny.json"
    path.write_text(gn.ArchSpec("plain", (1, 8, 8), 10, stages=stages).to_json())
    return str(path)


def test_compiled_growth_matches_eager(tmp_path):
    start = _start(tmp_path)
    eager = start_job(RunConfig(start=start, **CFG), tmp_path / "eager", quiet=True)
    compiled = start_job(RunConfig(start=start, compile=True, **CFG), tmp_path / "compiled",
                         quiet=True)
    grows = [e for e in eager.events if e["kind"] == "grow"]
    assert grows, "the run must grow, so that the compiled net is rebuilt"
    assert [e["changes"] for e in compiled.events] == [e["changes"] for e in eager.events]
    a = pd.read_csv(eager.run.path / "metrics.csv")
    b = pd.read_csv(compiled.run.path / "metrics.csv")
    pd.testing.assert_series_equal(a["params"], b["params"])
    # inductor fuses differently: the same run up to float rounding
    pd.testing.assert_series_equal(a["train_loss"], b["train_loss"], check_exact=False,
                                   rtol=1e-3)


def test_runtime_wraps_and_unwraps():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())
    rt = Runtime(DistContext(), compile=True)
    net = rt.net(rt.place(model))
    assert net is not model and unwrap(net) is model
    assert not rt.channels_last  # NHWC only pays on CUDA
    x = torch.randn(2, 1, 5, 5)
    assert rt.batch(x) is x
    torch.testing.assert_close(net(x), model(x))
    assert Runtime(DistContext()).net(model) is model
