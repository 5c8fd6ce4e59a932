"""The one configuration of a run: defaults, TOML file, flags — in that order of strength.

The resolved configuration is saved as ``RUN/config.toml`` and is re-runnable with
``--config``. Every key is checked once, when the configuration is built: an unknown
key or a value of the wrong type or range is a :class:`UserError` naming the key and
what it accepts.

Growth settings are not defined here: they are the fields of
:class:`grownet.grow.GrowthPolicy`, the one source of their defaults and checks. Every
key this class does not know is carried as given in ``RunConfig.growth`` (in the file
they stand with the others, or in a ``[growth]`` table); the policy is built, and those
keys are checked, from there (``GrowthPolicy.from_config``).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from grownet.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

METHODS = ("sgd", "dessilbi", "dst")
SCHEDULES = ("cosine", "step", "constant")
AUGMENTS = ("auto", "none", "shift", "crop-flip")
INITS = ("auto", "default", "kaiming", "he")  # auto + grownet.nets.INITS
LAM_PACES = ("auto", "layer", "unit")
HIDDEN_LINEAR = ("neuron", "element")
GROWTH = "growth"  # the table of growth settings (GrowthPolicy's fields)


@dataclass(frozen=True)
class RunConfig:
    """Every knob of ``grownet grow`` / ``grownet train`` but the growth settings (see
    the module docstring). Checked on construction."""

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
    # how a fresh net is initialised, the same for every method (grownet.build's init);
    # auto: PyTorch's default for train (measured best for SGD, DessiLBI and DST), the
    # growth example's kaiming for grow (its growth policy is tuned on it)
    init: str = "auto"
    # share of the training set held out for validation (decisions: best checkpoints)
    val_fraction: float = 0.0
    # optimiser (DessiLBI; lr is also SGD's and DST's)
    lr: float = 0.1
    kappa: float = 1.0
    nu: float = 100.0  # the reference's; keeps the coupling pull a*kappa/nu weak
    lam: float = 0.0  # 0: paced from entry_epochs (see docs/optim.md, path pacing)
    momentum: float = 0.9
    weight_decay: float = 0.0
    entry_epochs: float = 3.0  # epochs after which a typical filter enters Γ
    # how λ is paced: "layer" (train): per layer, so that a typical filter of that layer
    # (its median initial norm) enters at entry_epochs; "unit" (grow): one λ, for a
    # filter of norm 1; "auto": layer for train, unit for grow
    lam_pace: str = "auto"
    hidden_linear: str = "neuron"  # DessiLBI groups of hidden linear layers (or element)
    alpha: float = 5e-4  # DST sparsity strength (when keep is 0)
    keep: float = 0.0  # DST: share of the masked weights kept at the end (0: fixed alpha)
    schedule: str = "cosine"  # lr schedule of train and of grow's fine-tuning
    # linear lr warm-up, per step, at the start of a run; -1: 1 epoch for train (a wide
    # fixed net can diverge in its first steps at lr 0.1), none for grow (the narrow start
    # is stable, and the path's pace assumes a constant lr)
    warmup_epochs: float = -1.0
    # execution (results do not depend on these beyond float rounding)
    compile: bool = False  # torch.compile the training forward; recompiled after growth
    tensorboard: bool = False  # also log to RUN/tensorboard (optional dependency)
    # growth settings as given ({GrowthPolicy field: value}); checked by GrowthPolicy
    growth: dict[str, Any] = field(default_factory=dict, compare=True)

    def __post_init__(self) -> None:
        if not isinstance(self.growth, dict):
            raise UserError(f"config key {GROWTH!r} must be a table of growth settings, "
                            f"got {self.growth!r}")
        for f in fields(self):
            if f.name != GROWTH:
                coerce(f.name, getattr(self, f.name), f.type, "the configuration")
        self._check()

    def _check(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise UserError(f"config key {key!r} = {getattr(self, key)!r}: {what}")

        need(self.command in ("grow", "train"), "command", "use 'grow' or 'train'")
        need(self.epochs >= 1, "epochs", "must be >= 1")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(self.augment in AUGMENTS, "augment", f"use one of {', '.join(AUGMENTS)}")
        need(self.method in METHODS, "method", f"use one of {', '.join(METHODS)}")
        need(self.schedule in SCHEDULES, "schedule", f"use one of {', '.join(SCHEDULES)}")
        need(self.lr > 0, "lr", "must be > 0")
        need(self.kappa > 0, "kappa", "must be > 0")
        need(self.nu > 0, "nu", "must be > 0")
        need(self.lam >= 0, "lam", "must be > 0 (or 0 to pace it from entry_epochs)")
        need(0 <= self.momentum < 1, "momentum", "must lie in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(self.entry_epochs > 0, "entry_epochs", "must be > 0")
        need(self.alpha >= 0, "alpha", "must be >= 0")
        need(self.keep == 0 or 0 < self.keep < 1, "keep", "must lie in (0, 1), or 0 for "
             "a fixed alpha")
        need(self.init in INITS, "init", f"use one of {', '.join(INITS)}")
        need(self.lam_pace in LAM_PACES, "lam_pace", f"use one of {', '.join(LAM_PACES)}")
        need(not (self.command == "grow" and self.lam_pace == "layer"), "lam_pace",
             "'layer' pacing is for train; grow paces one λ (use auto or unit)")
        need(self.hidden_linear in HIDDEN_LINEAR, "hidden_linear",
             f"use one of {', '.join(HIDDEN_LINEAR)}")
        need(0 <= self.val_fraction < 1, "val_fraction", "must lie in [0, 1)")
        need(self.warmup_epochs >= 0 or self.warmup_epochs == -1, "warmup_epochs",
             "must be >= 0 (or -1: 1 for train, 0 for grow)")

    @property
    def initialisation(self) -> str:
        """``grownet.build``'s init in force (``init`` with auto resolved)."""
        if self.init != "auto":
            return self.init
        return "default" if self.command == "train" else "kaiming"

    @property
    def lam_pacing(self) -> str:
        """λ pacing in force (``lam_pace`` with auto resolved)."""
        if self.lam_pace != "auto":
            return self.lam_pace
        return "layer" if self.command == "train" else "unit"

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
            if f.name != GROWTH:
                lines.append(f"{f.name} = {_toml_value(getattr(self, f.name))}")
        if self.growth:
            lines.append("# growth (grownet.grow.GrowthPolicy; keys left out take its "
                         "defaults)")
            lines += [f"{k} = {_toml_value(v)}" for k, v in self.growth.items()]
        return "\n".join(lines) + "\n"

    def updated(self, values: dict[str, Any], source: str) -> RunConfig:
        """A copy with ``values`` applied; ``source`` names where they came from (see
        :meth:`layered`)."""
        return self.layered([(values, source)])

    def layered(self, layers: list[tuple[dict[str, Any], str]]) -> RunConfig:
        """A copy with each ``(values, source)`` applied in turn (later ones win), built,
        hence checked, once. A key that is not a field here is a growth setting (so is
        ``"growth.KEY"``, and every key of a ``"growth"`` table): it goes into
        :attr:`growth` unchecked (see the module docstring)."""
        known = {f.name: f for f in fields(self)}
        merged = {f.name: getattr(self, f.name) for f in fields(self)}
        growth = dict(self.growth)
        for values, source in layers:
            for key, value in values.items():
                if key == GROWTH and isinstance(value, dict):
                    growth.update(value)
                elif key.startswith(f"{GROWTH}."):
                    growth[key.removeprefix(f"{GROWTH}.")] = value
                elif key in known and key != GROWTH:
                    merged[key] = coerce(key, value, known[key].type, source)
                else:
                    growth[key] = value
        merged[GROWTH] = growth
        return RunConfig(**merged)

    def replace(self, **values: Any) -> RunConfig:
        """A copy with fields replaced (checked again)."""
        return dataclasses.replace(self, **values)

    @classmethod
    def from_toml(cls, path: str | Path, base: RunConfig | None = None) -> RunConfig:
        return (base or cls()).updated(read_toml(path), str(path))


def read_toml(path: str | Path) -> dict[str, Any]:
    """The table of a TOML file; a :class:`UserError` when it is missing or invalid."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} not found; pass an existing "
                        "--config FILE.toml") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"config file {path} is not valid TOML ({err})") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def coerce(key: str, value: Any, type_name: Any, source: str) -> Any:
    """``value`` as the config type ``type_name`` (``"int"``, ``"float"``, ``"bool"``,
    ``"str"``); a :class:`UserError` naming ``key`` and ``source`` when it is not one."""
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
