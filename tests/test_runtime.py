from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgetune.cli import main
from edgetune.errors import BundleError
from edgetune.runtime import Classifier

from .conftest import runtime_venv
from .test_export import TEXTS, ort_logits


def test_predictions_match_the_onnx_model_in_input_order(bundle):
    clf = Classifier.load(bundle)
    texts = TEXTS + ["word " * 500]  # longer than max length: truncated, not an error
    preds = clf.predict(texts, batch_size=3, all_scores=True, top_k=2)
    logits = ort_logits(bundle / "model.onnx", bundle, texts[:-1])
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert [x.label for x in preds[:-1]] == [clf.labels[i] for i in logits.argmax(1)]
    # int8 activations are quantized per batch, so batching moves scores slightly.
    np.testing.assert_allclose([x.score for x in preds[:-1]], p.max(1), atol=2e-3)
    for x in preds:
        assert abs(sum(x.scores.values()) - 1) < 1e-4 and len(x.top_k) == 2
        assert x.top_k[0] == (x.label, x.score) and x.top_k[0][1] >= x.top_k[1][1]
    assert clf.labels == ["negative", "positive"] and clf.max_length == 64
    # Batch size does not change results.
    again = clf.predict(texts, batch_size=1)
    assert [x.label for x in again] == [x.label for x in preds]


def test_tampered_or_truncated_bundle_is_refused(bundle):
    f = bundle / "model.onnx"
    data = bytearray(f.read_bytes())
    data[100] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its SHA-256"):
        Classifier.load(bundle)
    f.write_bytes(bytes(data[: len(data) // 2]))
    r = CliRunner().invoke(main, ["predict", str(bundle), "hello"])
    assert r.exit_code == 2 and "SHA-256" in r.output and "Traceback" not in r.output


def test_cli_formats_and_inputs(bundle, tmp_path):
    run = CliRunner()
    r = run.invoke(main, ["predict", str(bundle), "a delightful comedy", "terrible performance"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 3 and "a delightful comedy" in lines[1] and lines[2].split()[0] == "1"

    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    r = run.invoke(
        main,
        [
            "predict",
            str(bundle),
            "--input",
            str(tmp_path / "in.txt"),
            "--format",
            "jsonl",
            "--top-k",
            "2",
        ],
    )
    rows = [json.loads(x) for x in r.output.splitlines()]
    assert [x["index"] for x in rows] == list(range(len(TEXTS)))
    assert all(len(x["top_k"]) == 2 for x in rows)
    expected = [p.label for p in Classifier.load(bundle).predict(TEXTS)]
    assert [x["label"] for x in rows] == expected

    import csv

    with open(tmp_path / "in.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "review"])
        w.writerows([[i, t] for i, t in enumerate(TEXTS)])
    r = run.invoke(
        main, ["predict", str(bundle), "--input", str(tmp_path / "in.csv"), "--format", "csv"]
    )
    out = list(csv.DictReader(r.output.splitlines()))
    assert [x["label"] for x in out] == expected and out[0].keys() >= {"index", "label", "score"}

    (tmp_path / "in.tsv").write_text("sentence\tx\n" + "".join(f"{t}\t1\n" for t in TEXTS))
    r = run.invoke(
        main, ["predict", str(bundle), "--input", str(tmp_path / "in.tsv"), "--format", "jsonl"]
    )
    assert [json.loads(x)["label"] for x in r.output.splitlines()] == expected

    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"body": t}) + "\n" for t in TEXTS[:3]) + "{bad\n"
    )
    r = run.invoke(
        main,
        [
            "predict",
            str(bundle),
            "--input",
            str(tmp_path / "in.jsonl"),
            "--text-column",
            "body",
            "--format",
            "jsonl",
        ],
    )
    rows = [json.loads(x) for x in r.output.splitlines()]
    assert [x.get("label") for x in rows[:3]] == expected[:3] and "not valid JSON" in rows[3][
        "error"
    ]

    r = run.invoke(
        main, ["predict", str(bundle), "--input", str(tmp_path / "in.csv"), "--text-column", "nope"]
    )
    assert r.exit_code == 2 and "--text-column" in r.output
    r = run.invoke(main, ["predict", str(bundle), "--input", str(tmp_path / "missing.txt")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_bad_lines_never_crash_or_reorder(bundle):
    lines = [
        b"a wonderful film",
        b"",
        b"bad \xff\xfe bytes here",
        b"x" * (1 << 20),  # a 1 MB line
        b"bell \x07 and \x1b escape \x00 nul",
        b"   ",
        b"the end",
    ]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetune.cli",
            "predict",
            str(bundle),
            "--format",
            "jsonl",
            "--batch-size",
            "2",
        ],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    rows = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert [x["index"] for x in rows] == list(range(len(lines)))
    assert rows[1]["error"] == "empty text" and rows[5]["error"] == "empty text"
    assert "invalid UTF-8" in rows[2]["warning"] and rows[2]["label"] in ("negative", "positive")
    assert all("label" in rows[i] for i in (0, 2, 3, 4, 6))


def test_runtime_runs_in_a_clean_environment_without_torch(bundle, tmp_path):
    """A fresh venv that holds only numpy, onnxruntime, tokenizers, click and edgetune."""
    py = runtime_venv(tmp_path)
    script = (
        "import sys, importlib.util as u\n"
        "from edgetune.runtime import Classifier\n"
        f"clf = Classifier.load({str(bundle)!r})\n"
        "print(clf.predict(['a delightful comedy', 'terrible performance'])[0].label)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'pandas') if u.find_spec(m)))\n"
        "print(sorted(m for m in ('torch', 'transformers', 'onnx', 'pandas') if m in sys.modules))\n"
    )
    r = subprocess.run([str(py), "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    label, findable, imported = r.stdout.strip().splitlines()
    assert label in ("negative", "positive")
    assert findable == "[]" and imported == "[]"  # torch and friends are not even installed
    # The CLI works there too, and the training commands explain what is missing.
    cli = [str(py), "-m", "edgetune.cli"]
    r = subprocess.run(
        cli + ["predict", str(bundle), "fun"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and ("negative" in r.stdout or "positive" in r.stdout), r.stderr
    r = subprocess.run(
        cli + ["validate", str(bundle), "--no-memory"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "edgetune[train]" in r.stderr and "Traceback" not in r.stderr
    # The missing extra is named before any judgement of the input (here: a missing file).
    for cmd in (
        ["train", "--model", "tiny-distilbert", "--data", "missing.csv", "--output", "r"],
        ["export", "missing-run", "--output", "b"],
    ):
        r = subprocess.run(cli + cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode == 2 and "edgetune[train]" in r.stderr, r.stderr
