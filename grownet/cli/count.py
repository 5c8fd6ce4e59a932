"""``grownet count PRESET|RUN``: params and MACs, per layer and in total."""

from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path

from grownet.cost import count
from grownet.errors import UserError
from grownet.runs import arch_json_of, atomic_write_text, load_spec, refuse_existing
from grownet.spec import PRESETS, ArchSpec, preset

DEFAULT_IN_SHAPE = (1, 28, 28)
DEFAULT_CLASSES = 10

_EXAMPLES = """\
examples:
  grownet count resnet56 --in-shape 3,32,32
  grownet count runs/grow-20250101-120000            # final/arch.json, else the last stage
  grownet count runs/grow-20250101-120000/stages/002/arch.json --csv layers.csv
"""


def in_shape_arg(text: str) -> tuple[int, int, int]:
    """Parse ``C,H,W`` (or ``CxHxW``) into three positive ints."""
    parts = [p for p in re.split(r"[,x\s]+", text.strip()) if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W with positive integers (e.g. 3,32,32), "
                                         f"got {text!r}")
    return shape  # type: ignore[return-value]


def load_target(target: str, in_shape: tuple[int, ...] | None,
                classes: int | None) -> ArchSpec:
    """The spec ``target`` names: a preset (adapted to ``in_shape``/``classes``, with the
    defaults 1,28,28 and 10), or a run directory / arch.json (its own input shape and
    classes unless given)."""
    if target in PRESETS:
        return preset(target, in_shape=in_shape or DEFAULT_IN_SHAPE,
                      num_classes=DEFAULT_CLASSES if classes is None else classes)
    arch = arch_json_of(target)
    if arch is None:
        if Path(target).is_dir():
            raise UserError(f"run directory {target!r} has no final/arch.json or "
                            "stages/NNN/arch.json; point at a run that finished a stage")
        close = difflib.get_close_matches(target, PRESETS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"{target!r} is neither a preset nor an existing path; {hint}choose a "
                        f"preset ({', '.join(PRESETS)}), a run directory or an arch.json file")
    spec = load_spec(arch)
    changes: dict[str, object] = {}
    if in_shape is not None and tuple(in_shape) != spec.in_shape:
        changes["in_shape"] = tuple(in_shape)
    if classes is not None and classes != spec.num_classes:
        changes["num_classes"] = classes
    return spec.replace(**changes) if changes else spec


def run(args: argparse.Namespace) -> int:
    if args.classes is not None and args.classes < 1:
        raise UserError(f"--classes must be >= 1, got {args.classes}")
    if args.csv:  # refused before anything is printed
        refuse_existing(args.csv, args.force, "--csv", new_folders=False)
    spec = load_target(args.target, args.in_shape, args.classes)
    table = count(spec)
    print(table.format_table())
    if args.csv:
        atomic_write_text(args.csv, table.to_frame().to_csv(index=False))
        print(f"wrote {args.csv}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``count`` to the ``grownet`` command."""
    p = subparsers.add_parser(
        "count", help="params and MACs of a preset or a run, per layer and in total",
        description="Print every conv/linear layer's params (weights, biases, BatchNorm "
        "affine) and MACs for one sample (conv and linear only), and the totals.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="PRESET|RUN",
                   help=f"a preset ({', '.join(PRESETS)}), a run directory (final/arch.json, "
                   "else its latest stages/NNN/arch.json) or an arch.json file")
    p.add_argument("--in-shape", type=in_shape_arg, default=None, metavar="C,H,W",
                   help="input shape (default: 1,28,28 for a preset; a run's own)")
    p.add_argument("--classes", type=int, default=None, metavar="N",
                   help="number of classes (default: 10 for a preset; a run's own)")
    p.add_argument("--csv", default=None, metavar="FILE",
                   help="also write the per-layer table to FILE as CSV (an existing FILE is "
                   "refused unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --csv FILE")
    p.set_defaults(func=run)
