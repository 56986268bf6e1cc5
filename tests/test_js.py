"""Bundles run in JavaScript runtimes: transformers.js (Node) and onnxruntime-web (WASM).

Needs Node >= 20 and the pinned packages in tests/js (``npm ci --ignore-scripts --prefix
tests/js``); the module is skipped without them. Each text is run alone (one unpadded row per
session call) on both sides, as the Python runtime runs dynamic int8, so the JS and Python
answers come from the same graph on the same tokens.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetune.runtime import Classifier

JS = Path(__file__).parent / "js"
NODE = shutil.which("node")
INSTALL = "npm ci --ignore-scripts --prefix tests/js"

if NODE is None:
    pytest.skip(
        "node is not installed (Node >= 20 runs the JS runtime tests)", allow_module_level=True
    )
if not all(
    (JS / "node_modules" / p / "package.json").is_file()
    for p in ("@huggingface/transformers", "onnxruntime-web", "onnxruntime-node")
):
    pytest.skip(
        f"tests/js/node_modules is missing: run `{INSTALL}` to run the JS runtime tests",
        allow_module_level=True,
    )

# transformers.js dtype -> (bundle variant, file name transformers.js loads for that dtype)
JS_LAYOUT = {
    "fp32": ("fp32", "model.onnx"),
    "q8": ("int8-dynamic", "model_quantized.onnx"),
    "int8": ("int8-static", "model_int8.onnx"),
}
# Largest |logit difference| allowed against native ORT (Python), per variant.
# transformers.js runs the graph with onnxruntime-node, on the same CPU kernels as Python's
# onnxruntime: measured 0.0 for every variant (tiny bundle; MiniLM bundles/qs, 300 SST-2 rows).
TOL_NODE = {"fp32": 1e-4, "int8-dynamic": 1e-3, "int8-static": 1e-3}
# onnxruntime-web's WASM kernels: fp32 measured <= 2.4e-7 (tiny) and 6.9e-6 (MiniLM). int8
# integer kernels are not x86's: tiny bundle <= 2.3e-4, but MiniLM up to 0.26
# (dynamic) / 0.36 (static) on 300 rows (median 0; labels all agree; WASM no farther from fp32
# than native). The tiny bundle gets a margin over what it measured; labels are compared where
# the native margin exceeds what that tolerance could move.
TOL_WASM = {"fp32": 1e-4, "int8-dynamic": 0.02, "int8-static": 0.02}

TEXTS = [
    "a wonderful, moving film",
    "dull and far too long",
    "I loved every minute of it!",
    "the worst thing I have seen this year",
    "not bad at all",
    "",
    "Crème brûlée and naïve café-goers: accents are stripped.",
    "UPPER case Text, MiXeD",
    "emoji 🎬🍿 and symbols — “quotes” … done",
    "numbers 12,345.67 and dates 2024-01-01",
    "great " * 100,  # longer than max_length: truncated on both sides
    "unbelievably mediocre",
]


def node(script: str, *args: str, data: Any, timeout: float = 120) -> str:
    """Run ``node tests/js/SCRIPT ARGS`` with ``data`` as JSON on stdin; its stdout."""
    r = subprocess.run(
        [NODE, str(JS / script), *args],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        cwd=JS,
        timeout=timeout,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    if r.returncode != 0:
        raise AssertionError(f"node {script} {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def transformers_js(bundle: Path, dtype: str, texts: list[str]) -> list[dict[str, Any]]:
    return [
        json.loads(x) for x in node("classify.mjs", str(bundle), dtype, data=texts).splitlines()
    ]


def ort_web(models: list[Path], clf: Classifier, texts: list[str]) -> list[np.ndarray]:
    """Logits of each model in onnxruntime-web (WASM), one unpadded row per call."""
    feeds = [
        {"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids}
        for e in clf.tokenizer.encode_batch(texts)
    ]
    out = node("ortweb.mjs", *map(str, models), data=feeds).splitlines()
    return [np.asarray(json.loads(x)["logits"]) for x in out]


@pytest.fixture(scope="module")
def js_bundle(trained_run, tmp_path_factory) -> Path:
    """The tiny run exported with `--layout transformers.js` (hash-verified like the rest)."""
    from edgetune.export import export
    from edgetune.formats import bundle as bundlefmt

    dst = tmp_path_factory.mktemp("js") / "bundle"
    export(
        source=str(trained_run),
        output=str(dst),
        variants=("fp32", "int8-dynamic"),
        layout="transformers.js",
        progress=False,
        validate=False,
    )
    m = bundlefmt.verify(dst)
    for variant, name in JS_LAYOUT.values():
        assert m["variants"][variant]["transformers_js"] == f"onnx/{name}"
        assert m["files"][f"onnx/{name}"] == m["files"][m["variants"][variant]["file"]]
    return dst


@pytest.mark.parametrize("dtype", list(JS_LAYOUT))
def test_transformers_js_matches_the_python_runtime(js_bundle, dtype):
    variant = JS_LAYOUT[dtype][0]
    clf = Classifier.load(js_bundle, variant=variant, self_check=False)
    got = transformers_js(js_bundle, dtype, TEXTS)
    assert [g["index"] for g in got] == list(range(len(TEXTS)))
    # Same tokens (transformers.js reads tokenizer.json/tokenizer_config.json itself) ...
    assert [g["ids"] for g in got] == [e.ids for e in clf.tokenizer.encode_batch(TEXTS)]
    # ... same labels, from the model's logits and from the stock pipeline ...
    assert [g["label"] for g in got] == [p.label for p in clf.predict(TEXTS)]
    # (transformers.js 3.x truncates after adding special tokens, so the stock pipeline sees
    # other tokens for texts longer than max_length: compared on the others only.)
    short = [g for g in got if len(g["ids"]) < clf.max_length]
    assert len(short) == len(TEXTS) - 1
    assert [g["pipeline"]["label"] for g in short] == [g["label"] for g in short]
    # ... and the same logits.
    diff = np.abs(np.array([g["logits"] for g in got]) - clf.logits(TEXTS, batch_size=1))
    assert diff.max() <= TOL_NODE[variant], f"{dtype}: max |logit difference| {diff.max():.3g}"


def test_onnxruntime_web_wasm_runs_every_variant(bundle_dir):
    manifest = json.loads((bundle_dir / "edgetune.json").read_text())
    variants = [v for v in manifest["variants"] if v != "fp16"]
    assert {"fp32", "int8-dynamic", "int8-static"} <= set(variants)
    clfs = [Classifier.load(bundle_dir, variant=v, self_check=False) for v in variants]
    files = [bundle_dir / manifest["variants"][v]["file"] for v in variants]
    for variant, clf, got in zip(variants, clfs, ort_web(files, clfs[0], TEXTS)):
        want = clf.logits(TEXTS, batch_size=1)
        diff = float(np.abs(got - want).max())
        assert diff <= TOL_WASM[variant], f"{variant}: max |logit difference| {diff:.3g} in WASM"
        top2 = np.sort(want, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 2 * TOL_WASM[variant]
        assert clear.sum() >= len(TEXTS) // 2
        assert (got.argmax(1) == want.argmax(1))[clear].all()
