"""grownet.cost: analytic params/MACs against the built model and torch's flop counter,
published reference numbers, latency and training compute."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from grownet.cost import (
    FLOPS_PER_MAC,
    ComputeMeter,
    CostTable,
    count,
    human,
    latency,
    training_compute,
)
from grownet.nets import build
from grownet.spec import PRESETS, ArchSpec, Block, Layer, Stage

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
CASES = [(name, shape) for name in PRESETS for shape in SHAPES]


def _custom_specs() -> list[ArchSpec]:
    """Specs the presets do not cover: option-B projections, a conv with bias and BN,
    hidden FC layers with BN, an avg-pooled plain net, an mlp with BN."""
    shortcut_b = ArchSpec(
        "residual", (3, 16, 16), 7, shortcut="B", readout="avg", stem=Layer("stem", 8),
        stages=(Stage("s1", blocks=(Block("s1_b0", 8), Block("s1_b1", 12)), width=12),
                Stage("s2", blocks=(Block("s2_b0", 20, stride=2),), width=24)))
    plain = ArchSpec(
        "plain", (2, 12, 10), 5, readout="flatten",
        stages=(Stage("s1", layers=(Layer("a", 6, kernel=5, bias=True),
                                    Layer("b", 9, stride=2, padding=0)), pool="avg"),
                Stage("s2", layers=(Layer("c", 4, kernel=1, bn=False),), pool="none")),
        hidden=(Layer("fc1", 33, kind="linear", bn=True, dropout=0.5),))
    mlp = ArchSpec("mlp", (1, 5, 5), 3,
                   hidden=(Layer("fc1", 17, kind="linear"), Layer("fc2", 9, kind="linear",
                                                                   bn=False, bias=False)))
    return [shortcut_b, plain, mlp]


def _torch_macs(model: torch.nn.Module, in_shape: tuple[int, ...]) -> int:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, *in_shape))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


@pytest.mark.parametrize("name,shape", CASES)
def test_params_equal_built_model(name: str, shape: tuple[int, ...]) -> None:
    spec = ArchSpec.preset(name, in_shape=shape)
    model = build(spec)
    table = count(spec)
    assert table.params == sum(p.numel() for p in model.parameters())
    # per layer too: the layer's own parameters plus its BatchNorm's
    params = dict(model.named_parameters())
    for row in table:
        own = sum(p.numel() for k, p in params.items()
                  if k.rsplit(".", 1)[0] in (row.id, f"{row.id}_bn"))
        assert row.params == own, row.id


@pytest.mark.parametrize("name,shape", CASES)
def test_macs_match_flop_counter(name: str, shape: tuple[int, ...]) -> None:
    spec = ArchSpec.preset(name, in_shape=shape)
    assert count(spec).macs == _torch_macs(build(spec), shape)


@pytest.mark.parametrize("spec", _custom_specs(), ids=["shortcut-B", "plain-mixed", "mlp"])
def test_custom_specs_match_model(spec: ArchSpec) -> None:
    model = build(spec)
    table = count(spec)
    assert table.params == sum(p.numel() for p in model.parameters())
    assert table.macs == _torch_macs(model, spec.in_shape)


def test_layer_formulas() -> None:
    spec = ArchSpec.preset("lenet5", in_shape=(1, 28, 28))
    t = count(spec)
    # conv1 1->6, 5x5, pad 2 on 28x28 -> 28x28 map, bias, no BN
    assert t["s1_l0"].params == 6 * 25 + 6
    assert t["s1_l0"].macs == 28 * 28 * 6 * 1 * 25
    # conv2 6->16, 5x5 on the pooled 14x14 -> 10x10
    assert t["s2_l0"].macs == 10 * 10 * 16 * 6 * 25
    assert t["fc1"].in_ch == 16 * 5 * 5 and t["fc1"].macs == 400 * 120
    assert t["head"].params == 84 * 10 + 10 and t["head"].macs == 840
    with pytest.raises(KeyError, match="no layer 'nope'"):
        t["nope"]
    # BN adds 2 params per output channel, no bias when BN follows
    r = count(ArchSpec.preset("resnet20", in_shape=(3, 32, 32)))
    assert r["stem"].weight == 16 * 3 * 9 and r["stem"].bias == 0 and r["stem"].bn == 32


def test_published_reference_numbers() -> None:
    c32 = (3, 32, 32)
    r20, r56 = count(ArchSpec.preset("resnet20", c32)), count(ArchSpec.preset("resnet56", c32))
    vgg = count(ArchSpec.preset("vgg16", c32))
    assert r20.params == pytest.approx(0.27e6, rel=0.02)
    assert r56.params == pytest.approx(0.85e6, rel=0.02)
    assert vgg.params == pytest.approx(14.7e6, rel=0.02)
    assert r56.macs == pytest.approx(125e6, rel=0.02)
    assert vgg.macs == pytest.approx(313e6, rel=0.02)
    # LeNet-5 on MNIST: the classic 61,706
    assert count(ArchSpec.preset("lenet5", (1, 28, 28))).params == 61_706


def test_frame_and_text() -> None:
    spec = ArchSpec.preset("resnet20", in_shape=(3, 32, 32))
    t = count(spec)
    assert isinstance(t, CostTable) and len(t) == len(spec.layer_ids())
    frame = t.to_frame()
    assert list(frame.columns) == ["layer", "kind", "stage", "in", "out", "kernel", "stride",
                                   "out_hw", "params", "macs"]
    assert list(frame["layer"]) == spec.layer_ids()
    assert frame["params"].sum() == t.params and frame["macs"].sum() == t.macs
    first, head = frame.iloc[0], frame.iloc[-1]
    assert first["out_hw"] == "32x32" and first["kernel"] == 3
    assert head["layer"] == "head" and head["kind"] == "linear"
    assert frame.set_index("layer").loc["s3_b0_conv1", "out_hw"] == "8x8"
    assert frame.set_index("layer").loc["s3_b0_conv1", "stride"] == 2

    text = t.format_table()
    assert str(t) == text
    assert "total params: 269,722 (269.7 k)" in text
    assert f"total MACs: {t.macs:,} (40.55 M) per sample" in text
    assert all(layer_id in text for layer_id in spec.layer_ids())
    assert t.flops == FLOPS_PER_MAC * t.macs


def test_human_units() -> None:
    assert human(0) == "0"
    assert human(650) == "650"
    assert human(269_722) == "269.7 k"
    assert human(125_485_696) == "125.5 M"
    assert human(2.5e9) == "2.5 G"


def test_count_rejects_non_spec() -> None:
    spec = ArchSpec.preset("seed")
    with pytest.raises(TypeError, match="pass model.spec"):
        count(build(spec))  # type: ignore[arg-type]


def test_compute_meter_growing_run() -> None:
    small = ArchSpec.preset("vgg16-narrow", in_shape=(1, 8, 8))
    big = ArchSpec.preset("vgg16", in_shape=(1, 8, 8))
    m_small, m_big = count(small).macs, count(big).macs
    meter = ComputeMeter()
    for _ in range(3):  # three steps of batch 32 on the narrow net, then growth
        assert meter.add(small, 32) == 3 * m_small * 32
    meter.add(big, 16)
    meter.add(count(big), 16)  # a CostTable works too
    meter.add(1000, 10)  # so do plain MACs per sample
    expected = 3 * (3 * 32 * m_small + 32 * m_big + 1000 * 10)
    assert meter.total == expected
    assert meter.flops == 2 * expected
    assert meter.samples == 3 * 32 + 32 + 10
    assert training_compute(m_small, 96) == 3 * m_small * 96

    resumed = ComputeMeter()
    resumed.load_state_dict(meter.state_dict())
    assert resumed.total == meter.total and resumed.samples == meter.samples
    assert "MACs" in repr(resumed)


def test_compute_meter_rejects_bad_input() -> None:
    meter = ComputeMeter()
    with pytest.raises(ValueError, match="non-negative"):
        meter.add(100, -1)
    with pytest.raises(TypeError, match="ArchSpec"):
        meter.add("resnet20", 1)  # type: ignore[arg-type]
    assert meter.total == 0


def test_latency() -> None:
    spec = ArchSpec.preset("seed", in_shape=(1, 8, 8))
    model = build(spec).train()
    times = latency(model, spec.in_shape, batch_sizes=(1, 4), repeats=3, warmup=1)
    assert set(times) == {1, 4}
    assert all(isinstance(v, float) and 0 < v < 5 for v in times.values())
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="batch sizes"):
        latency(model, spec.in_shape, batch_sizes=(0,))
    if not torch.cuda.is_available():
        from grownet.errors import UserError

        with pytest.raises(UserError, match="CUDA is not available"):
            latency(model, spec.in_shape, device="cuda")
