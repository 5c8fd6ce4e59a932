"""How a tracker lays its layers out in flat device vectors."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

#: Entry epoch the reference prune order (ALGORITHMS A7) gives never-selected groups.
NEVER_EPOCH = 2000


@dataclass(frozen=True)
class LayerSlot:
    name: str
    param: Tensor
    structure: str  # "filter" or "element"
    shape: tuple[int, ...]  # support shape: (out,) for filter, param shape for element
    offset: int
    numel: int


def layer_name(name: str) -> str:
    return name.removesuffix(".weight")


def numel(shape: list[int] | tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def view(flat: Tensor, lay: LayerSlot) -> Tensor:
    return flat[lay.offset : lay.offset + lay.numel].view(lay.shape)
