"""Dynamic Sparse Training: masked layers, the long-tailed estimator, the dead-layer
guard, the regulariser, conversion and physical slimming (ALGORITHMS.md, Part B)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grownet import ArchSpec, Block, Layer, Stage, UserError, build
from grownet.dst import (
    MaskedConv2d,
    MaskedLinear,
    bake,
    convert,
    keep_ratios,
    kept_filters,
    long_tail,
    masks,
    overall_sparsity,
    slim_masked,
    sparsity_loss,
    step_long_tail,
)

F64 = torch.float64


def _h_ref(x: float) -> float:
    """h written out case by case, independently of the vectorised implementation."""
    a = abs(x)
    if a <= 0.4:
        return 2.0 - 4.0 * a
    return 0.4 if a <= 1.0 else 0.0


def _linear(out: int = 5, inp: int = 7, seed: int = 0, t_max: float = 0.8) -> MaskedLinear:
    """A float64 masked linear layer with weights in (-1.5, 1.5) and thresholds in
    [0, t_max): every branch of h is hit and about half the weights are kept."""
    torch.manual_seed(seed)
    layer = MaskedLinear(inp, out, dtype=F64)
    with torch.no_grad():
        layer.weight.uniform_(-1.5, 1.5)
        layer.threshold.uniform_(0.0, t_max)
    return layer


def _conv(seed: int = 0) -> MaskedConv2d:
    torch.manual_seed(seed)
    layer = MaskedConv2d(3, 4, 3, padding=1, dtype=F64)
    with torch.no_grad():
        layer.weight.uniform_(-1.5, 1.5)
        layer.threshold.uniform_(0.0, 0.8)
    return layer


def _mlp_spec() -> ArchSpec:
    return ArchSpec("mlp", (1, 4, 4), 3, hidden=(Layer("fc1", 32, kind="linear", bn=False),))


# --- B8.1 ---------------------------------------------------------------------------

@pytest.mark.parametrize("make", [_linear, _conv])
def test_mask_is_binary_and_shaped_like_the_weight(make):
    layer = make()
    m = layer.mask()
    assert m.dtype == torch.bool and m.shape == layer.weight.shape
    assert 0 < m.sum() < m.numel()  # a real mix, not a trivial all-0/all-1 mask
    w = layer.masked_weight()
    ratio = w / layer.weight  # the forward pass multiplies by exactly 0 or 1
    assert set(ratio.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(w.detach() != 0, m)


# --- B8.2 ---------------------------------------------------------------------------

def test_init_mask_keeps_every_nonzero_weight_and_matches_the_dense_layer():
    torch.manual_seed(0)
    dense_c, dense_l = nn.Conv2d(3, 6, 3, padding=1), nn.Linear(10, 4)
    with torch.no_grad():
        dense_c.weight[0, 0, 0, 0] = 0.0  # a zero weight: |0| - 0 > 0 is false
    conv, lin = MaskedConv2d.from_dense(dense_c), MaskedLinear.from_dense(dense_l)
    assert torch.equal(conv.threshold, torch.zeros(6)) and torch.equal(lin.threshold,
                                                                        torch.zeros(4))
    assert torch.equal(conv.mask(), dense_c.weight != 0)
    assert bool(lin.mask().all())
    x, v = torch.randn(2, 3, 8, 8), torch.randn(5, 10)
    assert torch.equal(conv(x), dense_c(x)) and torch.equal(lin(v), dense_l(v))
    fresh = MaskedConv2d(2, 3, 3)  # constructed directly: thresholds start at 0 too
    assert torch.equal(fresh.threshold, torch.zeros(3)) and bool(fresh.mask().all())


# --- B8.3 ---------------------------------------------------------------------------

def test_mask_row_depends_only_on_its_threshold_and_shrinks_as_it_grows():
    layer = _linear(out=20, inp=50, t_max=0.3)
    base = layer.mask()
    prev = torch.ones(50, dtype=torch.bool)
    for t3 in torch.linspace(0.0, 1.6, 17).tolist():
        with torch.no_grad():
            layer.threshold[3] = t3
        m = layer.mask()
        others = torch.arange(20) != 3
        assert torch.equal(m[others], base[others])
        assert not bool((m[3] & ~prev).any())  # non-increasing in t_3
        assert torch.equal(m[3], layer.weight[3].abs() > t3)
        prev = m[3]
    assert not bool(prev.any())  # t_3 above every |W_3j|: the row is fully masked


# --- B8.4 ---------------------------------------------------------------------------

def test_long_tail_and_the_step_backward_at_the_reference_points():
    points = [0.0, 0.2, 0.4, 1.0, 1.01, -0.2, -0.7, -1.01]
    expect = torch.tensor([2.0, 1.2, 0.4, 0.4, 0.0, 1.2, 0.4, 0.0], dtype=F64)
    q = torch.tensor(points, dtype=F64, requires_grad=True)
    out = step_long_tail(q)
    assert out.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]  # strict > 0
    out.sum().backward()
    torch.testing.assert_close(q.grad, expect, rtol=0, atol=1e-12)
    torch.testing.assert_close(long_tail(q.detach()), expect, rtol=0, atol=1e-12)
    assert long_tail(torch.tensor([0.4], dtype=torch.float32)).dtype == torch.float32


def _closed_form(w: torch.Tensor, t: torch.Tensor, g: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """B2: dL/dW = G*M + G*W*sign(W)*h(|W|-t), dL/dt = -sum_j G*W*h(|W|-t)."""
    w2, g2 = w.flatten(1), g.flatten(1)
    q = w2.abs() - t[:, None]
    m = (q > 0).to(w.dtype)
    h = torch.tensor([_h_ref(v) for v in q.flatten().tolist()], dtype=w.dtype).view_as(q)
    dw = g2 * m + g2 * w2 * torch.sign(w2) * h
    dt = -(g2 * w2 * h).sum(dim=1)
    regions = {0 if abs(v) <= 0.4 else 1 if abs(v) <= 1 else 2 for v in q.flatten().tolist()}
    assert regions == {0, 1, 2}  # the check covers every branch of h
    return dw.view_as(w), dt


def test_autograd_gradients_equal_the_closed_forms_linear():
    layer = _linear()
    x, r = torch.randn(4, 7, dtype=F64), torch.randn(4, 5, dtype=F64)
    (layer(x) * r).sum().backward()
    g = r.T @ x  # dL/d(W*M) for y = x (W*M)^T + b
    dw, dt = _closed_form(layer.weight.detach(), layer.threshold.detach(), g)
    torch.testing.assert_close(layer.weight.grad, dw, rtol=0, atol=1e-12)
    torch.testing.assert_close(layer.threshold.grad, dt, rtol=0, atol=1e-12)


def test_autograd_gradients_equal_the_closed_forms_conv():
    layer = _conv()
    x, r = torch.randn(2, 3, 5, 5, dtype=F64), torch.randn(2, 4, 5, 5, dtype=F64)
    (layer(x) * r).sum().backward()
    wm = (layer.weight * layer.mask()).detach().requires_grad_()
    (F.conv2d(x, wm, layer.bias.detach(), padding=1) * r).sum().backward()
    dw, dt = _closed_form(layer.weight.detach(), layer.threshold.detach(), wm.grad)
    torch.testing.assert_close(layer.weight.grad, dw, rtol=0, atol=1e-12)
    torch.testing.assert_close(layer.threshold.grad, dt, rtol=0, atol=1e-12)


# --- B8.5 ---------------------------------------------------------------------------

def test_one_sgd_step_without_task_gradient_moves_t_by_eta_alpha_exp_minus_t():
    torch.manual_seed(0)
    model = convert(build(_mlp_spec())).to(F64)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif name.endswith("threshold"):
                p.uniform_(0.0, 0.05)
    eta, alpha = 0.1, 0.3
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=eta, momentum=0.0, weight_decay=0.0)
    x = torch.zeros(3, 1, 4, 4, dtype=F64)  # zero input, zero biases: G = 0 in every layer
    loss = model(x).square().sum() + sparsity_loss(model, alpha)
    opt.zero_grad()
    loss.backward()
    opt.step()
    for name, p in model.named_parameters():
        old = before[name]
        if name.endswith("threshold"):
            expect = old + eta * (alpha * torch.exp(-old))
            # Exact up to float64 rounding: SGD may fuse the multiply-add (a few ulp).
            torch.testing.assert_close(p.detach(), expect, rtol=1e-15, atol=0)
            assert bool((p > old).all())
        else:
            assert torch.equal(p.detach(), old), name


# --- B8.6 ---------------------------------------------------------------------------

def _guard_holds(layer: MaskedLinear | MaskedConv2d) -> bool:
    ratio = float(layer.mask().sum()) / layer.weight.numel()
    return ratio > 0.01 or bool((layer.threshold == 0).all())


def test_guard_resets_a_dead_layer_in_the_same_forward_without_touching_momentum():
    layer = _linear(out=10, inp=10)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    layer(torch.randn(2, 10, dtype=F64)).sum().backward()
    opt.step()
    buf = opt.state[layer.threshold]["momentum_buffer"].clone()
    with torch.no_grad():
        layer.threshold.fill_(10.0)  # everything masked
    layer.eval()
    with torch.no_grad():
        y = layer(torch.ones(1, 10, dtype=F64))
    assert torch.equal(layer.threshold, torch.zeros(10, dtype=F64))
    torch.testing.assert_close(y, F.linear(torch.ones(1, 10, dtype=F64), layer.weight,
                                           layer.bias))  # M recomputed with t = 0
    assert torch.equal(opt.state[layer.threshold]["momentum_buffer"], buf)


def test_guard_boundary_is_a_keep_ratio_of_one_percent():
    layer = _linear(out=10, inp=10)  # 100 weights
    order = layer.weight.detach().abs().flatten().argsort(descending=True)
    top = layer.weight.detach().abs().flatten()[order]
    x = torch.randn(2, 10, dtype=F64)
    for kept, fires in ((1, True), (2, False)):
        with torch.no_grad():  # keep exactly `kept` weights: ratio 0.01 fires, 0.02 does not
            layer.threshold.fill_(float((top[kept - 1] + top[kept]) / 2))
        t = layer.threshold.detach().clone()
        assert int(layer.mask().sum()) == (100 if fires else kept)
        layer(x)
        assert torch.equal(layer.threshold, torch.zeros_like(t) if fires else t)


def test_after_any_forward_keep_ratio_exceeds_one_percent_or_thresholds_are_zero():
    gen = torch.Generator().manual_seed(1)
    layers = [_linear(out=6, inp=8), _conv()]
    for _ in range(40):
        for layer in layers:
            with torch.no_grad():
                scale = float(torch.rand((), generator=gen, dtype=F64)) * 2.0
                layer.threshold.copy_(torch.rand(layer.threshold.shape, generator=gen,
                                                 dtype=F64) * scale)
            x = torch.randn((2,) + ((8,) if isinstance(layer, MaskedLinear) else (3, 5, 5)),
                            dtype=F64)
            layer(x)
            assert _guard_holds(layer)


# --- B8.7 ---------------------------------------------------------------------------

def test_regulariser_at_init_is_alpha_times_the_number_of_thresholds():
    spec = ArchSpec.preset("lenet5", (1, 28, 28))
    model = convert(build(spec))
    n = sum(p.numel() for name, p in model.named_parameters() if name.endswith("threshold"))
    assert n == sum(s.out_ch for s in spec.shapes())
    loss = sparsity_loss(model, 5e-4)
    assert loss.shape == () and loss.requires_grad
    assert float(loss.detach()) == pytest.approx(5e-4 * n, rel=1e-6)
    with pytest.raises(UserError, match="alpha"):
        sparsity_loss(model, -1.0)
    with pytest.raises(UserError, match="convert"):
        sparsity_loss(build(spec), 1e-4)


# --- conversion -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lenet5", "vgg11", "resnet20-narrow", "mlp-300-100"])
def test_convert_keeps_parameter_names_and_outputs(name):
    spec = ArchSpec.preset(name, (1, 28, 28))
    torch.manual_seed(0)
    model = build(spec).eval()
    x = torch.randn(2, 1, 28, 28)
    names = [n for n, _ in model.named_parameters()]
    weights = {n: p for n, p in model.named_parameters()}
    with torch.no_grad():
        y = model(x)
    masked = convert(model)
    assert masked is model
    new = dict(masked.named_parameters())
    assert set(new) == set(names) | {f"{i}.threshold" for i in spec.layer_ids()}
    assert all(new[n] is weights[n] for n in names)  # the same tensors, not copies
    for i in spec.layer_ids():
        layer = getattr(masked, i)
        assert isinstance(layer, (MaskedConv2d, MaskedLinear))
        assert isinstance(layer, (nn.Conv2d, nn.Linear))
    with torch.no_grad():
        assert torch.equal(masked(x), y)
    assert overall_sparsity(masked) == 0.0
    assert keep_ratios(masked) == dict.fromkeys(spec.layer_ids(), 1.0)


def test_convert_exclude_bare_layers_and_errors():
    model = convert(build(_mlp_spec()), exclude=["head"])
    assert type(model.head) is nn.Linear and isinstance(model.fc1, MaskedLinear)
    assert convert(model) is model and isinstance(model.head, MaskedLinear)  # idempotent
    assert isinstance(convert(nn.Linear(3, 2)), MaskedLinear)
    with pytest.raises(UserError, match="not conv/linear layers"):
        convert(build(_mlp_spec()), exclude=["fc9"])
    with pytest.raises(UserError, match="no nn.Conv2d"):
        convert(nn.Sequential(nn.ReLU()))


def test_state_dict_round_trip_and_two_forwards_before_backward():
    spec = ArchSpec.preset("lenet5", (1, 28, 28))
    model = convert(build(spec))
    with torch.no_grad():
        model.fc1.threshold.fill_(0.05)
    state = model.state_dict()
    assert "fc1.threshold" in state
    other = convert(build(spec))
    other.load_state_dict(state)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(other(x), model(x))
    # The guard writes t in place each forward; t is never saved for backward, so a
    # graph built by an earlier forward stays valid.
    loss = model(x).sum() + model(2 * x).sum() + sparsity_loss(model, 1e-3)
    loss.backward()
    assert model.fc1.threshold.grad is not None and bool(model.fc1.threshold.grad.ne(0).any())


def test_forward_backward_and_loss_need_no_host_sync():
    """On the meta device every value is unknown: any .item()/bool() would raise."""
    model = convert(build(ArchSpec.preset("lenet5", (1, 28, 28)))).to("meta")
    loss = model(torch.empty(2, 1, 28, 28, device="meta")).sum() + sparsity_loss(model, 1e-4)
    loss.backward()
    assert model.s1_l0.threshold.grad.device.type == "meta"


def test_reporting_helpers_agree_with_the_masks():
    spec = ArchSpec.preset("lenet5", (1, 28, 28))
    torch.manual_seed(0)
    model = convert(build(spec))
    with torch.no_grad():
        model.fc1.threshold.uniform_(0.0, 0.03)
        model.fc1.threshold[:7] = 10.0  # seven neurons fully masked
    ms = masks(model)
    ratios = keep_ratios(model)
    for i, m in ms.items():
        assert ratios[i] == pytest.approx(float(m.float().mean()))
    total = sum(m.numel() for m in ms.values())
    assert overall_sparsity(model) == pytest.approx(1 - sum(int(m.sum()) for m in ms.values())
                                                    / total)
    kept = kept_filters(model)
    assert kept["fc1"].tolist() == list(range(7, 120))
    assert kept["head"].dtype == torch.long and kept["head"].tolist() == list(range(10))


def test_sgd_with_the_regulariser_makes_a_tiny_net_sparser_while_it_learns():
    torch.manual_seed(0)
    model = convert(build(_mlp_spec()))
    x = torch.randn(64, 1, 4, 4)
    y = x.flatten(1)[:, :3].argmax(dim=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    first = None
    sparsity = [overall_sparsity(model)]
    for step in range(60):
        task = F.cross_entropy(model(x), y)
        first = float(task.detach()) if first is None else first
        opt.zero_grad()
        (task + sparsity_loss(model, 1e-2)).backward()
        opt.step()
        if step % 20 == 19:
            sparsity.append(overall_sparsity(model))
    assert sparsity == sorted(sparsity) and sparsity[-1] > 0.3
    with torch.no_grad():
        assert float(F.cross_entropy(model(x), y)) < 0.5 * first


# --- physical slimming ------------------------------------------------------------------

def _plain_bn_spec() -> ArchSpec:
    """BN convs (no bias) then a hidden FC with BN and dropout: 3x3 convs with padding
    cannot absorb a constant channel, the FC can (into its BN running mean)."""
    return ArchSpec(
        "plain", (3, 8, 8), 10, readout="flatten",
        stages=(Stage("s1", layers=(Layer("s1_l0", 8), Layer("s1_l1", 8))),
                Stage("s2", layers=(Layer("s2_l0", 12),))),
        hidden=(Layer("fc1", 32, kind="linear", bn=True, dropout=0.5),))


def _residual_spec() -> ArchSpec:
    return ArchSpec("residual", (3, 8, 8), 10, stem=Layer("stem", 8), readout="avg",
                    stages=(Stage("s1", blocks=(Block("s1_b0", 8), Block("s1_b1", 8)),
                                  width=8),))


def _dst_model(spec: ArchSpec, dead: dict[str, list[int]], beta: float) -> nn.Module:
    """A converted model with the rows in ``dead`` fully masked, non-trivial BN statistics
    and BN shifts ``beta`` of alternating sign on the dead rows (so some dead channels
    carry a positive constant), in eval mode."""
    torch.manual_seed(0)
    model = convert(build(spec))
    x = torch.randn(8, *spec.in_shape)
    with torch.no_grad():
        for i, rows in dead.items():
            getattr(model, i).threshold[rows] = 100.0
        model.train()
        for k in range(3):
            model(x * (1 + 0.5 * k) + 0.2)
        for i, rows in dead.items():
            bn = getattr(model, f"{i}_bn", None)
            if bn is not None:
                for j, r in enumerate(rows):
                    bn.bias[r] = beta if j % 2 else -beta
                    bn.running_mean[r] = 0.0  # as a constant 0 input leaves it, roughly
    return model.eval()


@pytest.mark.parametrize("case", ["lenet5", "plain-bn", "residual", "mlp"])
def test_slim_masked_is_exact_in_eval_mode_and_drops_parameters(case):
    if case == "lenet5":  # biases, no BN, unpadded second conv: every dead filter goes
        spec = ArchSpec.preset("lenet5", (1, 28, 28))
        dead = {"s1_l0": [1, 4], "s2_l0": [0, 5, 9], "fc1": list(range(0, 120, 3)),
                "fc2": [2, 3]}
        expect = {k: spec.widths()[k] - len(v) for k, v in dead.items()}
    elif case == "plain-bn":
        spec = _plain_bn_spec()
        dead = {"s1_l0": [0, 1, 2, 3], "s2_l0": [2, 3, 7], "fc1": [0, 5]}
        # s1_l0 feeds a padded conv: only its channels with BN output <= 0 (beta < 0)
        expect = {"s1_l0": 6, "s2_l0": 9, "fc1": 30}
    elif case == "residual":
        spec = _residual_spec()
        dead = {"s1_b0_conv1": [0, 1, 2], "s1_b1_conv1": [7], "s1_b1_conv2": [3]}
        expect = {"s1_b0_conv1": 6, "s1_b1_conv1": 7, "s1_b1_conv2": 8}
    else:
        spec = ArchSpec("mlp", (1, 6, 6), 4, hidden=(
            Layer("fc1", 20, kind="linear", bn=False),
            Layer("fc2", 16, kind="linear", bn=True, bias=False)))
        dead = {"fc1": [1, 2, 3], "fc2": [0, 15]}
        expect = {"fc1": 17, "fc2": 14}
    model = _dst_model(spec, dead, beta=0.3)
    assert {k: set(range(spec.widths()[k])) - set(v.tolist())
            for k, v in kept_filters(model).items() if k in dead} == \
        {k: set(v) for k, v in dead.items()}
    new_spec, small = slim_masked(spec, model)
    assert {k: new_spec.widths()[k] for k in expect} == expect
    assert new_spec.widths()["head"] == spec.num_classes
    assert not any(n.endswith("threshold") for n, _ in small.named_parameters())
    assert not small.training
    x = torch.randn(5, *spec.in_shape)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-5)
    n_small = sum(p.numel() for p in small.parameters())
    n_dense = sum(p.numel() for p in build(spec).parameters())
    assert n_small < n_dense


def test_bake_zeroes_masked_weights_and_checks_the_spec():
    spec = _plain_bn_spec()
    model = _dst_model(spec, {"s2_l0": [1]}, beta=0.1)
    dense = bake(spec, model)
    assert type(dense.s2_l0) is nn.Conv2d
    assert torch.equal(dense.s2_l0.weight, model.s2_l0.weight * model.s2_l0.mask())
    assert bool((dense.s2_l0.weight[1] == 0).all())
    with pytest.raises(UserError, match="different spec"):
        bake(ArchSpec.preset("lenet5", (1, 28, 28)), model)
