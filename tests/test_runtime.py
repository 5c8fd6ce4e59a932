"""The runtime of a job: torch.compile recompiled after each growth step, layouts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import grownet as gn
from grownet.dist import DistContext, unwrap
from grownet.grow.job import start_job
from grownet.runs import RunConfig
from grownet.train.runtime import Runtime

CFG = {"data": "digits", "epochs": 4, "batch_size": 128, "entry_epochs": 1.0, "seed": 0,
       "device": "cpu", "growth": {"epochs_per_stage": 1, "max_stages": 2, "finetune_epochs": 1,
                                   "mature_epochs": 1}}


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_training_step_never_waits_on_the_host():
    from grownet.data import DeviceLoader
    from grownet.path import SupportTracker
    from grownet.train.loop import autocast

    rt = Runtime(DistContext(device=torch.device("cuda")))
    spec = gn.ArchSpec.preset("vgg16-narrow", in_shape=(3, 32, 32), num_classes=10)
    model = rt.place(gn.build(spec))
    opt = gn.DessiLBI(gn.lbi_param_groups(model), lr=0.05, lam=1e-3)
    tracker = SupportTracker(opt)
    loader = DeviceLoader(torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,)), 64,
                          augment="crop-flip", device="cuda")
    net = rt.net(model)
    batches = iter(loader)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for xb, yb in batches:
            with autocast(rt.device):
                loss = torch.nn.functional.cross_entropy(net(rt.batch(xb)).float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert set(tracker.ratios()) >= {"s1_l0"}
