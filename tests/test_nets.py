"""grownet.nets: every preset builds and runs; names come from layer ids; option-A
shortcuts pad at the end; memory formats, dtype/device moves and initialisation."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from grownet.nets import GrowNet, bn_name, build, init_weights
from grownet.spec import PRESETS, ArchSpec, Block, Layer, Stage, preset

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
CASES = [(name, shape) for name in PRESETS for shape in SHAPES]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name,shape", CASES)
def test_every_preset_runs(name: str, shape: tuple[int, ...]) -> None:
    spec = preset(name, in_shape=shape, num_classes=7)
    model = build(spec)
    assert isinstance(model, GrowNet) and model.spec is spec
    x = torch.randn(2, *shape)  # batch 2: BatchNorm needs > 1 value per channel in training
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.inference_mode():
        assert model(x[:1]).shape == (1, 7)


@pytest.mark.parametrize("name", PRESETS)
def test_parameter_names_come_from_layer_ids(name: str) -> None:
    spec = preset(name, in_shape=(3, 32, 32))
    names = set(dict(build(spec).named_parameters()))
    expected = set()
    for s in spec.shapes():
        expected.add(f"{s.id}.weight")
        if s.bias:
            expected.add(f"{s.id}.bias")
        if s.bn:
            expected |= {f"{bn_name(s.id)}.weight", f"{bn_name(s.id)}.bias"}
    assert names == expected


def test_parameter_name_examples() -> None:
    vgg = dict(build(preset("vgg16", in_shape=(3, 32, 32))).named_parameters())
    assert vgg["s1_l0.weight"].shape == (64, 3, 3, 3)
    assert vgg["s1_l0_bn.weight"].shape == (64,)
    assert vgg["head.weight"].shape == (10, 512) and vgg["head.bias"].shape == (10,)
    res = build(preset("resnet20", in_shape=(3, 32, 32)))
    params = dict(res.named_parameters())
    assert params["s2_b0_conv1.weight"].shape == (32, 16, 3, 3)
    assert params["s2_b0_conv2.weight"].shape == (32, 32, 3, 3)
    assert params["stem.weight"].shape == (16, 3, 3, 3)
    assert "s1_b0_conv1_bn.running_mean" in res.state_dict()
    lenet = dict(build(preset("lenet5")).named_parameters())
    assert lenet["fc1.weight"].shape == (120, 400) and "s1_l0.bias" in lenet


def test_lenet5_classic_parameter_count() -> None:
    model = build(preset("lenet5", in_shape=(1, 28, 28)))
    assert sum(p.numel() for p in model.parameters()) == 61_706


def _zero_branch(model: GrowNet, block_conv2: str) -> None:
    """Make a block's residual branch output exactly zero (eval-mode BN with beta 0)."""
    with torch.no_grad():
        getattr(model, block_conv2).weight.zero_()
        getattr(model, bn_name(block_conv2)).bias.zero_()


def test_option_a_shortcut_subsamples_and_pads_at_the_end() -> None:
    spec = ArchSpec("residual", (3, 9, 9), 5, readout="avg", shortcut="A",
                    stem=Layer("stem", 4),
                    stages=(Stage("s1", blocks=(Block("s1_b0", 4),), width=4),
                            Stage("s2", blocks=(Block("s2_b0", 6, stride=2),), width=10)))
    model = build(spec).eval()
    _zero_branch(model, "s2_b0_conv2")
    seen: dict[str, torch.Tensor] = {}
    model.s2_b0_conv1.register_forward_pre_hook(lambda m, a: seen.update(block_in=a[0]))
    with torch.no_grad():
        feats = model.features(torch.randn(2, 3, 9, 9))
    block_in = seen["block_in"]  # 4 channels, 9x9, post-ReLU so non-negative
    assert block_in.shape == (2, 4, 9, 9) and (block_in >= 0).all()
    # with the branch at zero the block outputs ReLU(shortcut) = the input subsampled
    # [::2, ::2] (9 -> 5, matching the stride-2 conv's 5x5 map) in channels 0..3, then zeros
    expected = block_in[:, :, ::2, ::2].mean(dim=(2, 3))
    assert feats.shape == (2, 10)
    torch.testing.assert_close(feats[:, :4], expected)
    assert (feats[:, 4:] == 0).all()


def test_option_b_projects() -> None:
    spec = ArchSpec("residual", (3, 8, 8), 5, readout="avg", shortcut="B",
                    stem=Layer("stem", 4),
                    stages=(Stage("s1", blocks=(Block("s1_b0", 6, stride=2),), width=8),))
    model = build(spec).eval()
    assert model.s1_b0_proj.weight.shape == (8, 4, 1, 1) and model.s1_b0_proj.stride == (2, 2)
    _zero_branch(model, "s1_b0_conv2")
    seen: dict[str, torch.Tensor] = {}
    model.s1_b0_proj_bn.register_forward_hook(lambda m, a, out: seen.update(proj=out))
    with torch.no_grad():
        feats = model.features(torch.randn(2, 3, 8, 8))
    torch.testing.assert_close(feats, torch.relu(seen["proj"]).mean(dim=(2, 3)))


@pytest.mark.parametrize("name,shape", [("vgg16-narrow", (3, 32, 32)), ("resnet20", (3, 32, 32)),
                                        ("resnet20-narrow", (1, 28, 28)), ("lenet5", (1, 28, 28)),
                                        ("seed", (1, 8, 8))])
def test_channels_last_matches_contiguous(name: str, shape: tuple[int, ...]) -> None:
    spec = preset(name, in_shape=shape)
    model = build(spec).eval()
    x = torch.randn(4, *shape)
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    first_conv = getattr(cl_model, spec.layer_ids()[0]).weight
    assert first_conv.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(x)
        out = cl_model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_module_moves_and_casts() -> None:
    """`.to()`, `.double()`, `.half()` go through nn.Module._apply: GrowNet must not shadow
    it (it once did, with its per-layer helper)."""
    model = build(preset("resnet20-narrow", in_shape=(1, 8, 8))).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
        double = copy.deepcopy(model).double()
        assert all(p.dtype == torch.float64 for p in double.parameters())
        torch.testing.assert_close(double(x.double()).float(), ref, atol=1e-5, rtol=1e-5)
        moved = model.to("cpu")
        assert moved is model
        if torch.cuda.is_available():
            gpu = copy.deepcopy(model).cuda()
            torch.testing.assert_close(gpu(x.cuda()).cpu(), ref, atol=1e-4, rtol=1e-4)


def test_kaiming_init() -> None:
    model = build(preset("lenet5", in_shape=(1, 28, 28)), init="kaiming")
    conv = model.s2_l0  # 16 x 6 x 5 x 5, fan_out = 16 * 25
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (16 * 25)), rel=0.15)
    assert (conv.bias == 0).all()
    fc = model.fc1
    assert fc.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert (fc.bias == 0).all()
    res = build(preset("resnet20", in_shape=(3, 32, 32)), init="kaiming")
    bn = res.s1_b0_conv1_bn
    assert (bn.weight == 1).all() and (bn.bias == 0).all()
    w = res.s3_b0_conv2.weight  # 64 x 64 x 3 x 3, fan_out = 64 * 9
    assert w.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    default = build(preset("lenet5", in_shape=(1, 28, 28)))
    assert not torch.equal(default.fc1.bias, torch.zeros_like(default.fc1.bias))
    init_weights(default)  # the function is usable on its own
    assert (default.fc1.bias == 0).all()
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        build(preset("seed"), init="xavier")


def test_dropout_only_in_training() -> None:
    spec = ArchSpec("mlp", (1, 4, 4), 3,
                    hidden=(Layer("fc1", 64, kind="linear", bn=False, dropout=0.5),))
    model = build(spec)
    x = torch.randn(8, 1, 4, 4)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))


def test_mlp_and_avg_readout_shapes() -> None:
    mlp = build(preset("mlp-300-100", in_shape=(3, 32, 32)))
    assert mlp.fc1.in_features == 3 * 32 * 32
    seed = build(preset("seed", in_shape=(1, 28, 28)))  # flatten readout of the 7x7 map
    assert seed.head.in_features == 8 * 7 * 7
    assert seed.features(torch.randn(2, 1, 28, 28)).shape == (2, 8 * 7 * 7)
    avg = build(preset("seed", in_shape=(1, 28, 28)).replace(readout="avg"))
    assert avg.head.in_features == 8  # avg readout: the head sees channels
    assert avg.features(torch.randn(2, 1, 28, 28)).shape == (2, 8)
    assert isinstance(seed.s1_l0, nn.Conv2d) and isinstance(seed.s1_l0_bn, nn.BatchNorm2d)
    linear_bn = build(ArchSpec("mlp", (1, 4, 4), 3, hidden=(Layer("fc", 5, kind="linear"),)))
    assert isinstance(linear_bn.fc_bn, nn.BatchNorm1d) and linear_bn.fc.bias is None
