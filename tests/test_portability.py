"""Where bundles run: each variant declares the ONNX Runtime it needs, older runtimes get a
one-line error (never INVALID_GRAPH), `--min-runtime` builds bundles for them, and the
oldest runtime pyproject claims is tested for real in a throw-away environment."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetune.cli import main
from edgetune.errors import BundleError
from edgetune.formats import bundle as bundlefmt
from edgetune.ort_versions import OLDEST_TESTED, ORT_SINCE, requirements, satisfies
from edgetune.runtime import Classifier, check_bundle

from .conftest import runtime_venv

ROOT = Path(__file__).resolve().parents[1]
ORT_OLDEST = ROOT / ".venv" / "ort-oldest"  # installed by the Makefile's set-up
CLAIMED = re.search(r'"onnxruntime>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
INT4 = ORT_SINCE[("com.microsoft", "GatherBlockQuantized")]


@pytest.fixture(scope="module")
def portable(trained_run, tmp_path_factory):
    from edgetune.export import export

    out = tmp_path_factory.mktemp("portable") / "b"
    export(
        source=str(trained_run),
        output=str(out),
        variants=("fp32", "int8-dynamic", "int8-portable"),
        min_runtime=CLAIMED,
        progress=False,
        validate=False,
    )
    return out


def test_variants_declare_the_runtime_they_need(bundle_dir):
    import onnx

    m = bundlefmt.verify(bundle_dir)
    for v in m["variants"].values():
        need = requirements(onnx.load(str(bundle_dir / v["file"]), load_external_data=False))
        assert v["requires"]["onnxruntime"] == need["min_onnxruntime"]
        assert v["requires"]["opsets"] == need["opsets"]
    # 4-bit embeddings (GatherBlockQuantized, written without `bits`) set the int8 floor.
    for name in ("int8-dynamic", "int8-static"):
        req = m["variants"][name]["requires"]
        assert req["onnxruntime"] == INT4 and "GatherBlockQuantized" in req["because"]
    assert m["variants"]["fp32"]["requires"]["onnxruntime"] == OLDEST_TESTED


def test_min_runtime_builds_variants_that_load_there(portable):
    m = bundlefmt.verify(portable)
    for name, v in m["variants"].items():
        assert satisfies(CLAIMED, v["requires"]["onnxruntime"]), (name, v["requires"])
        if "quantization" in v:
            assert v["quantization"]["embeddings"] == "int8"  # 4-bit needs a newer runtime
    assert check_bundle(portable, threads=1).passed


def test_the_portable_variant_loads_on_old_runtimes_without_asking(trained_run, tmp_path):
    from edgetune.export import export

    out = tmp_path / "b"
    export(
        source=str(trained_run),
        output=str(out),
        quantize="portable",
        progress=False,
        validate=False,
    )
    v = bundlefmt.verify(out)["variants"]["int8-portable"]
    assert v["file"] == "model.onnx" and v["requires"]["onnxruntime"] == OLDEST_TESTED
    q = v["quantization"]
    assert q["weights"] == "int8 asymmetric" and q["embeddings"] == "int8"
    assert "Attention" not in q["operators"] and v["batching"] == "row"
    assert check_bundle(out, threads=1).passed


def test_bad_min_runtime_is_refused(trained_run, tmp_path):
    r = CliRunner().invoke(
        main, ["export", str(trained_run), "--output", str(tmp_path / "b"), "--min-runtime", "new"]
    )
    assert r.exit_code == 2 and "--min-runtime 'new' is not a version" in r.output


def test_an_older_runtime_gets_one_line_and_a_variant_that_loads(bundle, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", "1.20.1")
    with pytest.raises(BundleError) as e:
        Classifier.load(bundle, threads=1)
    msg = str(e.value)
    assert f"variant int8-static needs onnxruntime >= {INT4}" in msg
    assert "this is onnxruntime 1.20.1" in msg and "pass --variant fp32" in msg
    with pytest.warns(UserWarning, match="using variant fp32"):
        assert Classifier.load(bundle, threads=1, fallback=True).variant == "fp32"
    result = check_bundle(bundle, threads=1)
    assert result.passed and [c.variant for c in result.checks] == ["fp32"]
    assert set(result.skipped) == {"int8-dynamic", "int8-static"}


def _run(py, *args, timeout=180):
    return subprocess.run(
        [str(py), "-m", "edgetune.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_bundles_on_the_oldest_claimed_runtime(bundle, portable, tmp_path):
    """pyproject's lower bound, for real: a fresh venv with that onnxruntime (and numpy<2)."""
    if not (ORT_OLDEST / "onnxruntime").is_dir():
        pytest.skip(f"{ORT_OLDEST} missing: `make venv` installs onnxruntime=={CLAIMED} there")
    py = runtime_venv(tmp_path, ("tokenizers", "click"), first=ORT_OLDEST)
    v = subprocess.run(
        [str(py), "-c", "import onnxruntime; print(onnxruntime.__version__)"],
        capture_output=True,
        text=True,
    )
    assert v.stdout.strip() == CLAIMED + ".0" * (CLAIMED.count(".") < 2), v.stderr
    # The default bundle's int8 variants need more: one line, exit 2, never INVALID_GRAPH.
    r = _run(py, "predict", str(bundle), "a delightful comedy")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "INVALID_GRAPH" not in r.stderr
    assert f"needs onnxruntime >= {INT4}" in r.stderr and "--variant fp32" in r.stderr
    r = _run(py, "predict", str(bundle), "a delightful comedy", "--fallback")
    assert r.returncode == 0 and "using variant fp32" in r.stderr, r.stderr
    # A bundle exported with --min-runtime: every variant loads and passes its self-check there.
    r = _run(py, "check", str(portable), "--threads", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASS") == 4 and "onnxruntime " + CLAIMED in r.stdout
