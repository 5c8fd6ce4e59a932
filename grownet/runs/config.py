"""The one configuration of a run: defaults, TOML file, flags — in that order of strength.

The resolved configuration is saved as ``RUN/config.toml`` and is re-runnable with
``--config``. Every key is checked: an unknown key or a value of the wrong type or
range is a :class:`UserError` naming the key and what it accepts.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from grownet.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

METHODS = ("sgd", "dessilbi", "dst")
SCHEDULES = ("cosine", "step", "constant")
WIDEN_INITS = ("zero", "split", "random")


@dataclass
class RunConfig:
    """Every knob of ``grownet grow`` / ``grownet train`` (see docs/cli.md for each)."""

    # what and where
    command: str = "grow"
    data: str = "mnist5k"
    data_root: str = ""
    seed: int = 0
    device: str = "auto"
    epochs: int = 30  # grow: the most epochs in all, fine-tuning included
    batch_size: int = 128
    augment: str = "auto"  # auto: the dataset's own (shift for MNIST-like, crop-flip CIFAR)
    start: str = "seed"  # grow: the narrow start preset
    arch: str = "lenet5"  # train: the fixed backbone preset
    method: str = "dessilbi"  # train: sgd | dessilbi | dst (grow always uses dessilbi)
    # optimiser (DessiLBI; lr is also SGD's and DST's)
    lr: float = 0.1
    kappa: float = 1.0
    nu: float = 100.0  # the reference's; keeps the coupling pull a*kappa/nu weak
    lam: float = 0.0  # 0: paced from entry_epochs (see docs/optim.md, path pacing)
    momentum: float = 0.9
    weight_decay: float = 0.0
    entry_epochs: float = 3.0  # epochs after which a filter of norm 1 enters Γ
    alpha: float = 5e-4  # DST sparsity strength
    schedule: str = "cosine"  # lr schedule of train and of grow's fine-tuning
    # linear lr warm-up, per step, at the start of a run; -1: 1 epoch for train (a wide
    # fixed net can diverge in its first steps at lr 0.1), none for grow (the narrow start
    # is stable, and the path's pace assumes a constant lr)
    warmup_epochs: float = -1.0
    # growth
    tau: float = 0.8
    epochs_per_stage: int = 3
    grow_num: int = 8
    grow_ratio: float = 1.5
    depth: bool = True
    depth_patience: int = 2
    max_width: int = 128
    max_params: int = 0  # 0: no budget
    max_macs: int = 0
    max_stages: int = 6
    finetune_epochs: int = 6
    carry_state: bool = True  # carry V, Γ, momentum across growth (False: reset)
    widen_init: str = "zero"
    # execution (results do not depend on these beyond float rounding)
    compile: bool = False  # torch.compile the training forward; recompiled after growth
    tensorboard: bool = False  # also log to RUN/tensorboard (optional dependency)

    # ------------------------------------------------------------------ checks
    def validate(self) -> RunConfig:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise UserError(f"config key {key!r} = {getattr(self, key)!r}: {what}")

        need(self.command in ("grow", "train"), "command", "use 'grow' or 'train'")
        need(self.epochs >= 1, "epochs", "must be >= 1")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(self.augment in ("auto", "none", "shift", "crop-flip"), "augment",
             "use auto, none, shift or crop-flip")
        need(self.method in METHODS, "method", f"use one of {', '.join(METHODS)}")
        need(self.schedule in SCHEDULES, "schedule", f"use one of {', '.join(SCHEDULES)}")
        need(self.widen_init in WIDEN_INITS, "widen_init", f"use one of {WIDEN_INITS}")
        need(self.lr > 0, "lr", "must be > 0")
        need(self.kappa > 0, "kappa", "must be > 0")
        need(self.nu > 0, "nu", "must be > 0")
        need(self.lam >= 0, "lam", "must be > 0 (or 0 to pace it from entry_epochs)")
        need(0 <= self.momentum < 1, "momentum", "must lie in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(self.entry_epochs > 0, "entry_epochs", "must be > 0")
        need(self.alpha >= 0, "alpha", "must be >= 0")
        need(self.warmup_epochs >= 0 or self.warmup_epochs == -1, "warmup_epochs",
             "must be >= 0 (or -1: 1 for train, 0 for grow)")
        need(0 < self.tau <= 1, "tau", "must lie in (0, 1]")
        need(self.epochs_per_stage >= 1, "epochs_per_stage", "must be >= 1")
        need(self.grow_num >= 1, "grow_num", "must be >= 1")
        need(self.grow_ratio >= 1, "grow_ratio", "must be >= 1")
        need(self.depth_patience >= 1, "depth_patience", "must be >= 1")
        need(self.max_width >= 1, "max_width", "must be >= 1")
        need(self.max_params >= 0, "max_params", "must be >= 0 (0: no budget)")
        need(self.max_macs >= 0, "max_macs", "must be >= 0 (0: no budget)")
        need(self.max_stages >= 1, "max_stages", "must be >= 1")
        need(0 <= self.finetune_epochs < self.epochs or self.command == "train",
             "finetune_epochs", "must be >= 0 and smaller than epochs")
        return self

    @property
    def warmup(self) -> float:
        """Warm-up epochs in force (``warmup_epochs`` with -1 resolved)."""
        if self.warmup_epochs >= 0:
            return self.warmup_epochs
        return 1.0 if self.command == "train" else 0.0

    # --------------------------------------------------------------- (de)serialise
    def to_toml(self) -> str:
        lines = ["# grownet resolved configuration; re-run with --config this-file"]
        for f in fields(self):
            lines.append(f"{f.name} = {_toml_value(getattr(self, f.name))}")
        return "\n".join(lines) + "\n"

    def updated(self, values: dict[str, Any], source: str) -> RunConfig:
        """A copy with ``values`` applied; ``source`` names where they came from."""
        known = {f.name: f for f in fields(self)}
        out = dataclasses.replace(self)
        for key, value in values.items():
            if key not in known:
                raise UserError(f"unknown config key {key!r} in {source}; known keys: "
                                f"{', '.join(known)}")
            setattr(out, key, _coerce(key, value, known[key].type, source))
        return out

    @classmethod
    def from_toml(cls, path: str | Path, base: RunConfig | None = None) -> RunConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"config file {path} not found; pass an existing "
                            "--config FILE.toml") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"config file {path} is not valid TOML ({err})") from None
        return (base or cls()).updated(data, str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _coerce(key: str, value: Any, type_name: Any, source: str) -> Any:
    type_name = getattr(type_name, "__name__", str(type_name))
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[type_name]
    if not ok:
        raise UserError(f"config key {key!r} in {source} must be a {type_name}, "
                        f"got {value!r}")
    return float(value) if type_name == "float" else value
