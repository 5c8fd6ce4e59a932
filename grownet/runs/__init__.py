"""Run directories: resolved config, tables, events, stage artifacts, atomic checkpoints,
the one-writer lock, and what "finished" means."""

from grownet.atomic import (
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    refuse_existing,
)
from grownet.runs.config import RunConfig
from grownet.runs.final import (
    arch_json_of,
    final_metadata,
    final_state,
    final_test_acc,
    load_final_model,
    load_spec,
)
from grownet.runs.rundir import RunDir

__all__ = ["RunConfig", "RunDir", "arch_json_of", "atomic_torch_save", "atomic_write_bytes",
           "atomic_write_text", "final_metadata", "final_state", "final_test_acc",
           "load_final_model", "load_spec", "refuse_existing"]
