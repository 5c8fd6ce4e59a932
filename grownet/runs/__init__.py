"""Run directories: resolved config, tables, events, stage artifacts, atomic checkpoints."""

from grownet.atomic import atomic_torch_save, atomic_write_bytes, atomic_write_text
from grownet.runs.config import RunConfig
from grownet.runs.rundir import RunDir, final_test_acc, load_final_model, load_spec

__all__ = ["RunConfig", "RunDir", "atomic_torch_save", "atomic_write_bytes",
           "atomic_write_text", "final_test_acc", "load_final_model", "load_spec"]
