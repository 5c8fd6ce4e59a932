"""Named architectures: fixed backbones and narrow starts, adapted to the input shape.

Adaptation: VGG-like stages pool only while the map is at least 2x2 (a 28x28 input
keeps 4 of VGG's 5 pools, an 8x8 input 3); LeNet-5 uses padding 2 on 28x28 (as the
classic MNIST variant), no padding on 32x32, and 3x3 kernels on maps too small for
5x5 ones; ``lenet5-caffe`` (Caffe's LeNet: 20 and 50 filters of 5x5, 800 -> 500 ->
classes on 28x28, as in the DST and lottery-ticket papers) pads only its 3x3 kernels.
"""

from __future__ import annotations

from functools import partial

from grownet.spec.model import ArchSpec, Block, Layer, SpecError, Stage

VGG_CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
RESNET_DEPTHS = {"resnet20": 20, "resnet32": 32, "resnet44": 44, "resnet56": 56,
                 "resnet110": 110}
NARROW_WIDTH = 16  # the DessiLBI growth example starts every conv at 16 filters


def _plain(name: str, in_shape: tuple[int, ...], num_classes: int,
           widths: tuple[tuple[int, ...], ...], readout: str = "flatten",
           hidden: tuple[Layer, ...] = ()) -> ArchSpec:
    stages, hw = [], min(in_shape[1], in_shape[2])
    for i, stage_widths in enumerate(widths, start=1):
        pool = "max" if hw >= 2 else "none"
        hw = hw // 2 if pool == "max" else hw
        layers = tuple(Layer(f"s{i}_l{j}", w) for j, w in enumerate(stage_widths))
        stages.append(Stage(f"s{i}", layers=layers, pool=pool))
    return ArchSpec("plain", in_shape, num_classes, stages=tuple(stages), hidden=hidden,
                    readout=readout, name=name)


def _resnet(name: str, in_shape: tuple[int, ...], num_classes: int, depth: int,
            widths: tuple[int, int, int]) -> ArchSpec:
    if (depth - 2) % 6:
        raise SpecError(f"resnet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    stages = []
    for i, w in enumerate(widths, start=1):
        blocks = tuple(Block(f"s{i}_b{j}", w, stride=2 if (j == 0 and i > 1) else 1)
                       for j in range(n))
        stages.append(Stage(f"s{i}", blocks=blocks, width=w))
    return ArchSpec("residual", in_shape, num_classes, stages=tuple(stages),
                    stem=Layer("stem", widths[0]), readout="avg", shortcut="A", name=name)


def _lenet5(in_shape: tuple[int, ...], num_classes: int) -> ArchSpec:
    hw = min(in_shape[1], in_shape[2])
    if hw >= 32:
        k1, p1, k2, p2 = 5, 0, 5, 0
    elif hw >= 28:
        k1, p1, k2, p2 = 5, 2, 5, 0
    else:  # small inputs such as 8x8 digits: keep the shape of the net, shrink kernels
        k1, p1, k2, p2 = 3, 1, 3, 1
    stages = (
        Stage("s1", layers=(Layer("s1_l0", 6, kernel=k1, padding=p1, bn=False),)),
        Stage("s2", layers=(Layer("s2_l0", 16, kernel=k2, padding=p2, bn=False),)),
    )
    hidden = (Layer("fc1", 120, kind="linear", bn=False), Layer("fc2", 84, kind="linear",
                                                                 bn=False))
    return ArchSpec("plain", in_shape, num_classes, stages=stages, hidden=hidden,
                    readout="flatten", name="lenet5")


def _lenet5_caffe(in_shape: tuple[int, ...], num_classes: int) -> ArchSpec:
    # Caffe's LeNet (the DST and lottery-ticket papers' "LeNet-5"): 20@5x5 and 50@5x5
    # convs without padding, each followed by a 2x2 max-pool, then 800 -> 500 -> classes
    # on 28x28; padded 3x3 kernels on maps too small for 5x5 ones.
    k, pad = (5, 0) if min(in_shape[1], in_shape[2]) >= 16 else (3, 1)
    stages = (
        Stage("s1", layers=(Layer("s1_l0", 20, kernel=k, padding=pad, bn=False),)),
        Stage("s2", layers=(Layer("s2_l0", 50, kernel=k, padding=pad, bn=False),)),
    )
    hidden = (Layer("fc1", 500, kind="linear", bn=False),)
    return ArchSpec("plain", in_shape, num_classes, stages=stages, hidden=hidden,
                    readout="flatten", name="lenet5-caffe")


def _seed(in_shape: tuple[int, ...], num_classes: int) -> ArchSpec:
    # One small conv per stage, two stages (one on inputs too small to pool twice), and a
    # flatten readout: small digit images need their spatial layout in the classifier.
    n = 2 if min(in_shape[1], in_shape[2]) >= 4 else 1
    return _plain("seed", in_shape, num_classes, ((8,),) * n, readout="flatten")


def _seed_strided(in_shape: tuple[int, ...], num_classes: int) -> ArchSpec:
    """A narrow start that puts its MACs where they are cheap: a 5x5 stride-2 stem (4
    filters) pooled to a quarter of the input's side, one 3x3 conv (8) there, a flatten
    readout. On 28x28 MNIST: 14x14 → 7x7, 38 k MACs."""
    hw = min(in_shape[1], in_shape[2])
    if hw < 8:  # too small to stride and pool: the plain seed's shape
        return _seed(in_shape, num_classes).replace(name="seed-strided")
    stages = (Stage("s1", layers=(Layer("s1_l0", 4, kernel=5, stride=2, padding=2),),
                    pool="max"),
              Stage("s2", layers=(Layer("s2_l0", 8),), pool="none"))
    return ArchSpec("plain", in_shape, num_classes, stages=stages, readout="flatten",
                    name="seed-strided")


def _mlp(in_shape: tuple[int, ...], num_classes: int) -> ArchSpec:
    hidden = (Layer("fc1", 300, kind="linear", bn=False), Layer("fc2", 100, kind="linear",
                                                                 bn=False))
    return ArchSpec("mlp", in_shape, num_classes, hidden=hidden, name="mlp-300-100")


def _builders() -> dict:
    table = {
        "lenet5": _lenet5,
        "lenet5-caffe": _lenet5_caffe,
        "mlp-300-100": _mlp,
        "seed": _seed,
        "seed-strided": _seed_strided,
        "vgg16-narrow": lambda s, c: _plain(
            "vgg16-narrow", s, c,
            tuple((NARROW_WIDTH,) * len(st) for st in VGG_CONFIGS["vgg16"])),
        "resnet20-narrow": lambda s, c: _resnet("resnet20-narrow", s, c, 20,
                                                (NARROW_WIDTH,) * 3),
    }
    for name, cfg in VGG_CONFIGS.items():
        table[name] = partial(_vgg, name, cfg)
    for name, depth in RESNET_DEPTHS.items():
        table[name] = partial(_cifar_resnet, name, depth)
    return table


def _vgg(name: str, cfg: tuple[tuple[int, ...], ...], in_shape: tuple[int, ...],
         num_classes: int) -> ArchSpec:
    return _plain(name, in_shape, num_classes, cfg)


def _cifar_resnet(name: str, depth: int, in_shape: tuple[int, ...],
                  num_classes: int) -> ArchSpec:
    return _resnet(name, in_shape, num_classes, depth, (16, 32, 64))


_BUILDERS = _builders()
PRESETS: tuple[str, ...] = tuple(sorted(_BUILDERS))
NARROW_PRESETS = ("seed", "seed-strided", "vgg16-narrow", "resnet20-narrow")


def preset(name: str, in_shape: tuple[int, ...] = (1, 28, 28),
           num_classes: int = 10) -> ArchSpec:
    """Build the preset ``name`` for ``in_shape`` (C, H, W) and ``num_classes``."""
    if name not in _BUILDERS:
        raise SpecError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    in_shape = tuple(int(s) for s in in_shape)
    if len(in_shape) != 3:
        raise SpecError(f"in_shape must be (channels, height, width), got {in_shape}")
    return _BUILDERS[name](in_shape, int(num_classes))
