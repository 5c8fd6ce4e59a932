"""SupportTracker: entry steps/epochs, ratios, history, tickets' supports, checkpoints."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grownet.errors import UserError
from grownet.optim import DessiLBI, lbi_param_groups
from grownet.path import SupportTracker

NORMS = [4.0, 2.0, 1.0, 0.5]
A, NU, LAM = 0.1, 100.0, 1.0


def toy(norms=NORMS, d=8):
    torch.manual_seed(0)
    dirs = torch.randn(len(norms), d, dtype=torch.float64)
    scale = torch.tensor(norms, dtype=torch.float64)[:, None]
    w_star = dirs / dirs.norm(dim=1, keepdim=True) * scale
    return w_star, nn.Parameter(torch.zeros_like(w_star))


def toy_opt(w, **kw) -> DessiLBI:
    hyper = dict(lr=A, nu=NU, lam=LAM, momentum=0.0) | kw
    return DessiLBI([{"params": [w], "names": ["w.weight"], "structure": "filter"}], **hyper)


def reference_entries(w_star: torch.Tensor, steps: int) -> list[int]:
    """ALGORITHMS A3 by hand on the toy (no momentum), recording first entry per row."""
    w = torch.zeros_like(w_star)
    v = torch.zeros_like(w)
    gam = torch.zeros_like(w)
    entry = [-1] * w.shape[0]
    for k in range(1, steps + 1):
        grad = w - w_star
        w_old = w.clone()
        w = w - A * grad - (A / NU) * (w - gam)
        v = v + (A / NU) * (w_old - gam)
        n = v.norm(dim=1, keepdim=True)
        gam = torch.where(n > LAM, v * (1 - LAM / n), torch.zeros_like(v))
        for g in range(w.shape[0]):
            if entry[g] < 0 and n[g, 0] > LAM:
                entry[g] = k
    return entry


def run_toy(w, w_star, opt, steps, tracker=None, steps_per_epoch=None, first_epoch=0):
    for k in range(1, steps + 1):
        w.grad = (w - w_star).detach()
        opt.step()
        if tracker is not None and steps_per_epoch and k % steps_per_epoch == 0:
            tracker.end_epoch(first_epoch + k // steps_per_epoch - 1)


def test_entry_steps_match_reference_loop_on_toy():
    w_star, w = toy()
    opt = toy_opt(w)
    tr = SupportTracker(opt)
    assert tr.layers == ["w"]
    run_toy(w, w_star, opt, 2300, tr, steps_per_epoch=100)
    expected = reference_entries(w_star, 2300)
    assert expected == sorted(expected) and min(expected) > 0
    assert tr.entry_steps("w").tolist() == expected
    # Entry epoch = the epoch during which the step fell (0-based, 100 steps each).
    assert tr.entry_epochs("w").tolist() == [(k - 1) // 100 for k in expected]
    assert tr.entry_order("w").tolist() == [0, 1, 2, 3]
    assert tr.steps == 2300


def test_entry_order_ties_by_norm_and_never_last():
    w_star, w = toy([4.0, 0.3, 2.0, 0.4, 0.2])
    opt = toy_opt(w)
    tr = SupportTracker(opt)
    run_toy(w, w_star, opt, 600)  # only ||W*|| = 4 and 2 enter within 600 steps
    es = tr.entry_steps("w")
    assert (es[[0, 2]] > 0).all() and (es[[1, 3, 4]] == -1).all()
    # first-in first; the never-entered by larger ||W_g|| (0.4 > 0.3 > 0.2).
    assert tr.entry_order("w").tolist() == [0, 2, 3, 1, 4]


def test_prune_order_is_reference_formula():
    w_star, w = toy([4.0, 2.0, 0.3])
    opt = toy_opt(w)
    tr = SupportTracker(opt)
    run_toy(w, w_star, opt, 700, tr, steps_per_epoch=100)
    ee = tr.entry_epochs("w")
    assert ee.tolist()[2] == -1 and ee[0] < ee[1]
    epochs = torch.where(ee < 0, 2000, ee).float()
    expected = w.detach().norm(dim=1).float() - epochs
    torch.testing.assert_close(tr.prune_order("w"), expected)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
        nn.Linear(6 * 6 * 6, 10), nn.ReLU(), nn.Linear(10, 3),
    )  # fmt: skip


def cnn_batches(n: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 3, (16,), generator=gen))
            for _ in range(n)]  # fmt: skip


def train_epochs(model, opt, tracker, data, epochs, per_epoch, first_epoch=0):
    snaps = []
    for e in range(first_epoch, first_epoch + epochs):
        for x, y in data[(e * per_epoch) % len(data) :][:per_epoch]:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        tracker.end_epoch(e)
        snaps.append({k: tracker.entry_epochs(k).clone() for k in tracker.layers})
    return snaps


def test_cnn_layers_ratios_history_and_monotone_entry_epochs():
    model = small_cnn()
    opt = DessiLBI(lbi_param_groups(model), lr=0.1, nu=1.0, lam=0.5)
    tr = SupportTracker(opt)
    assert tr.layers == ["0", "4"]  # conv and hidden linear; the classifier is plain
    assert tr.ratios() == {"0": 0.0, "4": 0.0}  # A13 item 1
    data = cnn_batches(10)
    snaps = train_epochs(model, opt, tr, data, epochs=6, per_epoch=5)
    # A13 item 8: a recorded entry epoch never changes (so never increases).
    for before, after in zip(snaps, snaps[1:]):
        for k in before:
            set_before = before[k] >= 0
            assert torch.equal(after[k][set_before], before[k][set_before])
    ratios = tr.ratios()
    for k in tr.layers:
        p = dict(model.named_parameters())[k + ".weight"]
        sup = opt.support(p)
        assert torch.equal(tr.support(k), sup)
        assert ratios[k] == pytest.approx(float(sup.float().mean()))
    assert 0 < ratios["0"] <= 1 and 0 < ratios["4"] <= 1
    hist = tr.history()
    assert list(hist.columns) == ["step", "epoch", "layer", "selected", "total", "ratio"]
    assert len(hist) == 6 * 2
    last = hist[hist.epoch == 5].set_index("layer")
    assert last.loc["0", "total"] == 6 and last.loc["4", "total"] == 10
    assert last.loc["0", "step"] == 30
    for k in tr.layers:
        assert last.loc[k, "ratio"] == pytest.approx(ratios[k])
        assert last.loc[k, "selected"] == int(tr.support_at(5)[k].sum())
    assert (hist.ratio == hist.selected / hist.total).all()


def test_support_at_returns_recorded_epoch():
    w_star, w = toy()
    opt = toy_opt(w)
    tr = SupportTracker(opt)
    run_toy(w, w_star, opt, 600, tr, steps_per_epoch=100)
    # Rows 0 (k*~263) and 1 (~515) have entered by the end of epoch 5; row 0 by epoch 2.
    assert tr.support_at(2)["w"].tolist() == [True, False, False, False]
    assert tr.support_at(5)["w"].tolist() == [True, True, False, False]
    tr.support_at(2)["w"][:] = True  # a copy: the record is untouched
    assert tr.support_at(2)["w"].tolist() == [True, False, False, False]
    with pytest.raises(UserError, match="epoch 99"):
        tr.support_at(99)


def test_element_layer_ratio_counts_negative_entries():
    e = nn.Parameter(torch.zeros(2, 3))
    f = nn.Parameter(torch.zeros(4, 2, 1, 1))
    opt = DessiLBI([{"params": [e], "structure": "element"},
                    {"params": [f], "structure": "filter"}], lr=0.1)  # fmt: skip
    tr = SupportTracker(opt)
    assert tr.layers == ["param0", "param1"]
    opt.state[e]["gamma"] = torch.tensor([[-1.0, 0.0, 2.0], [0.0, -3.0, 0.0]])
    opt.state[f]["gamma"] = torch.zeros(4, 2, 1, 1)
    opt.state[f]["gamma"][1, 0] = -0.5  # one nonzero entry selects the row
    assert tr.ratios() == {"param0": 0.5, "param1": 0.25}
    assert tr.support("param0").tolist() == [[True, False, True], [False, True, False]]


def test_tracker_state_dict_round_trip():
    w_star, w = toy()
    opt = toy_opt(w)
    tr = SupportTracker(opt)
    run_toy(w, w_star, opt, 600, tr, steps_per_epoch=100)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "track": tr.state_dict(), "w": w.detach()}, buf)
    run_toy(w, w_star, opt, 600, tr, steps_per_epoch=100, first_epoch=6)  # uninterrupted

    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    w2 = nn.Parameter(ck["w"].clone())
    opt2 = toy_opt(w2)
    opt2.load_state_dict(ck["opt"])
    tr2 = SupportTracker(opt2)
    tr2.load_state_dict(ck["track"])
    assert tr2.steps == 600 and len(tr2.history()) == 6
    run_toy(w2, w_star, opt2, 600, tr2, steps_per_epoch=100, first_epoch=6)
    assert torch.equal(tr2.entry_steps("w"), tr.entry_steps("w"))
    assert torch.equal(tr2.entry_epochs("w"), tr.entry_epochs("w"))
    pd.testing.assert_frame_equal(tr2.history(), tr.history())
    for e in range(12):
        assert torch.equal(tr2.support_at(e)["w"], tr.support_at(e)["w"])


def test_load_state_dict_rejects_other_layers():
    _, w = toy()
    tr = SupportTracker(toy_opt(w))
    other = SupportTracker(toy_opt(nn.Parameter(torch.zeros(6, 8, dtype=torch.float64))))
    with pytest.raises(UserError, match="layers/shapes differ"):
        other.load_state_dict(tr.state_dict())
    with pytest.raises(UserError, match="not a tracker state"):
        tr.load_state_dict({"version": 0})


def test_rebind_carries_entries_by_row():
    w_star, w = toy()
    opt = toy_opt(w)
    tr, tr_b = SupportTracker(opt), SupportTracker(opt)
    run_toy(w, w_star, opt, 600, tr, steps_per_epoch=100)
    old_es, old_ee = tr.entry_steps("w"), tr.entry_epochs("w")
    assert (old_es[:2] > 0).all() and (old_es[2:] == -1).all()

    # Widened to 6 rows, leading slice copied: rows 0..3 carry, 4..5 are new.
    wide = nn.Parameter(torch.zeros(6, 8, dtype=torch.float64))
    tr.rebind(toy_opt(wide))
    assert tr.entry_steps("w").tolist() == old_es.tolist() + [-1, -1]
    assert tr.entry_epochs("w").tolist() == old_ee.tolist() + [-1, -1]
    assert tr.ratios() == {"w": 0.0}  # the new optimizer's Γ is zero
    assert tr.steps == 600 and len(tr.history()) == 6  # history carries over
    assert tr.support_at(5)["w"].shape == (4,)  # recorded with the old shape

    # An explicit map: new row 0 <- old row 1, new row 1 <- old row 0, new row 2 is new.
    narrow = nn.Parameter(torch.zeros(3, 8, dtype=torch.float64))
    tr_b.rebind(toy_opt(narrow), keep={"w": torch.tensor([1, 0])})
    assert tr_b.entry_steps("w").tolist() == [int(old_es[1]), int(old_es[0]), -1]
    with pytest.raises(UserError, match="unknown layers"):
        tr_b.rebind(toy_opt(narrow), keep={"nope": torch.tensor([0])})
    with pytest.raises(UserError, match="1-D integer index"):
        tr_b.rebind(toy_opt(narrow), keep={"w": torch.tensor([0, 1, 2, 5])})
    # A refused rebind leaves the tracker as it was.
    assert tr_b.entry_steps("w").tolist() == [int(old_es[1]), int(old_es[0]), -1]


def test_rebind_element_layer_trailing_dims_and_new_layers():
    e = nn.Parameter(torch.zeros(2, 3))
    opt = DessiLBI([{"params": [e], "names": ["fc.weight"], "structure": "element"}], lr=0.1)
    tr = SupportTracker(opt)
    opt.state[e]["gamma"] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    tr.end_epoch(0)
    e2 = nn.Parameter(torch.zeros(3, 4))
    c2 = nn.Parameter(torch.zeros(2, 1, 3, 3))
    tr.rebind(DessiLBI([{"params": [e2, c2], "names": ["fc.weight", "conv.weight"],
                         "structure": "element"}], lr=0.1))  # fmt: skip
    assert tr.layers == ["fc", "conv"]
    assert tr.entry_epochs("fc").tolist() == [[0, -1, -1, -1], [-1, -1, 0, -1], [-1] * 4]
    assert (tr.entry_epochs("conv") == -1).all()


def test_tracker_follows_freeze_steps_and_skipped_params():
    model = small_cnn()
    opt = DessiLBI(lbi_param_groups(model), lr=0.1, nu=1.0, lam=0.2)
    tr = SupportTracker(opt)
    data = cnn_batches(8)
    train_epochs(model, opt, tr, data, epochs=1, per_epoch=4)
    model[4].weight.requires_grad_(False)
    for x, y in data[4:]:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step(freeze=True)
        for k in tr.layers:
            p = dict(model.named_parameters())[k + ".weight"]
            # The hook's view (no re-read) agrees with Γ after every step.
            assert torch.equal(tr._support[tr._by_name[k].offset :][: p.shape[0]], opt.support(p))
    assert tr.ratios()["0"] > 0 and tr.ratios()["4"] > 0


def test_close_stops_following():
    w_star, w = toy()
    opt = toy_opt(w)
    tr = SupportTracker(opt)
    run_toy(w, w_star, opt, 10)
    tr.close()
    run_toy(w, w_star, opt, 10)
    assert tr.steps == 10


def test_bad_optimizers_raise_user_error():
    w = nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(UserError, match="DessiLBI"):
        SupportTracker(torch.optim.SGD([w], lr=0.1))
    with pytest.raises(UserError, match="no coupled"):
        SupportTracker(DessiLBI([{"params": [w], "structure": "none"}], lr=0.1))
    tr = SupportTracker(DessiLBI([{"params": [w], "structure": "filter"}], lr=0.1))
    with pytest.raises(UserError, match="no layer named"):
        tr.entry_steps("nope")


def test_rebind_marks_new_rows_with_minus_one():
    torch.manual_seed(0)
    lin = nn.Linear(3, 4)
    opt = DessiLBI([{"params": [lin.weight], "structure": "filter", "names": ["fc.weight"]}],
                   lr=0.1, nu=1.0, lam=1e-3)
    tracker = SupportTracker(opt)
    lin(torch.randn(2, 3)).sum().backward()
    opt.step()
    tracker.end_epoch(0)
    assert (tracker.entry_steps("fc") == 1).all()
    wide = nn.Linear(3, 6)
    new_opt = DessiLBI([{"params": [wide.weight], "structure": "filter",
                         "names": ["fc.weight"]}], lr=0.1, nu=1.0, lam=1e-3)
    tracker.rebind(new_opt, keep={"fc": torch.tensor([2, -1, 0, 1, -1, 3])})
    assert tracker.entry_steps("fc").tolist() == [1, -1, 1, 1, -1, 1]
    assert tracker.entry_epochs("fc").tolist() == [0, -1, 0, 0, -1, 0]
