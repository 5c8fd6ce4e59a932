"""Every kill point is recoverable: a run SIGKILLed anywhere (before its first checkpoint,
inside a growth step, while writing a file, inside its finish; a prune inside its
retraining) and then resumed ends with the same files as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest
import torch
from runfiles import assert_same_weights, snapshot

import grownet as gn
from grownet import atomic as files
from grownet.cli import main
from grownet.runs import final, tables
from grownet.runs.rundir import RunDir

OWNERS = {"RunDir": RunDir, "final": final, "files": files, "tables": tables}


@pytest.fixture(scope="module")
def tiny_start(tmp_path_factory) -> str:
    """A too-narrow start with BatchNorm: it grows at its first three checks."""
    stages = tuple(gn.Stage(f"s{i}", layers=(gn.Layer(f"s{i}_l0", 2),)) for i in (1, 2))
    spec = gn.ArchSpec("plain", (1, 8, 8), 10, stages=stages, name="tiny")
    path = tmp_path_factory.mktemp("start") / "tiny.json"
    path.write_text(spec.to_json())
    return str(path)


def grow_argv(start: str, out: Path) -> list[str]:
    """6 epochs: growth after epochs 0, 1, 2, the stop at 3, fine-tuning 4-5."""
    return ["grow", "--data", "digits", "--from", start, "--epochs", "6",
            "--epochs-per-stage", "1", "--finetune-epochs", "2", "--entry-epochs", "0.5",
            "--batch-size", "128", "--max-width", "12", "--out", str(out), "--quiet"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_start, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    assert main(grow_argv(tiny_start, out)) == 0
    return out


def stop_at(target: str, when: str, n: int, match: str, how: int = signal.SIGKILL) -> None:
    """Make this process send itself ``how`` at one exact point: ``before`` or ``after``
    the n-th call of ``target`` (``RunDir.save_checkpoint``, ``final.atomic_write_bytes``,
    ``files.os.replace``, ``tables.append_row``) whose arguments' text holds ``match``
    (``-``: any call); ``half`` appends half of a row's line first (an append cut short)."""
    owner_name, _, name = target.partition(".")
    owner = os if name == "os.replace" else OWNERS[owner_name]
    name = name.removeprefix("os.")
    original, calls = getattr(owner, name), [0]

    def patched(*args, **kwargs):
        if match == "-" or match in " ".join(map(str, args)):
            calls[0] += 1
            if calls[0] == n:
                if when == "half":
                    line = ",".join(str(v) for v in args[1].values())
                    with open(args[0], "a", encoding="utf-8") as f:
                        f.write(line[: len(line) // 2])
                if when != "after":
                    os.kill(os.getpid(), how)
                out = original(*args, **kwargs)
                os.kill(os.getpid(), how)
                return out
        return original(*args, **kwargs)

    setattr(owner, name, patched)


def fork_and_stop(argv: list[str], target: str, when: str, n: int, match: str = "-",
                  how: int = signal.SIGKILL) -> int:
    """Run ``grownet argv`` in a forked child (torch already imported: no start-up cost)
    that stops itself at the point named; the child's pid once it has stopped."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            stop_at(target, when, n, match, how)
            main(argv)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, os.WUNTRACED)
    stopped = os.WIFSTOPPED(status) if how == signal.SIGSTOP else (
        os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL)
    assert stopped, f"not stopped at {target} {when} {n} (status {status})"
    return pid


def killed(argv: list[str], target: str, when: str, n: int, match: str = "-") -> None:
    """Run ``grownet argv`` until it is SIGKILLed at the point named."""
    fork_and_stop(argv, target, when, n, match)


# ------------------------------------------------------------------ comparing runs
def _files(run: Path) -> dict[str, Path]:
    return {str(p.relative_to(run)): p for p in sorted(run.rglob("*")) if p.is_file()}


def _csv_without_time(path: Path) -> list[list[str]]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    drop = rows[0].index("time_s") if "time_s" in rows[0] else None
    return [[v for i, v in enumerate(r) if i != drop] for r in rows]


def assert_same_run(resumed: Path, full: Path) -> None:
    """The same files with the same modes; the same bytes, apart from measured times
    (metrics' time_s, the checkpoint's wall clock) and the PNG drawings."""
    a, b = _files(resumed), _files(full)
    assert a.keys() == b.keys()
    assert not [name for name in a if name.endswith(".tmp")]
    for name, path in a.items():
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(b[name].stat().st_mode), name
        if name.endswith(".csv"):
            assert _csv_without_time(path) == _csv_without_time(b[name]), name
        elif name.endswith(".safetensors"):
            assert_same_weights(path, b[name])
        elif name.endswith((".json", ".jsonl", ".graphml", ".toml")):
            # a prune's retrain run names its own folder (its arch.json) in config.toml
            here = path.read_text().replace(str(resumed.parent), "<OUT>")
            assert here == b[name].read_text().replace(str(full.parent), "<OUT>"), name
    ca = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    cb = torch.load(full / "checkpoints" / "last.pt", weights_only=True)
    assert ca["position"]["epoch"] == cb["position"]["epoch"]
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in cb["model"])


# ------------------------------------------------------------------ grow kill points
KILL_POINTS = {
    # name: (target, when, n, match)
    "before the first checkpoint": ("RunDir.save_checkpoint", "before", 1, "-"),
    "after a growth, before its checkpoint": ("RunDir.save_stage", "after", 3, "-"),
    "inside a checkpoint write (a stale .tmp)": ("files.os.replace", "before", 3, "last.pt"),
    "inside a metrics row": ("tables.append_row", "half", 4, "metrics.csv"),
    "in fine-tuning": ("RunDir.save_checkpoint", "before", 6, "-"),
    "finish: after the last layers rows": ("RunDir.save_initial", "before", 1, "-"),
    "finish: init written, final not": ("RunDir.save_final", "before", 1, "-"),
    "finish: inside final/model.safetensors": ("final.atomic_write_bytes", "before", 1,
                                               "model.safetensors"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_then_resumed_equals_uninterrupted(point, tiny_start, uninterrupted,
                                                  tmp_path):
    run = tmp_path / "run"
    killed(grow_argv(tiny_start, run), *KILL_POINTS[point])
    assert not (run / "final" / "model.safetensors").exists()
    assert main(["resume", str(run), "--quiet"]) == 0
    assert_same_run(run, uninterrupted)


def test_killed_after_the_finish_is_finished(tiny_start, uninterrupted, tmp_path, capsys):
    run = tmp_path / "run"
    killed(grow_argv(tiny_start, run), "RunDir.save_final", "after", 1)
    assert_same_run(run, uninterrupted)
    assert main(["resume", str(run)]) == 2
    assert "already finished" in capsys.readouterr().err


def test_rerunning_the_command_points_to_resume(tiny_start, tmp_path, capsys):
    run = tmp_path / "run"
    killed(grow_argv(tiny_start, run), "RunDir.save_checkpoint", "before", 1)
    before = {k: p.read_bytes() for k, p in _files(run).items()}
    assert main(grow_argv(tiny_start, run)) == 2
    err = capsys.readouterr().err
    assert f"grownet resume {run}" in err and err.count("\n") == 1
    assert {k: p.read_bytes() for k, p in _files(run).items()} == before


def test_a_second_writer_is_refused_while_the_first_runs(tiny_start, uninterrupted,
                                                         tmp_path, capsys):
    run = tmp_path / "run"
    pid = fork_and_stop(grow_argv(tiny_start, run), "RunDir.save_checkpoint", "before", 3,
                        how=signal.SIGSTOP)  # alive, holding the lock, mid-run
    try:
        before = snapshot(run)
        for argv in (grow_argv(tiny_start, run), ["resume", str(run)],
                     ["train", "--data", "digits", "--arch", tiny_start, "--out", str(run)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"{run} is being written by process {pid}" in err and err.count("\n") == 1
        assert snapshot(run) == before
        assert main(["inspect", str(run)]) == 0  # readers work on a locked run
        assert main(["report", str(run), "--out", str(tmp_path / "live.html")]) == 0
        assert "in progress" in (tmp_path / "live.html").read_text()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert main(["resume", str(run), "--quiet"]) == 0
    assert_same_run(run, uninterrupted)


def test_a_damaged_final_model_is_written_again(uninterrupted, tmp_path, capsys):
    run = tmp_path / "run"
    import shutil

    shutil.copytree(uninterrupted, run)
    model = run / "final" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:2000])  # a half-copied folder
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 2
    assert f"grownet resume {run}" in capsys.readouterr().err
    assert main(["resume", str(run), "--quiet"]) == 0
    assert_same_run(run, uninterrupted)


# ------------------------------------------------------------------ prune kill points
def prune_argv(source: Path, out: Path) -> list[str]:
    return ["prune", str(source), "--percent", "40", "--retrain-epochs", "3",
            "--retrain-from", "init", "--out", str(out), "--quiet"]


@pytest.fixture(scope="module")
def pruned(uninterrupted, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pruned") / "ticket"
    assert main(prune_argv(uninterrupted, out)) == 0
    return out


PRUNE_KILL_POINTS = {
    "after prune.csv and its event, before final/": ("RunDir.save_final", "before", 1, "-"),
    "retraining, before its first checkpoint": ("RunDir.save_checkpoint", "before", 1, "-"),
    "retraining, between checkpoints": ("RunDir.save_checkpoint", "before", 2, "-"),
    "retraining done, before the retrain event": ("RunDir.log_event", "before", 1,
                                                  "'retrain'"),
}


@pytest.mark.parametrize("point, resume_from", [
    *((point, "OUT") for point in PRUNE_KILL_POINTS),
    ("retraining, between checkpoints", "OUT/retrain"),  # the retrain folder leads to OUT
])
def test_killed_prune_resumes(point, resume_from, uninterrupted, pruned, tmp_path, capsys):
    out = tmp_path / "ticket"
    killed(prune_argv(uninterrupted, out), *PRUNE_KILL_POINTS[point])
    assert main(prune_argv(uninterrupted, out)) == 2  # the same command says: resume
    assert f"grownet resume {out}" in capsys.readouterr().err
    target = out if resume_from == "OUT" else out / "retrain"
    assert main(["resume", str(target), "--quiet"]) == 0
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["prune", "retrain"]
    assert events[1]["test_acc"] == json.loads(
        (pruned / "events.jsonl").read_text().splitlines()[1])["test_acc"]
    assert (out / "prune.csv").read_bytes() == (pruned / "prune.csv").read_bytes()
    assert_same_weights(out / "final" / "model.safetensors", pruned / "final" / "model.safetensors")
    assert_same_run(out / "retrain", pruned / "retrain")
    assert main(["resume", str(out)]) == 2  # finished now
