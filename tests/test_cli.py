from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from edgetune.cli import main
from edgetune.train import load_result

FAST = [
    "--model",
    "tiny-distilbert",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--precision",
    "fp32",
    "--device",
    "cpu",
    "--val-size",
    "0.25",
    "--test-size",
    "0.25",
    "--quiet",
]


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_every_command_has_help():
    top = invoke("--help")
    assert top.exit_code == 0
    for name in main.commands:
        r = invoke(name, "--help")
        assert r.exit_code == 0 and "Example" in r.output, name


def test_presets_lists_required_presets():
    r = invoke("presets")
    assert r.exit_code == 0
    for name in ("minilm-l6", "distilbert-base-uncased", "tiny-distilbert"):
        assert name in r.output


def test_train_command_end_to_end(csv_file, tmp_path):
    out = tmp_path / "run"
    r = invoke(
        "train", "--data", str(csv_file), "--output", str(out), *FAST, "--label-names", "neg,pos"
    )
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output and "test" in r.output
    res = load_result(out)
    assert res.label_names == ["neg", "pos"]
    assert f"{res.test['accuracy'] * 100:.2f}%" in r.output


def _assert_clean_error(r, pattern):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert pd.Series([lines[0]]).str.contains(pattern, regex=True).iloc[0], lines[0]


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda p: p / "missing.csv", "does not exist"),
        (lambda p: (p / "bad.json").write_text('{"text": ') and p / "bad.json", "cannot read"),
        (
            lambda p: (p / "cols.csv").write_text("words,verdict\na,1\nb,0\n") and p / "cols.csv",
            "no text column",
        ),
        (
            lambda p: (
                (p / "amb.csv").write_text("text,review,label\na,a,1\nb,b,0\n") and p / "amb.csv"
            ),
            "ambiguous text column",
        ),
        (
            lambda p: (
                (p / "one.csv").write_text("text,label\n" + "".join(f"t{i},x\n" for i in range(20)))
                and p / "one.csv"
            ),
            "one class only",
        ),
        (
            lambda p: (p / "empty.csv").write_text("text,label\n ,1\n  ,\n") and p / "empty.csv",
            "no training rows left",
        ),
    ],
)
def test_bad_data_gives_one_line_error_and_exit_2(tmp_path, make, pattern):
    data = make(tmp_path)
    out = tmp_path / "run"
    r = invoke("train", "--data", str(data), "--output", str(out), *FAST)
    _assert_clean_error(r, pattern)
    assert not out.exists() and not (tmp_path / "run.partial").exists()


def test_bad_model_and_existing_output(csv_file, tmp_path):
    out = tmp_path / "run"
    r = invoke(
        "train",
        "--data",
        str(csv_file),
        "--output",
        str(out),
        *FAST[:0],
        "--model",
        "./nowhere/model",
        "--quiet",
    )
    _assert_clean_error(r, "unknown model")
    r = invoke("train", "--data", str(csv_file), "--output", str(out), *FAST)
    assert r.exit_code == 0
    before = json.loads((out / "metrics.json").read_text())
    r = invoke("train", "--data", str(csv_file), "--output", str(out), *FAST)
    _assert_clean_error(r, "already holds a run.*--overwrite")
    assert json.loads((out / "metrics.json").read_text()) == before
    r = invoke("train", "--data", str(csv_file), "--output", str(out), *FAST, "--overwrite")
    assert r.exit_code == 0


def test_bad_option_values_exit_2(csv_file, tmp_path):
    r = invoke(
        "train", "--data", str(csv_file), "--output", str(tmp_path / "r"), *FAST, "--augment", "1.5"
    )
    _assert_clean_error(r, "--augment")
    r = invoke("train", "--output", str(tmp_path / "r"))
    assert r.exit_code == 2 and "--model and --data are required" in r.output
