"""`grownet report`: the tables, the figures and the self-contained HTML page."""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from grownet.cli import main
from grownet.cost import count
from grownet.report import (
    SECTIONS,
    curves_figure,
    layer_epoch_matrix,
    read_run,
    run_summary,
    support_heatmap_figure,
    width_timeline,
    width_timeline_figure,
)
from grownet.spec import ArchSpec

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")

# A grow run short enough for a test that still widens one layer and inserts another
# (so the timeline has a layer that does not exist at first).
GROW = ["grow", "--from", "seed", "--data", "digits", "--epochs", "6",
        "--epochs-per-stage", "2",
        "--depth-patience", "1", "--tau", "0.5", "--entry-epochs", "1",
        "--finetune-epochs", "2", "--max-stages", "2", "--macs-step", "20", "--mature-epochs", "1",
        "--quiet"]
SGD = ["train", "--data", "digits", "--arch", "mlp-300-100", "--method", "sgd",
       "--epochs", "2", "--quiet"]
DST = ["train", "--data", "digits", "--arch", "lenet5", "--method", "dst", "--epochs", "2",
       "--quiet"]


class Page(HTMLParser):
    """What the tests read from a report: headings, images, links, tables by id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.imgs: list[str] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self.tables: dict[str, list[list[str]]] = {}
        self._h2: list[str] | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "h2":
            self._h2 = []
        elif tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._h2 is not None:
            self.h2.append("".join(self._h2).strip())
            self._h2 = None
        elif tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._h2 is not None:
            self._h2.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _make(tmp: Path, name: str, argv: list[str]) -> Path:
    out = tmp / name
    assert main([*argv, "--out", str(out)]) == 0
    return out


def _png(path: Path, width: int = 40, height: int = 30) -> bytes:
    fig = Figure(figsize=(width / 100, height / 100))
    fig.add_subplot().plot([0, 1], [1, 0])
    fig.savefig(path, format="png", dpi=100)
    return path.read_bytes()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("report")
    made = {"grow": _make(tmp, "grow", GROW), "sgd": _make(tmp, "sgd", SGD),
            "dst": _make(tmp, "dst", DST)}
    # the comparison a `grownet compare` would have written (not its code: only its files)
    cmp_dir = made["grow"] / "compare"
    cmp_dir.mkdir()
    pd.DataFrame([
        {"model": "grown", "method": "dessilbi", "kind": "grown", "seeds": 3, "params": 4258,
         "macs": 60544, "latency_cpu_b1_ms": 0.081, "latency_cpu_b64_ms": 0.42,
         "train_macs": 1.1e9, "acc_mean": 0.9806, "acc_std": 0.0041,
         "runs": f"{made['grow']};a;b"},
        {"model": "lenet5", "method": "sgd", "kind": "backbone", "seeds": 1,
         "params": 19754, "macs": 35880, "latency_cpu_b1_ms": 0.12,
         "latency_cpu_b64_ms": 0.9, "train_macs": 4.6e8, "acc_mean": 0.975,
         "acc_std": float("nan"), "runs": "c"},
    ]).to_csv(cmp_dir / "compare.csv", index=False)
    _png(cmp_dir / "pareto.png")
    for name in made:
        assert main(["report", str(made[name])]) == 0
    return made


def _page(run: Path) -> tuple[str, Page]:
    text = (run / "report.html").read_text(encoding="utf-8")
    return text, Page(text)


# ------------------------------------------------------------------ the page
def test_grow_report_sections_images_and_no_network(runs) -> None:
    text, page = _page(runs["grow"])
    assert page.h2 == [heading for _, heading in SECTIONS]
    n_stages = len(list((runs["grow"] / "stages").glob("[0-9][0-9][0-9]")))
    assert n_stages == 2
    # timeline + heatmap + curves, one graph per stage, the Pareto figure
    assert len(page.imgs) == 3 + n_stages + 1
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [u for u in page.urls if u.startswith(("http://", "https://", "//"))]
    assert all(u.startswith(("data:", "#")) for u in page.urls)
    assert not page.tags & {"script", "link", "iframe"}
    # the stage graphs and the Pareto figure are the run's own files, embedded verbatim
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in page.imgs}
    for stage in ("000", "001"):
        assert (runs["grow"] / "stages" / stage / "graph.png").read_bytes() in embedded
    assert (runs["grow"] / "compare" / "pareto.png").read_bytes() in embedded
    assert "in progress" not in text


def test_per_layer_table_equals_layers_csv(runs) -> None:
    _, page = _page(runs["grow"])
    layers = pd.read_csv(runs["grow"] / "layers.csv", dtype={"selected": "Int64"})
    for stage, rows in layers.groupby("stage"):
        table = page.tables[f"layers-stage-{stage}"]
        assert table[0] == ["layer", "width", "selected", "ratio", "params", "MACs"]
        assert len(table) - 1 == len(rows)
        for cells, (_, row) in zip(table[1:], rows.iterrows(), strict=True):
            layer, width, selected, ratio, params, macs = cells
            assert layer == row["layer"]
            assert int(width.replace(",", "")) == row["width"]
            assert int(params.replace(",", "")) == row["params"]
            assert int(macs.replace(",", "")) == row["macs"]
            if pd.isna(row["selected"]):  # the classifier has no support
                assert selected == ratio == "–"
            else:
                assert int(selected) == row["selected"]
                assert float(ratio) == pytest.approx(row["ratio"], abs=5e-4)
    assert set(page.tables) >= {f"layers-stage-{s}" for s in layers["stage"]}


def test_summary_matches_the_run(runs) -> None:
    run = read_run(runs["grow"])
    summary = run_summary(run)
    final = count(run.final_spec)
    assert summary["status"] == "finished"
    assert summary["command"].startswith("grownet grow")
    assert summary["start"] == "seed" and summary["method"] == "dessilbi"
    assert summary["data"] == "digits" and summary["seed"] == "0"
    assert summary["epochs done"] == "6 of 6"
    assert summary["stages"].startswith("2 (1 growth")
    assert summary["params"].startswith(f"{final.params:,} ")
    assert summary["MACs / sample"].startswith(f"{final.macs:,} ")
    assert summary["final widths"] == ", ".join(f"{k}={v}" for k, v in
                                                run.final_spec.widths().items())
    assert summary["final test accuracy"] == f"{100 * run.final_test_acc:.2f} %"
    assert 0 < run.final_test_acc <= 1
    metrics = pd.read_csv(runs["grow"] / "metrics.csv")
    assert summary["training compute"].endswith("FLOPs)")
    assert "wall time" in summary and run.metrics["train_macs"].iloc[-1] == \
        metrics["train_macs"].iloc[-1]


def test_comparison_table_is_formatted(runs) -> None:
    text, page = _page(runs["grow"])
    assert "98.06 ± 0.41 %" in text    # mean ± std in percent
    assert "97.50 %" in text           # one seed: no std
    assert "60.54 k" in text and "1.1 G" in text  # MACs and training compute, human
    assert "grownet compare" not in text.split('id="compare"')[1]  # a table, not the hint


# ------------------------------------------------------------------ tables and figures
def test_width_timeline_follows_stage_specs(runs) -> None:
    run = read_run(runs["grow"])
    frame = width_timeline(run.metrics, run.stages)
    specs = dict(run.stages)
    assert list(frame.index) == list(run.metrics["epoch"])
    for epoch, stage in zip(run.metrics["epoch"], run.metrics["stage"], strict=True):
        widths = specs[stage].widths()
        for lid in frame.columns:
            value = frame.loc[epoch, lid]
            if lid in widths:
                assert value == widths[lid], (epoch, lid)
            else:  # inserted by a later stage
                assert pd.isna(value), (epoch, lid)
    # the inserted layer sits after its predecessor, the classifier last
    assert list(frame.columns) == list(run.final_spec.widths())
    assert frame.isna().any().any()  # the deepened layer does not exist at epoch 0
    fig = width_timeline_figure(frame, run.events)
    assert isinstance(fig, Figure)
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label() in frame.columns]
    assert [ln.get_label() for ln in lines] == list(frame.columns)
    for ln in lines:
        np.testing.assert_array_equal(
            ln.get_ydata(), frame[ln.get_label()].astype("Float64").to_numpy(
                dtype=float, na_value=np.nan))


def test_width_timeline_orders_an_inserted_layer() -> None:
    seed = ArchSpec.preset("seed", in_shape=(1, 8, 8))
    data = json.loads(seed.to_json())
    data["stages"][0]["layers"].append(dict(data["stages"][0]["layers"][0], id="s1_l1",
                                            width=12))
    deeper = ArchSpec.from_dict(data)
    metrics = pd.DataFrame({"epoch": [0, 1, 2], "stage": [0, 0, 1]})
    frame = width_timeline(metrics, [(0, seed), (1, deeper)])
    assert list(frame.columns) == ["s1_l0", "s1_l1", "s2_l0", "head"]
    assert pd.isna(frame.loc[1, "s1_l1"]) and frame.loc[2, "s1_l1"] == 12
    assert frame.loc[0, "s2_l0"] == seed.widths()["s2_l0"]


def test_heatmap_matrix_equals_support_csv(runs) -> None:
    support = pd.read_csv(runs["grow"] / "support.csv")
    matrix = layer_epoch_matrix(support, "ratio")
    assert list(matrix.index) == list(dict.fromkeys(support["layer"]))
    assert list(matrix.columns) == sorted(set(support["epoch"]))
    for _, row in support.iterrows():
        assert matrix.loc[row["layer"], row["epoch"]] == pytest.approx(row["ratio"])
    assert matrix.notna().sum().sum() == len(support)
    fig = support_heatmap_figure(matrix, events=read_run(runs["grow"]).events)
    shown = np.ma.filled(fig.axes[0].images[0].get_array().astype(float), np.nan)
    np.testing.assert_array_equal(shown, matrix.to_numpy(dtype=float))


def test_dst_run_uses_keep_csv(runs) -> None:
    text, page = _page(runs["dst"])
    assert page.h2 == [heading for _, heading in SECTIONS]
    assert "keep.csv" in text and "keep ratio" in text
    assert len(page.imgs) == 3 + 1  # timeline, keep heatmap, curves; one stage
    keep = pd.read_csv(runs["dst"] / "keep.csv")
    matrix = layer_epoch_matrix(keep, "keep_ratio")
    for _, row in keep.iterrows():
        assert matrix.loc[row["layer"], row["epoch"]] == pytest.approx(row["keep_ratio"])
    assert read_run(runs["dst"]).support is None


def test_sgd_run_says_there_is_no_gamma_path(runs) -> None:
    text, page = _page(runs["sgd"])
    assert page.h2 == [heading for _, heading in SECTIONS]
    assert "No Γ path" in text and "<code>sgd</code>" in text
    assert len(page.imgs) == 2 + 1  # timeline, curves; one stage; no heatmap
    assert "grownet compare" in text  # no comparison: the page says how to make one
    fig = curves_figure(read_run(runs["sgd"]).metrics)
    acc = [ln for ln in fig.axes[1].get_lines() if ln.get_label() == "test"][0]
    metrics = pd.read_csv(runs["sgd"] / "metrics.csv")
    np.testing.assert_allclose(acc.get_ydata(), 100 * metrics["test_acc"])


# ------------------------------------------------------------------ the command
def test_in_progress_run_and_out_flag(runs, tmp_path, capsys) -> None:
    run = tmp_path / "live"
    shutil.copytree(runs["grow"], run, ignore=shutil.ignore_patterns("report.html"))
    shutil.rmtree(run / "final")
    out = tmp_path / "sub" / "page.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out}"
    text = out.read_text(encoding="utf-8")
    assert "in progress" in text and not (run / "report.html").exists()
    assert "test accuracy (last epoch)" in text


def _error(capsys, argv: list[str]) -> str:
    rc = main(["report", *argv])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith("grownet: error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_is_one_line_exit_2(runs, tmp_path, capsys) -> None:
    assert "does not exist" in _error(capsys, [str(tmp_path / "nope")])
    assert "not a grownet run directory" in _error(capsys, [str(tmp_path)])
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(runs["sgd"] / "config.toml", empty / "config.toml")
    (empty / "metrics.csv").write_text("stage,epoch,test_acc\n")
    assert "no finished epoch yet" in _error(capsys, [str(empty)])
    bad = tmp_path / "badcmp"
    bad.mkdir()
    assert "compare.csv not found" in _error(capsys, [str(runs["sgd"]), "--compare",
                                                      str(bad)])
    (bad / "compare.csv").write_text("model,params\nx,1\n")
    assert "lacks the columns" in _error(capsys, [str(runs["sgd"]), "--compare", str(bad)])


def test_failed_report_keeps_the_old_file(runs, tmp_path, capsys) -> None:
    before = (runs["sgd"] / "report.html").read_bytes()
    _error(capsys, [str(runs["sgd"]), "--compare", str(tmp_path / "missing")])
    assert (runs["sgd"] / "report.html").read_bytes() == before


# ------------------------------------------------------------------ a real browser
def _load_bench():
    spec = importlib.util.spec_from_file_location("screenshot_report",
                                                  ROOT / "bench" / "screenshot_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs /usr/bin/chromium "
                    "(apt-get install -y chromium)")
def test_chromium_renders_the_report_at_1280(runs, tmp_path) -> None:
    from PIL import Image

    shot = tmp_path / "shot.png"
    width, height = _load_bench().screenshot(runs["grow"] / "report.html", shot)
    with Image.open(shot) as im:
        assert im.size == (width, height) and width == 1280
        pixels = np.asarray(im.convert("RGB"), dtype=float)
    assert height > 2000  # the whole page, not one window of it
    assert pixels.std() > 20  # not blank
    assert len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 100  # figures drawn
    # nothing wider than the page: the right margin is the plain page background
    assert math.isclose(float(np.abs(np.diff(pixels[:, -15:, :], axis=1)).max()), 0.0)
