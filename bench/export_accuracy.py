"""Export accuracy and size: PyTorch fp32 vs each ONNX variant of a run, on a labelled test split.

Exports RUN with ``edgetune export`` (fp32, int8-dynamic default, int8-static), then predicts
the test split with PyTorch and with each ONNX variant and reports accuracy, agreement with
PyTorch and file size. Duration: about 3 minutes for MiniLM-L6 on 2 cores.

    python bench/export_accuracy.py runs/sst2-full --data ../shared/data/sst2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import machine_info, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--data", required=True, help="labelled data; its test split is used")
    ap.add_argument("--variants", default="fp32,int8-static")
    ap.add_argument("--name", default="export_accuracy")
    a = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune import bundle as bundlefmt
    from edgetune.data import load_data

    run = Path(a.run)
    data = load_data(a.data)
    test = data.test
    tok = AutoTokenizer.from_pretrained(run / "best")
    enc = tok(test.texts, test.pairs, truncation=True, max_length=tok.model_max_length)
    order = np.argsort([len(x) for x in enc["input_ids"]])
    labels = np.asarray(test.labels)

    def batches(names):
        for i in range(0, len(order), 64):
            rows = order[i : i + 64]
            width = max(len(enc["input_ids"][r]) for r in rows)
            feed = {}
            for k in names:
                arr = np.zeros((len(rows), width), dtype=np.int64)
                for j, r in enumerate(rows):
                    arr[j, : len(enc[k][r])] = enc[k][r]
                feed[k] = arr
            yield rows, feed

    model = AutoModelForSequenceClassification.from_pretrained(run / "best").eval()
    pt = np.zeros(len(order), dtype=np.int64)
    with torch.inference_mode():
        for rows, feed in batches([k for k in enc.keys()]):
            pt[rows] = (
                model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.argmax(-1).numpy()
            )
    rows_out = {"pytorch-fp32": {"accuracy": float(np.mean(pt == labels)), "agreement": 1.0}}

    with tempfile.TemporaryDirectory() as tmp:
        # The export runs in its own process so its peak memory (model load, ONNX export,
        # static calibration) is measured alone.
        import resource
        import subprocess
        import time

        out = Path(tmp) / "bundle"
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "edgetune.cli",
                "export",
                str(run),
                "--output",
                str(out),
                "--variants",
                a.variants,
                "--quiet",
            ],
            check=True,
        )
        export_s = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        m = bundlefmt.verify(out)
        for name, v in m["variants"].items():
            so = ort.SessionOptions()
            so.intra_op_num_threads = 2
            sess = ort.InferenceSession(
                str(out / v["file"]), so, providers=["CPUExecutionProvider"]
            )
            names = [i.name for i in sess.get_inputs()]
            pred = np.zeros(len(order), dtype=np.int64)
            for rows, feed in batches(names):
                pred[rows] = sess.run(None, feed)[0].argmax(-1)
            rows_out[name] = {
                "accuracy": float(np.mean(pred == labels)),
                "agreement": float(np.mean(pred == pt)),
                "size_bytes": v["size_bytes"],
                "size_vs_fp32_onnx": v["size_bytes"] / m["fp32_onnx_bytes"],
                "settings": v.get("quantization") or {"optimization": v.get("optimization")},
            }
        fp32_bytes = m["fp32_onnx_bytes"]
    base = rows_out["pytorch-fp32"]["accuracy"]
    result = {
        "benchmark": a.name,
        "run": str(run),
        "data": a.data,
        "test_rows": len(labels),
        "fp32_onnx_bytes": fp32_bytes,
        "export_s": export_s,
        "export_peak_rss_mb": peak_mb,
        "variants": rows_out,
        "machine": machine_info(),
    }
    table = [
        "| variant | test accuracy | vs PyTorch (points) | agreement with PyTorch | size (MB) | size vs fp32 ONNX |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in rows_out.items():
        size = v.get("size_bytes")
        table.append(
            f"| {name} | {v['accuracy'] * 100:.2f}% | {(v['accuracy'] - base) * 100:+.2f} | "
            f"{v['agreement'] * 100:.2f}% | {size / 1e6 if size else fp32_bytes / 1e6:.1f} | "
            f"{(v.get('size_vs_fp32_onnx') or 1.0) * 100:.1f}% |"
        )
    table += [
        "",
        f"Export of {len(m['variants'])} variants: {export_s:.0f} s, peak memory "
        f"{peak_mb:.0f} MB (one process: model load, ONNX export, optimization, calibration).",
    ]
    write_results(
        a.name, result, f"Export accuracy and size ({run.name}, {len(labels)} test rows)", table
    )


if __name__ == "__main__":
    main()
