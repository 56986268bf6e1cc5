"""CPU bf16 vs fp32 training: samples/s and accuracy of the same run in both precisions.

Trains MiniLM-L6 on the data for the same epochs and seed twice, ``--precision fp32`` then
``--precision bf16`` (bf16 autocast needs AMX or AVX-512-BF16; refused elsewhere), and
compares training samples/s and test accuracy of the best checkpoint (evaluated in fp32).
Duration: about 13 minutes for one epoch of full SST-2 on 2 cores.

    python bench/train_precision.py --data ../shared/data/sst2 --epochs 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "sst2"))
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--label-names", default="negative,positive")
    ap.add_argument("--name", default="train_precision")
    a = ap.parse_args()

    import edgetune

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            r = edgetune.train(
                model=a.model,
                data=a.data,
                output=str(Path(tmp) / precision),
                epochs=a.epochs,
                precision=precision,
                label_names=tuple(a.label_names.split(",")),
                progress=False,
            )
            results[precision] = {
                "samples_per_s": r.timing["samples_per_s"],
                "train_s": r.timing["train_s"],
                "test_accuracy": r.test["accuracy"],
                "validation_accuracy": r.validation["accuracy"],
                "test_macro_f1": r.test["macro_f1"],
            }
    f, b = results["fp32"], results["bf16"]
    speedup = b["samples_per_s"] / f["samples_per_s"]
    delta = (b["test_accuracy"] - f["test_accuracy"]) * 100
    table = [
        "| precision | samples/s | train time | validation accuracy | test accuracy |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {p} | {v['samples_per_s']:.1f} | {v['train_s']:.0f} s | "
            f"{v['validation_accuracy'] * 100:.2f}% | {v['test_accuracy'] * 100:.2f}% |"
            for p, v in results.items()
        ),
        "",
        f"bf16 autocast: **{speedup:.2f}x** the samples/s of fp32, test accuracy {delta:+.2f} points "
        f"({a.model}, {a.epochs} epoch(s), same seed and batches; evaluation in fp32).",
    ]
    write_results(
        a.name,
        {
            "data": a.data,
            "model": a.model,
            "epochs": a.epochs,
            "results": results,
            "bf16_speedup": speedup,
            "accuracy_delta_points": delta,
        },
        "CPU bf16 vs fp32 training",
        table,
    )


if __name__ == "__main__":
    main()
