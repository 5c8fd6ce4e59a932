"""The runs room: atomic writes keep file modes, the one-writer lock, strict table
readers, output files never overwritten without --force, config values checked (with
hypothesis) and named by the flag the user typed."""

from __future__ import annotations

import math
import os
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import grownet as gn
from grownet.atomic import remove_stale_tmp
from grownet.cli import main
from grownet.errors import UserError
from grownet.grow import GrowthPolicy
from grownet.grow.policy import GROWTH_RULES
from grownet.runs import RunConfig, RunDir, atomic_write_text
from grownet.runs.config import RULES
from grownet.runs.lock import DirLock
from grownet.runs.tables import read_events, read_rows, read_table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ atomic writes
def test_atomic_files_get_the_umask_mode_and_keep_an_existing_mode(tmp_path):
    old = os.umask(0o027)
    try:
        new = atomic_write_text(tmp_path / "new.txt", "a")
        assert mode(new) == 0o640  # as open(path, "w") would make it, not mkstemp's 0600
        kept = tmp_path / "kept.txt"
        kept.write_text("a")
        kept.chmod(0o604)
        atomic_write_text(kept, "b")
        assert kept.read_text() == "b" and mode(kept) == 0o604
    finally:
        os.umask(old)


def test_a_resume_keeps_the_mode_of_the_tables(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    for epoch in range(3):
        run.append_row("metrics.csv", {"stage": 0, "epoch": epoch, "test_acc": 0.5})
    (run.path / "metrics.csv").chmod(0o640)
    run.truncate_logs(2)
    assert mode(run.path / "metrics.csv") == 0o640
    assert [r["epoch"] for r in run.rows("metrics.csv")] == ["0", "1"]


def test_stale_tmp_files_are_removed(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    stale = tmp_path / "checkpoints" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    keep = tmp_path / "notes.tmp"  # not one of atomic_write's names
    keep.write_text("x")
    assert remove_stale_tmp(tmp_path) == [stale]
    assert not stale.exists() and keep.exists()


def test_a_write_that_fails_is_one_user_error_naming_the_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="cannot write .*afile/sub/x.txt"):
        atomic_write_text(tmp_path / "afile" / "sub" / "x.txt", "y")


# ------------------------------------------------------------------ the lock
def test_one_writer_per_directory(tmp_path):
    first = DirLock(tmp_path).acquire()
    assert DirLock(tmp_path).holder() == str(os.getpid())
    with pytest.raises(UserError, match=f"being written by process {os.getpid()}"):
        DirLock(tmp_path).acquire()
    first.release()
    assert DirLock(tmp_path).holder() is None
    DirLock(tmp_path).acquire().release()  # free again


def test_create_refuses_a_locked_or_used_folder_and_removes_what_it_made(tmp_path):
    run = RunDir.create(tmp_path / "a" / "b", "grow")
    with pytest.raises(UserError, match="being written"):
        RunDir.create(tmp_path / "a" / "b", "grow")
    run.discard()  # no checkpoint: the folders it made go, the parent it found stays
    assert not (tmp_path / "a").exists() and tmp_path.exists()
    run = RunDir.create(tmp_path / "c", "grow")
    run.write_config("x = 1\n")
    run.release()
    with pytest.raises(UserError, match="grownet resume"):
        RunDir.create(tmp_path / "c", "grow")


# ------------------------------------------------------------------ tables
def test_a_line_cut_short_is_skipped_while_unfinished_and_an_error_after(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("stage,epoch,test_acc\r\n0,0,0.5\r\n0,1,0.")
    assert [r["epoch"] for r in read_rows(path)] == ["0"]
    with pytest.raises(UserError, match="last line is cut short"):
        read_rows(path, finished=True)
    events = tmp_path / "events.jsonl"
    events.write_text('{"kind": "grow", "epoch": 0}\n{"kind": "st')
    assert read_events(events) == [{"kind": "grow", "epoch": 0}]
    events.write_text('{"kind": "grow"}\n[1, 2]\n')
    with pytest.raises(UserError, match="line 2 is not a JSON object"):
        read_events(events)


@pytest.mark.parametrize("text, words", [
    ("stage,epoch,test_acc\n0,0,0.5\n0,1\n", "line 3 has 2 fields, the header 3"),
    ("stage,epoch,test_acc\n0,0,0.5\n0,1,\n", "column test_acc reads nothing"),
    ("stage,epoch,test_acc\n0,0,0.5\n0,one,0.5\n", "line 3, column epoch reads 'one'"),
    ("stage,test_acc\n0,0.5\n", "no column epoch"),
])
def test_damaged_tables_are_named_with_line_and_column(tmp_path, text, words):
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=words.replace("(", r"\(")) as err:
        read_rows(path) if "fields" in words else read_table(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------ outputs
def test_outputs_are_never_overwritten_without_force(tmp_path, capsys):
    target = tmp_path / "table.csv"
    target.write_text("precious")
    assert main(["count", "seed", "--csv", str(target)]) == 2
    assert target.read_text() == "precious" and "--force" in capsys.readouterr().err
    assert main(["count", "seed", "--csv", str(target), "--force"]) == 0
    assert target.read_text().startswith("layer,kind")
    assert mode(target) == 0o666 & ~_umask()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


# ------------------------------------------------------------------ config values
def from_text(text: str) -> RunConfig:
    """What ``--config`` makes of a config.toml's text."""
    return RunConfig().updated(tomllib.loads(text), "config.toml")


def _value(kind: str):
    return {
        "int": st.integers(min_value=-(2**70), max_value=2**70),
        "float": st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10, 10),
        "str": st.text(max_size=12),
        "bool": st.booleans(),
    }[kind]


KINDS = {**{f: RunConfig.__dataclass_fields__[f].type for f in RULES},
         **{f: GrowthPolicy.__dataclass_fields__[f].type.split(" |")[0] for f in GROWTH_RULES
            if f != "tau"}, "tau": "float"}
FLAGS = {**{k: r.flag for k, r in RULES.items()}, **{k: r.flag for k, r in GROWTH_RULES.items()}}


def _build(values: dict, where: str) -> tuple[RunConfig, GrowthPolicy]:
    """A configuration and its growth policy from one file's values."""
    cfg = RunConfig().updated(values, where)
    return cfg, GrowthPolicy.from_config(cfg.growth, where)


@st.composite
def config_values(draw):
    keys = draw(st.lists(st.sampled_from(sorted(KINDS)), unique=True, max_size=6))
    return {k: draw(_value(KINDS[k])) for k in keys}


@settings(max_examples=300, deadline=None)
@given(config_values())
def test_any_typed_values_validate_or_give_one_line_naming_the_flag(values):
    try:
        cfg, policy = _build(values, "test")
    except UserError as err:  # never another exception; one line; names a flag or key
        text = str(err)
        assert "\n" not in text
        assert any(FLAGS[k] in text or f"{k} = " in text for k in values)
        return
    for key, value in values.items():
        if isinstance(value, float):
            assert math.isfinite(value), key
    # a valid configuration survives config.toml: the file re-runs the same run
    again = from_text(cfg.to_toml())
    assert again == cfg and GrowthPolicy.from_config(again.growth) == policy
    assert policy.finetune(cfg.epochs) >= 0


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(KINDS)), st.one_of(st.none(), st.lists(st.integers()),
                                                  st.dictionaries(st.text(), st.integers())))
def test_wrong_types_in_a_file_say_what_the_key_must_be(key, value):
    if value is None:
        value = "text" if KINDS[key] != "str" else 3
    if key == "tau" and isinstance(value, dict):
        value = [value]  # a table is tau's per-layer form: a list is not
    with pytest.raises(UserError, match=f"{key} = .* in cfg.toml: must be "
                       r"(an integer|a number|a string|true or false)"):
        _build({key: value}, "cfg.toml")


@given(st.integers(min_value=1, max_value=10_000))
def test_default_fine_tuning_leaves_room_to_grow(epochs):
    finetune = GrowthPolicy().finetune(epochs)
    assert 0 <= finetune <= 6 and finetune < epochs
    assert finetune == min(6, epochs // 2)


def test_the_default_batch_is_each_commands_own_and_a_run_records_it():
    for command, batch in (("train", 64), ("grow", 128)):
        cfg = RunConfig(command=command)
        assert cfg.batch_size == -1 and cfg.batch == batch == cfg.resolved().batch_size
    assert RunConfig(command="train", batch_size=32).resolved().batch_size == 32
    with pytest.raises(UserError, match="batch_size = 0: must be an integer >= 1"):
        RunConfig(batch_size=0)  # a config checks itself when it is made


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=20))
@example("a\udc80")  # a lone surrogate, as undecodable argv bytes give
def test_any_text_round_trips_through_config_toml(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # made in code the key is named; from the command line, the flag
        with pytest.raises(UserError, match="data_root = .*: must be text"):
            RunConfig(data_root=text)
        with pytest.raises(UserError, match="--data-root"):
            RunConfig().layered([({"data_root": text}, {"data_root": "--data-root"})])
        return
    assert tomllib.loads(RunConfig(data_root=text).to_toml())["data_root"] == text


def test_errors_name_the_flag_as_typed_or_the_file(tmp_path, capsys):
    assert main(["grow", "--data", "digits", "--epochs", "0"]) == 2
    assert "--epochs 0: must be an integer >= 1" in capsys.readouterr().err
    cfg = tmp_path / "c.toml"
    cfg.write_text("epochs = 0\n")
    assert main(["grow", "--config", str(cfg)]) == 2
    assert f"epochs = 0 in {cfg}: must be an integer >= 1" in capsys.readouterr().err
    cfg.write_text("[growth]\ntau = 2.0\n")  # a key of the growth table: named by its file
    assert main(["grow", "--config", str(cfg)]) == 2
    assert f"tau = 2.0 in {cfg}" in capsys.readouterr().err
    assert main(["grow", "--from", "seed", "--data", "digits", "--max-width", "4"]) == 2
    err = capsys.readouterr().err
    assert "--max-width 4 is narrower than the start 'seed'" in err
    assert "must be a int" not in err and "config key" not in err


def test_tomllib_reads_what_to_toml_writes():
    cfg = RunConfig(data_root='a"b\\c\nd\te\x7f\x01', lr=1e-300, seed=2**63 - 1)
    assert tomllib.loads(cfg.to_toml())["data_root"] == cfg.data_root
    assert from_text(cfg.to_toml()) == cfg


# ------------------------------------------------------------------ short runs
@pytest.mark.parametrize("epochs", [1, 2, 5])
def test_grow_with_few_epochs_fits_its_fine_tuning(epochs, tmp_path):
    stages = tuple(gn.Stage(f"s{i}", layers=(gn.Layer(f"s{i}_l0", 2),)) for i in (1, 2))
    start = tmp_path / "tiny.json"
    start.write_text(gn.ArchSpec("plain", (1, 8, 8), 10, stages=stages).to_json())
    out = tmp_path / "run"
    assert main(["grow", "--data", "digits", "--from", str(start), "--epochs", str(epochs),
                 "--epochs-per-stage", "1", "--batch-size", "256", "--out", str(out),
                 "--quiet"]) == 0
    rows = RunDir(out).rows("metrics.csv")
    finetune = [r for r in rows if r["phase"] == "finetune"]
    assert len(rows) <= epochs and len(finetune) == min(6, epochs // 2)
    assert RunDir(out).finished
