"""Batch invariance and its cost: every variant through ``edgetune.runtime``, batch 1 vs 32.

For each variant of the bundle: label flips and the largest score difference between the test
rows predicted one at a time and predicted in batches of 32, accuracy both ways, and rows/s at
batch 1 and 32. Dynamic int8 is also run the way the runtime ran it before it became
invariant (padded batches of 32), so the cost of invariance is measured side by side. Passes
are interleaved round by round (median of ``--rounds``). Duration: about 2 minutes.

    python bench/batch_invariance.py bundles/qs --data examples/sst2-sample --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--data", required=True, help="labelled data (its test split is used)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--name", default="batch_invariance")
    a = ap.parse_args()

    from edgetune.data import load_data
    from edgetune.formats import bundle as bundlefmt
    from edgetune.runtime import Classifier

    data = load_data(a.data)
    test = data.test
    manifest = bundlefmt.verify(a.bundle)
    labels = manifest["labels"]
    # Data label -> model label id: by name, else integer labels are the model's ids.
    by_name = all(n in labels for n in data.label_names)
    truth = np.array(
        [
            labels.index(data.label_names[y]) if by_name else int(data.label_names[y])
            for y in test.labels
        ]
    )
    cands: dict[str, Classifier] = {}
    for v in manifest["variants"]:
        if v == "fp16":
            continue
        cands[v] = Classifier.load(a.bundle, variant=v, threads=a.threads, self_check=False)
        if cands[v].batching == "row":
            old = Classifier.load(a.bundle, variant=v, threads=a.threads, self_check=False)
            old.batching = "padded"  # what the runtime did before: not invariant
            cands[f"{v} (padded batches, before)"] = old

    rows: dict[str, dict] = {}
    times: dict[tuple[str, int], list[float]] = {(k, b): [] for k in cands for b in (1, 32)}
    logits: dict[tuple[str, int], np.ndarray] = {}
    for clf in cands.values():  # warm-up
        clf.logits(test.texts[:64], pairs=test.pairs[:64] if test.pairs else None)
    for r in range(a.rounds):
        order = list(cands) if r % 2 == 0 else list(reversed(cands))
        for k in order:
            for b in (1, 32):
                t = time.perf_counter()
                lg = cands[k].logits(test.texts, pairs=test.pairs, batch_size=b)
                times[(k, b)].append(time.perf_counter() - t)
                logits[(k, b)] = lg
    y = truth
    for k, clf in cands.items():
        one, bat = logits[(k, 1)], logits[(k, 32)]
        rows[k] = {
            "batching": clf.batching,
            "flips": int(np.sum(one.argmax(-1) != bat.argmax(-1))),
            "max_score_diff": float(np.max(np.abs(softmax(one) - softmax(bat)))),
            "accuracy_batch_1": float(np.mean(one.argmax(-1) == y)),
            "accuracy_batch_32": float(np.mean(bat.argmax(-1) == y)),
            "rows_per_s_batch_1": len(y) / statistics.median(times[(k, 1)]),
            "rows_per_s_batch_32": len(y) / statistics.median(times[(k, 32)]),
        }
    table = [
        f"{len(y)} test rows of `{a.data}`, bundle `{a.bundle}`, {a.threads} threads; every row "
        "predicted alone (batch 1) and in length-sorted batches of 32 through `edgetune.runtime`.",
        "",
        "| variant | batching | flips b1 vs b32 | max score diff | accuracy b1 | accuracy b32 | rows/s b1 | rows/s b32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k, r in rows.items():
        table.append(
            f"| {k} | {r['batching']} | {r['flips']} | {r['max_score_diff']:.1e} | "
            f"{r['accuracy_batch_1'] * 100:.2f}% | {r['accuracy_batch_32'] * 100:.2f}% | "
            f"{r['rows_per_s_batch_1']:.0f} | {r['rows_per_s_batch_32']:.0f} |"
        )
    write_results(
        a.name,
        {
            "bundle": a.bundle,
            "data": a.data,
            "threads": a.threads,
            "rows": len(y),
            "variants": rows,
        },
        "Batch invariance through the runtime",
        table,
    )


if __name__ == "__main__":
    main()
