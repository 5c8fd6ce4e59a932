"""`ArchSpec`: a network's shape as frozen, JSON-serialisable data.

Three families share one description:

* ``plain`` — VGG-like: stages of conv(-BN)-ReLU layers, pooling after each stage,
  a readout (flatten or global average), optional hidden FC layers, a classifier.
* ``residual`` — CIFAR ResNet: a stem conv, stages of basic blocks, shortcut option
  ``A`` (subsample + zero-pad channels at the end) or ``B`` (1x1 conv + BN projection),
  global average readout, classifier.
* ``mlp`` — hidden FC layers on the flattened input, classifier.

Every conv/linear layer carries a stable ``id`` (letters, digits, ``_``). Network
parameter names derive from it, so they survive growth: a layer inserted later gets a
fresh id and never renames the others. The classifier is always the layer ``head``.

In a residual stage the blocks' second convs (``<block>_conv2``) all write into the
stage's residual stream and so share one width, ``Stage.width``; each block's first
conv has its own width, ``Block.width``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from grownet.errors import UserError

FAMILIES = ("plain", "residual", "mlp")
POOLS = ("max", "avg", "none")
READOUTS = ("flatten", "avg")
SHORTCUTS = ("A", "B")
HEAD_ID = "head"
_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class SpecError(UserError, ValueError):
    """An architecture description that cannot be built (with what to change)."""


@dataclass(frozen=True)
class Layer:
    """One conv or linear layer, followed by optional BatchNorm and ReLU.

    ``padding=None`` means ``kernel // 2`` ("same" for odd kernels); ``bias=None``
    means a bias only when there is no BatchNorm. ``dropout`` is applied after the
    activation of a hidden linear layer.
    """

    id: str
    width: int
    kind: str = "conv"
    kernel: int = 3
    stride: int = 1
    padding: int | None = None
    bn: bool = True
    bias: bool | None = None
    dropout: float = 0.0

    @property
    def pad(self) -> int:
        return self.kernel // 2 if self.padding is None else self.padding

    @property
    def has_bias(self) -> bool:
        return (not self.bn) if self.bias is None else self.bias


@dataclass(frozen=True)
class Block:
    """A residual basic block: conv1 (``width``) - BN - ReLU - conv2 (stage width) - BN,
    plus the shortcut, then ReLU. ``stride`` applies to conv1 and the shortcut."""

    id: str
    width: int
    stride: int = 1

    @property
    def conv1(self) -> str:
        return f"{self.id}_conv1"

    @property
    def conv2(self) -> str:
        return f"{self.id}_conv2"

    @property
    def proj(self) -> str:
        return f"{self.id}_proj"


@dataclass(frozen=True)
class Stage:
    """A plain stage (``layers`` then ``pool``) or a residual stage (``blocks`` sharing
    the stream ``width``)."""

    id: str
    layers: tuple[Layer, ...] = ()
    blocks: tuple[Block, ...] = ()
    width: int = 0
    pool: str = "max"


@dataclass(frozen=True)
class ArchSpec:
    """A network's shape. Validated on construction; see the module docstring."""

    family: str
    in_shape: tuple[int, ...]
    num_classes: int
    stages: tuple[Stage, ...] = ()
    stem: Layer | None = None
    hidden: tuple[Layer, ...] = ()
    readout: str = "flatten"
    shortcut: str = "A"
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Normalise containers so that specs built from JSON lists compare equal.
        object.__setattr__(self, "in_shape", tuple(int(s) for s in self.in_shape))
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "hidden", tuple(self.hidden))
        from grownet.spec.shapes import validate  # local: shapes imports this module

        validate(self)

    # ----------------------------------------------------------------- lookups
    def layer_ids(self) -> list[str]:
        """Ids of every conv/linear layer in forward order (classifier last)."""
        return [shape.id for shape in self.shapes()]

    def shapes(self) -> list:
        """Resolved per-layer shapes (see :class:`grownet.spec.shapes.LayerShape`).

        Resolved once per spec (it is frozen) and cached on it; the list is a copy."""
        return list(self._resolved()[0])

    def shape(self, layer_id: str):
        found = self._resolved()[1].get(layer_id)
        if found is None:
            raise SpecError(f"no layer {layer_id!r} in this spec; known layers: "
                            f"{', '.join(self.layer_ids())}")
        return found

    def _resolved(self) -> tuple[tuple, dict]:
        cached = self.__dict__.get("_shapes_cache")
        if cached is None:
            from grownet.spec.shapes import resolve

            shapes = tuple(resolve(self))
            cached = (shapes, {s.id: s for s in shapes})
            object.__setattr__(self, "_shapes_cache", cached)  # not a field: not compared
        return cached

    def __getstate__(self) -> dict[str, Any]:
        # the cache is derived: pickles (rank 0's broadcast decisions) leave it out
        return {k: v for k, v in self.__dict__.items() if k != "_shapes_cache"}

    def widths(self) -> dict[str, int]:
        """{layer id: output width} for every layer, classifier included."""
        return {s.id: s.out_ch for s in self.shapes()}

    def stage_of(self, layer_id: str) -> str | None:
        return self.shape(layer_id).stage

    # ------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        if not isinstance(data, dict):
            raise SpecError(f"an architecture description is a JSON object, got "
                            f"{type(data).__name__}; write it with ArchSpec.to_json()")
        try:
            stem = data.get("stem")
            return cls(
                family=data["family"],
                in_shape=tuple(data["in_shape"]),
                num_classes=int(data["num_classes"]),
                stages=tuple(
                    Stage(
                        id=st["id"],
                        layers=tuple(Layer(**ly) for ly in st.get("layers", ())),
                        blocks=tuple(Block(**b) for b in st.get("blocks", ())),
                        width=int(st.get("width", 0)),
                        pool=st.get("pool", "max"),
                    )
                    for st in data.get("stages", ())
                ),
                stem=Layer(**stem) if stem else None,
                hidden=tuple(Layer(**ly) for ly in data.get("hidden", ())),
                readout=data.get("readout", "flatten"),
                shortcut=data.get("shortcut", "A"),
                name=data.get("name", ""),
                meta=dict(data.get("meta", {})),
            )
        except SpecError:
            raise  # a well-formed but invalid spec: its own message says what to change
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise SpecError(f"malformed architecture description ({err}); "
                            "write it with ArchSpec.to_json()") from None

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"architecture JSON does not parse ({err})") from None
        return cls.from_dict(data)

    @classmethod
    def preset(cls, name: str, in_shape: tuple[int, ...] = (1, 28, 28),
               num_classes: int = 10) -> ArchSpec:
        """A named preset adapted to ``in_shape`` (see :data:`grownet.spec.PRESETS`)."""
        from grownet.spec.presets import preset

        return preset(name, in_shape=in_shape, num_classes=num_classes)

    # --------------------------------------------------------------- edits
    def replace(self, **changes: Any) -> ArchSpec:
        """A copy with fields changed (validated again)."""
        return replace(self, **changes)

    def fresh_id(self, prefix: str) -> str:
        """An id starting with ``prefix`` that no layer, block or stage uses yet."""
        taken = set(self.layer_ids())
        for st in self.stages:
            taken.add(st.id)
            taken.update(b.id for b in st.blocks)
        i = 0
        while f"{prefix}{i}" in taken or any(t.startswith(f"{prefix}{i}_") for t in taken):
            i += 1
        return f"{prefix}{i}"


RESERVED_IDS = ("input", "output")  # the architecture graph's end nodes


def check_id(ident: str, what: str) -> None:
    if not isinstance(ident, str) or not _ID_RE.match(ident):
        raise SpecError(f"{what} id {ident!r} is not valid: use a letter, then letters, "
                        "digits or '_'")
    if ident in RESERVED_IDS:
        raise SpecError(f"{what} id {ident!r} is reserved; choose another id")
