"""The run directory: what a training command leaves behind (see DESIGN.md; where each
file lives: :mod:`grownet.runs.layout`).

One writer at a time: the command that creates or resumes a run holds an exclusive
lock on ``RUN/.lock`` until it ends (:mod:`~grownet.runs.lock`). Tables are appended
a row at a time; a resume cuts them back to the position of the checkpoint (and
drops what a kill left half-done: temporary files, a stage or a finish not yet
checkpointed), so a killed-and-resumed run ends with the same files as an
uninterrupted one.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch

from grownet.atomic import (
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_tmp,
)
from grownet.errors import UserError
from grownet.runs import final as _final
from grownet.runs import tables
from grownet.runs.config import RunConfig, read_toml
from grownet.runs.layout import TABLES, RunLayout
from grownet.runs.lock import LOCK_NAME, DirLock
from grownet.spec import ArchSpec

#: the files whose presence makes a folder a grownet run (a training run, a prune run)
MARKERS = ("config.toml", "prune.toml")


class RunDir(RunLayout):
    """One run's directory. ``RunDir.create`` for a new run, ``RunDir.open`` to read one,
    ``RunDir.open_to_resume`` to continue one; the two writers hold its lock."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.lock = DirLock(self.path)
        self._made: list[Path] = []  # folders this object created (removed by discard)

    # ------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path: str | Path | None, command: str) -> RunDir:
        """A new run directory, locked (``runs/<command>-<timestamp>`` when ``path`` is
        None). It must not exist or be empty: nothing existing is ever overwritten, and
        a half-done run is continued with ``grownet resume`` instead."""
        if path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = Path("runs") / f"{command}-{stamp}"
            n = 1
            while path.exists():
                path, n = Path("runs") / f"{command}-{stamp}-{n}", n + 1
        run = cls(path)
        cls.check_new(run.path)
        run._make_folders()
        run.lock.acquire()
        try:
            cls.check_new(run.path, locked=True)  # again, now that no writer can start
        except UserError:
            run.release()
            raise
        return run

    @staticmethod
    def check_new(path: str | Path | None, locked: bool = False) -> None:
        """Refuse ``path`` as a new run's ``--out`` unless it is absent or empty (a
        lock file aside); the message says what to do instead (``locked``: the caller
        holds the folder's lock)."""
        if path is None:
            return
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {path} is a file, not a folder; choose a new --out DIR")
        if not path.is_dir() or not any(p.name != LOCK_NAME for p in path.iterdir()):
            return
        if any((path / m).is_file() for m in MARKERS):
            lock = DirLock(path)
            holder = None if locked else lock.holder()
            if holder is not None:
                raise lock.busy_error("run directory", holder)
            if RunDir(path).finished:
                raise UserError(f"{path} holds a finished run; choose a new --out DIR "
                                "(nothing is ever overwritten)")
            raise UserError(f"{path} holds a run that did not finish; continue it with "
                            f"'grownet resume {path}', or choose a new --out DIR")
        raise UserError(f"output directory {path} already exists and is not empty; "
                        "choose a new --out DIR")

    def _make_folders(self) -> None:
        missing = []
        for folder in (self.path, *self.path.parents):
            if folder.exists():
                break
            missing.append(folder)
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:  # a concurrent writer made it: it is not ours to remove
                continue
            except OSError as err:
                self._remove_made()
                where = ("run from a writable folder or pass --out DIR"
                         if not self.path.is_absolute() and self.path.parts[0] == "runs"
                         else "choose a writable --out DIR")
                raise UserError(f"cannot create {folder} ({err.strerror or err}); "
                                f"{where}") from None
            self._made.append(folder)

    @classmethod
    def follower(cls, path: str | Path) -> RunDir:
        """A read-only view for the ranks other than 0 (see :class:`FollowerRunDir`)."""
        return FollowerRunDir(path)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run, to read (no lock: it may be in progress)."""
        run = cls(path)
        if not run.path.is_dir():
            raise UserError(f"{run.path} does not exist or is not a folder; pass the run "
                            "directory a training command wrote (e.g. runs/grow-...)")
        if not run.config_path.is_file():
            hint = (" (it holds no run yet: start the run again with the same --out)"
                    if not any(p.name != LOCK_NAME for p in run.path.iterdir()) else "")
            raise UserError(f"{run.path} is not a grownet run directory (no config.toml)"
                            f"{hint}; pass the directory a training command wrote")
        return run

    @classmethod
    def open_to_resume(cls, path: str | Path, marker: str = "config.toml") -> RunDir:
        """An existing, unfinished run, locked for the resuming writer (``marker``:
        ``prune.toml`` for a prune's directory)."""
        run = cls.open(path) if marker == "config.toml" else cls(path)
        if not (run.path / marker).is_file():
            raise UserError(f"{run.path} is not a grownet run directory (no {marker})")
        run.lock.acquire()
        if run.final_state() == _final.FINISHED:
            run.release()
            again = ("prune the run again" if marker == "prune.toml" else
                     f"train it again with --config {run.path / 'config.toml'}")
            raise UserError(f"{run.path} has already finished; nothing to resume ({again} "
                            "and a new --out DIR)")
        return run

    def config(self) -> RunConfig:
        """The run's ``config.toml``, checked; a bad value is named as a key of that file
        (``lr = inf in RUN/config.toml``), not as a flag."""
        return RunConfig.from_toml(self.config_path)

    def epochs_trained(self) -> int:
        """Rows of ``metrics.csv``: the epochs the run trained so far."""
        return len(self.rows("metrics.csv"))

    def release(self) -> None:
        """End this writer's hold on the run (the OS also does it at exit)."""
        self.lock.release()

    def discard(self) -> None:
        """Undo :meth:`create` when the command failed before its first checkpoint (a
        user error after the folder was made): what it wrote, and the folders it made,
        are removed. A folder that holds a checkpoint is kept."""
        if self.lock.held and not self.checkpoint.exists():
            for entry in self.path.iterdir():  # all this run's: the folder was empty
                if entry.is_dir():
                    shutil.rmtree(entry)
                elif entry.name != LOCK_NAME:
                    entry.unlink()
            self.lock.unlink()
            self.release()
            self._remove_made()
        self.release()

    def _remove_made(self) -> None:
        for folder in reversed(self._made):
            try:
                folder.rmdir()
            except OSError:  # not empty (someone else's files) or already gone
                pass
        self._made = []

    # ------------------------------------------------------------------ state
    def final_state(self) -> str:
        """``finished``, ``damaged`` or ``open`` (see :func:`grownet.runs.final.final_state`;
        a prune whose retraining has not ended is ``open``)."""
        state = _final.final_state(self.path)
        return _final.OPEN if state == _final.FINISHED and not self._retrained() else state

    @property
    def finished(self) -> bool:
        """Whether the run wrote its final model (the last thing a training run writes;
        a prune with retraining has also logged its ``retrain`` event)."""
        return self.final_weights.is_file() and self._retrained()

    def _retrained(self) -> bool:
        plan = self.prune_plan
        if not plan.is_file():
            return True
        if not read_toml(plan).get("retrain_epochs"):
            return True
        events = tables.read_events(self.events_path)
        return any(e.get("kind") == "retrain" for e in events)

    def tidy(self) -> None:
        """Drop what a kill left half-written: temporary files, and the last line of a
        table or of the event log when its newline never came. The writer that holds
        the lock alone calls it."""
        remove_stale_tmp(self.path)
        self.truncate_logs(2**62)  # every complete row stays

    def resume_point(self) -> dict[str, Any] | None:
        """The checkpoint to continue from, with the run cut back to it (see
        :meth:`rewind`); ``None`` when the run was killed before its first checkpoint:
        it starts again from the beginning, in the same directory."""
        state = self.load_checkpoint() if self.has_checkpoint() else None
        try:
            epoch = int(state["position"]["epoch"]) if state is not None else 0
        except (KeyError, TypeError, ValueError):
            raise UserError(f"checkpoint {self.checkpoint} holds no position; it "
                            "does not come from this grownet: start the run again") from None
        self.rewind(epoch)
        return state

    def rewind(self, position_epoch: int) -> None:
        """Cut the run back to a checkpoint taken after ``position_epoch`` epochs (0: no
        checkpoint): drop later rows and events, a stage or a finish the checkpoint does
        not know, and temporary files a kill left. The resuming writer alone calls it;
        every file is read (and checked) before anything is changed."""
        kept = self._kept(position_epoch)
        remove_stale_tmp(self.path)
        for half_done in ("final", "init"):  # a finish that did not complete is redone
            shutil.rmtree(self.path / half_done, ignore_errors=True)
        self._write_kept(kept)
        grown = sum(1 for e in kept["events.jsonl"] if e.get("kind") == "grow")
        for folder in self.stage_folders():
            if int(folder.name) > grown or position_epoch == 0:
                shutil.rmtree(folder)
        if position_epoch == 0:  # a fresh start: the killed attempt's curves go too
            shutil.rmtree(self.path / "tensorboard", ignore_errors=True)

    # ------------------------------------------------------------------ tables
    def write_config(self, text: str) -> None:
        atomic_write_text(self.config_path, text)

    def append_row(self, name: str, row: dict[str, Any]) -> None:
        """Append ``row`` to ``name`` (CSV), writing the header on the first row."""
        tables.append_row(self.path / name, row)

    def rows(self, name: str) -> list[dict[str, str]]:
        """The rows of table ``name`` (``metrics.csv``, ...) as strings; [] when absent."""
        return tables.read_rows(self.path / name, finished=self.finished)

    def table(self, name: str):
        """Table ``name`` as a checked pandas DataFrame (see
        :func:`grownet.runs.tables.read_table`); ``None`` when absent or empty."""
        return tables.read_table(self.path / name, finished=self.finished)

    def log_event(self, event: dict[str, Any]) -> None:
        tables.append_event(self.events_path, event)

    def events(self) -> list[dict[str, Any]]:
        return tables.read_events(self.events_path, finished=self.finished)

    def truncate_logs(self, epochs_done: int) -> None:
        """Drop rows and events of epochs >= ``epochs_done`` (written after the
        checkpoint that a resume starts from) and any line a kill cut short."""
        self._write_kept(self._kept(epochs_done))

    def _kept(self, epochs_done: int) -> dict[str, list[dict[str, Any]]]:
        kept: dict[str, list[dict[str, Any]]] = {}
        for name in (*TABLES, "events.jsonl"):
            path = self.path / name
            records = self.events() if name == "events.jsonl" else self.rows(name)
            kept[name] = [r for r in records if tables.epoch_of(path, r) < epochs_done]
        return kept

    def _write_kept(self, kept: dict[str, list[dict[str, Any]]]) -> None:
        # a file left with nothing is removed: the uninterrupted run has none yet
        for name, records in kept.items():
            path = self.path / name
            if not records:
                path.unlink(missing_ok=True)
            elif name == "events.jsonl":
                tables.write_events(path, records)
            else:
                tables.write_rows(path, records, list(records[0]))

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

    def save_stage_weights(self, spec: ArchSpec, model: torch.nn.Module) -> Path | None:
        """``stages/NNN/model.safetensors``: the weights at the end of a stage.

        Call it right after the stage's last epoch wrote its ``metrics.csv`` row, with
        the model that row evaluated: the stage number, epoch and ``test_acc`` of that
        row go into the file's metadata (with the spec), so loading the file reproduces
        the accuracy the row records. A DST model is saved as it is (masks as weights
        and thresholds; :func:`grownet.deploy.load` folds them). Nothing is written
        before the first row.
        """
        rows = self.rows("metrics.csv")
        if not rows:
            return None
        last = rows[-1]
        meta = {"stage": last["stage"], "epoch": last["epoch"], "test_acc": last["test_acc"]}
        return atomic_write_bytes(self.stage_weights(int(last["stage"])),
                                  _final.weights_bytes(spec, model, meta))

    def stage_specs(self) -> list[tuple[int, ArchSpec]]:
        return [(int(folder.name), _final.load_spec(folder / "arch.json"))
                for folder in self.stage_folders()]

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_torch_save(state, self.checkpoint)

    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        path = self.checkpoint
        if not path.is_file():
            raise UserError(f"{path} not found: this run has no checkpoint (it was killed "
                            f"before its first epoch ended); 'grownet resume {self.path}' "
                            "starts it again")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # corrupt or foreign file: torch raises many kinds
            fix = (f"train the run again (--config {self.config_path} and a new "
                   "--out DIR)" if self.finished else
                   f"delete it and 'grownet resume {self.path}' starts the run again")
            raise UserError(f"checkpoint {path} cannot be read ({type(err).__name__}); it "
                            f"is damaged: restore it from a copy, or {fix}") from None

    # ------------------------------------------------------------------ final
    def save_final(self, spec: ArchSpec, model: torch.nn.Module,
                   extra: dict[str, str] | None = None) -> Path:
        """``final/arch.json``, then ``final/model.safetensors``: the file whose presence
        means "finished", so it comes last."""
        return self.save_model("final", spec, model, extra)

    def save_model(self, name: str, spec: ArchSpec, model: torch.nn.Module,
                   extra: dict[str, str] | None = None) -> Path:
        """Write ``<name>/arch.json`` and ``<name>/model.safetensors`` (atomically) for a
        model the run keeps besides its final one (DST's ``best`` and ``sparsest``);
        ``extra`` goes into the metadata next to the spec."""
        weights = self.model_weights(name)
        atomic_write_text(weights.parent / "arch.json", spec.to_json())
        atomic_write_bytes(weights, _final.weights_bytes(spec, model, extra))
        return weights.parent

    def save_initial(self, spec: ArchSpec, params: dict[str, torch.Tensor]) -> Path:
        """``init/model.safetensors``: each parameter's value when it was created (the
        lottery procedure retrains from it)."""
        return _final.save_initial(self.path, spec, params)


class FollowerRunDir(RunDir):
    """The run directory as seen by a data-parallel rank other than 0: it reads the
    same files, and every write is rank 0's alone (two writers would interleave rows)."""

    def _skip(self, *args: Any, **kwargs: Any) -> None:
        return None

    write_config = append_row = log_event = truncate_logs = rewind = _skip
    save_stage = save_stage_graph = save_stage_weights = _skip
    save_checkpoint = save_final = save_initial = save_model = _skip
    release = discard = _skip

