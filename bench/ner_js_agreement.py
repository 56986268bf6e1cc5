"""A token-classification bundle in transformers.js (Node) vs the Python runtime, on real data.

For dtypes fp32 and q8 (variants fp32 and int8-dynamic; onnx/model.onnx and
onnx/model_quantized.onnx, hard-linked into a temporary copy when the bundle lacks them), every
test sentence of a CoNLL folder runs alone through ``tests/js/tag.mjs``: transformers.js's
tokenizer and model (onnxruntime-node), and its stock ``pipeline('token-classification')``.
Measured against ``edgetune.runtime.Tagger`` on the same variant:

- entity agreement: sentences whose entities (each word read at its first token, exact spans)
  are the same from transformers.js's logits as from the runtime's;
- pipeline agreement: sentences whose stock-pipeline entries (tag and token index; the pipeline
  has no aggregation) equal the runtime's ``aggregation="none"``;
- the same tokens, and the largest |logit difference|.

Sentences longer than the bundle's max length are left out (transformers.js truncates them; the
runtime covers them with windows) and counted. Needs Node >= 20 and ``npm ci --ignore-scripts
--prefix tests/js``. Duration: about 2 minutes for MiniLM-L6 on the 3,453 test sentences.

    python bench/ner_js_agreement.py bundles/ner --data /path/to/conll2003
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402
from js_agreement import add_js_layout  # noqa: E402

JS = HERE.parent / "tests" / "js"
DTYPES = {"fp32": "fp32", "q8": "int8-dynamic"}


def run_js(bundle: Path, dtype: str, texts: list[str]) -> list[dict[str, Any]]:
    r = subprocess.run(
        ["node", str(JS / "tag.mjs"), str(bundle), dtype],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        cwd=JS,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    if r.returncode != 0:
        raise SystemExit(f"tag.mjs failed: {r.stderr[-2000:]}")
    return [json.loads(x) for x in r.stdout.splitlines()]


def compare(bundle: Path, js_copy: Path, dtype: str, split: Any) -> dict[str, Any]:
    from edgetune.entities import spans
    from edgetune.runtime import Tagger
    from edgetune.validate.tokens import tags_of

    tagger = Tagger.load(bundle, variant=DTYPES[dtype])
    tokens, ours = tagger.clf.tokens_and_logits(split.texts, batch_size=1)
    fits = [i for i, t in enumerate(tokens) if len(t.ids) + 2 <= tagger.clf.max_length]
    texts = [split.texts[i] for i in fits]
    got = run_js(js_copy, dtype, texts)
    theirs = [np.asarray(g["logits"], np.float32)[1:-1] for g in got]
    same_ids = sum(g["ids"][1:-1] == tokens[i].ids for g, i in zip(got, fits))
    sub = split.subset(fits)
    mine = [ours[i] for i in fits]
    labels = tagger.labels
    a = tags_of(mine, [tokens[i] for i in fits], sub, labels)
    b = tags_of(theirs, [tokens[i] for i in fits], sub, labels)
    entities = float(np.mean([spans(x) == spans(y) for x, y in zip(a, b)]))
    none = tagger.tag(texts, aggregation="none", batch_size=1)
    pipe = float(
        np.mean(
            [
                [(e.label, e.index) for e in n]
                == [(p["entity"], p["index"] - 1) for p in g["pipeline"]]
                for n, g in zip(none, got)
            ]
        )
    )
    diff = max(float(np.abs(x - y).max()) for x, y in zip(mine, theirs) if x.size)
    return {
        "variant": DTYPES[dtype],
        "sentences": len(fits),
        "left_out_longer_than_max_length": len(tokens) - len(fits),
        "same_tokens": same_ids / len(fits),
        "entity_agreement": entities,
        "pipeline_agreement": pipe,
        "max_logit_diff": diff,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--data", required=True, help="CoNLL folder (train/dev/test)")
    ap.add_argument("--name", default="ner_js_agreement")
    a = ap.parse_args()
    if shutil.which("node") is None:
        raise SystemExit("node is not installed (Node >= 20)")
    from edgetune.data.tokens import load_token_data

    split = load_token_data(a.data).test  # the test file as it is (its sentences, in order)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / Path(a.bundle).name
        shutil.copytree(a.bundle, copy, copy_function=os.link)
        manifest = json.loads((copy / "edgetune.json").read_text())
        add_js_layout(copy, manifest["variants"])
        rows = {dtype: compare(Path(a.bundle), copy, dtype, split) for dtype in DTYPES}
    table = [
        "| dtype | variant | sentences | same tokens | entity agreement | pipeline agreement | max logit diff |"
    ]
    table.append("|---|---|---:|---:|---:|---:|---:|")
    for dtype, r in rows.items():
        table.append(
            f"| {dtype} | {r['variant']} | {r['sentences']} | {r['same_tokens'] * 100:.2f}% | "
            f"**{r['entity_agreement'] * 100:.2f}%** | {r['pipeline_agreement'] * 100:.2f}% | "
            f"{r['max_logit_diff']:.3g} |"
        )
    left = rows["fp32"]["left_out_longer_than_max_length"]
    table += [
        "",
        f"Left out: {left} sentences longer than the max length (transformers.js truncates them).",
    ]
    write_results(
        a.name,
        {"bundle": a.bundle, "data": a.data, "dtypes": rows},
        f"transformers.js vs the Python runtime: {Path(a.bundle).name}",
        table,
    )


if __name__ == "__main__":
    main()
