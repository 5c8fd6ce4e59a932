"""Helpers the run-directory tests share (imported by the test modules beside it)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: its bytes' hash and its mode (a lock file's
    content is the pid of its last holder, not data)."""
    out = {}
    for p in sorted(root.rglob("*")):
        digest = ("dir" if not p.is_file() else "lock" if p.name == ".lock"
                  else hashlib.sha256(p.read_bytes()).hexdigest())
        out[str(p.relative_to(root))] = (digest, p.stat().st_mode)
    return out
