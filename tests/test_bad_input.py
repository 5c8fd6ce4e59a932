"""Every user error and unreadable file, on every command: exit 2, one line naming the
problem and the fix, no traceback, and nothing on disk changed."""

from __future__ import annotations

import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from runfiles import snapshot

import grownet as gn
from grownet.cli import main
from grownet.runs.lock import DirLock

TINY = ["--data", "digits", "--epochs", "3", "--entry-epochs", "0.5", "--batch-size", "128",
        "--quiet"]
GROWTH = ["--epochs-per-stage", "1", "--finetune-epochs", "1"]


def _idx(path: Path, arr: np.ndarray) -> None:
    raw = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(raw + arr.astype(np.uint8).tobytes())


def _mnist_files(folder: Path, n_train: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", 5)):
        _idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)))
        _idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))


def _damaged(ws: Path, name: str, source: str, damage) -> None:
    shutil.copytree(ws / source, ws / name)
    damage(ws / name)


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _set_cell(path: Path, line: int, column: str, value: str) -> None:
    rows = [r.split(",") for r in path.read_text().splitlines()]
    rows[line][rows[0].index(column)] = value
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace of runs (finished, unfinished, damaged in one way each) and files."""
    ws = tmp_path_factory.mktemp("ws")
    stages = tuple(gn.Stage(f"s{i}", layers=(gn.Layer(f"s{i}_l0", 2),)) for i in (1, 2))
    (ws / "tiny.json").write_text(gn.ArchSpec("plain", (1, 8, 8), 10, stages=stages,
                                              name="tiny").to_json())
    (ws / "mnist-shaped.json").write_text(gn.ArchSpec.preset("seed").to_json())
    assert main(["grow", "--from", str(ws / "tiny.json"), *TINY, *GROWTH,
                 "--out", str(ws / "grow")]) == 0
    assert main(["train", "--arch", str(ws / "tiny.json"), "--method", "sgd", *TINY,
                 "--out", str(ws / "sgd")]) == 0

    def unfinish(run):
        shutil.rmtree(run / "final")
        shutil.rmtree(run / "init")

    assert main(["report", str(ws / "grow")]) == 0  # RUN/report.html
    _damaged(ws, "live", "grow", unfinish)
    _damaged(ws, "d_final", "grow", lambda r: _cut(r / "final" / "model.safetensors", 2000))
    _damaged(ws, "d_events", "grow", lambda r: _cut(r / "events.jsonl", 300))
    _damaged(ws, "d_metrics", "grow", lambda r: _set_cell(r / "metrics.csv", 2, "test_acc",
                                                          "abc"))
    _damaged(ws, "d_trainmacs", "grow", lambda r: _set_cell(r / "metrics.csv", 3,
                                                            "train_macs", "?"))
    _damaged(ws, "d_support", "grow", lambda r: (r / "support.csv").write_bytes(b"junk\0\1"))
    _damaged(ws, "d_layers", "grow", lambda r: (r / "layers.csv").write_bytes(
        bytes(range(256))))
    _damaged(ws, "d_layercols", "grow", lambda r: (r / "layers.csv").write_text("a,b\n1,2\n"))
    _damaged(ws, "d_arch", "grow", lambda r: (r / "final" / "arch.json").write_text('{"fam'))
    _damaged(ws, "d_config", "grow", lambda r: (r / "config.toml").write_text("epochs = [\n"))
    _damaged(ws, "d_ckpt", "live", lambda r: (r / "checkpoints" / "last.pt").write_bytes(
        b"not a checkpoint"))
    _damaged(ws, "d_live_events", "live", lambda r: (r / "events.jsonl").write_text(
        '{"kind": "grow"}\n{broken\n{"kind": "stop"}\n'))
    _damaged(ws, "d_ratio", "live", lambda r: (r / "config.toml").write_text(
        (r / "config.toml").read_text().replace("grow_ratio = 1.5", "grow_ratio = inf")))
    assert main(["prune", str(ws / "grow"), "--percent", "30", "--out", str(ws / "pruned"),
                 "--quiet"]) == 0
    _damaged(ws, "d_cmp", "grow", lambda r: (r / "compare").mkdir())
    (ws / "d_cmp" / "compare" / "compare.csv").write_bytes(b"\xff\xfe\0garbage")
    (ws / "empty").mkdir()
    (ws / "cfgdir").mkdir()
    (ws / "afile").write_text("a file\n")
    (ws / "foreign").mkdir()
    (ws / "foreign" / "notes.txt").write_text("precious\n")
    for name, text in (("syntax.toml", "epochs = \n"), ("unknown.toml", "width_factor = 3\n"),
                       ("type.toml", 'epochs = "ten"\n'), ("nan.toml", "lr = nan\n"),
                       ("float.toml", "epochs = 5.0\n"), ("neg.toml", "seed = -3\n")):
        (ws / name).write_text(text)
    (ws / "binary.toml").write_bytes(b"\x80\x81\x00")
    _mnist_files(ws / "idx_empty", 0)
    _mnist_files(ws / "idx_one", 1)
    _mnist_files(ws / "idx_cut", 20)
    _cut(ws / "idx_cut" / "t10k-images-idx3-ubyte", 100)
    (ws / "cifar" / "cifar-10-batches-py").mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (ws / "cifar" / "cifar-10-batches-py" / name).write_bytes(pickle.dumps({"x": 1}))
    return ws


G = ["grow", "--from", "{ws}/tiny.json", *TINY, *GROWTH]
T = ["train", "--arch", "{ws}/tiny.json", *TINY]
NEW = ["--out", "{ws}/new"]

# (argv, words the one line must hold); {ws} is the workspace
CASES = [
    # configuration values, from flags: the flag as typed and what it accepts
    ([*G, *NEW, "--seed", "1180591620717411303424"], "--seed 1180591620717411303424: must be"),
    ([*G, *NEW, "--seed", "-1"], "--seed -1: must be an integer from 0"),
    ([*G, *NEW, "--grow-ratio", "inf"], "--grow-ratio inf: must be a finite number"),
    ([*G, *NEW, "--grow-ratio", "nan"], "--grow-ratio nan"),
    ([*G, *NEW, "--grow-ratio", "0.5"], "--grow-ratio 0.5: must be a number >= 1"),
    ([*G, *NEW, "--lr", "0"], "--lr 0.0: must be a number > 0"),
    ([*G, *NEW, "--lr=-inf"], "--lr -inf"),
    ([*G, *NEW, "--tau", "1.5"], "--tau 1.5: must be a number in (0, 1]"),
    ([*G, *NEW, "--tau", "0"], "--tau 0.0"),
    ([*G, *NEW, "--momentum", "1"], "--momentum 1.0: must be a number in [0, 1)"),
    ([*G, *NEW, "--epochs", "0"], "--epochs 0: must be an integer >= 1"),
    ([*G, *NEW, "--finetune-epochs", "3"], "--finetune-epochs 3 leaves no epoch to grow in "
     "--epochs 3"),
    ([*G, *NEW, "--finetune-epochs", "-2"], "--finetune-epochs -2"),
    ([*G, *NEW, "--batch-size", "0"], "--batch-size 0: must be an integer >= 1"),
    ([*G, *NEW, "--max-width", "1"], "--max-width 1 is narrower than the start"),
    ([*G[:2], "seed", *G[3:], *NEW, "--max-width", "2"], "s1_l0 has 8 filters"),
    ([*G, *NEW, "--max-params", "10"], "--max-params 10 is smaller than the start"),
    ([*G, *NEW, "--max-macs", "5"], "--max-macs 5 is smaller than the start"),
    ([*G, *NEW, "--augment", "rotate"], "--augment rotate: must be one of auto"),
    ([*G, *NEW, "--schedule", "linear"], "--schedule linear: must be one of cosine"),
    ([*G, *NEW, "--widen-init", "ones"], "--widen-init ones"),
    ([*G, *NEW, "--device", "tpu"], "--device tpu: must be auto, cpu"),
    ([*G, *NEW, "--weight-decay", "-1"], "--weight-decay -1.0"),
    ([*G, *NEW, "--entry-epochs", "0"], "--entry-epochs 0.0: must be a number > 0"),
    ([*G, *NEW, "--grow-num", "0"], "--grow-num 0"),
    ([*G, *NEW, "--max-stages", "0"], "--max-stages 0"),
    ([*G, *NEW, "--depth-patience", "0"], "--depth-patience 0"),
    ([*G, *NEW, "--epochs-per-stage", "0"], "--epochs-per-stage 0"),
    ([*G, *NEW, "--kappa", "0"], "--kappa 0.0"),
    ([*G, *NEW, "--nu", "-1"], "--nu -1.0"),
    ([*G, *NEW, "--lam", "-1"], "--lam -1.0"),
    ([*G, *NEW, "--warmup-epochs", "-2"], "--warmup-epochs -2.0"),
    ([*T, *NEW, "--alpha", "-1"], "--alpha -1.0"),
    ([*T, *NEW, "--method", "adam"], "--method adam: must be one of sgd"),
    (["train", "--arch", "vgg16-narrow", *TINY, *NEW, "--batch-size", "1"],
     "--batch-size 1: the BatchNorm"),
    ([*G, *NEW, "--epochs", "ten"], "invalid int value"),
    # found in training, before the first checkpoint: what the run made is removed
    ([*G, *NEW, "--lr", "1e30"], "training loss became NaN"),
    ([*G, "--out", "{ws}/empty", "--lr", "1e30"], "training loss became NaN"),
    # where the run starts from
    (["grow", "--from", "nope", *TINY, *NEW], "'nope' is neither a preset"),
    (["grow", "--start", "{ws}/empty", *TINY, *NEW], "without final/arch.json"),
    (["grow", "--from", "{ws}/d_arch/final/arch.json", *TINY, *NEW], "arch.json is not a "
     "valid architecture"),
    (["grow", "--from", "{ws}/mnist-shaped.json", *TINY, *NEW], "is for inputs (1, 28, 28)"),
    (["train", "--arch", "nope", *TINY, *NEW], "'nope' is neither a preset"),
    # config files
    ([*G, *NEW, "--config", "{ws}/cfgdir"], "cfgdir is a folder"),
    ([*G, *NEW, "--config", "{ws}/missing.toml"], "missing.toml not found"),
    ([*G, *NEW, "--config", "{ws}/syntax.toml"], "is not valid TOML"),
    ([*G, *NEW, "--config", "{ws}/unknown.toml"], "unknown config key 'width_factor'"),
    ([*G, *NEW, "--config", "{ws}/type.toml"], "epochs = 'ten' in"),
    ([*G, *NEW, "--config", "{ws}/float.toml"], "must be an integer"),
    ([*G, *NEW, "--config", "{ws}/binary.toml"], "is not text"),
    ([*G, *NEW, "--config", "{ws}/nan.toml"], "lr = nan in"),
    ([*G, *NEW, "--config", "{ws}/neg.toml"], "seed = -3 in"),
    # output folders: nothing existing is overwritten
    ([*G, "--out", "{ws}/afile"], "is a file, not a folder"),
    ([*G, "--out", "{ws}/afile/sub"], "cannot create"),
    ([*G, "--out", "{ws}/foreign"], "already exists and is not empty"),
    ([*G, "--out", "{ws}/grow"], "holds a finished run"),
    ([*G, "--out", "{ws}/live"], "grownet resume"),
    # data on disk
    ([*G, *NEW, "--data", "imagenet"], "unknown dataset 'imagenet'"),
    ([*G[:2], "seed", *G[3:], *NEW, "--data", "mnist", "--data-root", "{ws}/nowhere"],
     "nowhere is not a directory"),
    ([*G[:2], "seed", *G[3:], *NEW, "--data", "mnist", "--data-root", "{ws}/idx_empty"],
     "holds no data"),
    ([*G[:2], "seed", *G[3:], *NEW, "--data", "mnist", "--data-root", "{ws}/idx_one"],
     "too few for one batch"),
    ([*G[:2], "seed", *G[3:], *NEW, "--data", "mnist", "--data-root", "{ws}/idx_cut"],
     "t10k-images-idx3-ubyte"),
    ([*G[:2], "vgg11", *G[3:], *NEW, "--data", "cifar10", "--data-root", "{ws}/cifar"],
     "data_batch_1"),
    # resume
    (["resume", "{ws}/grow"], "has already finished"),
    (["resume", "{ws}/empty"], "holds no run yet"),
    (["resume", "{ws}/nowhere"], "does not exist"),
    (["resume", "{ws}/d_ckpt"], "last.pt cannot be read"),
    (["resume", "{ws}/d_config"], "config.toml is not valid TOML"),
    (["resume", "{ws}/d_live_events"], "events.jsonl is damaged (line 2"),
    (["resume", "{ws}/d_ratio"], "grow_ratio = inf in {ws}/d_ratio/config.toml: must be a "
     "finite number"),
    (["resume", "{ws}/pruned"], "already finished; nothing to resume (prune the run again"),
    (["prune", "{ws}/grow", "--percent", "10", "--out", "{ws}/pruned"], "holds a finished run"),
    # prune
    (["prune", "{ws}/grow", "--percent", "100", *NEW], "--percent 100: must lie in [0, 100)"),
    (["prune", "{ws}/grow", "--percent", "-5", *NEW], "--percent -5"),
    (["prune", "{ws}/grow", "--epoch", "999", *NEW], "no support was recorded for epoch 999"),
    (["prune", "{ws}/grow", "--epoch", "0", "--retrain-epochs", "-1", *NEW],
     "--retrain-epochs -1"),
    (["prune", "{ws}/grow", "--epoch", "0", "--seed", "-4", *NEW], "--seed -4"),
    (["prune", "{ws}/live", "--percent", "10", *NEW], "grownet resume"),
    (["prune", "{ws}/d_final", "--percent", "10", *NEW], "model.safetensors is damaged"),
    (["prune", "{ws}/sgd", "--percent", "10", *NEW], "has no Γ support"),
    (["prune", "{ws}/grow", "--percent", "10", "--out", "{ws}/foreign"], "not empty"),
    (["prune", "{ws}/grow", "--percent", "10", "--out", "{ws}/afile"], "is a file"),
    (["prune", "{ws}/grow"], "one of the arguments"),
    # compare: every run is checked before anything trains
    (["compare", "{ws}/d_final", "--backbones", "lenet5", *NEW], "model.safetensors is damaged"),
    (["compare", "{ws}/grow", "{ws}/d_trainmacs", "--backbones", "lenet5", *NEW],
     "column train_macs reads '?'"),
    (["compare", "{ws}/grow", "{ws}/d_metrics", "--backbones", "lenet5", *NEW],
     "column test_acc reads 'abc'"),
    (["compare", "{ws}/live", "--backbones", "lenet5", *NEW], "has not finished"),
    (["compare", "{ws}/grow", "--backbones", "nope", *NEW], "unknown backbone 'nope'"),
    (["compare", "{ws}/grow", "--backbones", "lenet5", "--methods", "adam", *NEW],
     "unknown method 'adam'"),
    (["compare", "{ws}/grow", "--backbones", "lenet5", "--epochs", "0", *NEW], "--epochs"),
    (["compare", "{ws}/grow", "--backbones", "lenet5", "--out", "{ws}/sgd"],
     "is a run directory"),
    (["compare", "{ws}/grow", "--backbones", "lenet5", "--out", "{ws}/afile"], "is a file"),
    (["compare", "{ws}/grow", "--backbones", "lenet5", "--latency-repeats", "0", *NEW],
     "--latency-repeats"),
    # inspect
    (["inspect", "{ws}/d_layers"], "layers.csv is damaged (not UTF-8"),
    (["inspect", "{ws}/d_layercols"], "no column stage"),
    (["inspect", "{ws}/grow", "--stage", "99"], "stage 99 is not in"),
    (["inspect", "{ws}/nowhere"], "does not exist"),
    (["inspect", "{ws}/afile"], "not a folder"),
    # report
    (["report", "{ws}/grow", "--out", "{ws}/grow/metrics.csv"], "already exists"),
    (["report", "{ws}/grow", "--out", "{ws}/grow"], "report.html already exists"),
    (["report", "{ws}/d_support", "--out", "{ws}/r.html"], "support.csv is damaged"),
    (["report", "{ws}/d_final", "--out", "{ws}/r.html"], "'grownet resume {ws}/d_final'"),
    (["report", "{ws}/d_events", "--out", "{ws}/r.html"], "events.jsonl is damaged (its last "
     "line is cut short)"),
    (["report", "{ws}/d_metrics", "--out", "{ws}/r.html"], "line 3, column test_acc"),
    (["report", "{ws}/d_arch", "--out", "{ws}/r.html"], "arch.json is not a valid"),
    (["report", "{ws}/d_config", "--out", "{ws}/r.html"], "config.toml is not valid TOML"),
    (["report", "{ws}/d_live_events", "--out", "{ws}/r.html"], "line 2 is not JSON"),
    (["report", "{ws}/d_cmp", "--out", "{ws}/r.html"], "compare.csv cannot be read"),
    (["report", "{ws}/grow", "--compare", "{ws}/empty", "--out", "{ws}/r.html"],
     "compare.csv not found"),
    # count
    (["count", "seed", "--csv", "{ws}/grow/config.toml"], "already exists"),
    (["count", "seed", "--csv", "{ws}/nowhere/x.csv"], "does not exist"),
    (["count", "{ws}/d_arch"], "arch.json is not a valid architecture"),
    (["count", "{ws}/empty"], "has no final/arch.json"),
    (["count", "nope"], "neither a preset nor an existing path"),
    (["count", "seed", "--classes", "0"], "--classes must be >= 1"),
    (["count", "seed", "--in-shape", "0,1,1"], "positive integers"),
]


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(a[:4]) + " " + w[:30]
                                                      for a, w in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(argv, words, ws, capsys,
                                                          monkeypatch):
    monkeypatch.chdir(ws)  # a default runs/ folder would appear here
    before = snapshot(ws)
    try:
        rc = main([a.replace("{ws}", str(ws)) for a in argv])
    except SystemExit as stop:  # argparse's own errors
        rc = stop.code
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert err.startswith("grownet: error: ") and err.count("\n") == 1, err
    assert words.replace("{ws}", str(ws)) in err, err
    assert "Traceback" not in err and out == ""
    assert snapshot(ws) == before


def test_a_locked_run_refuses_a_second_writer_and_serves_readers(ws, capsys):
    lock = DirLock(ws / "live").acquire()  # a writer holds it (this process, as another would)
    try:
        before = snapshot(ws)
        assert main(["resume", str(ws / "live")]) == 2
        assert "is being written by process" in capsys.readouterr().err
        assert snapshot(ws) == before
        assert main(["inspect", str(ws / "live")]) == 0
        report = ws.parent / "live-report.html"
        assert main(["report", str(ws / "live"), "--out", str(report)]) == 0
        assert "in progress" in report.read_text()
    finally:
        lock.release()
