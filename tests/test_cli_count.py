"""`grownet count`: presets, run directories, arch.json files, CSV, and user errors."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from grownet.cli import main
from grownet.cost import count
from grownet.spec import ArchSpec, preset


def _totals(text: str) -> tuple[int, int]:
    params = re.search(r"^total params: ([\d,]+) ", text, re.M)
    macs = re.search(r"^total MACs: ([\d,]+) ", text, re.M)
    assert params and macs, text
    return int(params.group(1).replace(",", "")), int(macs.group(1).replace(",", ""))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["count", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_preset_totals(capsys) -> None:
    rc, out, err = _run(capsys, "resnet20", "--in-shape", "3,32,32")
    assert rc == 0 and err == ""
    expected = count(preset("resnet20", in_shape=(3, 32, 32)))
    assert _totals(out) == (expected.params, expected.macs) == (269_722, 40_551_040)
    assert "s3_b2_conv2" in out and "head" in out


def test_preset_defaults_to_mnist_shape(capsys) -> None:
    rc, out, _ = _run(capsys, "lenet5")
    assert rc == 0 and _totals(out)[0] == 61_706
    assert "input 1x28x28, 10 classes" in out
    rc, out, _ = _run(capsys, "lenet5", "--classes", "100", "--in-shape", "3x32x32")
    assert rc == 0 and _totals(out)[0] == count(preset("lenet5", (3, 32, 32), 100)).params


@pytest.mark.parametrize("argv,match", [
    (["resnet21"], "'resnet21' is neither a preset nor an existing path; did you mean "),
    (["no/such/run"], "is neither a preset nor an existing path"),
    (["lenet5", "--classes", "0"], "--classes must be >= 1"),
    (["lenet5", "--in-shape", "1,1,1"], "pooling would shrink"),
])
def test_user_errors_exit_2_with_one_line(capsys, argv: list[str], match: str) -> None:
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.startswith("grownet: error: ") and err.count("\n") == 1
    assert match in err


def test_bad_in_shape_is_an_argparse_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["count", "resnet20", "--in-shape", "3,32"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected C,H,W" in err


def test_help_has_an_example(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["count", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "grownet count resnet56 --in-shape 3,32,32" in out and "--csv" in out


def _write(path: Path, spec: ArchSpec) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec.to_json())


def test_run_directory_final_then_latest_stage(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    specs = [preset("vgg16-narrow", (1, 28, 28)), preset("seed", (1, 28, 28)),
             preset("lenet5", (1, 28, 28))]
    _write(run / "stages" / "000" / "arch.json", specs[0])
    _write(run / "stages" / "010" / "arch.json", specs[1])  # numeric, not lexical, order
    _write(run / "stages" / "9" / "arch.json", specs[0])
    (run / "stages" / "011").mkdir()  # a stage that has not written its spec yet
    rc, out, _ = _run(capsys, str(run))
    assert rc == 0 and _totals(out) == (count(specs[1]).params, count(specs[1]).macs)

    _write(run / "final" / "arch.json", specs[2])
    rc, out, _ = _run(capsys, str(run))
    assert rc == 0 and _totals(out)[0] == 61_706

    rc, out, _ = _run(capsys, str(run / "stages" / "000" / "arch.json"))
    assert rc == 0 and _totals(out)[0] == count(specs[0]).params


def test_arch_json_keeps_its_shape_unless_overridden(tmp_path: Path, capsys) -> None:
    spec = preset("resnet20", (3, 32, 32), 100)
    _write(tmp_path / "arch.json", spec)
    rc, out, _ = _run(capsys, str(tmp_path / "arch.json"))
    assert rc == 0 and "input 3x32x32, 100 classes" in out
    rc, out, _ = _run(capsys, str(tmp_path / "arch.json"), "--in-shape", "3,64,64",
                      "--classes", "10")
    assert rc == 0 and "input 3x64x64, 10 classes" in out
    assert _totals(out)[1] == count(preset("resnet20", (3, 64, 64))).macs


def test_bad_run_inputs(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    rc, _, err = _run(capsys, str(tmp_path / "empty"))
    assert rc == 2 and "has no final/arch.json or stages/NNN/arch.json" in err
    (tmp_path / "broken.json").write_text("{oops")
    rc, _, err = _run(capsys, str(tmp_path / "broken.json"))
    assert rc == 2 and "does not parse" in err and err.count("\n") == 1


def test_csv(tmp_path: Path, capsys) -> None:
    path = tmp_path / "layers.csv"
    rc, out, _ = _run(capsys, "vgg16", "--in-shape", "3,32,32", "--csv", str(path))
    assert rc == 0 and f"wrote {path}" in out
    frame = pd.read_csv(path)
    spec = preset("vgg16", (3, 32, 32))
    assert list(frame["layer"]) == spec.layer_ids()
    assert frame["params"].sum() == count(spec).params == 14_724_042
    assert frame["macs"].sum() == count(spec).macs == 313_201_664
    rc, _, err = _run(capsys, "vgg16", "--csv", str(tmp_path / "missing" / "x.csv"))
    assert rc == 2 and "cannot write" in err
