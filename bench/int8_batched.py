"""Row-independent int8: can the default int8 variant run padded batches and keep its speed?

Dynamic int8 (``quantize_dynamic``) takes one activation scale per tensor, over every row of
a batch and its padding, so the runtime runs it one row per call. This builds int8 graphs
whose arithmetic is row-independent from the bundle's fp32 graph and measures them side by
side with today's variants, through ``edgetune.runtime`` (its tokenizer, length-sorted padded
batches): label flips and the largest logit difference between batch 1 and batch 32, rows/s
at both, p50 latency at batch 1, accuracy and agreement with fp32.

Candidates (built into a temporary folder):

- ``int8-token``: every MatMul with a constant weight (the attention Q, K, V projections
  split out of the fused Attention op) becomes per-token dynamic int8: a scale per row of
  the activation, weights int8 per channel, integer GEMM (``MatMulIntegerToFloat``) scaled
  row by row. Attention itself runs as ``MultiHeadAttention`` in fp32.
- ``int8-token (fp32 attention)``: the same with the Attention op left fused in fp32.
- ``int8-nbits``: ``MatMulNBits`` 8-bit weights, ``accuracy_level`` 4 (activations in int8
  per block of each row), on the same split graph; and on the fused graph.
- ``int8-static`` as export builds it, with ONNX Runtime's ``MatMulAddFusion`` on and off;
  and rebuilt with the classification head in fp32, on the fused and on the split graph (the
  best of these QDQ forms); ``int8-static`` as exported is now the dynamic int8 graph with
  each activation range fixed by calibration (``edgetune.export.quantize.fix_activation_ranges``):
  the fused int8 kernels of dynamic int8, row-independent.

A RUN directory is exported first (``edgetune export RUN --variants fp32,int8-static``); a
bundle must hold an fp32 variant. Duration: about 10 minutes for MiniLM-L6 on 2 cores.

    python bench/int8_batched.py runs/quickstart --data ../shared/data/sst2 --threads 2

``--own-only`` measures a bundle's own variants without building candidates (about 3
minutes); ``--extra NAME=ONNX`` adds another graph with the bundle's inputs, e.g. an earlier
export's int8 variant, side by side.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import export_in_own_process, write_results  # noqa: E402

from edgetune.export.graph import replace_nodes  # noqa: E402

BATCH = 32
NBITS_BLOCK = 32  # MatMulNBits block along K: activations are quantized per block of a row


@dataclass
class Candidate:
    """One graph as the runtime would serve it."""

    file: Path
    batching: str = "padded"  # "row": one session call per text, as the runtime runs dynamic int8
    disabled_optimizers: tuple[str, ...] = ()


# -- graph rewrites ----------------------------------------------------------------------------


def split_attention(model: Any) -> int:
    """Each fused ``Attention(x, W_qkv, b_qkv, mask_index)`` (constant ``W_qkv``) becomes three
    ``MatMul(x, W_q|k|v)`` and ``MultiHeadAttention(Q, K, V, b_qkv, mask_index)``: the
    projections become plain MatMuls that static int8 quantizes with fixed scales (inside the
    fused op they stay fp32). Three MatMuls, not one and a Split: Q, K and V are not copied.
    Returns the number of nodes rewritten.
    """
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    count, nodes = 0, []
    for n in model.graph.node:
        fused = n.op_type == "Attention" and n.domain == "com.microsoft" and len(n.input) == 4
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        # Only the plain form: a scale, unequal Q/K/V sizes or a causal mask stay fused.
        plain = set(attrs) <= {"num_heads", "mask_filter_value"} and "num_heads" in attrs
        if not fused or not plain or n.input[1] not in inits:
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        p = n.name or n.output[0]
        hidden = w.shape[1] // 3
        qkv = [f"{p}/{part}" for part in "qkv"]
        for i, out in enumerate(qkv):
            part = np.ascontiguousarray(w[:, i * hidden : (i + 1) * hidden])
            model.graph.initializer.append(numpy_helper.from_array(part, f"{out}/weight"))
            nodes.append(helper.make_node("MatMul", [n.input[0], f"{out}/weight"], [out], name=out))
        # num_heads only: MultiHeadAttention's own mask value (-10000) zeroes a masked position
        # after softmax exactly as Attention's does, and its mask_filter_value attribute came
        # in a later onnxruntime than the operator.
        kept = {"num_heads": attrs["num_heads"]}
        nodes.append(
            helper.make_node(
                "MultiHeadAttention",
                [*qkv, n.input[2], n.input[3]],
                list(n.output),
                name=f"{p}/mha",
                domain="com.microsoft",
                **kept,
            )
        )
        count += 1
    replace_nodes(model, nodes)
    return count


def per_token_int8(model: Any) -> int:
    """Each MatMul ``x @ W`` with a constant 2-D ``W`` → per-token symmetric dynamic int8.

    For the rows of ``x`` (its last axis): ``s = max|x| / 127`` per row, ``q = x / s`` rounded,
    stored as uint8 with the fixed zero point 128 (``QuantizeLinear(x * (127 / max|x|), 1,
    128)``); ``W`` int8 symmetric per output channel (``w_scale = max|W[:, n]| / 127``, full
    range: a VNNI target). Then ``MatMulIntegerToFloat(q, W_q, s, w_scale, 128)``, whose
    ``a_scale`` of shape [..., rows, 1] onnxruntime (1.32) multiplies into the output row by
    row: the integer product is exact and every float step is elementwise per row, so no row
    depends on another. An input read by several MatMuls is quantized once. Returns the
    number of MatMuls rewritten.
    """
    from onnx import helper, numpy_helper

    c127 = _const(model, "int8_token/127", np.array(127.0, dtype=np.float32))
    inv127 = _const(model, "int8_token/inv127", np.array(1 / 127, dtype=np.float32))
    tiny = _const(model, "int8_token/tiny", np.array(1e-30, dtype=np.float32))
    one = _const(model, "int8_token/one", np.array(1.0, dtype=np.float32))
    zp = _const(model, "int8_token/zp", np.array(128, dtype=np.uint8))
    last = _const(model, "int8_token/last_axis", np.array([-1], dtype=np.int64))
    quantized: dict[str, tuple[str, str]] = {}  # activation -> (uint8 rows, row scales)

    def rewrite(n: Any, w: np.ndarray) -> list[Any]:
        nodes = []
        x = n.input[0]
        if x not in quantized:
            p = f"int8_token/{x}"
            nodes += [
                helper.make_node("Abs", [x], [f"{p}/abs"]),
                helper.make_node("ReduceMax", [f"{p}/abs", last], [f"{p}/amax"], keepdims=1),
                helper.make_node("Max", [f"{p}/amax", tiny], [f"{p}/range"]),
                helper.make_node("Div", [c127, f"{p}/range"], [f"{p}/inv_scale"]),
                helper.make_node("Mul", [x, f"{p}/inv_scale"], [f"{p}/scaled"]),
                helper.make_node("QuantizeLinear", [f"{p}/scaled", one, zp], [f"{p}/q"]),
                helper.make_node("Mul", [f"{p}/range", inv127], [f"{p}/scale"]),
            ]
            quantized[x] = (f"{p}/q", f"{p}/scale")
        q, scale = quantized[x]
        w_scale = np.abs(w).max(axis=0) / 127
        w_scale[w_scale == 0] = 1.0
        w_q = np.clip(np.rint(w / w_scale), -127, 127).astype(np.int8)
        p = n.name or n.output[0]
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(w_q, f"{n.input[1]}/int8"),
                numpy_helper.from_array(w_scale.astype(np.float32), f"{n.input[1]}/scale"),
            ]
        )
        nodes.append(
            helper.make_node(
                "MatMulIntegerToFloat",
                [q, f"{n.input[1]}/int8", scale, f"{n.input[1]}/scale", zp],
                list(n.output),
                name=f"{p}/int8",
                domain="com.microsoft",
            )
        )
        return nodes

    return _rewrite_matmuls(model, rewrite)


def nbits8(model: Any) -> int:
    """Each MatMul ``x @ W`` with a constant 2-D ``W`` → ``MatMulNBits`` with 8-bit weights:
    symmetric blocks of ``NBITS_BLOCK`` along K (zero point 128, the op's default), and
    ``accuracy_level`` 4, so activations are quantized to int8 per block of each row.
    Returns the number of MatMuls rewritten."""
    from onnx import helper, numpy_helper

    def rewrite(n: Any, w: np.ndarray) -> list[Any]:
        k, cols = w.shape
        blocks = -(-k // NBITS_BLOCK)
        wt = np.zeros((cols, blocks * NBITS_BLOCK), dtype=np.float32)
        wt[:, :k] = w.T
        wt = wt.reshape(cols, blocks, NBITS_BLOCK)
        scale = np.abs(wt).max(-1) / 127
        scale[scale == 0] = 1.0
        q = (np.clip(np.rint(wt / scale[..., None]), -127, 127) + 128).astype(np.uint8)
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(q, f"{n.input[1]}/nbits8"),
                numpy_helper.from_array(scale.astype(np.float32), f"{n.input[1]}/nbits8_scale"),
            ]
        )
        return [
            helper.make_node(
                "MatMulNBits",
                [n.input[0], f"{n.input[1]}/nbits8", f"{n.input[1]}/nbits8_scale"],
                list(n.output),
                name=f"{n.name or n.output[0]}/nbits8",
                domain="com.microsoft",
                K=k,
                N=cols,
                bits=8,
                block_size=NBITS_BLOCK,
                accuracy_level=4,
            )
        ]

    return _rewrite_matmuls(model, rewrite)


def _rewrite_matmuls(model: Any, rewrite: Any) -> int:
    """Each MatMul with a constant 2-D weight replaced by ``rewrite(node, weight)``'s nodes;
    returns how many were."""
    count, nodes = 0, []
    for n in model.graph.node:
        w = _init(model, n.input[1]) if n.op_type == "MatMul" else None
        if w is None or w.ndim != 2:
            nodes.append(n)
            continue
        nodes += rewrite(n, w)
        count += 1
    replace_nodes(model, nodes)
    return count


def int4_words(model: Any, cfg: dict[str, Any]) -> None:
    """The word embeddings in 4-bit blocks of 32, as the default int8 variant stores them."""
    from edgetune.export.graph import gather_to_int4, word_gather

    node = word_gather(model, cfg)
    if node is not None:
        gather_to_int4(model, node, 32)


def _init(model: Any, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    t = next((t for t in model.graph.initializer if t.name == name), None)
    return None if t is None else numpy_helper.to_array(t)


def _const(model: Any, name: str, value: np.ndarray) -> str:
    from onnx import numpy_helper

    if not any(t.name == name for t in model.graph.initializer):
        model.graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def build(
    bundle: Path, work: Path, calibration: list[str], own_only: bool = False
) -> dict[str, Candidate]:
    """Today's variants of ``bundle`` and the row-independent candidates built from its fp32
    (``own_only``: the bundle's variants alone)."""
    import json

    import onnx

    manifest = json.loads((bundle / "edgetune.json").read_text())
    files = {name: bundle / v["file"] for name, v in manifest["variants"].items()}
    if "fp32" not in files:
        sys.exit(f"{bundle} has no fp32 variant: export with --variants fp32")
    cfg = json.loads((bundle / "config.json").read_text())
    out = {"fp32": Candidate(files["fp32"])}
    if "int8-dynamic" in files:
        out["int8-dynamic (row: today)"] = Candidate(files["int8-dynamic"], batching="row")
        out["int8-dynamic (padded)"] = Candidate(files["int8-dynamic"])
    if "int8-static" in files:
        out["int8-static"] = Candidate(files["int8-static"])
        out["int8-static (no MatMulAddFusion)"] = Candidate(
            files["int8-static"], disabled_optimizers=("MatMulAddFusion",)
        )
    if own_only:
        return out

    def save(name: str, model: Any) -> None:
        int4_words(model, cfg)
        path = work / f"{re.sub(r'[^a-z0-9]+', '_', name)}.onnx"
        onnx.save(model, str(path))
        out[name] = Candidate(path)

    fp32 = onnx.load(str(files["fp32"]))
    split = onnx.load(str(files["fp32"]))
    split_attention(split)
    for name, src, rewrite in (
        ("int8-token", split, per_token_int8),
        ("int8-token (fp32 attention)", fp32, per_token_int8),
        ("int8-nbits", split, nbits8),
        ("int8-nbits (fp32 attention)", fp32, nbits8),
    ):
        m = onnx.ModelProto()
        m.CopyFrom(src)
        rewrite(m)
        save(name, m)
    for name, src in (
        ("int8-static (fp32 head)", fp32),
        ("int8-static (split attention, fp32 head)", split),
    ):
        save(name, static_int8(src, bundle, work, calibration))
    return out


def static_int8(model: Any, bundle: Path, work: Path, calibration: list[str]) -> Any:
    """Static QDQ int8 as export builds it, but with the classification head (MatMuls on
    [batch, hidden]) left fp32: ONNX Runtime fuses a head MatMul + Add whose weight comes
    from a DequantizeLinear into a Gemm that computes one row differently from 32 rows."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from edgetune.export.quantize import quantize_static_qdq, without_preprocessing_advice
    from edgetune.quant import QuantizationConfig

    typed = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in typed.graph.value_info}
    head = [n.name for n in model.graph.node if n.op_type == "MatMul" and rank.get(n.input[0]) == 2]
    src, dst = work / "static-src.onnx", work / "static-dst.onnx"
    onnx.save(model, str(src))
    extra = {"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT}
    quant = QuantizationConfig.for_target("auto")
    with without_preprocessing_advice():
        quantize_static_qdq(
            src, dst, work, {}, {"model_dir": bundle}, quant, calibration, head, extra
        )
    return onnx.load(str(dst))


# -- measurement -------------------------------------------------------------------------------


def classifier(bundle: Path, cand: Candidate, threads: int) -> Any:
    """The runtime's classifier for ``bundle`` serving ``cand``'s graph with its batching."""
    import onnxruntime as ort

    from edgetune.runtime import Classifier

    clf = Classifier.load(bundle, variant="fp32", threads=threads, self_check=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    clf.session = ort.InferenceSession(
        str(cand.file),
        so,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(cand.disabled_optimizers),
    )
    clf.batching = cand.batching
    return clf


def latency(clfs: dict[str, Any], seqs: tuple[int, ...]) -> dict[str, dict[int, float]]:
    """p50 ms of one text of each length in ``seqs`` (batch 1), candidates interleaved."""
    from edgetune.latency import BLOCK, PAUSE_S, ROUNDS, WARMUP, measure

    out: dict[str, dict[int, float]] = {k: {} for k in clfs}
    for seq in seqs:
        ids = np.full((1, seq), 2023, dtype=np.int64)  # a common word piece, then [CLS] ... [SEP]
        ids[0, 0], ids[0, -1] = 101, 102
        feed = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        }
        calls = {k: (lambda c=c, f=feed: c.run_feed(f)) for k, c in clfs.items()}
        t = measure(calls, rounds=ROUNDS, warmup=WARMUP, block=BLOCK, pause_s=PAUSE_S)
        for k in clfs:
            out[k][seq] = t[k].percentile(50) * 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="a run directory, or a bundle with an fp32 variant")
    ap.add_argument("--data", required=True, help="labelled data (its test split is used)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seq-lengths", default="16,32,128")
    ap.add_argument("--name", default="int8_batched")
    ap.add_argument(
        "--own-only", action="store_true", help="measure the bundle's own variants, no candidates"
    )
    ap.add_argument(
        "--extra", action="append", default=[], metavar="NAME=ONNX", help="one more graph"
    )
    a = ap.parse_args()

    import onnxruntime

    from edgetune.data import load_data

    src = Path(a.source)
    with tempfile.TemporaryDirectory(prefix="int8_batched-") as tmp:
        work = Path(tmp)
        bundle = src
        if not (src / "edgetune.json").is_file():
            bundle = work / "bundle"
            export_in_own_process(str(src), bundle, "fp32,int8-static")
        data = load_data(a.data)
        test = data.test
        # Calibration as export samples it: 256 training texts, seeded.
        calibration = random.Random(0).sample(list(data.train.texts), min(256, len(data.train)))
        cands = build(bundle, work, calibration, a.own_only)
        for spec in a.extra:
            name, _, path = spec.partition("=")
            cands[name] = Candidate(Path(path))
        clfs = {k: classifier(bundle, c, a.threads) for k, c in cands.items()}
        labels = clfs["fp32"].labels
        by_name = all(n in labels for n in data.label_names)
        truth = np.array(
            [
                labels.index(data.label_names[y]) if by_name else int(data.label_names[y])
                for y in test.labels
            ]
        )
        for clf in clfs.values():  # warm-up
            clf.logits(test.texts[:64], batch_size=BATCH)
        times: dict[tuple[str, int], list[float]] = {(k, b): [] for k in clfs for b in (1, BATCH)}
        logits: dict[tuple[str, int], np.ndarray] = {}
        for r in range(a.rounds):
            for k in clfs if r % 2 == 0 else list(reversed(clfs)):
                for b in (1, BATCH):
                    t = time.perf_counter()
                    logits[(k, b)] = clfs[k].logits(test.texts, pairs=test.pairs, batch_size=b)
                    times[(k, b)].append(time.perf_counter() - t)
        seqs = tuple(int(s) for s in a.seq_lengths.split(","))
        lat = latency(clfs, seqs)
        ops = {k: _ops(c.file) for k, c in cands.items()}
        sizes = {k: c.file.stat().st_size / 1e6 for k, c in cands.items()}

    ref = logits[("fp32", 1)].argmax(-1)
    base = len(truth) / statistics.median(times[("int8-dynamic (padded)", BATCH)])
    rows: dict[str, dict[str, Any]] = {}
    for k in clfs:
        one, bat = logits[(k, 1)], logits[(k, BATCH)]
        rps = len(truth) / statistics.median(times[(k, BATCH)])
        rows[k] = {
            "batching": cands[k].batching,
            "disabled_optimizers": list(cands[k].disabled_optimizers),
            "flips": int(np.sum(one.argmax(-1) != bat.argmax(-1))),
            "max_logit_diff": float(np.max(np.abs(one - bat))),
            "accuracy": float(np.mean(bat.argmax(-1) == truth)),
            "accuracy_batch_1": float(np.mean(one.argmax(-1) == truth)),
            "agreement_fp32": float(np.mean(bat.argmax(-1) == ref)),
            "rows_per_s_batch_1": len(truth) / statistics.median(times[(k, 1)]),
            f"rows_per_s_batch_{BATCH}": rps,
            "vs_dynamic_padded": rps / base,
            "p50_ms": lat[k],
            "size_mb": sizes[k],
            "ops": ops[k],
        }
    write_results(
        a.name,
        {
            "source": a.source,
            "data": a.data,
            "threads": a.threads,
            "rows": len(truth),
            "rounds": a.rounds,
            "onnxruntime": onnxruntime.__version__,
            "nbits_block": NBITS_BLOCK,
            "candidates": rows,
        },
        "Row-independent int8: padded batches without batch-dependent answers",
        _table(rows, a, len(truth), seqs),
    )


def _ops(path: Path) -> list[str]:
    """The graph's quantization and attention operators (domain-qualified when contrib)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    keep = ("Quant", "Integer", "NBits", "Attention")
    return sorted(
        {
            f"{n.domain}/{n.op_type}" if n.domain else n.op_type
            for n in g.node
            if any(s in n.op_type for s in keep)
        }
    )


def _table(rows: dict[str, dict[str, Any]], a: Any, n: int, seqs: tuple[int, ...]) -> list[str]:
    b = BATCH
    lines = [
        f"{n} test rows of `{a.data}`, source `{a.source}`, {a.threads} threads; every row "
        f"predicted alone (batch 1) and in length-sorted padded batches of {b} through "
        f"`edgetune.runtime` (medians of {a.rounds} interleaved rounds). Bar: 0 flips, "
        f"max |logit diff| <= 1e-5, rows/s at batch {b} >= 90% of int8-dynamic (padded), "
        "accuracy >= int8-dynamic's.",
        "",
        f"| candidate | flips b1 vs b{b} | max logit diff | accuracy | agreement fp32 | "
        f"rows/s b1 | rows/s b{b} | vs dynamic padded | "
        + " | ".join(f"p50 ms @{s}" for s in seqs)
        + " | MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(seqs) + "---:|",
    ]
    for k, r in rows.items():
        lines.append(
            f"| {k} | {r['flips']} | {r['max_logit_diff']:.1e} | {r['accuracy'] * 100:.2f}% | "
            f"{r['agreement_fp32'] * 100:.2f}% | {r['rows_per_s_batch_1']:.0f} | "
            f"{r[f'rows_per_s_batch_{b}']:.0f} | {r['vs_dynamic_padded'] * 100:.0f}% | "
            + " | ".join(f"{r['p50_ms'][s]:.2f}" for s in seqs)
            + f" | {r['size_mb']:.1f} |"
        )
    lines += ["", "Operators per candidate:", ""]
    lines += [f"- {k}: {', '.join(r['ops']) or '-'}" for k, r in rows.items()]
    return lines


if __name__ == "__main__":
    main()
