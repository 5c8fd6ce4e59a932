"""``export_run``: a run's net as an ONNX file or a ``torch.export`` program (``.pt2``),
checked against PyTorch on the run's own test images before it is written.

Nothing is written until the check passes: the file is made in memory, loaded back
(onnxruntime, or ``torch.export.load``), run on a batch of test images and on one
image alone, and compared with the PyTorch net; only then is it written atomically.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from grownet.atomic import refuse_existing
from grownet.deploy.load import WEIGHTS, load, weights_metadata, weights_path
from grownet.deploy.onnx import (
    OnnxModule,
    dynamic_batch,
    example_input,
    onnx_bytes,
    onnx_opset,
    require_onnx,
    session,
)
from grownet.errors import UserError
from grownet.runs import RunConfig, RunDir, atomic_write_bytes
from grownet.spec import ArchSpec

FORMATS = ("onnx", "pt2")
TOLERANCE = 1e-4  # max |Δlogits| the check accepts
CHECK_IMAGES = 64


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote and measured."""

    path: Path
    format: str
    spec: ArchSpec
    max_abs_diff: float  # max |Δlogits|, exported vs PyTorch, over the check batches
    images: int  # test images in the check batch
    data: str  # the dataset they came from
    opset: int | None  # ONNX only
    size: int  # bytes written


def default_out(run: Path, fmt: str, stage: int | None) -> Path:
    """``RUN/export/final.<fmt>``, or ``RUN/export/stage-NNN.<fmt>``."""
    name = "final" if stage is None else f"stage-{stage:03d}"
    return run / "export" / f"{name}.{fmt}"


def check_out(out: Path, force: bool) -> None:
    """Refuse an existing ``out`` (unless ``force``), a folder, or a place that cannot
    be written, before any work."""
    refuse_existing(out, force, "--out")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {out}: {parent} is not a writable directory; "
                        "choose another --out FILE")


def run_config(run: Path, weights: Path) -> RunConfig:
    """The configuration that says which test images the net was evaluated on: the
    run's ``config.toml``, or for a pruned run (no config of its own) the one of the
    run it was pruned from (``source`` in its weights' metadata)."""
    if RunDir(run).config_path.is_file():
        return RunDir(run).config()
    source = weights_metadata(weights).get("source")
    if source and RunDir(source).config_path.is_file():
        return RunDir(source).config()
    raise UserError(f"{run} has no config.toml" + (f", and its source run {source} is not "
                    "there" if source else "") + ", so its test images are unknown; copy "
                    "the config.toml of the run it came from into it")


def check_images(cfg: RunConfig, spec: ArchSpec, count: int = CHECK_IMAGES) -> torch.Tensor:
    """The first ``count`` test images of the run's data (normalised as in training)."""
    from grownet.data import load_dataset

    data = load_dataset(cfg.data, root=cfg.data_root or None, seed=cfg.seed)
    if tuple(data.in_shape) != tuple(spec.in_shape):
        raise UserError(f"the run's config names data {cfg.data!r}, whose images have "
                        f"shape {data.in_shape}, but the net takes {spec.in_shape}; fix data "
                        "in its config.toml")
    return data.x_test[:count].float()


def pt2_bytes(model: nn.Module, in_shape: tuple[int, ...]) -> bytes:
    """``model`` (in eval mode) as a ``torch.export`` program file, batch dimension free."""
    was_training = model.training
    model.eval()
    try:
        program = torch.export.export(model, (example_input(in_shape),),
                                      dynamic_shapes=dynamic_batch())
    except Exception as err:  # torch.export raises many kinds
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(f"torch.export failed ({type(err).__name__}: {first}); try "
                        "--format onnx") from None
    finally:
        model.train(was_training)
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def reloaded(fmt: str, data: bytes) -> nn.Module:
    """The exported file loaded back: an onnxruntime session, or the ``torch.export``
    program's module."""
    if fmt == "onnx":
        return OnnxModule(session(data))
    return torch.export.load(io.BytesIO(data)).module()


@torch.inference_mode()
def max_logit_diff(exported: nn.Module, model: nn.Module, images: torch.Tensor) -> float:
    """max |Δlogits| between ``exported`` and ``model`` on ``images`` and on the first
    image alone (batch 1: the dynamic batch dimension at its smallest); NaN when either
    gives a non-finite logit."""
    diffs = [(exported(x).float() - model(x).float()).abs().max().item()
             for x in (images, images[:1])]
    return math.nan if not all(math.isfinite(d) for d in diffs) else max(diffs)


def export_run(run: str | Path, fmt: str, stage: int | None = None,
               out: str | Path | None = None, opset: int | None = None,
               force: bool = False) -> ExportResult:
    """Export a run's final net (or stage ``stage``'s) and check it before writing it.

    Parameters
    ----------
    run
        A run directory (a grow, train or prune run).
    fmt
        ``"onnx"`` (``torch.onnx.export``, checked with onnxruntime) or ``"pt2"``
        (``torch.export``, checked by reloading the program).
    stage
        The net at the end of this stage instead of the final one.
    out
        The file to write (default :func:`default_out`).
    opset
        ONNX only: the ``ai.onnx`` opset (default: torch's).
    force
        Replace an existing ``out``.

    Returns
    -------
    ExportResult

    Raises
    ------
    UserError
        Bad input (unknown format, unfinished run, missing stage, existing or
        unwritable ``out``, damaged weights, missing extra) or a failed check: nothing
        is written then.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use onnx or pt2")
    if opset is not None and fmt != "onnx":
        raise UserError("--opset applies to --format onnx only; leave it out for pt2")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int)
                              or opset < 1):
        raise UserError(f"--opset must be an integer >= 1, got {opset!r}")
    if fmt == "onnx":
        require_onnx()
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"{run} is not a directory; pass a run directory a training "
                        "command wrote")
    if (run / WEIGHTS).is_file():  # final/ or stages/NNN/: the run's config is above
        raise UserError(f"{run} holds one net's weights; pass its run directory instead "
                        "(with --stage N for the net of a stage)")
    target = Path(out) if out is not None else default_out(run, fmt, stage)
    check_out(target, force)
    weights = weights_path(run, stage)
    spec, model = load(run, stage)
    cfg = run_config(run, weights)
    images = check_images(cfg, spec)
    data = (onnx_bytes(model, spec.in_shape, opset) if fmt == "onnx"
            else pt2_bytes(model, spec.in_shape))
    diff = max_logit_diff(reloaded(fmt, data), model, images)
    if not diff <= TOLERANCE:
        raise UserError(f"the exported {fmt} net differs from PyTorch by max |Δlogits| = "
                        f"{diff:.3g} > {TOLERANCE:g} on {len(images)} test images; nothing "
                        f"was written — try the other --format")
    atomic_write_bytes(target, data)  # a failed write is one UserError naming the file
    return ExportResult(target, fmt, spec, diff, len(images), cfg.data,
                        onnx_opset(data) if fmt == "onnx" else None, len(data))


__all__ = ["CHECK_IMAGES", "ExportResult", "FORMATS", "TOLERANCE", "check_images",
           "check_out", "default_out", "export_run", "max_logit_diff", "pt2_bytes",
           "reloaded", "run_config"]
