"""Real-world predict and bench inputs: byte-order marks, non-object JSONL lines, directories,
and an ambiguous --max-regression."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgetune.bench import parse_fraction
from edgetune.cli import main
from edgetune.errors import ConfigError


def _jsonl(r):
    assert r.exit_code == 0, r.output
    return [json.loads(x) for x in r.output.splitlines()]


def test_byte_order_marks_are_not_part_of_the_first_column_or_line(bundle, tmp_path):
    csv = tmp_path / "excel.csv"
    csv.write_bytes(b"\xef\xbb\xbfreview,stars\r\na delightful comedy,5\r\ndull,1\r\n")
    for args in ([], ["--text-column", "review"]):
        rows = _jsonl(
            CliRunner().invoke(
                main, ["predict", str(bundle), "--input", str(csv), "--format", "jsonl", *args]
            )
        )
        assert [r["index"] for r in rows] == [0, 1] and all("label" in r for r in rows)
    jl = tmp_path / "bom.jsonl"
    jl.write_bytes(b'\xef\xbb\xbf{"text": "fine"}\n{"text": "bad"}\n')
    txt = tmp_path / "bom.txt"
    txt.write_bytes(b"\xef\xbb\xbffine\nbad\n")
    for f in (jl, txt):
        rows = _jsonl(
            CliRunner().invoke(
                main, ["predict", str(bundle), "--input", str(f), "--format", "jsonl"]
            )
        )
        assert len(rows) == 2 and all("label" in r and "warning" not in r for r in rows)


def test_jsonl_lines_that_are_not_objects_get_their_own_error(bundle, tmp_path):
    jl = tmp_path / "mixed.jsonl"
    jl.write_text('{"text": "a delightful comedy"}\n5\nnull\ntrue\n"text"\n{"text": "dull"}\n')
    rows = _jsonl(
        CliRunner().invoke(main, ["predict", str(bundle), "--input", str(jl), "--format", "jsonl"])
    )
    assert [r["index"] for r in rows] == list(range(6))
    assert "label" in rows[0] and "label" in rows[5]
    assert all(rows[i]["error"].startswith("not a JSON object") for i in (1, 2, 3, 4))


def test_input_directory_is_named_as_such(bundle, tmp_path):
    r = CliRunner().invoke(main, ["predict", str(bundle), "--input", str(tmp_path)])
    assert r.exit_code == 2 and "is a directory" in r.output and "Traceback" not in r.output


def test_max_regression_must_say_percent_or_fraction():
    assert parse_fraction("10%") == pytest.approx(0.10)
    assert parse_fraction("0.1") == pytest.approx(0.10)
    assert parse_fraction("150%") == pytest.approx(1.5)
    with pytest.raises(ConfigError, match="ambiguous: write 10% for percent"):
        parse_fraction("10")
    r = CliRunner().invoke(main, ["bench", "nowhere", "--max-regression", "10"])
    assert r.exit_code == 2 and "ambiguous" in r.output


@pytest.mark.parametrize("option", ["--output", "--markdown", "--junit"])
def test_bench_output_paths_are_checked_before_timing(bundle_dir, tmp_path, option):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for bad, why in (
        (tmp_path, "is a folder, not a regular file"),
        (a_file / "out.json", "is a file, not a folder"),
    ):
        r = CliRunner().invoke(
            main, ["bench", str(bundle_dir), "--compare", str(bundle_dir), option, str(bad)]
        )
        assert r.exit_code == 2 and why in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written or left


def test_a_one_column_csv_says_which_line_it_read_as_the_name(bundle, tmp_path):
    """`great movie` heading a one-column CSV is either a name or a text: say so, and
    --no-header classifies it."""
    csv = tmp_path / "one.csv"
    csv.write_text("great movie\nawful plot\ndull\n")
    r = CliRunner().invoke(main, ["predict", str(bundle), "--input", str(csv), "--format", "jsonl"])
    assert r.exit_code == 0
    assert "('great movie') was read as the column's name" in r.output and "--no-header" in r.output
    r = CliRunner().invoke(
        main, ["predict", str(bundle), "--input", str(csv), "--format", "jsonl", "--no-header"]
    )
    assert [json.loads(x)["index"] for x in r.output.splitlines()] == [0, 1, 2]
    assert "warning" not in r.output
    named = tmp_path / "named.csv"
    named.write_text("text\nawful plot\n")
    r = CliRunner().invoke(
        main, ["predict", str(bundle), "--input", str(named), "--format", "jsonl"]
    )
    assert r.exit_code == 0 and "warning" not in r.output and len(r.output.splitlines()) == 1


def test_min_speedup_beyond_max_length_names_the_real_limit_first(bundle):
    """Following the first message must not lead into a second: a length beyond the model's
    limit is named as such whether or not it is in --seq-lengths."""
    max_len = json.loads((bundle / "edgetune.json").read_text())["max_length"]
    too_long = str(max_len * 2)
    for extra in ([], ["--seq-lengths", f"16,{too_long}"]):
        r = CliRunner().invoke(
            main, ["validate", str(bundle), "--min-speedup", f"{too_long}:2", *extra]
        )
        assert r.exit_code == 2 and f"beyond the model's max length {max_len}" in r.output, r.output
    r = CliRunner().invoke(main, ["validate", str(bundle), "--min-speedup", "24:2"])
    assert r.exit_code == 2 and "add it to --seq-lengths" in r.output, r.output
