"""Tickets that survive: λ paced per layer, conv-only tickets, element- or neuron-wise
hidden layers, the refusal of a ticket that leaves a layer fewer than 2 units, and
tickets of a size (``--keep`` / ``--params``)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch

import grownet as gn
from grownet.cli import main
from grownet.errors import UserError
from grownet.optim import DessiLBI, lbi_param_groups
from grownet.prune import (
    entry_steps,
    few_units,
    prune_run,
    support_at,
    ticket,
    ticket_at_step,
    ticket_of_size,
)
from grownet.runs import RunDir, load_final_model
from grownet.surgery import slim
from grownet.train.methods import LBI
from grownet.train.schedule import lr_sum

FLAGS = ["--data", "digits", "--arch", "lenet5", "--method", "dessilbi", "--epochs", "6",
         "--batch-size", "64", "--entry-epochs", "3", "--quiet"]


def _train(out: Path, *extra: str) -> Path:
    assert main(["train", *FLAGS, *extra, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def lbi_run(tmp_path_factory) -> Path:
    """LeNet-5 with DessiLBI on 8x8 digits, λ paced per layer (about 3 s)."""
    return _train(tmp_path_factory.mktemp("runs") / "lbi")


@pytest.fixture(scope="module")
def tracker(lbi_run: Path) -> dict:
    return RunDir(lbi_run).load_checkpoint()["tracker"]


def test_each_layer_gets_the_lambda_of_its_typical_initial_filter(lbi_run: Path):
    run = RunDir(lbi_run)
    cfg = run.config()
    assert cfg.lam_pacing == "layer" and cfg.lam == 0
    groups = run.load_checkpoint()["optimizer"]["param_groups"]
    coupled = [g for g in groups if g["structure"] != "none"]
    assert [g["names"] for g in coupled] == [[f"{k}.weight"] for k in
                                             ("s1_l0", "s2_l0", "fc1", "fc2")]
    assert len({g["lam"] for g in coupled}) == 4  # one λ per layer

    # at the start: from the initial norms, under the run's lr schedule and warm-up
    method = LBI(cfg)
    torch.manual_seed(0)
    model = gn.build(gn.ArchSpec.preset("lenet5", (1, 8, 8), 10), init=method.init)
    opt = method.optimizer(model, 23, 0.0)  # digits: 1,437 images, 23 batches of 64
    tracker = method.tracker(opt)
    reach = lr_sum(cfg, 23, cfg.entry_epochs)
    lams = {g["names"][0]: g["lam"] for g in opt.param_groups if g["structure"] != "none"}
    for name, p in model.named_parameters():
        if name in lams:
            norm = float(p.detach().flatten(1).norm(dim=1).median())
            assert lams[name] == pytest.approx(norm * reach / cfg.nu, rel=1e-6), name

    # after an epoch: re-paced from the norms of the time, until a layer's first entry
    fc1 = next(g for g in opt.param_groups if g["names"] == ["fc1.weight"])
    fc1["lam"] = 0.0  # fc1 enters at the next step
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert bool((tracker.entry_steps("fc1") >= 0).all())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    method.epoch_end(RunDir(lbi_run), {}, model.spec, model)
    after = {g["names"][0]: g["lam"] for g in opt.param_groups if g["structure"] != "none"}
    assert after["fc1.weight"] == 0.0  # entered: kept
    for name in ("s1_l0.weight", "s2_l0.weight", "fc2.weight"):
        # twice the norm (a step at lr 0.1 against a zero gradient moved W by ~1e-3)
        assert after[name] == pytest.approx(2 * lams[name], rel=0.01), name


def test_keep_column_of_dessilbi_weighs_layers_by_their_weights(lbi_run: Path):
    metrics = pd.read_csv(lbi_run / "metrics.csv")
    support = pd.read_csv(lbi_run / "support.csv")
    spec, _ = load_final_model(lbi_run)
    size = {s.id: s.in_ch * s.kernel ** 2 if s.kind == "conv" else s.in_ch
            for s in spec.shapes()}  # weights per row
    for epoch, rows in support.groupby("epoch"):
        kept = sum(r.selected * size[r.layer] for r in rows.itertuples())
        total = sum(r.width * size[r.layer] for r in rows.itertuples())
        assert metrics["keep"][epoch] == pytest.approx(kept / total, abs=1e-5)


def test_conv_only_ticket_keeps_every_linear_unit(lbi_run: Path, tracker: dict):
    spec, model = load_final_model(lbi_run)
    support = support_at(tracker, 2)
    both = ticket(tracker, 2, spec, model=model)
    convs = ticket(tracker, 2, spec, model=model, layers="conv")
    for layer in ("fc1", "fc2"):
        assert convs[layer].tolist() == list(range(spec.widths()[layer]))
        assert both[layer].tolist() == torch.nonzero(support[layer]).flatten().tolist()
    for layer in ("s1_l0", "s2_l0"):
        assert torch.equal(convs[layer], both[layer])
    with pytest.raises(UserError, match="layers must be one of"):
        ticket(tracker, 2, spec, layers="linear")


def test_element_groups_for_hidden_linear_layers(tmp_path: Path):
    run = _train(tmp_path / "element", "--hidden-linear", "element", "--epochs", "4")
    state = RunDir(run).load_checkpoint()
    structure = {g["names"][0]: g["structure"] for g in state["optimizer"]["param_groups"]
                 if g["structure"] != "none"}
    assert structure == {"s1_l0.weight": "filter", "s2_l0.weight": "filter",
                         "fc1.weight": "element", "fc2.weight": "element"}
    tracker = state["tracker"]
    spec, model = load_final_model(run)
    epoch = 2
    support = support_at(tracker, epoch)
    assert support["fc1"].shape == (120, 64)  # one entry per weight
    keep = ticket(tracker, epoch, spec, model=model)
    rows = support["fc1"].any(dim=1)
    if rows.any():
        assert keep["fc1"].tolist() == torch.nonzero(rows).flatten().tolist()
    # neuron-wise (the default) groups a row: one entry per output unit
    groups = lbi_param_groups(gn.build(spec), hidden_linear="filter")
    assert DessiLBI(groups, lr=0.1).param_groups[0]["structure"] == "filter"


def test_a_ticket_leaving_fewer_than_two_units_is_refused_unless_forced(
        lbi_run: Path, tracker: dict, tmp_path: Path, capsys):
    spec, model = load_final_model(lbi_run)
    assert not any(v.any() for v in support_at(tracker, 0).values())  # nothing yet
    few = few_units(spec, ticket(tracker, 0, spec, model=model))
    assert few == {"s1_l0": (1, 6), "s2_l0": (1, 16), "fc1": (1, 120), "fc2": (1, 84)}
    out = tmp_path / "refused"
    rc = main(["prune", str(lbi_run), "--epoch", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and not out.exists()
    assert re.search(r"fc2 1 of 84.*--force", err)
    rc = main(["prune", str(lbi_run), "--epoch", "0", "--force", "--out", str(out)])
    assert rc == 0 and "warning:" in capsys.readouterr().err
    assert pd.read_csv(out / "prune.csv").set_index("layer").width_after["fc2"] == 1
    # a later epoch keeps enough everywhere and needs no force
    assert not few_units(spec, ticket(tracker, 3, spec, model=model))


def _size(spec, keep) -> int:
    return gn.count(slim(spec, keep)).params


@pytest.mark.parametrize("share", [0.1, 0.3, 0.6])
def test_ticket_of_a_size_is_the_first_step_reaching_it(lbi_run: Path, tracker: dict,
                                                        share: float):
    spec, model = load_final_model(lbi_run)
    found = ticket_of_size(tracker, spec, keep=share, model=model)
    full = gn.count(spec).params
    assert found.full_params == full and found.params == _size(spec, found.keep)
    assert found.params >= share * full
    earlier = sorted({int(v) for e in entry_steps(tracker, spec).values()
                      for v in e.tolist() if 0 <= v < found.step})
    if earlier:  # the step before it (where something last entered) was still too small
        assert _size(spec, ticket_at_step(tracker, spec, earlier[-1], model)) < share * full
    same = ticket_of_size(tracker, spec, params=found.params, model=model)
    assert same.step == found.step
    with pytest.raises(UserError, match="exactly one"):
        ticket_of_size(tracker, spec, keep=0.3, params=1000)


def test_cli_ticket_of_a_size(lbi_run: Path, tracker: dict, tmp_path: Path, capsys):
    out = tmp_path / "sized"
    assert main(["prune", str(lbi_run), "--keep", "0.3", "--force", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    event = RunDir(out).events()[0]
    spec, _ = load_final_model(lbi_run)
    full = gn.count(spec).params
    table = pd.read_csv(out / "prune.csv")
    assert table.params_after.sum() >= 0.3 * full
    assert event["keep"] == 0.3 and event["ticket_step"] > 0
    metrics = pd.read_csv(lbi_run / "metrics.csv")
    done = event["ticket_epochs_done"]
    steps = [0, *metrics["step"]]
    e = int(done) if done < len(metrics) else len(metrics) - 1
    assert steps[e] < event["ticket_step"] <= steps[e + 1]  # it fell in that epoch
    assert f"step {event['ticket_step']}" in text
    rc = main(["prune", str(lbi_run), "--params", str(10 * full), "--out",
               str(tmp_path / "huge")])
    assert rc == 2 and "never reached" in capsys.readouterr().err


def test_prune_run_takes_exactly_one_way(lbi_run: Path):
    with pytest.raises(UserError, match="exactly one"):
        prune_run(lbi_run, epoch=2, keep=0.3)
