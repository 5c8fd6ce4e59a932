"""Atomic file writes (a leaf: imports nothing of grownet but its errors): a crash or
SIGKILL leaves either the old file or the new one.

The temporary file sits beside its target (``.NAME.XXXX.tmp``); a kill between its
creation and the rename leaves it behind, and :func:`remove_stale_tmp` (called by
``grownet resume`` while it holds the run's lock) removes such leftovers. The new file
gets the mode a plain ``open(path, "w")`` would give it: an existing file's own mode,
else ``0666`` less the umask (``mkstemp`` alone would make every file private, 0600).
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from grownet.errors import UserError

TMP_SUFFIX = ".tmp"


def write_error(path: str | Path, err: OSError, fix: str = "free some space or choose "
                "another output location") -> UserError:
    """The one-line error for a file or folder that cannot be written."""
    return UserError(f"cannot write {path} ({err.strerror or err}); {fix}")


def new_file_mode(path: Path) -> int:
    """The mode ``path`` keeps (when it exists) or gets (``0666`` less the umask)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)  # the only portable way to read it: set, then restore
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(file)`` on a temporary file in ``path``'s directory, fsync it, then
    rename it over ``path`` (atomic on POSIX): readers never see a half-written file.

    Raises
    ------
    UserError
        When the folder cannot be made or the file cannot be written (read-only
        place, a file where a folder should be, disk full), naming the path.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = new_file_mode(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX,
                                   dir=path.parent)
    except OSError as err:
        raise write_error(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise write_error(path, err) from None
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` made atomic (the object is serialised in memory first)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def remove_stale_tmp(root: str | Path) -> list[Path]:
    """Delete the temporary files :func:`atomic_write` left under ``root`` when it was
    killed before its rename. Only the writer that holds ``root``'s lock may call this
    (another writer's temporary files would be in flight)."""
    removed = []
    for tmp in Path(root).rglob(f".*{TMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def refuse_existing(path: str | Path, force: bool, flag: str,
                    new_folders: bool = True) -> Path:
    """``path`` as the target of an output ``flag`` (``--out``, ``--csv``): refused when
    it already exists, unless ``force``; a folder is never replaced by a file. With
    ``new_folders=False`` its folder must exist already."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; name a file to write")
    if not new_folders and not path.parent.is_dir():
        raise UserError(f"cannot write {flag} {path}: the folder {path.parent} does not "
                        "exist; create it or choose another path")
    if path.exists() and not force:
        raise UserError(f"{flag} {path} already exists; choose a new file, or pass --force "
                        "to replace it")
    return path
