from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgetune.cli import main
from edgetune.errors import BundleError, ConfigError, DataError, GateFailed
from edgetune.export import export
from edgetune.formats import bundle as bundlefmt
from edgetune.validate import ValidateConfig, parse_speedup, validate
from edgetune.validate.gates import apply_gates as _gates

from .conftest import ASSETS

FAST = dict(
    rounds=5, warmup=1, pause_s=0.002, seq_lengths=(16, 32), memory=False, progress=False, threads=1
)


@pytest.fixture(scope="module")
def report(bundle_dir, tmp_path_factory):
    dst = tmp_path_factory.mktemp("validated") / "bundle"
    shutil.copytree(bundle_dir, dst)
    result = validate(bundle=str(dst), **{**FAST, "memory": True})
    return dst, result


def test_report_schema_files_and_manifest(report):
    root, result = report
    files = sorted(p.name for p in (root / "validation").iterdir())
    assert files == ["report.json", "report.md", "report.png"]
    rep = json.loads((root / "validation" / "report.json").read_text())
    assert rep == json.loads(json.dumps(result.report, default=str))
    assert rep["schema"] == "edgetune-validation" and rep["schema_version"] == 1
    for key in (
        "bundle",
        "default_variant",
        "baseline",
        "data",
        "settings",
        "variants",
        "flipped_examples",
        "gates",
        "passed",
        "environment",
        "config",
        "time_s",
    ):
        assert key in rep
    assert rep["baseline"] == "pytorch-fp32" and rep["default_variant"] == "int8-static"
    assert set(rep["variants"]) == {"pytorch-fp32", "int8-dynamic", "fp32", "int8-static"}
    assert rep["data"]["split"] == "test" and rep["data"]["rows"] == 12  # the run's own test split
    for name, v in rep["variants"].items():
        assert 0 <= v["accuracy"] <= 1 and 0 <= v["agreement"] <= 1
        assert set(v["latency"]) == {"seq16", "seq32", "data", "batch32"}
        assert all(c["p50_ms"] > 0 and c["p90_ms"] >= c["p50_ms"] for c in v["latency"].values())
        assert v["size_bytes"] > 0 and v["peak_rss_mb"] > 20
        if name != "pytorch-fp32":
            sp = v["latency"]["seq32"]["speedup"]
            assert sp["ci_low"] <= sp["ratio"] <= sp["ci_high"]
            assert len(rep["flipped_examples"][name]) == min(v["flipped"], 20)
    assert "environment" in rep and rep["environment"]["cpu"]["cores"] >= 1
    # ONNX fp32 is the same function as PyTorch fp32.
    fp32 = rep["variants"]["fp32"]
    assert fp32["agreement"] == 1.0 and fp32["logit_max_abs_diff"] < 1e-3
    # The torch process is the heaviest; int8 is the smallest file.
    v = rep["variants"]
    assert v["pytorch-fp32"]["peak_rss_mb"] > v["int8-static"]["peak_rss_mb"]
    assert v["int8-static"]["size_bytes"] < v["fp32"]["size_bytes"]
    # Headline figures travel with the bundle, and the bundle still verifies.
    m = bundlefmt.verify(root)
    mv = m["metrics"]["validation"]
    assert (
        mv["variants"]["fp32"]["agreement"] == 1.0 and "seq32" in mv["variants"]["fp32"]["speedup"]
    )
    # The report is not among the hashed files: nothing runs it, and re-validating rewrites it.
    assert not any(f.startswith("validation/") for f in m["files"])
    md = (root / "validation" / "report.md").read_text()
    assert "| int8-static* |" in md and "## Environment" in md
    assert "pytorch-fp32" in result.summary() and "int8-static*" in result.summary()


def test_validate_again_replaces_the_report(report):
    root, _ = report
    r = validate(bundle=str(root), variants=("fp32",), **FAST)
    assert set(r.report["variants"]) == {"pytorch-fp32", "fp32"}
    assert bundlefmt.verify(root)["metrics"]["validation"]["variants"].keys() == {
        "pytorch-fp32",
        "fp32",
    }


def test_gates_pass_and_fail_with_exit_codes(bundle):
    ok = CliRunner().invoke(
        main,
        [
            "validate",
            str(bundle),
            "--pause",
            "0",
            "--rounds",
            "5",
            "--seq-lengths",
            "16",
            "--no-memory",
            "--max-accuracy-drop",
            "100",
            "--min-agreement",
            "0",
            "--min-speedup",
            "0.001",
            "--quiet",
        ],
    )
    assert ok.exit_code == 0, ok.output
    # Three gates on the default variant, batch invariance on each of the three ONNX variants.
    assert ok.output.count("PASS") == 6
    bad = CliRunner().invoke(
        main,
        [
            "validate",
            str(bundle),
            "--pause",
            "0",
            "--rounds",
            "5",
            "--seq-lengths",
            "16,32",
            "--no-memory",
            "--min-speedup",
            "16:1000",
            "--min-agreement",
            "0",
            "--quiet",
        ],
    )
    assert bad.exit_code == 1
    lines = [ln for ln in bad.output.splitlines() if ln.startswith("gate failed")]
    assert len(lines) == 1 and "sequence length 16" in lines[0] and "minimum 1000x" in lines[0]
    rep = json.loads((bundle / "validation" / "report.json").read_text())
    assert rep["passed"] is False
    # report written before exit: three invariance gates, agreement, the failed speed-up
    assert [g["passed"] for g in rep["gates"]] == [True, True, True, True, False]
    assert bundlefmt.verify(bundle)["metrics"]["validation"]["passed"] is False
    with pytest.raises(GateFailed, match="speed-up"):
        validate(bundle=str(bundle), min_speedup=((None, 1000.0),), **FAST)


def test_agreement_gate_fails_against_a_different_original(bundle, trained_run, tmp_path):
    # A PyTorch "original" with the classifier negated disagrees with the bundle on every row.
    from safetensors.torch import load_file, save_file

    src = tmp_path / "negated"
    shutil.copytree(trained_run / "best", src)
    w = load_file(src / "model.safetensors")
    for k in [k for k in w if k.startswith("classifier.")]:
        w[k] = -w[k]
    save_file(w, src / "model.safetensors", metadata={"format": "pt"})
    r = validate(
        bundle=str(bundle), source=str(src), min_agreement=0.5, raise_on_failure=False, **FAST
    )
    assert not r.passed and "agreement of int8-static" in r.failures[0]
    assert r.report["variants"]["fp32"]["agreement"] == 0.0


def test_accuracy_drop_gate_both_ways():
    rows = {"int8-dynamic": {"accuracy_delta_points": -0.8, "agreement": 0.97, "latency": {}}}
    cfg = ValidateConfig(bundle="b", max_accuracy_drop=0.5)
    gates, failures = _gates(rows, cfg, "int8-dynamic", "pytorch-fp32")
    assert gates[0]["value"] == pytest.approx(0.8) and not gates[0]["passed"]
    assert failures == [
        "gate failed: accuracy drop of int8-dynamic vs pytorch-fp32: 0.80 points (limit 0.5)"
    ]
    gates, failures = _gates(
        rows, ValidateConfig(bundle="b", max_accuracy_drop=1.0), "int8-dynamic", "pytorch-fp32"
    )
    assert gates[0]["passed"] and failures == []


def test_explicit_data_and_label_names(bundle, tmp_path):
    # Labels given as names, in a different file: mapped onto the model's ids by name.
    import pandas as pd

    df = pd.read_csv(ASSETS / "sentiment.csv")
    df.to_csv(tmp_path / "test.csv", index=False)
    df.to_csv(tmp_path / "train.csv", index=False)
    r = validate(bundle=str(bundle), data=str(tmp_path), variants=("fp32",), **FAST)
    assert r.report["data"]["rows"] == len(df.drop_duplicates())
    wrong = df.assign(label=df["label"].map({"positive": "good", "negative": "bad"}))
    wrong.to_csv(tmp_path / "wrong.csv", index=False)
    with pytest.raises(DataError, match="do not match the model"):
        validate(bundle=str(bundle), data=str(tmp_path / "wrong.csv"), **FAST)


def test_no_pytorch_uses_onnx_fp32_as_baseline(bundle):
    r = validate(bundle=str(bundle), pytorch=False, max_accuracy_drop=100, **FAST)
    assert r.report["baseline"] == "fp32" and "pytorch-fp32" not in r.report["variants"]
    assert "speedup" not in r.report["variants"]["int8-dynamic"]["latency"]["seq16"]
    with pytest.raises(ConfigError, match="compares with PyTorch"):
        validate(bundle=str(bundle), pytorch=False, min_speedup=((None, 2.0),), **FAST)


def test_export_validates_at_the_end(trained_run, tmp_path):
    alone = export(source=str(trained_run), output=str(tmp_path / "a"), progress=False)
    assert alone.validation is None and "edgetune validate" in alone.note
    assert not (tmp_path / "a" / "validation").exists()
    r = export(
        source=str(trained_run), output=str(tmp_path / "b"), progress=False, validator=validate
    )
    assert r.validation is not None and r.validation.passed
    assert (tmp_path / "b" / "validation" / "report.json").is_file()
    assert "int8-static" in bundlefmt.verify(tmp_path / "b")["metrics"]["validation"]["variants"]
    assert "validated" in r.summary()
    r = export(source=str(trained_run), output=str(tmp_path / "c"), progress=False, validate=False)
    assert r.validation is None and not (tmp_path / "c" / "validation").exists()


def test_bad_input_exits_2(bundle, tmp_path):
    run = CliRunner()
    cases = [
        (["validate", str(tmp_path)], "not an edgetune bundle"),
        (["validate", str(bundle), "--min-speedup", "fast"], "not a ratio"),
        (["validate", str(bundle), "--seq-lengths", "a,b"], "comma-separated integers"),
        (["validate", str(bundle), "--variants", "int4"], "has no variant int4"),
        (["validate", str(bundle), "--source", str(tmp_path / "gone")], "--no-pytorch"),
        (["validate", str(bundle), "--min-speedup", "64:2"], "not measured"),
        (["validate", str(bundle), "--min-agreement", "1.5"], "fraction"),
        (["validate", str(bundle), "--min-speedup", "128:2"], "beyond the model's max length 64"),
        (["validate", str(bundle), "--data", str(tmp_path / "missing.csv")], "missing.csv"),
    ]
    for args, msg in cases:
        r = run.invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in r.output and "Traceback" not in r.output, (args, r.output)
    # A tampered bundle is refused before any model runs.
    f = bundle / "model.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its SHA-256"):
        validate(bundle=str(bundle), **FAST)


def test_parse_speedup():
    assert parse_speedup("3") == (None, 3.0)
    assert parse_speedup("128:3.5x") == (128, 3.5)
    assert np.isclose(parse_speedup("32:4")[1], 4.0)
