"""A bundle in JavaScript runtimes: onnxruntime-web (WASM) and transformers.js vs native ORT.

For each variant of the bundle, the first ``--rows`` test rows of DATA are tokenized by the
Python runtime and run one row per call (unpadded) in onnxruntime-web's WASM backend in Node
(``tests/js/ortweb.mjs``): label agreement with ``edgetune predict`` and the largest |logit
difference| from native ORT (``Classifier.logits(batch_size=1)``). Then transformers.js
(``tests/js/classify.mjs``, onnxruntime-node underneath) loads the bundle from disk for dtypes
fp32 / q8 / int8 (files onnx/model.onnx, onnx/model_quantized.onnx, onnx/model_int8.onnx;
added in a temporary hard-linked copy when the bundle lacks them): tokens, accuracy, agreement
and logit difference against the matching variant, and agreement of the stock
``pipeline('text-classification')``. Needs Node >= 20 and ``npm ci --ignore-scripts --prefix
tests/js``. Duration: about 1 minute for MiniLM-L6 and 300 rows on 2 cores.

    python bench/js_agreement.py bundles/qs --data examples/sst2-sample
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402

JS = HERE.parent / "tests" / "js"
# transformers.js dtype -> (bundle variant, file transformers.js loads for it)
JS_LAYOUT = {
    "fp32": ("fp32", "model.onnx"),
    "q8": ("int8-dynamic", "model_quantized.onnx"),
    "int8": ("int8-static", "model_int8.onnx"),
}


def add_js_layout(bundle_dir: Path, variants: dict[str, Any]) -> None:
    """onnx/model{,_quantized,_int8}.onnx as hard links (copies where linking fails)."""
    (bundle_dir / "onnx").mkdir(exist_ok=True)
    for variant, name in JS_LAYOUT.values():
        if variant in variants:
            src, dst = bundle_dir / variants[variant]["file"], bundle_dir / "onnx" / name
            dst.unlink(missing_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def node(script: str, *args: str, data: Any) -> list[dict[str, Any]]:
    r = subprocess.run(
        ["node", str(JS / script), *args],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        cwd=JS,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    if r.returncode != 0:
        sys.exit(f"node {script} failed ({r.returncode}):\n{r.stderr}")
    return [json.loads(x) for x in r.stdout.splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--data", required=True, help="labelled data (its test split is used)")
    ap.add_argument("--rows", type=int, default=300, help="first N test rows")
    ap.add_argument("--threads", type=int, default=1, help="native ORT threads (WASM: 1)")
    ap.add_argument("--name", default="js_agreement")
    a = ap.parse_args()

    if shutil.which("node") is None or not (JS / "node_modules").is_dir():
        sys.exit("needs node (>= 20) and `npm ci --ignore-scripts --prefix tests/js`")

    from edgetune.data import load_data
    from edgetune.formats import bundle as bundlefmt
    from edgetune.runtime import Classifier

    t_start = time.perf_counter()
    data = load_data(a.data)
    test = data.test
    n = min(a.rows, len(test.texts))
    texts = list(test.texts[:n])
    pairs = list(test.pairs[:n]) if test.pairs else None
    manifest = bundlefmt.verify(a.bundle)
    labels = manifest["labels"]
    by_name = all(nm in labels for nm in data.label_names)
    truth = np.array(
        [
            labels.index(data.label_names[y]) if by_name else int(data.label_names[y])
            for y in test.labels[:n]
        ]
    )
    variants = {v: i for v, i in manifest["variants"].items() if v != "fp16"}

    tmp = None
    bundle = Path(a.bundle).resolve()
    wanted = [bundle / "onnx" / f for v, f in JS_LAYOUT.values() if v in variants]
    if not all(p.is_file() for p in wanted):
        tmp = tempfile.TemporaryDirectory(prefix="js-bundle-")
        copy = Path(tmp.name) / bundle.name
        shutil.copytree(bundle, copy, copy_function=link_or_copy)
        add_js_layout(copy, variants)
        bundle = copy

    clfs = {
        v: Classifier.load(a.bundle, variant=v, threads=a.threads, self_check=False)
        for v in variants
    }
    native: dict[str, np.ndarray] = {}
    native_ms: dict[str, float] = {}
    predicted: dict[str, np.ndarray] = {}
    for v, clf in clfs.items():
        clf.logits(texts[:8], pairs=pairs[:8] if pairs else None, batch_size=1)  # warm-up
        t = time.perf_counter()
        native[v] = clf.logits(texts, pairs=pairs, batch_size=1)
        native_ms[v] = (time.perf_counter() - t) * 1000 / n
        # What `edgetune predict` answers (its default batching).
        predicted[v] = np.array([labels.index(p.label) for p in clf.predict(texts, pairs=pairs)])

    # onnxruntime-web (WASM): every variant in one Node process, on Python's tokens.
    first = next(iter(clfs.values()))
    inputs: list[Any] = texts if pairs is None else list(zip(texts, pairs))
    encs = first.tokenizer.encode_batch(inputs)
    feeds = [
        {"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids}
        for e in encs
    ]
    files = [str(Path(a.bundle).resolve() / variants[v]["file"]) for v in variants]
    wasm_out = node("ortweb.mjs", *files, data=feeds)
    wasm: dict[str, dict[str, Any]] = {}
    for v, out in zip(variants, wasm_out):
        got = np.asarray(out["logits"])
        row_diff = np.abs(got - native[v]).max(1)
        wasm[v] = {
            "file": variants[v]["file"],
            "agreement": float(np.mean(got.argmax(1) == predicted[v])),
            "flips": int(np.sum(got.argmax(1) != predicted[v])),
            "max_abs_logit_diff": float(row_diff.max()),
            "p50_abs_logit_diff": float(np.percentile(row_diff, 50)),
            "rows_diff_over_1e-3": int(np.sum(row_diff > 1e-3)),
            "accuracy_wasm": float(np.mean(got.argmax(1) == truth)),
            "accuracy_native": float(np.mean(predicted[v] == truth)),
            "ms_per_row_wasm": out["ms"] / n,
            "ms_per_row_native": native_ms[v],
        }

    # transformers.js: the bundle loaded from disk, per dtype.
    rows_in: list[Any] = texts if pairs is None else [[t, p] for t, p in zip(texts, pairs)]
    py_ids = [e.ids for e in encs]
    tjs: dict[str, dict[str, Any]] = {}
    for dtype, (v, fname) in JS_LAYOUT.items():
        if v not in variants:
            continue
        t = time.perf_counter()
        got = node("classify.mjs", str(bundle), dtype, data=rows_in)
        secs = time.perf_counter() - t
        lab = np.array([labels.index(g["label"]) for g in got])
        lg = np.array([g["logits"] for g in got])
        pipe = [g["pipeline"] for g in got]
        tjs[dtype] = {
            "variant": v,
            "file": f"onnx/{fname}",
            "token_mismatches": int(sum(g["ids"] != ids for g, ids in zip(got, py_ids))),
            "agreement": float(np.mean(lab == predicted[v])),
            "flips": int(np.sum(lab != predicted[v])),
            "max_abs_logit_diff": float(np.abs(lg - native[v]).max()),
            "accuracy": float(np.mean(lab == truth)),
            "accuracy_edgetune": float(np.mean(predicted[v] == truth)),
            "pipeline_agreement": (
                None
                if pairs is not None
                else float(np.mean([labels.index(p["label"]) for p in pipe] == predicted[v]))
            ),
            "seconds": secs,
        }
    if tmp is not None:
        tmp.cleanup()

    versions = {
        p: json.loads((JS / "node_modules" / p / "package.json").read_text())["version"]
        for p in ("@huggingface/transformers", "onnxruntime-web", "onnxruntime-node")
    }
    versions["node"] = subprocess.run(
        ["node", "--version"], capture_output=True, text=True
    ).stdout.strip()
    table = [
        f"First {n} test rows of `{a.data}`, bundle `{a.bundle}`; every row run alone "
        f"(unpadded). Native: onnxruntime (Python), {a.threads} thread(s). "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".",
        "",
        "onnxruntime-web, WASM backend (1 thread) in Node, on the Python runtime's tokens:",
        "",
        "| variant | file | agreement vs `edgetune predict` | max \\|logit diff\\| | "
        "median row diff | rows diff > 1e-3 | accuracy WASM | accuracy native | "
        "ms/row WASM | ms/row native |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v, r in wasm.items():
        table.append(
            f"| {v} | {r['file']} | {r['agreement'] * 100:.2f}% ({r['flips']} flips) | "
            f"{r['max_abs_logit_diff']:.1e} | {r['p50_abs_logit_diff']:.1e} | "
            f"{r['rows_diff_over_1e-3']} | {r['accuracy_wasm'] * 100:.2f}% | "
            f"{r['accuracy_native'] * 100:.2f}% | {r['ms_per_row_wasm']:.1f} | "
            f"{r['ms_per_row_native']:.1f} |"
        )
    table += [
        "",
        "transformers.js (`AutoTokenizer` + model from the bundle's directory, onnxruntime-node "
        "CPU), one row per call:",
        "",
        "| dtype | file | variant | token mismatches | agreement vs `edgetune predict` | "
        "max \\|logit diff\\| | accuracy | accuracy edgetune | stock pipeline agreement |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for d, r in tjs.items():
        pa = r["pipeline_agreement"]
        table.append(
            f"| {d} | {r['file']} | {r['variant']} | {r['token_mismatches']} | "
            f"{r['agreement'] * 100:.2f}% ({r['flips']} flips) | "
            f"{r['max_abs_logit_diff']:.1e} | {r['accuracy'] * 100:.2f}% | "
            f"{r['accuracy_edgetune'] * 100:.2f}% | "
            f"{'-' if pa is None else f'{pa * 100:.2f}%'} |"
        )
    duration = time.perf_counter() - t_start
    table += [
        "",
        "Row diff: the largest |logit difference| of a row. int8 variants are not bit-identical "
        "in WASM (its integer kernels are not x86's): on the rows that differ, "
        "native and WASM are equally far from fp32.",
        "",
        f"Duration: {duration:.0f} s.",
    ]
    write_results(
        a.name,
        {
            "bundle": a.bundle,
            "data": a.data,
            "rows": n,
            "threads": a.threads,
            "versions": versions,
            "onnxruntime_web": wasm,
            "transformers_js": tjs,
            "seconds": duration,
        },
        "Bundles in JavaScript runtimes: agreement with native ORT",
        table,
    )


if __name__ == "__main__":
    main()
