"""Where a job stands (checkpoint-safe primitives), and the architecture it starts from."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grownet.data import Dataset
from grownet.errors import UserError
from grownet.runs import arch_json_of, load_spec
from grownet.spec import PRESETS, ArchSpec, preset


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
    """A preset adapted to the data, an ``arch.json`` file, or a run directory (its final
    architecture, else its latest stage's); a file's input shape and classes must match
    the data."""
    if name in PRESETS:
        return preset(name, in_shape=data.in_shape, num_classes=data.num_classes)
    path = arch_json_of(name)
    if path is None:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        what = ("a folder without final/arch.json or stages/NNN/arch.json"
                if Path(name).is_dir() else "neither a preset nor an existing file")
        raise UserError(f"{name!r} is {what}; {hint}choose a preset ({', '.join(PRESETS)}), "
                        "an arch.json file or a run directory")
    spec = load_spec(path)
    if spec.in_shape != tuple(data.in_shape) or spec.num_classes != data.num_classes:
        raise UserError(f"{path} is for inputs {spec.in_shape} with {spec.num_classes} "
                        f"classes, but {data.name} has {tuple(data.in_shape)} and "
                        f"{data.num_classes}; use a matching arch.json or a preset")
    return spec
