"""Growth on a task whose bottleneck is one known layer: it widens that layer, and the
grown net beats the uniform widening of its start at the same MACs."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

import grownet as gn
from grownet.compare.baselines import MACS_TOLERANCE, uniform
from grownet.data.dataset import _finish
from grownet.grow import GrowJob
from grownet.runs import RunConfig
from grownet.train.job import TrainJob


def _net(w1: int, w2: int, bn: bool = True) -> gn.ArchSpec:
    """A 3x3 conv (w1) → pool → 3x3 conv (w2) → global average → classifier, on 8x8."""
    stages = (gn.Stage("s1", layers=(gn.Layer("s1_l0", w1, bn=bn),), pool="max"),
              gn.Stage("s2", layers=(gn.Layer("s2_l0", w2, bn=bn),), pool="none"))
    return gn.ArchSpec("plain", (1, 8, 8), 10, stages=stages, readout="avg", name="task")


def _teacher_task(n_train: int = 3000, n_test: int = 1000) -> gn.Dataset:
    """Labels from a random teacher whose first conv has 2 filters and whose second has
    24, read through a global average: 2 first-layer features suffice, and the classifier
    sees only the second layer's channels, so the second layer is the bottleneck."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        teacher = gn.build(_net(2, 24, bn=False)).eval()
        x = torch.randn(n_train + n_test, 1, 8, 8)
        with torch.no_grad():
            logits = teacher(x)
    y = ((logits - logits.mean(0)) / logits.std(0)).argmax(1)  # every class occurs
    return _finish("teacher", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10, 1.0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("task")
    data = _teacher_task()
    start = tmp / "start.json"
    start.write_text(_net(8, 1).to_json())  # the second layer far too narrow
    common = {"epochs": 12, "batch_size": 64, "seed": 0, "entry_epochs": 1.0}
    with contextlib.redirect_stdout(io.StringIO()):
        grown = GrowJob.start(RunConfig(start=str(start), growth={"finetune_epochs": 4},
                                        **common), tmp / "grow", dataset=data, quiet=True)
        wide = uniform(_net(8, 1), grown.macs)
        (tmp / "uniform.json").write_text(wide.to_json())
        flat = TrainJob.start(RunConfig(command="train", arch=str(tmp / "uniform.json"),
                                        method="dessilbi", val_frac=0.1, **common),
                              tmp / "uniform", dataset=data, quiet=True)
    return grown, flat


def test_growth_widens_the_bottleneck_layer_most(runs):
    grown, _ = runs
    widths = grown.spec.widths()
    assert widths["s2_l0"] / 1 >= 4 * widths["s1_l0"] / 8  # relative to the start


def test_grown_net_beats_the_uniform_widening_at_the_same_macs(runs):
    grown, flat = runs
    assert abs(flat.macs - grown.macs) <= MACS_TOLERANCE * grown.macs
    assert grown.test_acc > flat.test_acc + 0.04  # measured: +7 to +14 points, 3 seeds


def test_wide_start_does_not_grow(tmp_path):
    """A start far wider than the task needs (the teacher's second layer is 24 wide;
    this one's is 64): too few of its filters enter Γ's support at any check."""
    spec = _net(16, 64)
    path = tmp_path / "wide.json"
    path.write_text(spec.to_json())
    cfg = RunConfig(start=str(path), epochs=6, batch_size=64, seed=0, entry_epochs=3.0,
                    growth={"epochs_per_stage": 2, "finetune_epochs": 2, "max_width": 128})
    with contextlib.redirect_stdout(io.StringIO()):
        result = GrowJob.start(cfg, tmp_path / "wide", dataset=_teacher_task(), quiet=True)
    kinds = [e["kind"] for e in result.events]
    assert kinds == ["stop"] and result.spec == spec
