"""``--tensorboard``: scalars and figures read back from the event files."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from grownet.cli import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

GROW = ["grow", "--data", "digits", "--epochs", "8", "--epochs-per-stage", "2",
        "--finetune-epochs", "2", "--batch-size", "64", "--entry-epochs", "0.5", "--quiet"]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "run"
    assert main(GROW + ["--out", str(out), "--tensorboard"]) == 0
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return out, events


def test_every_metrics_row_is_a_scalar(logged):
    out, events = logged
    metrics = pd.read_csv(out / "metrics.csv")
    test_acc = events.Scalars("accuracy/test")
    assert [e.step for e in test_acc] == metrics["epoch"].tolist()
    assert [e.value for e in test_acc] == pytest.approx(metrics["test_acc"].tolist())
    params = [e.value for e in events.Scalars("cost/params")]
    assert params == pytest.approx(metrics["params"].tolist())


def test_width_and_support_figures_at_growth_and_end(logged):
    out, events = logged
    grows = [e for e in pd.read_json(out / "events.jsonl", lines=True).itertuples()
             if e.kind == "grow"]
    assert grows, "the run must grow"
    for tag in ("growth/widths", "path/support"):
        steps = [im.step for im in events.Images(tag)]
        assert steps == [g.epoch for g in grows] + [7]
        image = events.Images(tag)[-1]
        assert image.width > 300 and image.encoded_image_string[:4] == b"\x89PNG"


def test_missing_package_is_one_line_and_nothing_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails
    out = tmp_path / "run"
    assert main(GROW + ["--out", str(out), "--tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install" in err
    assert not out.exists()


def test_a_job_started_from_python_logs_what_its_config_asks(tmp_path):
    from grownet.runs import RunConfig
    from grownet.train import TrainJob

    cfg = RunConfig(command="train", data="digits", arch="mlp-300-100", epochs=2,
                    tensorboard=True)
    TrainJob.start(cfg, tmp_path / "run", quiet=True)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("accuracy/test")] == [0, 1]
