"""The growth policy and controller: decisions from a controlled Γ support."""

from __future__ import annotations

import pytest
import torch

import grownet as gn
from grownet.errors import UserError
from grownet.grow import growable_units


def _setup(name: str = "seed", shape=(1, 12, 12), **policy):
    torch.manual_seed(0)
    spec = gn.ArchSpec.preset(name, in_shape=shape, num_classes=4)
    model = gn.build(spec)
    opt = gn.DessiLBI(gn.lbi_param_groups(model), lr=0.1, nu=100.0)
    # the reference's growth numbers (ALGORITHMS A11), which the assertions below spell out
    ref = {"epochs_per_stage": 2, "grow_ratio": 1.1, "max_width": 512, "max_stages": None,
           "stop_patience": 1, "mature_epochs": 0, "macs_step": None}
    pol = gn.GrowthPolicy(**{**ref, **policy})
    return spec, model, opt, gn.Grower(spec, model, opt, pol)


def _select(model, opt, layer: str, rows: int) -> None:
    """Make the first ``rows`` filters of ``layer`` selected (Γ nonzero there)."""
    p = dict(model.named_parameters())[f"{layer}.weight"]
    state = opt.state[p]
    gamma = torch.zeros_like(p)
    gamma[:rows] = 0.5
    state["gamma"] = gamma
    state["V"] = gamma * 2
    state["momentum_buffer"] = torch.full_like(p, 0.25)


def test_no_check_before_the_stage_ends():
    spec, model, opt, grower = _setup()
    _select(model, opt, "s1_l0", 8)
    assert grower.step(0) is None  # epochs_per_stage = 2: first check after epoch 1
    assert not grower.done


def test_saturated_layer_widens_and_carries_state():
    spec, model, opt, grower = _setup()
    _select(model, opt, "s2_l0", 8)  # ratio 1.0 >= 0.8
    _select(model, opt, "s1_l0", 4)  # ratio 0.5 < 0.8
    x = torch.randn(5, 1, 12, 12)
    model.eval()
    before = model(x)
    event = grower.step(1)
    assert event is not None and event.kind == "grow"
    assert event.spec.widths()["s2_l0"] == 16  # max(8 + 8, floor(1.1 * 8))
    assert event.spec.widths()["s1_l0"] == 8
    event.model.eval()
    assert torch.allclose(event.model(x), before, atol=1e-5)  # zero init preserves
    p_new = dict(event.model.named_parameters())["s2_l0.weight"]
    gamma = event.optimizer.gamma(p_new)
    assert torch.all(gamma[:8] == 0.5) and torch.all(gamma[8:] == 0)
    mom = event.optimizer.state[p_new]["momentum_buffer"]
    assert torch.all(mom[:8] == 0.25) and torch.all(mom[8:] == 0)
    assert event.before["params"] < event.after["params"] == gn.count(event.spec).params
    assert grower.stage == 1 and grower.stage_start == 2
    assert grower.step(2) is None  # the new stage has its own epochs


def test_reset_state_gives_a_fresh_optimizer():
    spec, model, opt, grower = _setup(carry_state=False)
    _select(model, opt, "s2_l0", 8)
    event = grower.step(1)
    p_new = dict(event.model.named_parameters())["s2_l0.weight"]
    assert torch.count_nonzero(event.optimizer.gamma(p_new)) == 0
    assert len(event.optimizer.state) == 0


def test_no_saturation_stops():
    spec, model, opt, grower = _setup()
    _select(model, opt, "s1_l0", 6)  # 0.75 < 0.8
    event = grower.step(1)
    assert event.kind == "stop" and grower.done
    assert event.model is model and event.spec == spec
    assert "no layer saturated" in event.reason
    assert grower.step(5) is None


def test_tau_per_stage():
    spec, model, opt, grower = _setup(tau={"s1": 0.5, "default": 0.9})
    _select(model, opt, "s1_l0", 4)  # 0.5 >= tau(s1) = 0.5
    _select(model, opt, "s2_l0", 7)  # 0.875 < 0.9
    event = grower.step(1)
    assert event.kind == "grow"
    assert event.spec.widths()["s1_l0"] == 16 and event.spec.widths()["s2_l0"] == 8


def test_depth_after_patience():
    spec, model, opt, grower = _setup(depth_patience=1, grow_ratio=1.0, grow_num=1)
    _select(model, opt, "s1_l0", 8)
    event = grower.step(1)
    assert event.kind == "grow"
    stage1 = [s for s in event.spec.shapes() if s.stage == "s1"]
    assert len(stage1) == 2  # a layer was inserted at the end of s1
    inserted = [c for c in event.changes if c["op"] == "deepen"]
    assert inserted and inserted[0]["stage"] == "s1" and inserted[0]["applied"]
    x = torch.randn(3, 1, 12, 12)
    model.eval()
    event.model.eval()
    assert torch.allclose(event.model(x), model(x), atol=1e-5)


def test_depth_when_width_capped():
    spec, model, opt, grower = _setup(max_width=8, depth_patience=5)
    _select(model, opt, "s2_l0", 8)
    event = grower.step(1)
    assert event.kind == "grow"
    assert len([s for s in event.spec.shapes() if s.stage == "s2"]) == 2
    assert event.spec.widths()["s2_l0"] == 8


@pytest.mark.parametrize("budget_key", ["max_params", "max_macs"])
def test_budget_clips_widening(budget_key):
    spec = gn.ArchSpec.preset("seed", in_shape=(1, 12, 12), num_classes=4)
    start = gn.count(spec)
    budget = {"max_params": start.params + 200, "max_macs": start.macs + 4000}[budget_key]
    spec, model, opt, grower = _setup(**{budget_key: budget, "depth": False})
    _select(model, opt, "s2_l0", 8)
    event = grower.step(1)
    assert event.kind == "grow"
    cost = gn.count(event.spec)
    assert getattr(cost, budget_key.split("_")[1]) <= budget
    widen = [c for c in event.changes if c["op"] == "widen"][0]
    assert 8 < widen["new"] < 16 and "clipped" in widen["note"]


def test_budget_exhausted_stops():
    spec = gn.ArchSpec.preset("seed", in_shape=(1, 12, 12), num_classes=4)
    spec, model, opt, grower = _setup(max_params=gn.count(spec).params, depth=False)
    _select(model, opt, "s2_l0", 8)
    event = grower.step(1)
    assert event.kind == "stop" and "budget" in event.reason
    assert gn.count(grower.spec).params == gn.count(spec).params


def test_max_stages_and_max_epochs():
    spec, model, opt, grower = _setup(max_stages=1)
    _select(model, opt, "s2_l0", 8)
    event = grower.step(1)
    assert event.kind == "stop" and "max_stages" in event.reason
    spec, model, opt, grower = _setup(max_epochs=1, epochs_per_stage=5)
    _select(model, opt, "s2_l0", 8)
    event = grower.step(0)
    assert event.kind == "stop" and "epoch budget" in event.reason


def test_residual_stream_is_one_unit():
    spec = gn.ArchSpec.preset("resnet20-narrow", in_shape=(1, 8, 8), num_classes=4)
    units = growable_units(spec)
    streams = [u for u in units if len(u.members) > 1]
    assert len(streams) == 3  # one per stage: every block's conv2 shares the width
    assert all(u.id.endswith("_conv2") for u in streams)
    assert not any("head" in u.members for u in units)


def test_residual_growth_preserves_function():
    spec, model, opt, grower = _setup("resnet20-narrow", shape=(1, 8, 8), depth=False)
    _select(model, opt, "s2_b1_conv2", 16)
    _select(model, opt, "s1_b0_conv1", 16)
    x = torch.randn(4, 1, 8, 8)
    model.eval()
    before = model(x)
    event = grower.step(1)
    assert event.kind == "grow"
    assert event.spec.stages[1].width == 20  # max(16 + 4, floor(1.1 * 16)), residual
    assert event.spec.stages[0].blocks[0].width == 20
    event.model.eval()
    assert torch.allclose(event.model(x), before, atol=1e-5)


def test_policy_validation():
    with pytest.raises(UserError, match="tau"):
        gn.GrowthPolicy(tau=1.5)
    with pytest.raises(UserError, match="tau"):
        gn.GrowthPolicy(tau={"s1": 0.0})
    with pytest.raises(UserError, match="grow_ratio"):
        gn.GrowthPolicy(grow_ratio=0.5)
    ref = {"grow_ratio": 1.1, "max_width": 512}  # the reference's numbers (A11)
    assert gn.GrowthPolicy(grow_num=None, **ref).widened(16, "residual") == 20
    assert gn.GrowthPolicy(grow_num=None, **ref).widened(100, "plain") == 110
    assert gn.GrowthPolicy(max_width=20).widened(16, "plain") == 20
    # the defaults are grownet grow's: x1.5, at least +8 (plain) / +4 (residual), <= 128
    assert gn.GrowthPolicy().widened(16, "plain") == 24
    assert gn.GrowthPolicy().widened(4, "residual") == 8
    assert gn.GrowthPolicy().widened(100, "plain") == 128


def test_an_unsaturated_check_waits_for_stop_patience_then_stops():
    spec, model, opt, grower = _setup(stop_patience=2)
    _select(model, opt, "s1_l0", 6)  # 0.75 < 0.8
    assert grower.step(1) is None and not grower.done and grower.calm == 1
    assert not grower.due(2)  # the next check is epochs_per_stage epochs later
    _select(model, opt, "s1_l0", 8)  # saturated at the next check: grow, patience resets
    event = grower.step(3)
    assert event.kind == "grow" and grower.calm == 0
    grower.tracker.end_epoch(3)
    assert grower.step(5) is None and grower.calm == 1  # the new filters are unselected
    event = grower.step(7)
    assert event.kind == "stop" and "2 consecutive checks" in event.reason


def test_grower_state_round_trip():
    spec, model, opt, grower = _setup()
    _select(model, opt, "s2_l0", 8)
    grower.step(1)
    state = grower.state_dict()
    other = gn.Grower(grower.spec, grower.model, grower.optimizer, grower.policy)
    other.load_state_dict(state)
    assert other.state_dict() == state


def _epoch(grower, epoch: int, steps: int = 2) -> None:
    """An epoch of ``steps`` optimizer steps (no gradients: nothing moves but the
    tracker's step count), then its end."""
    for _ in range(steps):
        grower.optimizer.step()
    grower.tracker.end_epoch(epoch)


def test_young_filters_keep_their_layer_pending_until_they_mature():
    """A widened layer is not judged on filters that have not had their time to enter:
    the check waits (neither growth nor a reason to stop) and comes back when they
    have, while layers whose filters have all had their time are judged as usual."""
    spec, model, opt, grower = _setup(mature_epochs=3, stop_patience=1)
    _epoch(grower, 0)
    _epoch(grower, 1)
    _select(model, opt, "s2_l0", 8)  # all 8 enter in epoch 2: used, saturated
    _select(model, opt, "s1_l0", 4)  # 4 of 8: the other 4 never enter
    _epoch(grower, 2)  # step 6: every start filter has had its 3 epochs
    judged = grower.judge()
    assert judged["s2_l0"].ratio == 1.0 and judged["s1_l0"].ratio == 0.5
    event = grower.step(2)
    assert event.kind == "grow" and event.spec.widths()["s2_l0"] == 16
    births = grower.tracker.birth_epochs("s2_l0")
    assert births[:8].tolist() == [0] * 8 and births[8:].tolist() == [3] * 8
    _epoch(grower, 3)
    _epoch(grower, 4)
    # epoch 4: the 8 new filters have trained 2 epochs, out of Γ's support: s2 waits
    # (were it judged, 8 of 16 would read as a layer with room); s1 still has room
    judged = grower.judge()
    assert judged["s2_l0"].pending and judged["s2_l0"].ratio == 1.0
    assert not judged["s1_l0"].pending and judged["s1_l0"].ratio == 0.5
    assert grower.step(4) is None and not grower.done  # not a stop: s2 is pending
    assert grower.next_check == 5 and grower.due(5)  # when they have had 3 epochs
    _epoch(grower, 5)
    event = grower.step(5)  # now judged: 8 of 16 used, nothing saturated
    assert event is not None and event.kind == "stop" and "Γ" in event.reason


def test_validation_stop_reads_the_best_of_each_window_over_val_patience_checks():
    """Growth stops when the validation accuracy stops improving across checks: at a
    check, the best epoch since the previous one against the best before; one noisy
    epoch does not count, and a run that keeps improving is never stopped by it."""
    spec, model, opt, grower = _setup(mature_epochs=0, stop_patience=99, val_patience=2,
                                      min_gain=0.01)
    _select(model, opt, "s1_l0", 4)  # nothing saturates: every check waits
    scores = {0: 0.50, 1: 0.60, 2: 0.40, 3: 0.65, 4: 0.20, 5: 0.655, 6: 0.50, 7: 0.50}
    events = {e: grower.step(e, score=s) for e, s in scores.items()}
    # windows: (0,1) best 0.60; (2,3) 0.65 (+0.05); (4,5) 0.655 (+0.005: no); (6,7) 0.50
    assert all(events[e] is None for e in range(7)) and grower.flat == 2
    assert events[7].kind == "stop" and "did not improve" in events[7].reason
    assert grower.best == 0.655
