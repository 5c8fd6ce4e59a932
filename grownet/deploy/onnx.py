"""ONNX: export through ``torch.onnx.export`` (the ``torch.export``-based exporter, with
a dynamic batch dimension), onnxruntime sessions, and latency under onnxruntime.

Needs the optional extra ``export`` (onnx, onnxscript, onnxruntime); every entry point
checks for it first with :func:`require_onnx`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from grownet.cost import latency
from grownet.errors import UserError

EXTRA_MODULES = ("onnx", "onnxscript", "onnxruntime")
INSTALL = "pip install 'grownet[export]'"
INPUT, OUTPUT = "input", "logits"


def require_onnx(what: str = "ONNX export") -> None:
    """Raise a one-line :class:`UserError` saying how to install the extra when any of
    :data:`EXTRA_MODULES` cannot be imported."""
    missing = []
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"{what} needs {', '.join(missing)} (not installed); install the "
                        f"extra: {INSTALL}")


def example_input(in_shape: Sequence[int]) -> torch.Tensor:
    """The input the exporters trace with: batch 2, since a batch of 1 would be
    specialised into the graph instead of staying dynamic."""
    return torch.zeros(2, *in_shape)


def dynamic_batch() -> tuple[dict[int, Any]]:
    """``dynamic_shapes`` for one input whose dimension 0 (the batch) is free."""
    return ({0: torch.export.Dim("batch", min=1)},)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's warnings and log lines (missing torchvision ops, deprecations)
    are not the user's business; its errors still raise."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def onnx_bytes(model: nn.Module, in_shape: Sequence[int], opset: int | None = None) -> bytes:
    """``model`` (in eval mode) as one self-contained ONNX file, batch dimension free.

    Parameters
    ----------
    model
        A module taking one ``(batch, *in_shape)`` tensor; on the CPU.
    in_shape
        One sample's shape.
    opset
        The ``ai.onnx`` opset to target (default: torch's choice).

    Raises
    ------
    UserError
        The extra is missing, the export fails, or the opset cannot be reached (torch's
        exporter silently keeps its own opset when it cannot convert).
    """
    require_onnx()
    was_training = model.training
    model.eval()
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                model, (example_input(in_shape),), dynamo=True, verbose=False,
                dynamic_shapes=dynamic_batch(), input_names=[INPUT], output_names=[OUTPUT],
                opset_version=opset, external_data=False)
    except Exception as err:  # the exporter raises many kinds
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(f"torch.onnx.export failed ({type(err).__name__}: {first}); try "
                        "--format pt2, or leave --opset out") from None
    finally:
        model.train(was_training)
    proto = program.model_proto
    got = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and got != opset:
        raise UserError(f"torch.onnx.export cannot convert this model to opset {opset} (it "
                        f"stays at {got}); choose a newer --opset or leave it out")
    return proto.SerializeToString()


def onnx_opset(data: bytes) -> int | None:
    """The ``ai.onnx`` opset an ONNX file imports."""
    import onnx

    proto = onnx.load_from_string(data)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def session(data: bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for an ONNX file's bytes, with ``threads`` intra-op
    threads (default: torch's thread count, so that the two are timed alike)."""
    require_onnx("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(data, sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(f"onnxruntime {ort.__version__} cannot load the exported model "
                        f"({first}); leave --opset out or update onnxruntime") from None


class OnnxModule(nn.Module):
    """An onnxruntime session behind the ``nn.Module`` call: CPU float tensors in,
    logits out (what :func:`grownet.cost.latency` and the export check call)."""

    def __init__(self, ort_session: Any) -> None:
        super().__init__()
        self.session = ort_session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: array})[0])


def onnx_latency(model: nn.Module, in_shape: Sequence[int],
                 batch_sizes: Sequence[int] = (1, 64), repeats: int = 20,
                 warmup: int = 5) -> dict[int, float]:
    """Median seconds of one forward pass of ``model`` exported to ONNX and run by
    onnxruntime on the CPU, per batch size (the timing of :func:`grownet.cost.latency`,
    with as many threads as torch uses)."""
    ort_model = OnnxModule(session(onnx_bytes(model.to("cpu"), in_shape)))
    return latency(ort_model, in_shape, batch_sizes, device="cpu", repeats=repeats,
                   warmup=warmup)


__all__ = ["EXTRA_MODULES", "INSTALL", "OnnxModule", "dynamic_batch", "example_input",
           "onnx_bytes", "onnx_latency", "onnx_opset", "require_onnx", "session"]
