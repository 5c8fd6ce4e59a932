"""grownet.spec: JSON round trips, validation messages, preset adaptation, stable ids."""

from __future__ import annotations

import json

import pytest

from grownet.errors import UserError
from grownet.spec import (
    HEAD_ID,
    INPUT,
    NARROW_PRESETS,
    PRESETS,
    ArchSpec,
    Block,
    Layer,
    SpecError,
    Stage,
    preset,
)

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
CASES = [(name, shape) for name in PRESETS for shape in SHAPES]


def _plain(*stages: Stage, in_shape=(1, 8, 8), **kw) -> ArchSpec:
    return ArchSpec("plain", in_shape, 10, stages=stages, **kw)


def _resnet(stages: tuple[Stage, ...], stem_width: int = 16, **kw) -> ArchSpec:
    return ArchSpec("residual", (3, 16, 16), 10, stages=stages, stem=Layer("stem", stem_width),
                    readout="avg", **kw)


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name,shape", CASES)
def test_json_round_trip(name: str, shape: tuple[int, ...]) -> None:
    spec = preset(name, in_shape=shape, num_classes=7)
    text = spec.to_json()
    back = ArchSpec.from_json(text)
    assert back == spec
    assert back.to_json() == text
    assert back.shapes() == spec.shapes()
    assert ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_round_trip_keeps_meta_and_non_default_fields() -> None:
    spec = ArchSpec("residual", (3, 16, 16), 4, shortcut="B", readout="avg",
                    stem=Layer("stem", 8, kernel=5, padding=1, bias=True),
                    stages=(Stage("s1", blocks=(Block("s1_b0", 6, stride=2),), width=12),),
                    hidden=(Layer("fc", 20, kind="linear", dropout=0.25),),
                    name="custom", meta={"stage": 3, "note": "grown"})
    back = ArchSpec.from_json(spec.to_json(indent=None))
    assert back == spec and back.meta == {"stage": 3, "note": "grown"}
    assert back.stem == Layer("stem", 8, kernel=5, padding=1, bias=True)


@pytest.mark.parametrize("text,match", [
    ("{not json", "does not parse"),
    ("[1, 2]", "JSON object"),
    ('{"family": "plain"}', "malformed"),
    ('{"family": "plain", "in_shape": [1, "a", 2], "num_classes": 3}', "malformed"),
    ('{"family": "plain", "in_shape": [1, 8, 8], "num_classes": 3, '
     '"stages": [{"id": "s1", "layers": [{"id": "a", "width": 4, "colour": 1}]}]}', "malformed"),
])
def test_bad_json(text: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        ArchSpec.from_json(text)


# ------------------------------------------------------------------ validation
def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, UserError)
    return msg


@pytest.mark.parametrize("width", [0, -3])
def test_non_positive_widths(width: int) -> None:
    with pytest.raises(SpecError, match=r"layer 'a': width must be >= 1") as err:
        _plain(Stage("s1", layers=(Layer("a", width), Layer("b", 4))))
    assert f"got {width}" in _one_line(err)
    with pytest.raises(SpecError, match="layer 'fc': width must be >= 1"):
        _plain(Stage("s1", layers=(Layer("a", 4),)),
               hidden=(Layer("fc", width, kind="linear"),))
    with pytest.raises(SpecError, match="stage 's1': width must be >= 1"):
        _resnet((Stage("s1", blocks=(Block("b0", 4),), width=width),))
    with pytest.raises(SpecError, match="block 'b0': width must be >= 1"):
        _resnet((Stage("s1", blocks=(Block("b0", width),), width=16),))
    with pytest.raises(SpecError, match="num_classes must be >= 1"):
        ArchSpec("mlp", (1, 4, 4), width)


def test_pooling_below_one_pixel() -> None:
    stages = tuple(Stage(f"s{i}", layers=(Layer(f"s{i}_l0", 4),)) for i in range(1, 5))
    with pytest.raises(SpecError, match=r"stage 's4': pooling would shrink the 1x1 map below "
                       r"1x1; set pool='none'") as err:
        _plain(*stages, in_shape=(1, 8, 8))  # 8 -> 4 -> 2 -> 1 -> (nothing)
    _one_line(err)
    _plain(*stages, in_shape=(1, 16, 16))  # the same net fits a larger input
    _plain(*stages[:3], Stage("s4", layers=(Layer("s4_l0", 4),), pool="none"))


def test_kernel_larger_than_map() -> None:
    with pytest.raises(SpecError, match=r"layer 'a': a 5x5 conv on a 2x2 map leaves nothing"):
        _plain(Stage("s1", layers=(Layer("a", 4, kernel=5, padding=0),)), in_shape=(1, 2, 2))


@pytest.mark.parametrize("make,match", [
    (lambda: ArchSpec("dense", (1, 8, 8), 10), "unknown family 'dense'; use one of plain, "
     "residual, mlp"),
    (lambda: _plain(Stage("s1", layers=(Layer("a", 4), Layer("a", 8)))),
     "layer id 'a' is used twice"),
    (lambda: _plain(Stage("s1", layers=(Layer("a", 4),)), Stage("s1", layers=(Layer("b", 4),))),
     "id 's1' is used twice"),
    (lambda: _plain(Stage("a", layers=(Layer("a", 4),))), "id 'a' is used twice"),
    (lambda: _plain(Stage("s1", layers=(Layer("head", 4),))), "layer id 'head' is used twice"),
    (lambda: _resnet((Stage("s1", blocks=(Block("b0", 8), Block("b0", 8)), width=16),)),
     "used twice"),
    (lambda: _resnet((Stage("s1", blocks=(Block("b0", 8),), width=8),), stem_width=16),
     "option-A shortcut cannot map 16 channels onto a 8-wide stage; widen stage 's1' to >= 16 "
     "or use shortcut='B'"),
    (lambda: _resnet((Stage("s1", blocks=(Block("b0", 8),), width=16),), shortcut="C"),
     "unknown shortcut option 'C'"),
    (lambda: _plain(Stage("s1", layers=(Layer("a", 4),), pool="min")), "unknown pool 'min'"),
    (lambda: _plain(Stage("s1", layers=(Layer("a", 4),)), readout="max"),
     "unknown readout 'max'"),
    (lambda: _plain(Stage("s1", layers=(Layer("a", 4), Layer("a_bn", 4)))),
     "layer id 'a_bn' clashes with the BatchNorm of layer 'a'"),
    (lambda: _plain(Stage("s1", layers=(Layer("1a", 4),))), "layer id '1a' is not valid"),
    (lambda: _plain(Stage("s-1", layers=(Layer("a", 4),))), "stage id 's-1' is not valid"),
    (lambda: _plain(Stage("s1", layers=(Layer("a", 4, kind="linear"),))),
     "has kind 'linear'; use kind='conv'"),
    (lambda: _plain(Stage("s1", layers=(Layer("a", 4),)), hidden=(Layer("fc", 4),)),
     "hidden layer 'fc' has kind 'conv'"),
    (lambda: _plain(Stage("s1", layers=(Layer("a", 4),)),
                    hidden=(Layer("fc", 4, kind="linear", dropout=1.0),)), "dropout"),
    (lambda: _plain(Stage("s1", layers=(Layer("a", 4, stride=0),))), "stride must be >= 1"),
    (lambda: _plain(Stage("s1", blocks=(Block("b", 4),))), "plain stage 's1' needs conv"),
    (lambda: ArchSpec("residual", (3, 16, 16), 10,
                      stages=(Stage("s1", blocks=(Block("b0", 8),), width=8),)),
     "needs a stem"),
    (lambda: ArchSpec("mlp", (1, 8, 8), 10, stages=(Stage("s1", layers=(Layer("a", 4),)),)),
     "an mlp spec has no conv stages"),
    (lambda: ArchSpec("plain", (1, 0, 8), 10), "in_shape must be"),
    (lambda: ArchSpec("plain", (8, 8), 10), "in_shape must be"),
    (lambda: preset("resnet21"), "unknown preset 'resnet21'; choose one of lenet5"),
    (lambda: preset("vgg16", in_shape=(32, 32)), "in_shape must be"),
])
def test_validation_messages(make, match: str) -> None:
    with pytest.raises(SpecError, match=match.replace("(", r"\(").replace(")", r"\)")) as err:
        make()
    _one_line(err)


def test_replace_validates_again() -> None:
    spec = preset("resnet20", in_shape=(3, 32, 32))
    with pytest.raises(SpecError, match="option-A shortcut"):
        spec.replace(stages=(spec.stages[0], Stage("s2", blocks=spec.stages[1].blocks,
                                                   width=8), spec.stages[2]))


def test_option_b_accepts_narrower_stage() -> None:
    spec = _resnet((Stage("s1", blocks=(Block("b0", 8),), width=8),), stem_width=16,
                   shortcut="B")
    proj = spec.shape("b0_proj")
    assert (proj.kernel, proj.in_channels, proj.out_ch, proj.role) == (1, 16, 8, "proj")
    assert spec.shape("b0_conv2").proj == "b0_proj"


# ------------------------------------------------------------------ presets
@pytest.mark.parametrize("name,shape", CASES)
def test_presets_adapt_to_input(name: str, shape: tuple[int, ...]) -> None:
    spec = preset(name, in_shape=shape, num_classes=13)
    assert spec.in_shape == shape and spec.num_classes == 13
    shapes = spec.shapes()
    assert shapes[-1].id == HEAD_ID and shapes[-1].out_ch == 13
    assert shapes[0].inputs == (INPUT,)
    convs = [s for s in shapes if s.kind == "conv"]
    if convs:
        assert convs[0].in_channels == shape[0] and convs[0].in_hw == shape[1:]
        assert all(min(s.out_hw) >= 1 for s in convs)
    assert spec == ArchSpec.preset(name, in_shape=shape, num_classes=13)  # deterministic


@pytest.mark.parametrize("shape,pools,head_in", [
    ((1, 8, 8), 3, 512), ((1, 28, 28), 4, 512), ((3, 32, 32), 5, 512), ((3, 64, 64), 5, 2048)])
def test_vgg_keeps_the_pools_the_input_allows(shape, pools: int, head_in: int) -> None:
    spec = preset("vgg16", in_shape=shape)
    assert sum(st.pool == "max" for st in spec.stages) == pools
    assert [st.pool for st in spec.stages[pools:]] == ["none"] * (5 - pools)
    assert spec.shape("head").in_ch == head_in


def test_lenet5_variants() -> None:
    mnist = preset("lenet5", in_shape=(1, 28, 28))
    assert (mnist.shape("s1_l0").kernel, mnist.shape("s1_l0").padding) == (5, 2)
    assert mnist.shape("fc1").in_ch == 16 * 5 * 5
    cifar = preset("lenet5", in_shape=(3, 32, 32))
    assert cifar.shape("s1_l0").padding == 0 and cifar.shape("fc1").in_ch == 400
    digits = preset("lenet5", in_shape=(1, 8, 8))
    assert digits.shape("s1_l0").kernel == 3 and digits.shape("fc1").in_ch == 16 * 2 * 2


def test_seed_and_narrow_presets() -> None:
    assert len(preset("seed", in_shape=(1, 28, 28)).stages) == 2
    assert len(preset("seed", in_shape=(1, 2, 2)).stages) == 1
    assert set(NARROW_PRESETS) <= set(PRESETS)
    narrow = preset("vgg16-narrow", in_shape=(3, 32, 32))
    assert set(narrow.widths().values()) == {16, 10}


def test_resnet_shapes() -> None:
    spec = preset("resnet56", in_shape=(3, 32, 32))
    ids = spec.layer_ids()
    assert len(ids) == 56  # 1 stem + 54 block convs + head
    assert spec.shape("s2_b0_conv1").stride == 2 and spec.shape("s2_b0_conv1").out_hw == (16, 16)
    assert spec.shape("s3_b8_conv2").out_hw == (8, 8)
    c2 = spec.shape("s2_b0_conv2")
    assert c2.shortcut_from == "s1_b8_conv2" and c2.group == "s2.stream" and c2.proj is None
    assert spec.shape("head").in_ch == 64
    assert spec.stage_of("s3_b1_conv1") == "s3" and spec.stage_of("stem") is None
    with pytest.raises(SpecError, match="no layer 'nope'"):
        spec.shape("nope")


# ------------------------------------------------------------------ ids
def test_ids_are_stable() -> None:
    spec = preset("resnet20", in_shape=(3, 32, 32))
    assert spec.layer_ids() == (
        ["stem"] + [f"s{i}_b{j}_conv{k}" for i in (1, 2, 3) for j in range(3) for k in (1, 2)]
        + ["head"])
    assert preset("vgg11").layer_ids() == ["s1_l0", "s2_l0", "s3_l0", "s3_l1", "s4_l0",
                                           "s4_l1", "s5_l0", "s5_l1", "head"]
    assert preset("lenet5").layer_ids() == ["s1_l0", "s2_l0", "fc1", "fc2", "head"]
    # widening a layer and inserting one (with a fresh id) renames nothing else
    vgg = preset("vgg16-narrow")
    s1 = vgg.stages[0]
    new_id = vgg.fresh_id("s1_l")
    grown = vgg.replace(stages=(Stage("s1", layers=(s1.layers[0], Layer(new_id, 16),
                                                    Layer("s1_l1", 48)), pool=s1.pool),)
                        + vgg.stages[1:])
    old, new = vgg.layer_ids(), grown.layer_ids()
    assert new_id == "s1_l2" and new == old[:1] + [new_id] + old[1:]
    assert grown.widths()["s1_l1"] == 48
    assert {k: v for k, v in grown.widths().items() if k not in (new_id, "s1_l1")} == {
        k: v for k, v in vgg.widths().items() if k != "s1_l1"}


def test_fresh_id() -> None:
    spec = preset("resnet20", in_shape=(3, 32, 32))
    assert spec.fresh_id("s1_b") == "s1_b3"  # s1_b0..2 are blocks
    assert spec.fresh_id("s") == "s0"  # free, and no id starts with "s0_"
    assert spec.fresh_id("stem") == "stem0"
    assert spec.fresh_id("x") == "x0"
    plain = _plain(Stage("s1", layers=(Layer("fc0", 4), Layer("fc1_x", 4))))
    assert plain.fresh_id("fc") == "fc2"  # fc0 is taken, fc1 would prefix fc1_x
    deeper = spec.replace(stages=spec.stages[:2] + (
        Stage("s3", blocks=spec.stages[2].blocks + (Block(spec.fresh_id("s3_b"), 64),),
              width=64),))
    assert deeper.layer_ids()[-3:] == ["s3_b3_conv1", "s3_b3_conv2", "head"]
    assert deeper.fresh_id("s3_b") == "s3_b4"
