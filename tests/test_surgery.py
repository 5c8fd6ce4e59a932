"""Structural surgery: widen / deepen / slim specs, transplant weights and optimizer state."""

from __future__ import annotations

import pytest
import torch

from grownet import ArchSpec, Block, Layer, SpecError, Stage, UserError, build
from grownet.surgery import deepen, plan, slim, transplant, widen

TOL = 1e-5




def _spec_b() -> ArchSpec:
    """Option B: s1 joins the stem by an identity shortcut, s2 starts with a projection,
    s3 joins s2 by an identity shortcut (stride 1, equal widths)."""
    return ArchSpec(
        "residual", (3, 16, 16), 10, stem=Layer("stem", 16), readout="avg", shortcut="B",
        stages=(Stage("s1", blocks=(Block("s1_b0", 16), Block("s1_b1", 12)), width=16),
                Stage("s2", blocks=(Block("s2_b0", 24, stride=2), Block("s2_b1", 24)),
                      width=24),
                Stage("s3", blocks=(Block("s3_b0", 24),), width=24)))


def _spec_fc() -> ArchSpec:
    """Plain, with a hidden FC layer that has BatchNorm and dropout (as VGG-16's growth)."""
    return ArchSpec(
        "plain", (3, 16, 16), 10, readout="flatten",
        stages=(Stage("s1", layers=(Layer("s1_l0", 8), Layer("s1_l1", 8))),
                Stage("s2", layers=(Layer("s2_l0", 12),))),
        hidden=(Layer("fc1", 32, kind="linear", bn=True, dropout=0.5),))


def _spec(name: str, shape: tuple[int, int, int] = (3, 32, 32)) -> ArchSpec:
    if name == "option-B":
        return _spec_b()
    return _spec_fc() if name == "plain-fc" else ArchSpec.preset(name, shape)


def _trained(spec: ArchSpec, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor]:
    """A model with non-trivial BN running statistics, in eval mode, and an input."""
    torch.manual_seed(seed)
    model = build(spec)
    x = torch.randn(4, *spec.in_shape)
    model.train()
    with torch.no_grad():
        for k in range(3):
            model(x * (1.0 + 0.5 * k) + 0.3)
    return model.eval(), x


def _max_diff(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


WIDEN_CASES = [
    ("vgg16-narrow", (3, 32, 32), "s1_l0"),
    ("vgg16-narrow", (3, 32, 32), "s3_l1"),
    ("vgg16-narrow", (3, 32, 32), "s5_l2"),  # last conv before the flatten readout
    ("vgg16-narrow", (1, 28, 28), "s4_l2"),
    ("lenet5", (1, 28, 28), "s1_l0"),
    ("lenet5", (1, 28, 28), "s2_l0"),  # flatten readout: 25 features per channel
    ("lenet5", (1, 28, 28), "fc1"),
    ("lenet5", (3, 32, 32), "s2_l0"),
    ("lenet5", (3, 32, 32), "fc2"),
    ("seed", (1, 28, 28), "s1_l0"),
    ("seed", (3, 32, 32), "s2_l0"),
    ("resnet20-narrow", (3, 32, 32), "stem"),
    ("resnet20-narrow", (3, 32, 32), "s1_b0_conv1"),
    ("resnet20-narrow", (3, 32, 32), "s2_b1_conv2"),
    ("resnet20-narrow", (3, 32, 32), "s3_b2_conv2"),
    ("resnet20", (3, 16, 16), "s1_b1_conv2"),  # 16/32/64: new channels shift downstream
    ("resnet20", (3, 16, 16), "s2_b0_conv1"),
    ("option-B", None, "stem"),  # identity shortcut becomes an inserted projection
    ("option-B", None, "s1_b1_conv1"),
    ("option-B", None, "s2_b0_proj"),  # stream with a projection; s3 gains one
    ("option-B", None, "s3_b0_conv2"),
    ("plain-fc", None, "s2_l0"),  # 16 features per channel into a BN hidden layer
    ("plain-fc", None, "fc1"),
    ("mlp-300-100", (1, 28, 28), "fc1"),
    ("mlp-300-100", (1, 28, 28), "fc2"),
]


@pytest.mark.parametrize("init", ["zero", "split"])
@pytest.mark.parametrize(("name", "shape", "layer"), WIDEN_CASES)
def test_widen_preserves_function(name, shape, layer, init):
    spec = _spec(name, shape)
    model, x = _trained(spec)
    new_spec = widen(spec, layer, spec.shape(layer).out_ch + 5)
    assert new_spec.shape(layer).out_ch == spec.shape(layer).out_ch + 5
    new_model, opt = transplant(model, new_spec, init=init)
    assert opt is None and not new_model.training
    assert _max_diff(model, new_model, x) <= TOL
    ref = build(new_spec)
    assert {n: p.shape for n, p in new_model.named_parameters()} == {
        n: p.shape for n, p in ref.named_parameters()}


def test_widen_copies_old_slices_and_bn_statistics():
    spec = _spec("lenet5", (1, 28, 28))
    model, x = _trained(spec)
    new_spec = widen(spec, "s2_l0", 20)
    new, _ = transplant(model, new_spec, init="zero")
    assert new.s2_l0.weight.shape == (20, 6, 5, 5)
    assert new.fc1.weight.shape == (120, 20 * 25)
    assert torch.equal(new.s2_l0.weight[:16], model.s2_l0.weight)
    assert torch.equal(new.s2_l0.bias[:16], model.s2_l0.bias)
    assert torch.equal(new.fc1.weight[:, :400], model.fc1.weight)
    assert torch.count_nonzero(new.fc1.weight[:, 400:]) == 0  # outgoing weights of new ones
    assert torch.equal(new.fc2.weight, model.fc2.weight)

    spec = _spec("vgg16-narrow")
    model, x = _trained(spec)
    new, _ = transplant(model, widen(spec, "s2_l0", 24), init="zero")
    for name in ("weight", "bias", "running_mean", "running_var"):
        old_t, new_t = getattr(model.s2_l0_bn, name), getattr(new.s2_l0_bn, name)
        assert torch.equal(new_t[:16], old_t)
    assert torch.equal(new.s2_l0_bn.running_var[16:], torch.ones(8))  # fresh statistics
    assert new.s2_l0_bn.num_batches_tracked == model.s2_l0_bn.num_batches_tracked == 3
    assert torch.equal(new.s2_l1.weight[:, :16], model.s2_l1.weight)


def test_random_init_keeps_old_slices_only():
    spec = _spec("lenet5", (1, 28, 28))
    model, x = _trained(spec)
    new, _ = transplant(model, widen(spec, "s1_l0", 10), init="random")
    assert torch.equal(new.s2_l0.weight[:, :6], model.s2_l0.weight)
    assert torch.count_nonzero(new.s2_l0.weight[:, 6:]) > 0
    assert _max_diff(model, new, x) > TOL


def test_split_duplicates_the_largest_filters():
    spec = _spec("vgg16-narrow")
    model, x = _trained(spec)
    norms = model.s2_l0.weight.flatten(1).norm(dim=1)
    top = torch.argsort(-norms)[:3]
    new, _ = transplant(model, widen(spec, "s2_l0", 19), init="split")
    assert torch.equal(new.s2_l0.weight[16:], model.s2_l0.weight[top])
    assert torch.equal(new.s2_l0_bn.running_mean[16:], model.s2_l0_bn.running_mean[top])
    assert torch.allclose(new.s2_l1.weight[:, 16:], model.s2_l1.weight[:, top] / 2)
    assert torch.allclose(new.s2_l1.weight[:, top], model.s2_l1.weight[:, top] / 2)
    chosen, _ = transplant(model, widen(spec, "s2_l0", 18), init="split",
                           split_from={"s2_l0": [4, 4]})  # one filter copied twice
    assert torch.allclose(chosen.s2_l1.weight[:, [4, 16, 17]],
                          model.s2_l1.weight[:, [4, 4, 4]] / 3)
    assert _max_diff(model, chosen, x) <= TOL


def test_option_a_stream_rule_shifts_later_streams():
    spec = _spec("resnet20", (3, 16, 16))  # streams 16 / 32 / 64
    new_spec = widen(spec, "s1_b0_conv2", 20)
    assert [st.width for st in new_spec.stages] == [20, 36, 68]
    change = plan(spec, new_spec)
    assert change.summary().splitlines() == [
        "s1.stream: 16 -> 20", "s2.stream: 32 -> 36", "s3.stream: 64 -> 68"]
    fresh = (-1,) * 4
    assert change.out_maps["s2_b2_conv2"] == tuple(range(16)) + fresh + tuple(range(16, 32))
    assert change.out_maps["s3_b0_conv2"] == (tuple(range(16)) + fresh
                                              + tuple(range(16, 64)))
    assert widen(spec, "stem", 18).stages[2].width == 66


def test_option_b_projection_rules():
    spec = _spec_b()
    new_spec = widen(spec, "stem", 20)
    assert plan(spec, new_spec).inserted == ("s1_b0_proj",)
    # s2 starts with a projection: its stream can be split exactly (s3 gains a projection)
    model, x = _trained(spec)
    new_spec = widen(spec, "s2_b1_conv2", 27)
    assert plan(spec, new_spec).inserted == ("s3_b0_proj",)
    new, _ = transplant(model, new_spec, init="split", split_from={"s2_b0_proj": [3, 3, 5]})
    for layer in ("s2_b0_proj", "s2_b0_conv2", "s2_b1_conv2"):
        assert torch.equal(getattr(new, layer).weight[24:], getattr(model, layer).weight[[3, 3, 5]])
    assert _max_diff(model, new, x) <= TOL
    # a width change that would make a projection vanish grows one more
    narrow = spec.replace(stages=(spec.stages[0], spec.stages[1],
                                  Stage("s3", blocks=(Block("s3_b0", 24),), width=20)))
    assert "s3_b0_proj" in {s.id for s in narrow.shapes()}
    wider = widen(narrow, "s3_b0_conv2", 24)  # 24 == s2's width: keeps the projection
    assert wider.stages[2].width == 25
    model, x = _trained(narrow)
    new, _ = transplant(model, wider)
    assert _max_diff(model, new, x) <= TOL


DEEPEN_CASES = [
    ("vgg16-narrow", (3, 32, 32), "s2", 0),
    ("vgg16-narrow", (3, 32, 32), "s3", 1),
    ("vgg16-narrow", (3, 32, 32), "s5", 3),  # at the end: the pool moves after it
    ("lenet5", (1, 28, 28), "s2", 1),  # no BatchNorm in this stage
    ("lenet5", (1, 28, 28), "hidden", 0),  # in front of fc1: 400 wide (flatten readout)
    ("lenet5", (3, 32, 32), "hidden", 1),
    ("lenet5", (3, 32, 32), "hidden", 2),
    ("seed", (1, 28, 28), "hidden", 0),
    ("resnet20-narrow", (3, 32, 32), "s1", 0),
    ("resnet20-narrow", (3, 32, 32), "s2", 1),
    ("resnet20-narrow", (3, 32, 32), "s3", 3),
    ("option-B", None, "s2", 2),
    ("option-B", None, "s3", 0),
    ("resnet20-narrow", (3, 16, 16), "hidden", 0),  # an FC layer on the avg readout
    ("plain-fc", None, "hidden", 0),
    ("plain-fc", None, "hidden", 1),
    ("mlp-300-100", (1, 28, 28), "hidden", 1),
]


@pytest.mark.parametrize(("name", "shape", "stage", "position"), DEEPEN_CASES)
def test_deepen_preserves_function(name, shape, stage, position):
    spec = _spec(name, shape)
    model, x = _trained(spec)
    new_spec = deepen(spec, stage, position)
    change = plan(spec, new_spec)
    assert change.inserted and not change.widths()
    assert set(spec.layer_ids()) < set(new_spec.layer_ids())  # nothing renamed
    new, _ = transplant(model, new_spec)
    assert _max_diff(model, new, x) <= TOL
    for name_, p in model.named_parameters():  # every old tensor carried unchanged
        assert torch.equal(dict(new.named_parameters())[name_], p)


def test_deepen_then_widen_in_one_transplant():
    spec = _spec("resnet20-narrow", (3, 16, 16))
    model, x = _trained(spec)
    new_spec = widen(deepen(spec, "s2", 1, width=8), "s2_b3_conv1", 12)
    new_spec = widen(new_spec, "s1_b0_conv2", 20)
    assert new_spec.stages[1].blocks[1].id == "s2_b3" and new_spec.stages[1].blocks[1].width == 12
    for init in ("zero", "split", "random"):
        new, _ = transplant(model, new_spec, init=init)
        if init != "random":
            assert _max_diff(model, new, x) <= TOL


def test_slim_zero_outgoing_filters_is_exact_and_counts_params():
    spec = _spec("vgg16-narrow")
    model, x = _trained(spec)
    drop = [1, 4, 7]
    with torch.no_grad():
        model.s2_l1.weight[:, drop] = 0
    keep = [c for c in range(16) if c not in drop]
    new_spec = slim(spec, {"s2_l0": torch.tensor(keep)})
    new, _ = transplant(model, new_spec, keep={"s2_l0": keep})
    assert _max_diff(model, new, x) <= TOL
    # each filter: 16 inputs * 3x3 (no bias: BN) + BN gamma, beta; next conv: 3x3 * 16 outputs
    assert _n_params(model) - _n_params(new) == 3 * (16 * 9 + 2 + 9 * 16)
    assert torch.equal(new.s2_l0.weight, model.s2_l0.weight[keep])
    assert torch.equal(new.s2_l0_bn.running_var, model.s2_l0_bn.running_var[keep])

    spec = _spec("lenet5", (1, 28, 28))
    model, x = _trained(spec)
    with torch.no_grad():
        model.fc1.weight[:, 2 * 25:3 * 25] = 0  # channel 2 of s2_l0 feeds features 50..74
        model.fc2.weight[:, [0, 9]] = 0
    keep = {"s2_l0": [c for c in range(16) if c != 2], "fc1": [c for c in range(120)
                                                               if c not in (0, 9)]}
    new, _ = transplant(model, slim(spec, keep), keep=keep)
    assert _max_diff(model, new, x) <= TOL
    conv = 6 * 25 + 1 + 25 * 120  # filter + bias + its 25 features in each fc1 neuron
    fc = (16 * 25 - 25) + 1 + 84  # a neuron (after the conv slim) + bias + fc2 column
    assert _n_params(model) - _n_params(new) == conv + 2 * fc


def test_keep_with_the_same_width_reinitialises_the_rest():
    spec = _spec("vgg16-narrow")
    model, x = _trained(spec)
    keep = list(range(0, 16, 2))
    with torch.no_grad():
        model.s2_l1.weight[:, 1::2] = 0  # the filters given up feed nothing
    new, _ = transplant(model, spec, keep={"s2_l0": keep})
    assert torch.equal(new.s2_l0.weight[:8], model.s2_l0.weight[keep])
    assert torch.equal(new.s2_l1.weight[:, :8], model.s2_l1.weight[:, keep])
    assert torch.count_nonzero(new.s2_l1.weight[:, 8:]) == 0
    assert _max_diff(model, new, x) <= TOL


def test_slim_residual_stream():
    spec = _spec("resnet20", (3, 16, 16))
    model, x = _trained(spec)
    drop = [40, 50]  # channels of s3 that no earlier stream continues
    with torch.no_grad():
        for layer in ("s3_b1_conv1", "s3_b2_conv1", "head"):
            getattr(model, layer).weight[:, drop] = 0
    keep = [c for c in range(64) if c not in drop]
    new_spec = slim(spec, {"s3_b1_conv2": keep})
    assert new_spec.stages[2].width == 62
    new, _ = transplant(model, new_spec, keep={"s3_b0_conv2": keep})
    assert _max_diff(model, new, x) <= TOL
    assert plan(spec, new_spec, {"s3_b2_conv2": keep}).removed()["s3_b1_conv2"] == (40, 50)
    removed = 3 * 2 * (64 * 9 + 2) + 2 * 2 * 64 * 9 + 2 * 10
    assert _n_params(model) - _n_params(new) == removed
    # dropping a channel of s2 moves s3's continuation of it behind the carried ones
    change = plan(spec, slim(spec, {"s2_b0_conv2": [c for c in range(32) if c != 20]}),
                  keep={"s2_b0_conv2": [c for c in range(32) if c != 20]})
    assert change.out_maps["s3_b0_conv2"][19:22] == (19, 21, 22)
    assert change.out_maps["s3_b0_conv2"][31] == 20


def _step(model, opt, x):
    model.train()
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), torch.arange(len(x)) % 10)
    loss.backward()
    opt.step()
    return loss.item()


def test_sgd_momentum_is_carried():
    spec = _spec("lenet5", (1, 28, 28))
    model, x = _trained(spec)

    def factory(m):
        return torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    opt = factory(model)
    _step(model, opt, x)
    _step(model, opt, x)
    new, new_opt = transplant(model, widen(spec, "s2_l0", 20), old_optimizer=opt,
                              new_optimizer_factory=factory)
    old_buf = opt.state[model.s2_l0.weight]["momentum_buffer"]
    buf = new_opt.state[new.s2_l0.weight]["momentum_buffer"]
    assert torch.equal(buf[:16], old_buf) and torch.count_nonzero(buf[16:]) == 0
    buf = new_opt.state[new.fc1.weight]["momentum_buffer"]
    assert torch.equal(buf[:, :400], opt.state[model.fc1.weight]["momentum_buffer"])
    assert torch.count_nonzero(buf[:, 400:]) == 0
    before = new.s2_l0.weight.detach().clone()
    assert torch.isfinite(torch.tensor(_step(new, new_opt, x)))
    assert not torch.equal(before, new.s2_l0.weight)


class _Fake(torch.optim.Optimizer):
    """Keeps an extra parameter-shaped tensor and scalar state, like DessiLBI does."""

    def __init__(self, params):
        super().__init__(params, {"lr": 0.01})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                st["V"] = st.get("V", torch.zeros_like(p)) + p + 1.0
                st["step"] = st.get("step", torch.tensor(0.0)) + 1
                st["tag"] = "kept"
                p.sub_(group["lr"] * p.grad)


def _fake(model):
    return _Fake(model.parameters())


def test_generic_state_is_carried_for_widen_slim_and_deepen():
    spec = _spec("resnet20-narrow", (3, 16, 16))
    model, x = _trained(spec)
    opt = _Fake(model.parameters())
    _step(model, opt, x)
    new_spec = deepen(widen(spec, "s2_b0_conv1", 20), "s3", 1)
    new, new_opt = transplant(model, new_spec, old_optimizer=opt, new_optimizer_factory=_fake)
    st, old_st = new_opt.state[new.s2_b0_conv1.weight], opt.state[model.s2_b0_conv1.weight]
    assert torch.equal(st["V"][:16], old_st["V"]) and torch.count_nonzero(st["V"][16:]) == 0
    assert st["step"] == 1 and st["tag"] == "kept"
    st = new_opt.state[new.s2_b0_conv2.weight]
    assert torch.equal(st["V"][:, :16], opt.state[model.s2_b0_conv2.weight]["V"])
    assert torch.count_nonzero(st["V"][:, 16:]) == 0
    assert new.s3_b3_conv1.weight not in new_opt.state  # inserted: starts with no state
    _step(new, new_opt, x)

    keep = [0, 2, 3, 5, 8]
    new, new_opt = transplant(model, slim(spec, {"s1_b1_conv1": keep}), keep={
        "s1_b1_conv1": keep}, old_optimizer=opt, new_optimizer_factory=_fake)
    assert torch.equal(new_opt.state[new.s1_b1_conv1_bn.bias]["V"],
                       opt.state[model.s1_b1_conv1_bn.bias]["V"][keep])
    assert torch.equal(new_opt.state[new.s1_b1_conv2.weight]["V"],
                       opt.state[model.s1_b1_conv2.weight]["V"][:, keep])


def test_dessilbi_state_is_carried():
    optim = pytest.importorskip("grownet.optim")
    spec = _spec("vgg16-narrow", (1, 28, 28))
    model, x = _trained(spec)

    def factory(m):
        return optim.DessiLBI(optim.lbi_param_groups(m), lr=0.1, nu=10.0)

    opt = factory(model)
    for _ in range(3):
        _step(model, opt, x)
    new, new_opt = transplant(model, widen(spec, "s3_l0", 20), old_optimizer=opt,
                              new_optimizer_factory=factory)
    for key in ("V", "gamma", "momentum_buffer"):
        old_t = opt.state[model.s3_l0.weight][key]
        new_t = new_opt.state[new.s3_l0.weight][key]
        assert torch.equal(new_t[:16], old_t) and torch.count_nonzero(new_t[16:]) == 0
    _step(new, new_opt, x)


def test_transplant_follows_device_dtype_and_generator():
    spec = _spec("seed", (1, 28, 28))
    model, x = _trained(spec)
    model = model.double()
    new_spec = widen(spec, "s2_l0", 12)
    a, _ = transplant(model, new_spec, generator=torch.Generator().manual_seed(3))
    b, _ = transplant(model, new_spec, generator=torch.Generator().manual_seed(3))
    assert a.s2_l0.weight.dtype == torch.float64
    assert torch.equal(a.s2_l0.weight, b.s2_l0.weight)
    assert _max_diff(model, a, x.double()) <= 1e-12


@pytest.mark.parametrize(("call", "match"), [
    (lambda s: widen(s, "head", 20), "classifier"),
    (lambda s: widen(s, "s2_l0", 8), "slim"),
    (lambda s: widen(s, "s9_l0", 20), "no layer 's9_l0'"),
    (lambda s: widen(s, "s2_l0", 0), "positive integer"),
    (lambda s: deepen(s, "s9", 0), "no stage 's9'"),
    (lambda s: deepen(s, "s1", 0), "position >= 1"),
    (lambda s: deepen(s, "s2", 9), "position must be"),
    (lambda s: slim(s, {"head": [0]}), "classifier"),
    (lambda s: slim(s, {"s2_l0": [0, 0]}), "twice"),
    (lambda s: slim(s, {"s2_l0": [16]}), "outside"),
    (lambda s: slim(s, {"nope": [0]}), "not in the spec"),
    (lambda s: plan(s, slim(s, {"s2_l0": [0, 1]})), "keep="),
])
def test_user_errors_are_clear(call, match):
    with pytest.raises(SpecError, match=match):
        call(_spec("vgg16-narrow"))


def test_residual_and_transplant_errors():
    narrow = _spec("resnet20-narrow", (3, 16, 16))
    with pytest.raises(SpecError, match="option-A shortcut carries"):
        slim(narrow, {"s1_b0_conv2": list(range(12))})
    with pytest.raises(SpecError, match="must keep them"):
        slim(narrow, {"s2_b0_conv2": list(range(1, 16)), "stem": list(range(1, 16)),
                      "s1_b0_conv2": list(range(15))})
    with pytest.raises(SpecError, match="share their channels"):
        slim(narrow, {"s3_b0_conv2": [0, 1], "s3_b1_conv2": [0, 2]})
    with pytest.raises(SpecError, match="position >= 1"):
        deepen(_spec("resnet20", (3, 16, 16)), "s2", 0)
    with pytest.raises(SpecError, match="raw input"):
        deepen(_spec("mlp-300-100", (1, 28, 28)), "hidden", 0)
    with pytest.raises(SpecError, match="drops layers"):
        plan(deepen(narrow, "s1", 1), narrow)
    model = build(narrow)
    with pytest.raises(UserError, match="unknown init"):
        transplant(model, narrow, init="copy")
    with pytest.raises(UserError, match="new_optimizer_factory"):
        transplant(model, narrow, old_optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(UserError, match="cannot be split"):
        transplant(model, widen(narrow, "stem", 20), init="split", split_from={"stem": [0] * 4})
    with pytest.raises(UserError, match="4 old filter"):
        transplant(model, widen(narrow, "s1_b0_conv1", 20), init="split",
                   split_from={"s1_b0_conv1": [0]})
    with pytest.raises(UserError, match="grownet.build"):
        transplant(torch.nn.Linear(2, 2), narrow)
