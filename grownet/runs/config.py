"""The one configuration of a run: defaults, TOML file, flags — in that order of strength.

The resolved configuration is saved as ``RUN/config.toml`` and is re-runnable with
``--config``. Every key is checked once, when the configuration is built: a value of
the wrong type or range is a :class:`UserError` naming the key as the user set it (the
flag as typed, or ``key = value in FILE``) and what it accepts (:data:`RULES`, the one
table messages are made from).

Growth settings are not defined here: they are the fields of
:class:`grownet.grow.GrowthPolicy`, the one source of their defaults and checks. Every
key this class does not know is carried as given in ``RunConfig.growth`` (in the file
they stand with the others); the policy is built, and those keys are checked, from
there (``GrowthPolicy.from_config``), which names an unknown key.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import InitVar, dataclass, field, fields
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
GROWTH = "growth"  # the field that carries the growth settings (GrowthPolicy's fields)
#: where each key was set: the flag as typed (``"--from"``) or a config file's path
Names = Mapping[str, str]


@dataclass(frozen=True)
class RunConfig:
    """Every knob of ``grownet grow`` / ``grownet train`` but the growth settings (see
    the module docstring). Checked on construction; ``names`` (not stored) says where
    each key was set, for the messages."""

    # what and where
    command: str = "grow"
    data: str = "mnist5k"
    data_root: str = ""
    seed: int = 0
    device: str = "auto"
    epochs: int = 30  # grow: the most epochs in all, fine-tuning included
    # -1: 64 for train (LeNet-5, without BatchNorm, needs the steps on mnist5k: 98.2 % at
    # 64 against 97.9 % at 128), 128 for grow (its policy is measured at 128)
    batch_size: int = -1
    augment: str = "auto"  # auto: the dataset's own (shift for MNIST-like, crop-flip CIFAR)
    # share of the training images held out for the run's decisions (growth, stopping);
    # -1: 0.1 for grow, none for train. The test split is read for the report only.
    val_frac: float = -1.0
    # grow: the narrow start preset; seed-strided (a 5x5 stride-2 stem, 38 k MACs on MNIST)
    # measured best on mnist5k's validation split (docs/results.md)
    start: str = "seed-strided"
    arch: str = "lenet5"  # train: the fixed backbone preset
    method: str = "dessilbi"  # train: sgd | dessilbi | dst (grow always uses dessilbi)
    # how a fresh net is initialised, the same for every method and for growth
    # (grownet.build's init); auto: PyTorch's default (measured best for SGD, DessiLBI and
    # DST; and every conv filter starts at the same norm, about 0.58, whatever its
    # width, so Γ's support tells growth which layers grew their filters)
    init: str = "auto"
    # optimiser (DessiLBI; lr is also SGD's and DST's)
    # 0.05: good with and without BatchNorm (LeNet-5 by SGD on mnist5k: 0.1 gives 96.6-97.0 %,
    # 0.05 98.1-98.2 %, validation chose it; docs/results.md)
    lr: float = 0.05
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
    growth: dict[str, Any] = field(default_factory=dict)
    names: InitVar[Names | None] = None

    def __post_init__(self, names: Names | None) -> None:
        if not isinstance(self.growth, dict):
            raise UserError(f"config key {GROWTH!r} must be a table of growth settings, "
                            f"got {self.growth!r}")
        check(self, RULES, names, [f for f in fields(self) if f.name != GROWTH])
        if self.command == "grow" and self.lam_pace == "layer":
            raise UserError(f"{self.describe('lam_pace', names)}: 'layer' pacing is for "
                            "train; grow paces one λ for the whole net (use auto or unit)")

    # ------------------------------------------------------------------ checks
    def describe(self, key: str, names: Names | None = None) -> str:
        """``--epochs 0`` or ``epochs = 0 in FILE``: a key and its value, named as the
        user set it."""
        return describe(key, getattr(self, key), RULES[key].flag, names)

    def check_start(self, spec: Any) -> None:
        """Settings that must fit the start architecture: a batch of one cannot train
        a BatchNorm over 1×1 maps."""
        single = next((s.id for s in spec.shapes() if s.bn and s.out_hw == (1, 1)), None)
        if single is not None and self.batch < 2:  # one value per channel to normalise
            raise UserError(f"{self.describe('batch_size')}: the BatchNorm of layer "
                            f"{single} cannot train on a single sample; pass --batch-size "
                            "2 or more")

    def resolved(self) -> RunConfig:
        """This configuration with every ``auto`` / ``-1`` value replaced by the one in
        force, as a run records it: a run derived from its file (a backbone from a grow
        run's) starts the same way."""
        return self.replace(val_frac=self.validation, init=self.initialisation,
                            lam_pace=self.lam_pacing, batch_size=self.batch)

    @property
    def batch(self) -> int:
        """The training batch size in force (``batch_size`` with -1 resolved)."""
        if self.batch_size > 0:
            return self.batch_size
        return 64 if self.command == "train" else 128

    @property
    def initialisation(self) -> str:
        """``grownet.build``'s init in force (``init`` with auto resolved)."""
        return "default" if self.init == "auto" else self.init

    @property
    def lam_pacing(self) -> str:
        """λ pacing in force (``lam_pace`` with auto resolved)."""
        if self.lam_pace != "auto":
            return self.lam_pace
        return "layer" if self.command == "train" else "unit"

    @property
    def validation(self) -> float:
        """The validation fraction in force (``val_frac`` with -1 resolved)."""
        if self.val_frac >= 0:
            return self.val_frac
        return 0.1 if self.command == "grow" else 0.0

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
                lines.append(f"{f.name} = {toml_value(getattr(self, f.name))}")
        if self.growth:
            lines.append("# growth (grownet.grow.GrowthPolicy; keys left out take its "
                         "defaults)")
            lines += [f"{k} = {toml_value(v)}" for k, v in self.growth.items()]
        return "\n".join(lines) + "\n"

    def updated(self, values: dict[str, Any], source: str) -> RunConfig:
        """A copy with ``values`` applied; ``source`` names where they came from (see
        :meth:`layered`)."""
        return self.layered([(values, source)])

    def layered(self, layers: list[tuple[dict[str, Any], str | Names]]) -> RunConfig:
        """A copy with each ``(values, where)`` applied in turn (later ones win), built,
        hence checked, once. ``where`` is the file the values came from, or per key the
        flag as typed. A key that is not a field here is a growth setting (so is every
        key of a ``growth`` table): it goes into :attr:`growth` unchecked."""
        known = {f.name: f for f in fields(self)}
        merged = {f.name: getattr(self, f.name) for f in fields(self)}
        growth, names = dict(self.growth), {}
        for values, where in layers:
            for key, value in values.items():
                name = where.get(key, "") if isinstance(where, Mapping) else where
                if key == GROWTH and isinstance(value, dict):
                    growth.update(value)
                    names.update({k: name for k in value})
                    continue
                names[key] = name
                if key in known and key != GROWTH:
                    merged[key] = coerce(key, value, known[key].type, name)
                else:
                    growth[key] = value
        merged[GROWTH] = growth
        return RunConfig(**merged, names=names)

    def replace(self, **values: Any) -> RunConfig:
        """A copy with fields replaced (checked again)."""
        return dataclasses.replace(self, **values)

    @classmethod
    def from_toml(cls, path: str | Path, base: RunConfig | None = None) -> RunConfig:
        """``base`` (default: the defaults) with the keys of the TOML file ``path``; a bad
        value is named as a key of that file."""
        return (base or cls()).updated(read_toml(path), str(path))


# ------------------------------------------------------------------ checking values
@dataclass(frozen=True)
class Rule:
    """What one key accepts, and the flag that sets it (``""``: no flag)."""

    flag: str
    accepts: str
    ok: Callable[[Any], bool] = lambda value: True


def at_least(low: float, kind: str = "an integer", note: str = "") -> tuple[str, Callable]:
    return f"{kind} >= {low:g}{note}", lambda v: v >= low


def choice(*options: str) -> tuple[str, Callable]:
    return f"one of {', '.join(options)}", lambda v: v in options


def positive() -> tuple[str, Callable]:
    return "a number > 0", lambda v: v > 0


def describe(key: str, value: Any, flag: str, names: Names | None = None) -> str:
    """``--epochs 0`` or ``epochs = 0 in FILE``: a key and its value, named as the user
    set it (``names``; the key's own ``flag`` when it was not given)."""
    where = (names or {}).get(key) or flag
    if where.startswith("-"):  # quoted when it would not read as one word
        plain = not isinstance(value, str) or (value.isprintable() and value.strip()
                                               and " " not in value)
        return f"{where} {value if plain else repr(value)}"
    return f"{key} = {toml_value(value)}" + (f" in {where}" if where else "")


def check(obj: Any, rules: Mapping[str, Rule], names: Names | None,
          keys: list[dataclasses.Field]) -> None:
    """Check the fields ``keys`` of ``obj`` against ``rules``; the first bad value is a
    :class:`UserError`: the value, where it was set (``names``; ``None``: made in
    Python, so named by its key), and what the key accepts."""
    for f in keys:
        rule, value = rules[f.name], getattr(obj, f.name)
        if value is None:  # an optional setting left out
            continue
        kind = _type_name(f.type)
        if "float" in kind and isinstance(value, float) and not math.isfinite(value):
            what = f"a finite number ({rule.accepts})"
        elif kind == "str" and not _text(value):
            what = "text that can be written as UTF-8"
        elif not rule.ok(value):
            what = rule.accepts
        else:
            continue
        shown = (f"{f.name} = {toml_value(value)}" if names is None else
                 describe(f.name, value, rule.flag, names))
        raise UserError(f"{shown}: must be {what}")


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
    if isinstance(value, Mapping):  # an inline table (a per-layer tau)
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
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


def coerce(key: str, value: Any, type_: Any, where: str) -> Any:
    """``value`` as the config type ``type_`` (``"int"``, ``"float"``, ``"bool"``,
    ``"str"``); a :class:`UserError` naming ``key`` and ``where`` when it is not one."""
    type_name = _type_name(type_)
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[type_name]
    if not ok:
        shown = f"{where} {value!r}" if where.startswith("-") else \
            f"{key} = {value!r}" + (f" in {where}" if where else "")
        raise UserError(f"{shown}: must be {_TYPE_TEXT[type_name]}")
    return float(value) if type_name == "float" else value


#: every key: its flag and what it accepts (the one table messages are made from)
RULES: dict[str, Rule] = {key: Rule(flag, *rule) for key, flag, rule in (
    ("command", "", choice("grow", "train")),
    ("data", "--data", ("a dataset name", lambda v: bool(v.strip()))),
    ("data_root", "--data-root", ("a folder", lambda v: True)),
    ("seed", "--seed", (f"an integer from 0 to {2**63 - 1}", lambda v: 0 <= v < 2**63)),
    ("device", "--device", ("auto, cpu, cuda or cuda:N",
                            lambda v: v in ("auto", "cpu", "cuda") or v.startswith("cuda:"))),
    ("epochs", "--epochs", at_least(1)),
    ("batch_size", "--batch-size", ("an integer >= 1 (or -1: 64 for train, 128 for grow)",
                                    lambda v: v >= 1 or v == -1)),
    ("augment", "--augment", choice(*AUGMENTS)),
    ("val_frac", "--val-frac", ("a number in [0, 1) (or -1: 0.1 for grow, 0 for train)",
                                lambda v: 0 <= v < 1 or v == -1)),
    ("start", "--from", ("a preset, an arch.json or a run directory", lambda v: bool(v))),
    ("arch", "--arch", ("a preset or an arch.json", lambda v: bool(v))),
    ("method", "--method", choice(*METHODS)),
    ("init", "--init", choice(*INITS)),
    ("lr", "--lr", positive()),
    ("kappa", "--kappa", positive()),
    ("nu", "--nu", positive()),
    ("lam", "--lam", at_least(0, "a number", " (0: paced from --entry-epochs)")),
    ("momentum", "--momentum", ("a number in [0, 1)", lambda v: 0 <= v < 1)),
    ("weight_decay", "--weight-decay", at_least(0, "a number")),
    ("entry_epochs", "--entry-epochs", positive()),
    ("lam_pace", "--lam-pace", choice(*LAM_PACES)),
    ("hidden_linear", "--hidden-linear", choice(*HIDDEN_LINEAR)),
    ("alpha", "--alpha", at_least(0, "a number")),
    ("keep", "--keep", ("a number in (0, 1), or 0 for a fixed --alpha",
                        lambda v: v == 0 or 0 < v < 1)),
    ("schedule", "--schedule", choice(*SCHEDULES)),
    ("warmup_epochs", "--warmup-epochs", ("a number >= 0 (or -1: 1 for train, 0 for grow)",
                                          lambda v: v >= 0 or v == -1)),
    ("compile", "--compile", ("true or false", lambda v: True)),
    ("tensorboard", "--tensorboard", ("true or false", lambda v: True)),
)}
