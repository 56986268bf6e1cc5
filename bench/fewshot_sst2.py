"""Few-shot learning curve: K labelled rows per class, several seeds, four ways to use them.

For each K and seed: `--strategy full` on the K rows (batch 8, 10 epochs, best epoch by
validation: a fair small-data recipe, not the large-data defaults), `--strategy fewshot`,
`fewshot` + label prompts, and once the zero-shot classifier from the prompts alone. Every run
goes through the path users ship: `edgetune train`, `edgetune export` (default int8 variant for
this CPU), `edgetune validate` (the runtime's tokenizer and batching on the test split). Reported
per cell: mean ± std over seeds of fp32 and int8 test accuracy, and time per run.

The validation split is a seeded sample of --val-rows rows of the data's validation split (a
few-shot user has few labels to spare for it); the test split is used whole, or a seeded sample
of --test-rows rows.

Runs and bundles are reused when finished, so an interrupted bench continues where it stopped.

    python bench/fewshot_sst2.py --data ../shared/data/sst2 --label-names negative,positive \
        --prompts "negative=This review is negative.,positive=This review is positive."
    # another data set (bench/data_stackoverflow.sh), prompts made from the label names alone:
    python bench/fewshot_sst2.py --data runs/data/stackoverflow --prompts "A question about {label}." \
        --shots 8 --seeds 3 --test-rows 2000 --runs runs/fewshot-so --bundles bundles/fewshot-so \
        --name fewshot_stackoverflow
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import bundle_accuracy, export_bundle, train_run, write_results  # noqa: E402

FULL_RECIPE = ("--batch-size", "8", "--epochs", "10", "--ema", "0")


def _data(src: str, val_rows: int, test_rows: int | None, where: Path, labels: str | None) -> str:
    """The data's training split, and seeded samples of its validation and test splits."""
    import numpy as np

    from edgetune.data import load_data

    d = load_data(src)
    names = labels.split(",") if labels else d.label_names
    where.mkdir(parents=True, exist_ok=True)
    val_idx = np.sort(np.random.default_rng(0).permutation(len(d.validation))[:val_rows])
    test_idx = np.sort(np.random.default_rng(1).permutation(len(d.test))[:test_rows])
    for name, split in (
        ("train", d.train),
        ("validation", d.validation.subset(val_idx)),
        ("test", d.test.subset(test_idx)),
    ):
        with (where / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows((t, names[y]) for t, y in zip(split.texts, split.labels))
    return str(where)


def _one(runs: Path, bundles: Path, name: str, data: str, *opts: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    run = train_run(runs, name, data, None, *opts)
    t1 = time.perf_counter()
    bundle = export_bundle(run, bundles)
    t2 = time.perf_counter()
    acc = bundle_accuracy(bundle, seqs=(32,))
    report = json.loads((bundle / "validation" / "report.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "run": name,
        **acc,
        "validated": bool(report.get("passed")),
        "train_s": metrics["timing"]["total_s"],
        "wall_train_s": round(t1 - t0, 1),
        "wall_export_s": round(t2 - t1, 1),
        "int8_p50_ms_seq32": report["variants"][acc["default_variant"]]["latency"]["32"]["p50_ms"]
        if "32" in report["variants"][acc["default_variant"]].get("latency", {})
        else None,
    }


def _cell(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def ms(key: str) -> tuple[float, float]:
        v = [r[key] * 100 for r in rows]
        return statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0

    return {
        "n": len(rows),
        "fp32": ms("fp32_test"),
        "int8": ms("int8_test"),
        "int8_minus_fp32_mean": statistics.mean(
            (r["int8_test"] - r["fp32_test"]) * 100 for r in rows
        ),
        "int8_minus_fp32_max": max(abs(r["int8_test"] - r["fp32_test"]) * 100 for r in rows),
        "agreement_min": min(r["agreement"] for r in rows),
        "train_s": statistics.median(r["train_s"] for r in rows),
        "all_validated": all(r["validated"] for r in rows),
    }


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--data", required=True)
    a.add_argument("--label-names")
    a.add_argument(
        "--prompts",
        required=True,
        help="--label-prompts for the prompt rows; with {label} in it, one prompt per label "
        "name made from it (e.g. 'A question about {label}.')",
    )
    a.add_argument("--model", default="minilm-l6")
    a.add_argument("--shots", default="8,16,32,64")
    a.add_argument("--seeds", type=int, default=5)
    a.add_argument("--strategies", default="full,fewshot,prompts,zeroshot")
    a.add_argument("--val-rows", type=int, default=200)
    a.add_argument("--test-rows", type=int, help="a seeded sample of the test split [all of it]")
    a.add_argument("--runs", default="runs/fewshot")
    a.add_argument("--bundles", default="bundles/fewshot")
    a.add_argument("--name", default="fewshot_sst2")
    a.add_argument(
        "--table-only",
        action="store_true",
        help="train nothing: tabulate the runs finished so far (n per cell says how many)",
    )
    args = a.parse_args()
    runs, bundles = Path(args.runs), Path(args.bundles)
    data = _data(args.data, args.val_rows, args.test_rows, runs / "data", args.label_names)
    shots = [int(k) for k in args.shots.split(",")]
    if "{label}" in args.prompts:
        from edgetune.data import load_data

        names = load_data(data).label_names
        made = runs / "prompts.txt"
        made.write_text("".join(f"{n}={args.prompts.format(label=n)}\n" for n in names))
        args.prompts = str(made)
    strategies = args.strategies.split(",")
    base = ("--model", args.model, "--quiet")
    options = {
        "full": ("--strategy", "full", *FULL_RECIPE),
        "fewshot": ("--strategy", "fewshot"),
        "prompts": ("--strategy", "fewshot", "--label-prompts", args.prompts),
    }
    rows: dict[str, Any] = {}
    done_file = runs / "rows.json"
    if done_file.is_file():
        rows = json.loads(done_file.read_text())

    def record(key: str, row: dict[str, Any]) -> None:
        rows[key] = row
        done_file.write_text(json.dumps(rows, indent=2))

    if args.table_only:
        strategies = [s for s in strategies if s == "zeroshot" and s in rows] + [
            s for s in strategies if s in options
        ]
    if "zeroshot" in strategies and "zeroshot" not in rows:
        record(
            "zeroshot",
            _one(
                runs,
                bundles,
                "zeroshot",
                data,
                *base,
                "--strategy",
                "fewshot",
                "--shots",
                "0",
                "--label-prompts",
                args.prompts,
            ),
        )
    for k in shots:
        for seed in range(args.seeds):
            for s in (s for s in strategies if s in options):
                key = f"{s}-k{k}-s{seed}"
                if key not in rows and not args.table_only:
                    record(
                        key,
                        _one(
                            runs,
                            bundles,
                            key,
                            data,
                            *base,
                            *options[s],
                            "--shots",
                            str(k),
                            "--seed",
                            str(seed),
                        ),
                    )
    cells = {
        f"{s}-k{k}": _cell(
            [rows[f"{s}-k{k}-s{i}"] for i in range(args.seeds) if f"{s}-k{k}-s{i}" in rows]
        )
        for s in strategies
        if s in options
        for k in shots
        if any(f"{s}-k{k}-s{i}" in rows for i in range(args.seeds))
    }
    label = {"full": "full fine-tune", "fewshot": "fewshot", "prompts": "fewshot + label prompts"}
    table = [
        f"{args.model}; test split {next(iter(rows.values()))['rows']} rows; mean ± std over "
        f"seeds (n per cell); int8 = the bundle's default variant through edgetune.runtime.",
        "",
        "| strategy | K per class | n | fp32 test % | int8 test % | int8-fp32 mean / max abs | "
        "min agreement | median train s | all validated |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, c in cells.items():
        s, k = key.rsplit("-k", 1)
        table.append(
            f"| {label[s]} | {k} | {c['n']} | {c['fp32'][0]:.2f} ± {c['fp32'][1]:.2f} | "
            f"{c['int8'][0]:.2f} ± {c['int8'][1]:.2f} | {c['int8_minus_fp32_mean']:+.2f} / "
            f"{c['int8_minus_fp32_max']:.2f} | {c['agreement_min'] * 100:.1f}% | "
            f"{c['train_s']:.0f} | {'yes' if c['all_validated'] else 'NO'} |"
        )
    if "zeroshot" in rows:
        z = rows["zeroshot"]
        table.append(
            f"| zero-shot (label prompts only) | 0 | 1 | {z['fp32_test'] * 100:.2f} | "
            f"{z['int8_test'] * 100:.2f} | {(z['int8_test'] - z['fp32_test']) * 100:+.2f} | "
            f"{z['agreement'] * 100:.1f}% | {z['train_s']:.0f} | "
            f"{'yes' if z['validated'] else 'NO'} |"
        )
    write_results(
        args.name,
        {
            "data": args.data,
            "model": args.model,
            "prompts": args.prompts,
            "cells": cells,
            "runs": rows,
        },
        f"Few-shot learning curve ({Path(args.data).name})",
        table,
    )


if __name__ == "__main__":
    main()
