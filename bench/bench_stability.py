"""How stable is `edgetune bench`'s ratio? The same comparison, five fresh processes in a row.

Runs ``edgetune bench BUNDLE --compare pytorch`` (batch 1, sequence 32 and 128) five times and
reports each run's latency ratio (int8 bundle / PyTorch fp32), their median and the largest
deviation from it. Duration: about 3 minutes for MiniLM-L6 on 2 cores (60 rounds per cell).

    python bench/bench_stability.py bundles/sst2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seq-lengths", default="32,128")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--name", default="bench_stability")
    a = ap.parse_args()

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.runs):
            out = Path(tmp) / f"run{i}.json"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "edgetune.cli",
                    "bench",
                    a.bundle,
                    "--compare",
                    "pytorch",
                    "--batch-sizes",
                    "1",
                    "--seq-lengths",
                    a.seq_lengths,
                    "--threads",
                    str(a.threads),
                    "--rounds",
                    str(a.rounds),
                    "--output",
                    str(out),
                    "--quiet",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            runs.append(json.loads(out.read_text()))
    cells = [(c["batch_size"], c["seq_len"]) for c in runs[0]["grid"]]
    table = [
        "| batch x seq | "
        + " | ".join(f"run {i + 1}" for i in range(len(runs)))
        + " | median | max deviation |",
        "|---|" + "---:|" * (len(runs) + 2),
    ]
    summary = {}
    for k, (b, s) in enumerate(cells):
        ratios = [r["grid"][k]["ratio"]["ratio"] for r in runs]
        speedups = [1 / x for x in ratios]
        med = statistics.median(speedups)
        dev = max(abs(x / med - 1) for x in speedups)
        summary[f"b{b}_s{s}"] = {
            "speedups": speedups,
            "median": med,
            "max_deviation": dev,
            "ratios": ratios,
        }
        table.append(
            f"| {b} x {s} | "
            + " | ".join(f"{x:.2f}x" for x in speedups)
            + f" | {med:.2f}x | ±{dev * 100:.1f}% |"
        )
    table += [
        "",
        f"Speed-up of {Path(a.bundle).name} ({runs[0]['variant']}) over PyTorch fp32 = 1 / "
        f"latency ratio; each run a fresh `edgetune bench` process, {a.threads} threads, "
        f"{a.rounds} interleaved rounds (3 timed calls each) with pauses.",
    ]
    write_results(
        a.name,
        {
            "bundle": a.bundle,
            "cells": summary,
            "runs": runs,
        },
        "Stability of the bench ratio (five runs)",
        table,
    )


if __name__ == "__main__":
    main()
