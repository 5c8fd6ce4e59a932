"""Helpers the run-directory tests share (imported by the test modules beside it)."""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from grownet.cli import main


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: its bytes' hash and its mode (a lock file's
    content is the pid of its last holder, not data)."""
    out = {}
    for p in sorted(root.rglob("*")):
        digest = ("dir" if not p.is_file() else "lock" if p.name == ".lock"
                  else hashlib.sha256(p.read_bytes()).hexdigest())
        out[str(p.relative_to(root))] = (digest, p.stat().st_mode)
    return out


def mtimes(folder: Path) -> dict[str, int]:
    """Every path under ``folder`` with its modification time (what "nothing was
    rewritten" compares)."""
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def cli(*argv: str) -> tuple[int, str, str]:
    """``grownet ARGV`` in this process: exit code, stdout, stderr (argparse's own exits
    included)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as stop:
            rc = stop.code
    return rc, out.getvalue(), err.getvalue()


def assert_same_weights(a: Path, b: Path) -> None:
    """Two safetensors files hold the same tensors, bit for bit, and the same metadata."""
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta), a
    with safe_open(str(a), framework="pt") as fa, safe_open(str(b), framework="pt") as fb:
        assert fa.metadata() == fb.metadata()
