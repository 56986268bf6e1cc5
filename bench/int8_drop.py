"""How many accuracy points each int8 variant gives up against fp32, with its uncertainty.

Each bundle's fp32 and int8 variants predict every row of the chosen labelled splits through
``edgetune.runtime`` (its tokenizer, length-sorted batches of 32, each variant's batching
mode), so the figures are what users get. Per bundle, split and variant: accuracy, the drop
against the bundle's fp32 variant, agreement with fp32, and the drop's 95% interval from the
paired disagreements (rows only one of the two gets right: the drop is (b - c) / n with
standard error sqrt(b + c - (b - c)^2 / n) / n). A drop of 0.2 points on a few hundred rows is
one or two rows: the interval says whether a split can tell such drops apart at all.

    python bench/int8_drop.py quickstart=bundles/quickstart student=bundles/student \
        --data ../shared/data/sst2 --splits validation,test --threads 2

Duration: about a minute per MiniLM-L6 bundle on 7,600 rows (2 cores), ten per mpnet-base.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402

from edgetune.metrics import paired_drop  # noqa: E402


def measure(bundle: str, splits: dict[str, Any], threads: int) -> dict[str, Any]:
    from edgetune.formats import bundle as bundlefmt
    from edgetune.runtime import Classifier

    manifest = bundlefmt.verify(bundle)
    variants = [v for v in manifest["variants"] if v == "fp32" or v.startswith("int8")]
    if "fp32" not in variants:
        raise SystemExit(f"{bundle} has no fp32 variant: export it with --variants fp32")
    out: dict[str, Any] = {"default_variant": manifest["default_variant"], "splits": {}}
    for split, part in splits.items():
        truth = np.asarray(part.labels)
        preds, secs = {}, {}
        for v in variants:
            clf = Classifier.load(bundle, variant=v, threads=threads, self_check=False)
            t0 = time.perf_counter()
            preds[v] = clf.logits(list(part.texts), pairs=part.pairs).argmax(-1)
            secs[v] = time.perf_counter() - t0
        rows = {}
        for v in variants:
            rows[v] = {
                "accuracy": float(np.mean(preds[v] == truth)) * 100,
                "agreement_fp32": float(np.mean(preds[v] == preds["fp32"])) * 100,
                "rows_per_s": len(truth) / secs[v],
            } | paired_drop(truth, preds["fp32"], preds[v])
        out["splits"][split] = {"rows": len(truth), "variants": rows}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", help="NAME=BUNDLE_DIR (each with an fp32 variant)")
    ap.add_argument("--data", required=True, help="labelled data: a file or a folder of splits")
    ap.add_argument("--splits", default="validation,test")
    ap.add_argument("--source", default="", help="where --data came from (recorded)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="int8_drop")
    a = ap.parse_args()

    from edgetune.data.labelled import labelled_split
    from edgetune.formats import bundle as bundlefmt

    results: dict[str, Any] = {}
    for spec in a.bundles:
        name, _, path = spec.partition("=")
        labels = bundlefmt.verify(path)["labels"]
        splits = {
            s: labelled_split(labels, None, data=a.data, split=s)[0] for s in a.splits.split(",")
        }
        results[name] = {"bundle": path} | measure(path, splits, a.threads)
        print(f"{name}: done", flush=True)
    write_results(
        a.name,
        {"data": a.data, "source": a.source, "threads": a.threads, "bundles": results},
        "int8 accuracy drop against fp32, through the runtime",
        _table(results, a),
    )


def _table(results: dict[str, Any], a: Any) -> list[str]:
    lines = [
        f"Labelled splits of `{a.data}` {a.source}; every variant through `edgetune.runtime` "
        f"({a.threads} threads, batches of 32). Drop = fp32 accuracy - int8 accuracy in points "
        "(negative: int8 is better), +- the 95% interval from the rows only one of the two "
        "gets right (lost / won). * = the bundle's default.",
        "",
        "| bundle | split | rows | variant | accuracy | drop (points) | rows lost / won | "
        "agreement with fp32 |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        for split, s in r["splits"].items():
            for v, x in s["variants"].items():
                mark = "*" if v == r["default_variant"] else ""
                drop = "-" if v == "fp32" else f"{x['drop_points']:+.2f} +- {x['ci95_points']:.2f}"
                lines.append(
                    f"| {name} | {split} | {s['rows']} | {v}{mark} | {x['accuracy']:.2f}% | "
                    f"{drop} | {x['rows_lost']} / {x['rows_won']} | {x['agreement_fp32']:.2f}% |"
                )
    return lines


if __name__ == "__main__":
    main()
