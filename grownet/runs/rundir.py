"""The run directory: what a training command leaves behind (see DESIGN.md).

```
RUN/config.toml  metrics.csv  layers.csv  support.csv  keep.csv  events.jsonl
RUN/stages/NNN/{arch.json, graph.graphml, graph.json, graph.png}
RUN/checkpoints/last.pt       RUN/final/{arch.json, model.safetensors}
RUN/init/model.safetensors
RUN/best/, RUN/sparsest/      (DST: the most accurate and the sparsest models)
```

:class:`RunDir` owns this layout: every other room asks it for a path (``run.metrics``,
``run.final_weights``, ``run.stage_arch(n)``, ...) and for what the files mean
(``run.finished``, ``run.config()``), and never spells a file name itself.

Tables are appended a row at a time; on resume they are cut back to the position of
the checkpoint, so a killed-and-resumed run ends with the same rows as an
uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import torch

from grownet.atomic import atomic_torch_save, atomic_write_bytes, atomic_write_text
from grownet.errors import UserError
from grownet.runs.config import RunConfig
from grownet.spec import ArchSpec

CHECKPOINT = "checkpoints/last.pt"
#: the per-epoch and per-layer tables; a resume cuts each back to its checkpoint
TABLES = ("metrics.csv", "layers.csv", "support.csv", "keep.csv")


class RunDir:
    """One run's directory. ``RunDir.create`` for a new run, ``RunDir.open`` to resume."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ---------------------------------------------------------------- layout
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
    def support(self) -> Path:
        return self.path / "support.csv"

    @property
    def keep(self) -> Path:
        return self.path / "keep.csv"

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def final_arch(self) -> Path:
        return self.path / "final" / "arch.json"

    @property
    def final_weights(self) -> Path:
        """``final/model.safetensors``: written last, at the very end of a run."""
        return self.path / "final" / "model.safetensors"

    @property
    def init_weights(self) -> Path:
        return self.path / "init" / "model.safetensors"

    @property
    def prune_table(self) -> Path:
        """``prune.csv`` of a ``grownet prune`` output: per layer, width before → after."""
        return self.path / "prune.csv"

    @property
    def retrain_dir(self) -> Path:
        """The run directory of a pruned net's retraining (inside the prune output)."""
        return self.path / "retrain"

    def stage_dir(self, stage: int) -> Path:
        return self.path / "stages" / f"{stage:03d}"

    def stage_arch(self, stage: int) -> Path:
        return self.stage_dir(stage) / "arch.json"

    @property
    def finished(self) -> bool:
        """Whether the run completed: its final model is written (the last file a run
        writes)."""
        return self.final_weights.is_file()

    def config(self) -> RunConfig:
        """The run's resolved configuration (``config.toml``)."""
        return RunConfig.from_toml(self.config_path)

    def latest_arch(self) -> Path | None:
        """``final/arch.json``, else the highest-numbered ``stages/NNN/arch.json``;
        ``None`` when the run has neither."""
        if self.final_arch.is_file():
            return self.final_arch
        stages = [int(d.name) for d in (self.path / "stages").glob("[0-9][0-9][0-9]")
                  if (d / "arch.json").is_file()]
        return self.stage_arch(max(stages)) if stages else None

    def epochs_trained(self) -> int:
        """Rows of ``metrics.csv``: the epochs the run trained so far."""
        return len(self.rows("metrics.csv"))

    # ------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path: str | Path | None, command: str) -> RunDir:
        """A new, empty run directory (``runs/<command>-<timestamp>`` when ``path`` is
        None). An existing non-empty directory is never overwritten."""
        if path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = Path("runs") / f"{command}-{stamp}"
            n = 1
            while path.exists():
                path, n = Path("runs") / f"{command}-{stamp}-{n}", n + 1
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(f"output directory {path} already exists and is not empty; "
                            "choose a new --out DIR (or 'grownet resume' to continue it)")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def follower(cls, path: str | Path) -> RunDir:
        """A read-only view for the ranks other than 0 (see :class:`FollowerRunDir`)."""
        return FollowerRunDir(path)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(path)
        if not run.config_path.is_file():
            raise UserError(f"{run.path} is not a grownet run directory (no config.toml); "
                            "pass the directory a training command wrote")
        return run

    # ------------------------------------------------------------------ tables
    def write_config(self, text: str) -> None:
        atomic_write_text(self.config_path, text)

    def append_row(self, name: str, row: dict[str, Any]) -> None:
        """Append ``row`` to ``name`` (CSV), writing the header on the first row."""
        path = self.path / name
        new = not path.exists()
        with path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def rows(self, name: str) -> list[dict[str, str]]:
        """The rows of table ``name`` (``metrics.csv``, ...) as strings; [] when absent."""
        path = self.path / name
        if not path.exists():
            return []
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def log_event(self, event: dict[str, Any]) -> None:
        with self.events_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")

    def events(self) -> list[dict[str, Any]]:
        path = self.events_path
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def truncate_logs(self, epochs_done: int) -> None:
        """Drop rows and events of epochs >= ``epochs_done`` (written after the
        checkpoint that a resume starts from)."""
        for name in TABLES:
            rows = self.rows(name)
            if not rows:
                continue
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\r\n")
            writer.writeheader()
            writer.writerows(r for r in rows if int(r["epoch"]) < epochs_done)
            atomic_write_text(self.path / name, buf.getvalue())
        kept = [e for e in self.events() if int(e.get("epoch", -1)) < epochs_done]
        atomic_write_text(self.events_path,
                          "".join(json.dumps(e, sort_keys=True) + "\n" for e in kept))

    # ----------------------------------------------------------------- stages
    def save_stage(self, stage: int, spec: ArchSpec) -> Path:
        """Write the ``arch.json`` of a stage that starts."""
        return atomic_write_text(self.stage_arch(stage), spec.to_json())

    def save_stage_graph(self, stage: int, spec: ArchSpec, support: Any = None) -> Path:
        """Write the architecture graph of a stage that ended (GraphML, JSON, PNG), with
        the support Γ had at its end (``support``: what :func:`grownet.arch_graph` takes)."""
        from grownet.graph import arch_graph, draw_graph, save_graph

        folder = self.stage_dir(stage)
        graph = arch_graph(spec, support=support)
        save_graph(graph, folder)
        draw_graph(graph, folder / "graph.png", title=f"stage {stage}")
        return folder

    def stage_specs(self) -> list[tuple[int, ArchSpec]]:
        out = []
        for folder in sorted((self.path / "stages").glob("[0-9][0-9][0-9]")):
            out.append((int(folder.name), load_spec(folder / "arch.json")))
        return out

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_torch_save(state, self.checkpoint)

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        path = self.checkpoint
        if not path.is_file():
            raise UserError(f"{path} not found: this run has no checkpoint to resume from; "
                            "start it again")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # corrupt or foreign file: torch raises many kinds
            raise UserError(f"checkpoint {path} cannot be read ({type(err).__name__}); "
                            "it is corrupt — start the run again") from None

    # ------------------------------------------------------------------ final
    def save_final(self, spec: ArchSpec, model: torch.nn.Module,
                   extra: dict[str, str] | None = None) -> Path:
        return self.save_model("final", spec, model, extra)

    def model_weights(self, name: str) -> Path:
        """``<name>/model.safetensors``: a model the run kept (``final``; DST's ``best``
        and ``sparsest``), with its spec in the metadata."""
        return self.path / name / "model.safetensors"

    def save_model(self, name: str, spec: ArchSpec, model: torch.nn.Module,
                   extra: dict[str, str] | None = None) -> Path:
        """Write ``<name>/arch.json`` and ``<name>/model.safetensors`` (atomically);
        ``extra`` goes into the metadata next to the spec."""
        from safetensors.torch import save

        weights = self.model_weights(name)
        atomic_write_text(weights.parent / "arch.json", spec.to_json())
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in
                   model.state_dict().items()}
        meta = {"arch": spec.to_json(indent=None), **(extra or {})}
        atomic_write_bytes(weights, save(tensors, metadata=meta))
        return weights.parent

    def save_initial(self, spec: ArchSpec, params: dict[str, torch.Tensor]) -> Path:
        """``init/model.safetensors``: each parameter's value when it was created (the
        lottery procedure retrains from it)."""
        from safetensors.torch import save

        tensors = {k: v.detach().to("cpu").contiguous() for k, v in params.items()}
        return atomic_write_bytes(self.init_weights,
                                  save(tensors, metadata={"arch": spec.to_json(indent=None)}))


class FollowerRunDir(RunDir):
    """The run directory as seen by a data-parallel rank other than 0: it reads the
    same files, and every write is rank 0's alone (two writers would interleave rows)."""

    def _skip(self, *args: Any, **kwargs: Any) -> None:
        return None

    write_config = append_row = log_event = truncate_logs = _skip
    save_stage = save_stage_graph = save_checkpoint = save_final = save_initial = _skip
    save_model = _skip


def load_spec(path: str | Path) -> ArchSpec:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; pass a run directory or an arch.json file")
    return ArchSpec.from_json(path.read_text(encoding="utf-8"))


def final_test_acc(run: str | Path) -> float | None:
    """The final evaluation's test accuracy (a fraction): the ``test_acc`` metadata of
    ``RUN/final/model.safetensors``; ``None`` when the run has not finished or the file
    carries none."""
    from safetensors import safe_open

    path = RunDir(run).final_weights
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        value = (f.metadata() or {}).get("test_acc")
    return None if value is None else float(value)


def load_final_model(run: str | Path, name: str = "final"
                     ) -> tuple[ArchSpec, torch.nn.Module]:
    """The final model of a run (or another it kept, e.g. DST's ``best``), rebuilt from
    the spec stored in its safetensors file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from grownet.nets import build

    path = RunDir(run).model_weights(name)
    if not path.is_file():
        if name == "final":
            raise UserError(f"{path} not found: the run has not finished; resume it first")
        raise UserError(f"{path} not found: this run kept no {name!r} model (DST runs keep "
                        "best/ and sparsest/ after their first epoch)")
    with safe_open(str(path), framework="pt") as f:
        spec = ArchSpec.from_json(f.metadata()["arch"])
    model = build(spec)
    model.load_state_dict(load_file(str(path)))
    return spec, model
