"""QAT vs post-training int8: fp32, PTQ dynamic, PTQ static and QAT int8 on one test split.

Takes two finished runs trained with the same data, epochs and seed, one plain and one with
``--qat``; exports the plain run as int8 dynamic and int8 static (256 calibration texts) and the
QAT run with its own scheme, then predicts the test split one text at a time (batch 1, as
deployed) with each ONNX model and with the PyTorch models. Duration: about 3 minutes for
MiniLM-L6 on 2 cores (plus the two training runs, about 25 and 35 minutes).

    edgetune train --model minilm-l6 --data ../shared/data/sst2 --output runs/sst2 --label-names negative,positive
    edgetune train ... --output runs/sst2-qatkd --qat --qat-start 3 --qat-distill 0.5
    python bench/qat_sst2.py runs/sst2 runs/sst2-qatkd --name qat_sst2_distill
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
    ap.add_argument("plain_run")
    ap.add_argument("qat_run")
    ap.add_argument("--name", default="qat_sst2")
    a = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoTokenizer

    from edgetune.data import load_data
    from edgetune.export import export
    from edgetune.formats import rundir
    from edgetune.modeling import load_saved
    from edgetune.quant import read_scheme
    from edgetune.train.qat import load_fake_quant

    torch.set_num_threads(2)
    plain, qat = Path(a.plain_run), Path(a.qat_run)
    rc = rundir.read_json(plain / rundir.CONFIG)
    c = rc["config"]
    spec, kwargs = rundir.data_spec(rc)
    data = load_data(spec, **kwargs)
    test = data.test
    y = np.asarray(test.labels)
    tok = AutoTokenizer.from_pretrained(plain / "best")
    enc = [
        tok(t, p, truncation=True, max_length=c["max_length"] or 128, return_tensors="np")
        for t, p in zip(test.texts, test.pairs or [None] * len(test.texts))
    ]

    def torch_logits(model):
        with torch.inference_mode():
            return np.stack(
                [
                    model(**{k: torch.from_numpy(v) for k, v in e.items()}).logits.numpy()[0]
                    for e in enc
                ]
            )

    def onnx_logits(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = {i.name for i in s.get_inputs()}
        return np.stack(
            [s.run(None, {k: v for k, v in e.items() if k in names})[0][0] for e in enc]
        )

    rows = {}
    fp32 = torch_logits(load_saved(plain / "best").eval())
    rows["fp32 (PyTorch, plain run)"] = (fp32, fp32, "-")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("dynamic", "static"):
            out = Path(tmp) / f"ptq-{mode}"
            export(
                source=str(plain), output=str(out), quantize=mode, progress=False, validate=False
            )
            rows[f"PTQ int8 {mode} (plain run)"] = (
                onnx_logits(out / "model.onnx"),
                fp32,
                "its fp32 PyTorch",
            )
        scheme = read_scheme(qat / "best")
        out = Path(tmp) / "qat"
        export(source=str(qat), output=str(out), progress=False, validate=False)
        twin = torch_logits(load_fake_quant(qat / "best"))
        rows[f"QAT int8 {scheme.mode} (QAT run)"] = (
            onnx_logits(out / "model.onnx"),
            twin,
            "its fake-quant PyTorch",
        )
        qat_float = torch_logits(load_saved(qat / "best").eval())

    base = float(np.mean(fp32.argmax(1) == y))
    table = [
        "| model | test accuracy | vs fp32 (points) | agreement | agreement with |",
        "|---|---:|---:|---:|---|",
    ]
    result_rows = {}
    for name, (lg, ref, ref_name) in rows.items():
        acc = float(np.mean(lg.argmax(1) == y))
        agree = float(np.mean(lg.argmax(1) == ref.argmax(1)))
        result_rows[name] = {
            "accuracy": acc,
            "delta_points": (acc - base) * 100,
            "agreement": agree,
            "agreement_with": ref_name,
            "max_abs_logit_diff": float(np.abs(lg - ref).max()),
        }
        table.append(
            f"| {name} | {acc * 100:.2f}% | {(acc - base) * 100:+.2f} | {agree * 100:.2f}% | {ref_name} |"
        )
    qf = float(np.mean(qat_float.argmax(1) == y))
    table += [
        "",
        f"QAT run's float weights without fake quantization: {qf * 100:.2f}%. "
        f"{len(y)} test rows, batch 1, 2 threads. Runs: {plain} (plain), {qat} (QAT, {scheme.mode}, "
        f"target {scheme.target}, embeddings {scheme.embeddings}).",
    ]
    write_results(
        a.name,
        {
            "plain_run": str(plain),
            "qat_run": str(qat),
            "rows": result_rows,
            "qat_float_accuracy": qf,
            "test_rows": len(y),
        },
        "QAT vs post-training int8 (SST-2 test split)",
        table,
    )


if __name__ == "__main__":
    main()
