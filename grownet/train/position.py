"""Where a job stands (checkpoint-safe primitives), and the architecture it starts from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grownet.data import Dataset
from grownet.errors import UserError
from grownet.runs import load_spec
from grownet.spec import ArchSpec, preset


@dataclass
class Position:
    """Where a job stands; everything here is a primitive (checkpoint-safe)."""

    epoch: int = 0  # epochs finished
    step: int = 0
    phase: str = "grow"  # grow | finetune | train
    phase_start: int = 0  # first epoch of the phase
    phase_epochs: int = 0  # length of the phase (finetune / train)
    lam: float = 0.0  # DessiLBI's lambda, fixed at the start (paced or given)
    wall: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def start_spec(name: str, data: Dataset) -> ArchSpec:
    """A preset adapted to the data, or an ``arch.json`` file (whose input shape and
    classes must match the data)."""
    if not name.endswith(".json"):
        return preset(name, in_shape=data.in_shape, num_classes=data.num_classes)
    spec = load_spec(name)
    if spec.in_shape != tuple(data.in_shape) or spec.num_classes != data.num_classes:
        raise UserError(f"{name} is for inputs {spec.in_shape} with {spec.num_classes} "
                        f"classes, but {data.name} has {tuple(data.in_shape)} and "
                        f"{data.num_classes}; use a matching arch.json or a preset")
    return spec
