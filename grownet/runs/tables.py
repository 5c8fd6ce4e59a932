"""The run's tables (CSV, one row per epoch or layer) and its event log (JSON lines):
appended a line at a time, read back strictly.

A SIGKILL can interrupt an append and leave a last line without its newline. While a
run is unfinished such a line is expected: readers skip it and ``grownet resume``
drops it. Anything else that does not parse (a complete line with the wrong number
of fields, a value that is not a number where the table holds numbers, bytes that are
not UTF-8) means the file was damaged: a :class:`UserError` names the file, the line
and how to recover.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grownet.atomic import atomic_write_text, write_error
from grownet.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

#: columns a table must have (older runs may have fewer of the others)
REQUIRED = {
    "metrics.csv": ("stage", "epoch", "test_acc"),
    "layers.csv": ("stage", "epoch", "layer", "width"),
    "support.csv": ("stage", "epoch", "layer", "width", "ratio"),
    "keep.csv": ("epoch", "layer", "keep_ratio"),
}
#: columns that hold text; every other column of a run table holds numbers
TEXT_COLUMNS = ("phase", "layer")
#: columns that may be empty (the classifier has no Γ support)
NULLABLE = ("selected", "ratio", "val_loss", "val_acc")  # val_*: no validation split


def damaged(path: Path, what: str, finished: bool) -> UserError:
    """The error for a run file that does not parse, with the way back."""
    fix = ("restore it from a copy, or train the run again (--config "
           f"{path.parent / 'config.toml'} and a new --out DIR)") if finished else (
           "restore it from a copy, or start the run again")
    return UserError(f"{path} is damaged ({what}); {fix}")


def _complete_lines(path: Path, finished: bool) -> list[str]:
    """The file's lines, the interrupted last one (no newline) left out while the run
    is unfinished."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise damaged(path, f"not UTF-8 text at byte {err.start}", finished) from None
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or err}); check its "
                        "permissions") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        if finished:
            raise damaged(path, "its last line is cut short", finished)
        lines.pop()
    return lines


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to the CSV ``path``, with a header when the file is new."""
    new = not path.exists()
    try:
        with path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
    except OSError as err:
        raise write_error(path, err) from None


def read_rows(path: Path, finished: bool = False) -> list[dict[str, str]]:
    """The rows of a CSV table as strings; ``[]`` when the file is absent."""
    if not path.exists():
        return []
    lines = _complete_lines(path, finished)
    reader = csv.DictReader(io.StringIO("".join(lines)))
    rows = []
    for row in reader:
        if None in row or None in row.values():  # too many fields, or too few
            fields = sum(v is not None for k, v in row.items() if k is not None)
            fields += len(row.get(None) or ())
            raise damaged(path, f"line {reader.line_num} has {fields} fields, the header "
                          f"{len(reader.fieldnames or ())}", finished)
        rows.append(row)
    return rows


def append_event(path: Path, event: dict[str, Any]) -> None:
    try:
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")
    except OSError as err:
        raise write_error(path, err) from None


def read_events(path: Path, finished: bool = False) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; ``[]`` when absent."""
    if not path.exists():
        return []
    events = []
    for i, line in enumerate(_complete_lines(path, finished), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as err:
            raise damaged(path, f"line {i} is not JSON: {err.msg}", finished) from None
        if not isinstance(event, dict):
            raise damaged(path, f"line {i} is not a JSON object", finished)
        events.append(event)
    return events


def write_rows(path: Path, rows: Iterable[dict[str, str]], fieldnames: list[str]) -> None:
    """Replace the CSV ``path`` with ``rows`` (atomically)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_events(path: Path, events: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in events))


def epoch_of(path: Path, record: dict[str, Any], finished: bool = False) -> int:
    """A row's or event's ``epoch`` as an int (events without one count as -1)."""
    value = record.get("epoch", -1)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise damaged(path, f"an epoch reads {value!r}", finished) from None


def read_table(path: Path, finished: bool = False) -> pd.DataFrame | None:
    """A run table as a DataFrame, checked: its required columns are there and every
    column but :data:`TEXT_COLUMNS` holds numbers. ``None`` when the file is absent or
    holds no rows."""
    import pandas as pd

    if not path.is_file():
        return None
    lines = _complete_lines(path, finished)
    if len(lines) < 2:
        return None
    try:  # nullable ints: the classifier has no support, and NaN would make counts floats
        frame = pd.read_csv(io.StringIO("".join(lines)), dtype={"selected": "Int64"})
    except (pd.errors.ParserError, ValueError) as err:
        raise damaged(path, str(err).splitlines()[0], finished) from None
    missing = [c for c in REQUIRED.get(path.name, ()) if c not in frame.columns]
    if missing:
        raise damaged(path, f"no column {', '.join(missing)}", finished)
    for col in frame.columns:
        if col in TEXT_COLUMNS:
            continue
        numbers = pd.to_numeric(frame[col], errors="coerce")
        wrong = numbers.isna() & (frame[col].notna() | (col not in NULLABLE))
        if wrong.any():
            row = int(wrong.to_numpy().nonzero()[0][0])
            value = frame[col].iloc[row]
            raise damaged(path, f"line {row + 2}, column {col} reads "
                          f"{'nothing' if pd.isna(value) else repr(value)}, not a number",
                          finished)
        frame[col] = numbers
    return frame

