"""Taking a grown net home: :func:`load` a run's net as a module, export it to ONNX or
a ``torch.export`` program (checked against PyTorch on the run's test images), and time
it under onnxruntime.

Typical use::

    import grownet as gn

    spec, model = gn.load("runs/grow-…")             # final net, eval mode, on the CPU
    spec2, model2 = gn.load("runs/grow-…", stage=2)  # the net at the end of stage 2

``docs/export.md`` has the details; ONNX needs ``pip install 'grownet[export]'``.
"""

from grownet.deploy.export import FORMATS, TOLERANCE, ExportResult, export_run
from grownet.deploy.load import LoadedNet, load, read_weights, weights_metadata, weights_path
from grownet.deploy.onnx import OnnxModule, onnx_bytes, onnx_latency, require_onnx, session

__all__ = ["ExportResult", "FORMATS", "LoadedNet", "OnnxModule", "TOLERANCE", "export_run",
           "load", "onnx_bytes", "onnx_latency", "read_weights", "require_onnx", "session",
           "weights_metadata", "weights_path"]
