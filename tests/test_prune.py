"""Pruning: tickets from Γ's recorded support, prune-by-order, physical slimming, and
``grownet prune`` end to end."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode

import grownet as gn
from grownet.cli import main
from grownet.errors import UserError
from grownet.grow.job import start_job
from grownet.path import NEVER_EPOCH
from grownet.prune import (
    by_percent,
    channel_maps,
    constrain,
    mask_network,
    prune_orders,
    slim_network,
    ticket,
)
from grownet.runs import RunConfig, RunDir, load_final_model
from grownet.spec import ArchSpec, Block, Layer, Stage
from grownet.surgery import deepen, widen

TINY = {"data": "digits", "epochs": 6, "entry_epochs": 1.0, "batch_size": 64,
        "growth": {"epochs_per_stage": 2, "finetune_epochs": 2}}


@pytest.fixture(scope="module")
def grown(tmp_path_factory) -> Path:
    """A tiny grown run on real 8x8 digits (about 8 s)."""
    out = tmp_path_factory.mktemp("runs") / "grow"
    start_job(RunConfig(**TINY), out, quiet=True)
    return out


@pytest.fixture(scope="module")
def ckpt(grown: Path) -> dict:
    return torch.load(grown / "checkpoints" / "last.pt", weights_only=True)


# ------------------------------------------------------------------ helpers
def _spec_b() -> ArchSpec:
    """Option B: identity shortcut into s1, a stride-1 projection into s2 (16 -> 24), a
    stride-2 projection into s3."""
    return ArchSpec(
        "residual", (3, 8, 8), 10, stem=Layer("stem", 16), readout="avg", shortcut="B",
        stages=(Stage("s1", blocks=(Block("s1_b0", 8), Block("s1_b1", 12)), width=16),
                Stage("s2", blocks=(Block("s2_b0", 12),), width=24),
                Stage("s3", blocks=(Block("s3_b0", 12, stride=2),), width=24)))


def _spec_fc() -> ArchSpec:
    """Plain, flatten readout into a hidden FC layer with BatchNorm (and dropout)."""
    return ArchSpec(
        "plain", (3, 8, 8), 10, readout="flatten",
        stages=(Stage("s1", layers=(Layer("s1_l0", 8), Layer("s1_l1", 8))),
                Stage("s2", layers=(Layer("s2_l0", 12, bn=False),))),
        hidden=(Layer("fc1", 20, kind="linear", bn=True, dropout=0.5),))


SPECS = {"plain-fc": _spec_fc, "resnet-B": _spec_b,
         "resnet-A": lambda: ArchSpec.preset("resnet20-narrow", (3, 8, 8))}


def _trained(spec: ArchSpec, seed: int = 0) -> tuple[gn.GrowNet, torch.Tensor]:
    """float64, random weights and BN affine, non-trivial running statistics, eval mode."""
    torch.manual_seed(seed)
    model = gn.build(spec).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_bn.weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.3)
        x = torch.randn(8, *spec.in_shape, dtype=torch.float64)
        model.train()
        for k in range(3):
            model(x * (1.0 + 0.5 * k) + 0.2)
    return model.eval(), x


def _random_keep(spec: ArchSpec, seed: int, frac: float = 0.5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {s.id: torch.nonzero(torch.rand(s.out_ch, generator=g) < frac).flatten()
            for s in spec.shapes() if s.role != "head"}


def _macs(model: torch.nn.Module, spec: ArchSpec) -> int:
    x = torch.zeros(1, *spec.in_shape, dtype=next(model.parameters()).dtype)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops() // 2


def _same(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-10, atol=1e-10)


def _cut(model: gn.GrowNet, keep: dict) -> tuple[gn.GrowNet, gn.GrowNet, ArchSpec]:
    """(masked, slimmed, slimmed spec) for the constrained ``keep``."""
    sel = constrain(model.spec, keep)
    new_spec, small = slim_network(model.spec, model, sel)
    return mask_network(model, sel), small.eval(), new_spec


# ------------------------------------------------------------ slimming is exact
@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("seed", [0, 1])
def test_slimmed_equals_masked_and_cost_is_predicted(name: str, seed: int) -> None:
    spec = SPECS[name]()
    model, x = _trained(spec, seed)
    masked, small, new_spec = _cut(model, _random_keep(spec, seed))
    assert new_spec != spec
    _same(small, masked, x)
    with torch.no_grad():
        assert (model(x) - masked(x)).abs().max() > 1e-3  # the cut changes the function
    old, new = gn.count(spec), gn.count(new_spec)
    n_small, n_full = (sum(p.numel() for p in m.parameters()) for m in (small, model))
    assert n_small == new.params and n_full == old.params
    assert n_full - n_small == old.params - new.params > 0
    assert _macs(small, new_spec) == new.macs and _macs(model, spec) == old.macs
    assert old.macs - new.macs > 0


def test_masked_means_zero_bn_affine_not_just_the_filter() -> None:
    """A zeroed conv filter before BN still outputs BN's β - γμ/σ: not a pruned channel."""
    spec = _spec_fc()
    model, x = _trained(spec)
    keep = {"s1_l1": torch.tensor([0, 2, 5])}
    masked, small, _ = _cut(model, keep)
    naive = mask_network(model, {})
    _same(small, masked, x)
    with torch.no_grad():
        naive.s1_l1.weight[torch.tensor([1, 3, 4, 6, 7])] = 0
        assert (small(x) - naive(x)).abs().max() > 1e-3


def test_constrain_streams_and_shortcuts() -> None:
    spec = ArchSpec.preset("resnet20-narrow", (3, 8, 8))
    keep = {"stem": [0, 1, 2], "s1_b0_conv2": [0, 5], "s1_b1_conv2": [7],
            "s2_b0_conv2": [9], "s3_b0_conv1": []}
    sel = constrain(spec, keep)
    s1 = {"s1_b0_conv2", "s1_b1_conv2", "s1_b2_conv2"}
    assert all(sel[i].tolist() == [0, 1, 2, 5, 7] for i in s1)  # union + the stem's
    assert set(sel["s2_b0_conv2"].tolist()) == {0, 1, 2, 5, 7, 9}  # ⊇ s1's (option A)
    assert len(sel["s3_b0_conv1"]) == 1 and "nothing selected" in sel.notes["s3_b0_conv1"]
    assert "shortcut" in sel.notes["s1_b0_conv2"]
    assert sel["s1_b0_conv1"].tolist() == list(range(16))  # not named: keeps all
    again = constrain(spec, sel)  # idempotent
    assert {k: v.tolist() for k, v in again.items()} == {k: v.tolist() for k, v in sel.items()}

    spec_b = _spec_b()  # a stride-1 projection must not become an identity
    sel_b = constrain(spec_b, {"stem": range(8), "s1_b0_conv2": range(8),
                               "s2_b0_conv2": range(8)})
    assert len(sel_b["s2_b0_conv2"]) == 9 and "projection" in sel_b.notes["s2_b0_conv2"]
    model, x = _trained(spec_b)
    masked, small, new_spec = _cut(model, sel_b)
    assert "s2_b0_proj" in new_spec.layer_ids()
    _same(small, masked, x)
    with pytest.raises(UserError, match="outside 0..15"):
        constrain(spec, {"stem": [16]})


def test_constrain_falls_back_to_whole_streams(monkeypatch) -> None:
    """When surgery still refuses a keep, the stem and the streams are kept whole."""
    import grownet.prune.slimming as slimming

    calls = []

    def refuse_once(spec, keep):
        calls.append(1)
        if len(calls) == 1:
            raise gn.SpecError("no")
        return gn.slim(spec, keep)

    monkeypatch.setattr(slimming, "slim", refuse_once)
    spec = ArchSpec.preset("resnet20-narrow", (3, 8, 8))
    sel = constrain(spec, {"stem": [0], "s2_b0_conv2": [1], "s2_b0_conv1": [2, 3]})
    assert sel["stem"].tolist() == list(range(16)) and "kept whole" in sel.notes["stem"]
    assert len(sel["s2_b1_conv2"]) == 16 and sel["s2_b0_conv1"].tolist() == [2, 3]


# ------------------------------------------------------------------ tickets
def _history_support(ckpt: dict, epoch: int) -> dict[str, torch.Tensor]:
    """The record of ``epoch``, split by hand from the flat vector."""
    rec = [r for r in ckpt["tracker"]["history"] if r["epoch"] == epoch][-1]
    out, off = {}, 0
    for name, shape in zip(rec["layers"], rec["shapes"]):
        n = int(np.prod(shape))
        out[name] = rec["support"][off:off + n].view(shape)
        off += n
    return out


def test_ticket_is_the_support_recorded_at_that_epoch(grown: Path, ckpt: dict) -> None:
    run = RunDir.open(grown)
    spec, model = load_final_model(grown)
    stages = run.stage_specs()
    assert all(s.layer_ids() == spec.layer_ids() for _, s in stages)  # widening only
    epochs = sorted({r["epoch"] for r in ckpt["tracker"]["history"]})
    assert epochs
    for epoch in epochs:
        keep = ticket(ckpt["tracker"], epoch, spec, stages, model=model)
        for layer, rows in _history_support(ckpt, epoch).items():
            # widening appends filters, so stage channel j is final channel j
            want = torch.nonzero(rows.cpu()).flatten().tolist()
            if want:
                assert keep[layer].tolist() == want, (epoch, layer)
            else:
                assert len(keep[layer]) == 1 and "nothing selected" in keep.notes[layer]
        assert "head" not in keep
    with pytest.raises(UserError, match="recorded epochs: " + ", ".join(map(str, epochs))):
        ticket(ckpt["tracker"], 999, spec, stages)
    model = model.double().eval()
    x = torch.randn(16, *spec.in_shape, dtype=torch.float64)
    masked, small, _ = _cut(model, ticket(ckpt["tracker"], epochs[0], spec, stages))
    _same(small, masked, x)


def test_element_structured_layers_prune_rows() -> None:
    """An element-structured (lasso) layer: a row is kept if any of its elements is
    selected; its order uses the row's earliest entry."""
    spec = _spec_fc()
    model, _ = _trained(spec)
    shapes = {s.id: s for s in spec.shapes()}
    w_fc = list(shapes["fc1"].weight_shape)
    sup = {"s1_l0": torch.tensor([1, 0, 1, 0, 0, 0, 0, 1]).bool(),
           "fc1": torch.zeros(w_fc, dtype=torch.bool)}
    sup["fc1"][[2, 2, 7], [0, 5, 47]] = True
    keep = ticket([_record(4, sup)], 4, spec)
    assert keep["fc1"].tolist() == [2, 7] and keep["s1_l0"].tolist() == [0, 2, 7]
    assert keep["s1_l1"].tolist() == list(range(8))  # never tracked: keeps all
    entry = torch.full((8 + w_fc[0] * w_fc[1],), -1, dtype=torch.long)
    entry[:8] = torch.arange(8)
    fc = entry[8:].view(w_fc)
    fc[3, 1], fc[3, 2], fc[9, 0] = 5, 2, 4
    state = {"layers": ["s1_l0", "fc1"], "shapes": [[8], w_fc], "entry_epoch": entry}
    orders = prune_orders(model, state)
    norms = model.fc1.weight.detach().norm(dim=1)
    assert orders["fc1"][3] == pytest.approx(float(norms[3]) - 2)
    assert orders["fc1"][0] == pytest.approx(float(norms[0]) - NEVER_EPOCH)
    assert set(by_percent(model, state, 90)["fc1"].tolist()) == {3, 9}


def _record(epoch: int, support: dict[str, torch.Tensor]) -> dict:
    return {"epoch": epoch, "step": epoch, "layers": list(support),
            "shapes": [list(v.shape) for v in support.values()],
            "support": torch.cat([v.flatten() for v in support.values()])}


def test_ticket_maps_through_growth_plain() -> None:
    s0 = ArchSpec("plain", (1, 8, 8), 10, stages=(
        Stage("s1", layers=(Layer("s1_l0", 4),)), Stage("s2", layers=(Layer("s2_l0", 4),))))
    s1 = widen(s0, "s1_l0", 6)
    s2 = deepen(widen(s1, "s2_l0", 7), "s2", 1)  # inserts s2_l1 (7 wide)
    new_id = next(i for i in s2.layer_ids() if i not in s1.layer_ids())
    b = torch.tensor
    hist = [_record(0, {"s1_l0": b([1, 0, 1, 0]).bool(), "s2_l0": b([0, 1, 1, 0]).bool()}),
            _record(1, {"s1_l0": b([1, 1, 1, 0, 0, 1]).bool(),
                        "s2_l0": b([0, 0, 0, 0]).bool()}),
            _record(2, {"s1_l0": torch.ones(6, dtype=torch.bool),
                        "s2_l0": b([1, 0, 0, 0, 0, 0, 1]).bool(),
                        new_id: b([0, 1, 0, 0, 0, 0, 0]).bool()})]
    k0 = ticket(hist, 0, s2, [s0, s1, s2])
    assert k0["s1_l0"].tolist() == [0, 2] and k0["s2_l0"].tolist() == [1, 2]
    assert len(k0[new_id]) == 1 and "nothing selected" in k0.notes[new_id]  # did not exist
    k1 = ticket({"history": hist}, 1, s2, [s0, s1, s2])
    assert k1["s1_l0"].tolist() == [0, 1, 2, 5] and len(k1["s2_l0"]) == 1
    k2 = ticket(hist, 2, s2)  # the final stage needs no stage specs
    assert k2["s2_l0"].tolist() == [0, 6] and k2[new_id].tolist() == [1]
    with pytest.raises(UserError, match="match none of the stage specs"):
        ticket(hist, 0, s2)


def test_ticket_maps_through_growth_residual_option_a() -> None:
    """resnet20 streams 16/32/64: widening s1 to 20 makes s2 [0..15, new x4, 16..31];
    then widening the stem by 2 inserts 2 more new channels after 0..15 downstream."""
    s0 = ArchSpec.preset("resnet20", (3, 8, 8))
    s1 = widen(s0, "s1_b0_conv2", 20)
    s2 = widen(s1, "stem", 18)
    assert channel_maps([s0, s1])["s2_b1_conv2"].tolist() == (
        list(range(16)) + [-1] * 4 + list(range(16, 32)))
    maps = channel_maps([s0, s1, s2])
    assert maps["s2_b0_conv2"].tolist() == list(range(16)) + [-1] * 6 + list(range(16, 32))
    assert maps["stem"].tolist() == list(range(16)) + [-1] * 2
    g = torch.Generator().manual_seed(0)
    sup = {s.id: torch.rand(s.out_ch, generator=g) < 0.5 for s in s0.shapes()
           if s.role != "head"}
    keep = ticket([_record(0, sup)], 0, s2, [s0, s1, s2])
    for layer in ("s3_b1_conv1", "s2_b2_conv1"):  # untouched by growth
        assert keep[layer].tolist() == torch.nonzero(sup[layer]).flatten().tolist()
    kept_s2 = set(keep["s2_b0_conv2"].tolist())
    assert not kept_s2 & set(range(16, 22))  # created later: not selected
    assert {c for c in kept_s2 if c >= 22} == {c + 6 for c in range(16, 32)
                                               if sup["s2_b0_conv2"][c]
                                               or sup["s2_b1_conv2"][c]
                                               or sup["s2_b2_conv2"][c]}
    assert keep["stem"].tolist() == torch.nonzero(sup["stem"]).flatten().tolist()
    model, x = _trained(s2)
    masked, small, _ = _cut(model, keep)
    _same(small, masked, x)


# ------------------------------------------------------------ prune by order
def test_by_percent_follows_the_reference_order(grown: Path, ckpt: dict) -> None:
    spec, model = load_final_model(grown)
    state = dict(ckpt["tracker"])
    ee = state["entry_epoch"].clone()
    ee[::3] = -1  # some filters never selected
    state["entry_epoch"] = ee
    orders = prune_orders(model, state)
    off = 0
    for name, shape in zip(state["layers"], state["shapes"]):
        e = ee[off:off + shape[0]].double()
        off += shape[0]
        norm = getattr(model, name).weight.detach().double().flatten(1).norm(dim=1)
        torch.testing.assert_close(orders[name], norm - torch.where(e < 0, NEVER_EPOCH, e))
    for pct in (25, 50, 75):
        keep = by_percent(model, state, pct)
        for name, order in orders.items():
            n = order.numel()
            thr = np.percentile(order.numpy(), pct)
            assert keep[name].tolist() == [i for i in range(n) if order[i] >= thr]
            assert abs(len(keep[name]) - (100 - pct) / 100 * n) <= 1
            never = order < -1000
            kept = torch.zeros(n, dtype=torch.bool)
            kept[keep[name]] = True
            if (kept & never).any():  # never-selected filters go first
                assert kept[~never].all()
    assert all(len(v) == 1 for v in by_percent(model, state, 100).values())
    with pytest.raises(UserError, match=r"\[0, 100\]"):
        by_percent(model, state, 120)


# ------------------------------------------------------------------ the CLI
def test_cli_prune_end_to_end(grown: Path, ckpt: dict, tmp_path: Path, capsys) -> None:
    epochs = sorted({r["epoch"] for r in ckpt["tracker"]["history"]})
    epoch = 3 if 3 in epochs else epochs[0]
    out = tmp_path / "ticket"
    assert main(["prune", str(grown), "--epoch", str(epoch), "--out", str(out)]) == 0
    assert re.search(r"\ntotal .*\ntest accuracy: full", capsys.readouterr().out, re.S)
    table = pd.read_csv(out / "prune.csv")
    assert list(table.columns[:8]) == ["layer", "width_before", "width_after", "kept_pct",
                                       *(f"{k}_{t}" for k in ("params", "macs")
                                         for t in ("before", "after"))]
    spec, _ = load_final_model(grown)
    new_spec = gn.ArchSpec.from_json((out / "final" / "arch.json").read_text())
    assert table.layer.tolist() == spec.layer_ids()
    assert dict(zip(table.layer, table.width_after)) == new_spec.widths()
    assert table.params_after.sum() == gn.count(new_spec).params
    assert table.macs_after.sum() == gn.count(new_spec).macs
    with safe_open(str(out / "final" / "model.safetensors"), framework="pt") as f:
        assert ArchSpec.from_json(f.metadata()["arch"]) == new_spec
        assert f.metadata()["ticket_epoch"] == str(epoch)
    gn.build(new_spec).load_state_dict(load_file(str(out / "final" / "model.safetensors")))
    for layer, rows in _history_support(ckpt, epoch).items():
        if rows.any():
            got = [int(i) for i in str(table.set_index("layer").kept[layer]).split()]
            assert got == torch.nonzero(rows.cpu()).flatten().tolist()

    out2 = tmp_path / "lottery"
    rc = main(["prune", str(grown), "--percent", "50", "--retrain-epochs", "1",
               "--retrain-from", "init", "--out", str(out2), "--quiet"])
    assert rc == 0 and capsys.readouterr().out == ""  # --quiet: nothing, job summary too
    metrics = pd.read_csv(out2 / "retrain" / "metrics.csv")
    assert len(metrics) == 1 and metrics.params.iloc[0] == gn.count(
        gn.ArchSpec.from_json((out2 / "final" / "arch.json").read_text())).params
    assert [e["kind"] for e in RunDir(out2).events()] == ["prune", "retrain"]
    # the lottery procedure: the retraining started from the kept filters' initial values
    init = gn.build(spec)
    init.load_state_dict(load_file(str(grown / "init" / "model.safetensors")), strict=False)
    keep = {r.layer: [int(i) for i in r.kept.split()] for r in
            pd.read_csv(out2 / "prune.csv").itertuples() if r.layer != "head"}
    started = load_file(str(out2 / "retrain" / "init" / "model.safetensors"))
    for name, value in slim_network(spec, init, keep)[1].named_parameters():
        assert torch.equal(started[name], value.detach()), name


def test_cli_ticket_from_an_earlier_stage(grown: Path, ckpt: dict, tmp_path: Path) -> None:
    """A history that spans stages: a record with stage 0's shapes maps to the final spec."""
    run = tmp_path / "spanning"
    shutil.copytree(grown, run)
    state = dict(ckpt)
    stage0 = RunDir(run).stage_specs()[0][1].widths()
    sup = {k: torch.arange(w) % 3 == 0 for k, w in stage0.items() if k != "head"}
    tracker = dict(state["tracker"])
    tracker["history"] = [_record(-5, sup)] + list(tracker["history"])
    state["tracker"] = tracker
    torch.save(state, run / "checkpoints" / "last.pt")
    out = tmp_path / "early"
    assert main(["prune", str(run), "--epoch", "-5", "--out", str(out), "--quiet"]) == 0
    kept = pd.read_csv(out / "prune.csv").set_index("layer").kept
    for layer, rows in sup.items():
        assert [int(i) for i in kept[layer].split()] == torch.nonzero(rows).flatten().tolist()


@pytest.mark.parametrize("argv, match", [
    ([], "one of the arguments --epoch --keep --params --percent is required"),
    (["--epoch", "3", "--percent", "50"], "not allowed with argument"),
    (["--epoch", "999"], "recorded epochs"),
    (["--percent", "150"], r"\[0, 100\)"),
    (["--percent", "100"], "drop every filter"),
    (["--epoch", "3", "--retrain-from", "best"], "invalid choice"),
])
def test_cli_bad_input_exits_2(grown: Path, capsys, argv: list[str], match: str) -> None:
    try:
        rc = main(["prune", str(grown), *argv])
    except SystemExit as stop:  # argparse's own errors
        rc = stop.code
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert re.search(match, err), err


def test_cli_refuses_existing_out_and_missing_init(grown: Path, tmp_path: Path,
                                                   capsys) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("keep me")
    assert main(["prune", str(grown), "--percent", "10", "--out", str(taken)]) == 2
    assert "not empty" in capsys.readouterr().err and (taken / "x").read_text() == "keep me"
    old = tmp_path / "old-run"
    shutil.copytree(grown, old)
    shutil.rmtree(old / "init")
    rc = main(["prune", str(old), "--percent", "10", "--retrain-epochs", "1",
               "--retrain-from", "init", "--out", str(tmp_path / "new")])
    assert rc == 2 and "--retrain-from current" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
