"""The one configuration of a run: defaults, TOML file, flags — in that order of strength.

The resolved configuration is saved as ``RUN/config.toml`` and is re-runnable with
``--config``. Every key is checked: an unknown key or a value of the wrong type or
range is a :class:`UserError` naming the key and what it accepts.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping
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
    finetune_epochs: int = -1  # -1: min(6, epochs // 2) (see .finetune)
    carry_state: bool = True  # carry V, Γ, momentum across growth (False: reset)
    widen_init: str = "zero"
    # execution (results do not depend on these beyond float rounding)
    compile: bool = False  # torch.compile the training forward; recompiled after growth
    tensorboard: bool = False  # also log to RUN/tensorboard (optional dependency)

    # ------------------------------------------------------------------ checks
    def validate(self, names: Mapping[str, str] | None = None) -> RunConfig:
        """Check every value (:data:`RULES`); returns ``self``.

        Parameters
        ----------
        names
            Where each key was set: the flag as typed (``"--from"``) or the config
            file's path; messages name a key that way. Keys not in it are named by
            their flag (:data:`RULES`).

        Raises
        ------
        UserError
            One line: the value, the flag (or file) that set it, what it accepts.
        """
        for f in fields(self):
            rule, value = RULES[f.name], getattr(self, f.name)
            kind = _type_name(f.type)
            if kind == "float" and not math.isfinite(value):
                what = f"a finite number ({rule.accepts})"
            elif kind == "str" and not _text(value):
                what = "text that can be written as UTF-8"
            elif not rule.ok(value):
                what = rule.accepts
            else:
                continue
            raise UserError(f"{self.describe(f.name, names)}: must be {what}")
        if self.command == "grow" and self.finetune_epochs >= self.epochs:
            raise UserError(f"{self.describe('finetune_epochs', names)} leaves no epoch to "
                            f"grow in {self.describe('epochs', names)}; pass a smaller "
                            f"{_flag('finetune_epochs', names)} (or leave it out: it "
                            "shrinks to fit)")
        return self

    def describe(self, key: str, names: Mapping[str, str] | None = None) -> str:
        """``--epochs 0`` or ``epochs = 0 in FILE``: a key and its value, named as the
        user set it (see :meth:`validate`)."""
        value = getattr(self, key)
        where = (names or {}).get(key) or RULES[key].flag
        if where.startswith("-"):  # quoted when it would not read as one word
            plain = not isinstance(value, str) or (value.isprintable() and value.strip()
                                                   and " " not in value)
            return f"{where} {value if plain else repr(value)}"
        return f"{key} = {toml_value(value)}" + (f" in {where}" if where else "")

    def check_start(self, spec: Any, params: int, macs: int) -> None:
        """Settings that must fit the start architecture (budgets, batch size,
        ``max_width``).

        Raises
        ------
        UserError
            A budget below the start's cost, a batch of one for a BatchNorm over 1×1
            maps, or (grow) ``max_width`` below the widest layer: growth could only
            ignore it.
        """
        for key, have in (("max_params", params), ("max_macs", macs)):
            budget = getattr(self, key)
            if budget and have > budget:
                raise UserError(f"{self.describe(key)} is smaller than the start "
                                f"{spec.name!r} ({have:,}); raise it or start smaller")
        single = next((s.id for s in spec.shapes() if s.bn and s.out_hw == (1, 1)), None)
        if single is not None and self.batch_size < 2:  # one value per channel to normalise
            raise UserError(f"{self.describe('batch_size')}: the BatchNorm of layer "
                            f"{single} cannot train on a single sample; pass --batch-size "
                            "2 or more")
        if self.command != "grow":
            return
        widths = {s.id: s.out_ch for s in spec.shapes() if s.role != "head"}
        layer = max(widths, key=widths.get, default=None)
        if layer is not None and widths[layer] > self.max_width:
            raise UserError(f"{self.describe('max_width')} is narrower than the start "
                            f"{spec.name!r} ({layer} has {widths[layer]} filters); pass "
                            f"--max-width {widths[layer]} or more, or start narrower")

    @property
    def finetune(self) -> int:
        """Fine-tuning epochs in force: ``finetune_epochs``, or with -1 (the default)
        ``min(6, epochs // 2)``, so a short ``grow --epochs N`` still has room to grow."""
        if self.finetune_epochs >= 0:
            return self.finetune_epochs
        return min(6, self.epochs // 2)

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
            lines.append(f"{f.name} = {toml_value(getattr(self, f.name))}")
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
        """``base`` (default: the defaults) with the keys of the TOML file ``path``."""
        return (base or cls()).updated(read_toml(path), str(path))


def read_toml(path: str | Path) -> dict[str, Any]:
    """The keys of a TOML file; any problem reading it is one :class:`UserError`."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} not found; pass an existing "
                        "--config FILE.toml") from None
    except IsADirectoryError:
        raise UserError(f"config file {path} is a folder; pass a TOML file (e.g. "
                        "RUN/config.toml)") from None
    except OSError as err:
        raise UserError(f"cannot read config file {path} ({err.strerror or err}); check "
                        "its permissions") from None
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not text (not UTF-8); pass a TOML "
                        "file") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"config file {path} is not valid TOML ({err})") from None


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    # a TOML basic string: quotes, backslashes and control characters escaped
    return '"' + "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20
                                                  or ord(c) == 0x7F else c)
                         for c in str(value)) + '"'


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _text(value: str) -> bool:
    """Writable as UTF-8 (a path decoded from undecodable bytes is not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _type_name(type_: Any) -> str:
    return getattr(type_, "__name__", str(type_))


#: what a type error says a key must be
_TYPE_TEXT = {"bool": "true or false", "int": "an integer", "float": "a number",
              "str": "a string (in quotes)"}


def _coerce(key: str, value: Any, type_: Any, source: str) -> Any:
    type_name = _type_name(type_)
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[type_name]
    if not ok:
        raise UserError(f"{key} = {value!r} in {source}: must be {_TYPE_TEXT[type_name]}")
    return float(value) if type_name == "float" else value


# ---------------------------------------------------------------------- the rules
@dataclass(frozen=True)
class Rule:
    """What one key accepts, and the flag that sets it (``""``: no flag)."""

    flag: str
    accepts: str
    ok: Callable[[Any], bool] = lambda value: True


def _at_least(low: float, kind: str = "an integer", note: str = "") -> tuple[str, Callable]:
    return f"{kind} >= {low:g}{note}", lambda v: v >= low


def _choice(*options: str) -> tuple[str, Callable]:
    return f"one of {', '.join(options)}", lambda v: v in options


def _positive() -> tuple[str, Callable]:
    return "a number > 0", lambda v: v > 0


def _flag(key: str, names: Mapping[str, str] | None = None) -> str:
    name = (names or {}).get(key, "")
    return name if name.startswith("-") else RULES[key].flag or key


#: every key: its flag and what it accepts (the one table messages are made from)
RULES: dict[str, Rule] = {key: Rule(flag, *check) for key, flag, check in (
    ("command", "", _choice("grow", "train")),
    ("data", "--data", ("a dataset name", lambda v: bool(v.strip()))),
    ("data_root", "--data-root", ("a folder", lambda v: True)),
    ("seed", "--seed", (f"an integer from 0 to {2**63 - 1}", lambda v: 0 <= v < 2**63)),
    ("device", "--device", ("auto, cpu, cuda or cuda:N",
                            lambda v: v in ("auto", "cpu", "cuda") or v.startswith("cuda:"))),
    ("epochs", "--epochs", _at_least(1)),
    ("batch_size", "--batch-size", _at_least(1)),
    ("augment", "--augment", _choice("auto", "none", "shift", "crop-flip")),
    ("start", "--from", ("a preset, an arch.json or a run directory", lambda v: bool(v))),
    ("arch", "--arch", ("a preset or an arch.json", lambda v: bool(v))),
    ("method", "--method", _choice(*METHODS)),
    ("lr", "--lr", _positive()),
    ("kappa", "--kappa", _positive()),
    ("nu", "--nu", _positive()),
    ("lam", "--lam", _at_least(0, "a number", " (0: paced from --entry-epochs)")),
    ("momentum", "--momentum", ("a number in [0, 1)", lambda v: 0 <= v < 1)),
    ("weight_decay", "--weight-decay", _at_least(0, "a number")),
    ("entry_epochs", "--entry-epochs", _positive()),
    ("alpha", "--alpha", _at_least(0, "a number")),
    ("schedule", "--schedule", _choice(*SCHEDULES)),
    ("warmup_epochs", "--warmup-epochs", ("a number >= 0 (or -1: 1 for train, 0 for grow)",
                                          lambda v: v >= 0 or v == -1)),
    ("tau", "--tau", ("a number in (0, 1]", lambda v: 0 < v <= 1)),
    ("epochs_per_stage", "--epochs-per-stage", _at_least(1)),
    ("grow_num", "--grow-num", _at_least(1)),
    ("grow_ratio", "--grow-ratio", _at_least(1, "a number")),
    ("depth", "--no-depth", ("true or false", lambda v: True)),
    ("depth_patience", "--depth-patience", _at_least(1)),
    ("max_width", "--max-width", _at_least(1)),
    ("max_params", "--max-params", _at_least(0, note=" (0: no budget)")),
    ("max_macs", "--max-macs", _at_least(0, note=" (0: no budget)")),
    ("max_stages", "--max-stages", _at_least(1)),
    ("finetune_epochs", "--finetune-epochs", ("an integer >= 0 (or -1: min(6, epochs // 2))",
                                              lambda v: v >= -1)),
    ("carry_state", "--reset-state", ("true or false", lambda v: True)),
    ("widen_init", "--widen-init", _choice(*WIDEN_INITS)),
    ("compile", "--compile", ("true or false", lambda v: True)),
    ("tensorboard", "--tensorboard", ("true or false", lambda v: True)),
)}
