"""Where each file of a run directory lives: the one place that spells their names.

```
RUN/config.toml  metrics.csv  layers.csv  support.csv  keep.csv  events.jsonl  .lock
RUN/stages/NNN/{arch.json, graph.graphml, graph.json, graph.png, model.safetensors}
RUN/checkpoints/last.pt       RUN/init/model.safetensors
RUN/final/{arch.json, model.safetensors}     (model.safetensors last: "finished")
RUN/best/, RUN/sparsest/                      (DST: the most accurate and the sparsest models)
RUN/prune.csv  prune.toml  retrain/          (a grownet prune output)
```

Every other room asks a :class:`~grownet.runs.RunDir` (which is a :class:`RunLayout`)
for a path and never writes a run's file name itself.
"""

from __future__ import annotations

from pathlib import Path

from grownet.runs import final as _final

CHECKPOINT = "checkpoints/last.pt"
#: the per-epoch and per-layer tables; a resume cuts each back to its checkpoint
TABLES = ("metrics.csv", "layers.csv", "support.csv", "keep.csv")


class RunLayout:
    """The paths of one run directory (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def layers(self) -> Path:
        return self.path / "layers.csv"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def final_arch(self) -> Path:
        return self.path / "final" / "arch.json"

    @property
    def final_weights(self) -> Path:
        """``final/model.safetensors``: written last, at the very end of a run."""
        return self.path / _final.FINAL_MODEL

    def model_weights(self, name: str) -> Path:
        """``<name>/model.safetensors``: a model the run kept (``final``; DST's ``best``
        and ``sparsest``), with its spec in the metadata."""
        return self.path / name / "model.safetensors"

    @property
    def init_weights(self) -> Path:
        return self.path / _final.INIT_MODEL

    @property
    def prune_table(self) -> Path:
        """``prune.csv`` of a ``grownet prune`` output: per layer, width before → after."""
        return self.path / "prune.csv"

    @property
    def prune_plan(self) -> Path:
        """``prune.toml`` of a ``grownet prune`` output: what was asked (for resume)."""
        return self.path / "prune.toml"

    @property
    def retrain_dir(self) -> Path:
        """The run directory of a pruned net's retraining (inside the prune output)."""
        return self.path / "retrain"

    def stage_dir(self, stage: int) -> Path:
        return self.path / "stages" / f"{stage:03d}"

    def stage_arch(self, stage: int) -> Path:
        return self.stage_dir(stage) / "arch.json"

    def stage_weights(self, stage: int) -> Path:
        """``stages/NNN/model.safetensors``: the weights a stage ended with."""
        return self.stage_dir(stage) / "model.safetensors"

    def stage_folders(self) -> list[Path]:
        """``stages/NNN`` folders, in stage order."""
        return sorted((self.path / "stages").glob("[0-9][0-9][0-9]"))
