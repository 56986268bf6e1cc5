"""Each variant from the optimized graph: fp32, fp16, and int8 dynamic, portable or static (QDQ).

The quantization module that builds graphs, with ``quant.py``'s settings; ``train/qat.py``
simulates in training what these graphs compute.

Static int8 takes its activation ranges from calibration texts, or from the ranges a static
QAT run learned.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import BundleError
from ..quant import QuantizationConfig
from .graph import gather_to_int4, replace_nodes, word_gather


class _PreprocessingAdvice(logging.Filter):
    """ONNX Runtime's quantizer advises shape pre-processing on every call (a root-logger
    warning); the graphs it quantizes here are already optimized and shape-inferred."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def without_preprocessing_advice() -> Iterator[None]:
    """Keep ONNX Runtime's pre-processing advice out of the output while export runs."""
    f = _PreprocessingAdvice()
    logging.getLogger().addFilter(f)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(f)


def build_variant(
    name: str,
    fp32: Path,
    optimized: Path,
    dst: Path,
    work: Path,
    cfg: dict[str, Any],
    optimize: str,
    quant: QuantizationConfig,
    calibration: list[str] | None,
    src: dict[str, Any],
) -> dict[str, Any]:
    """Write variant ``name`` to ``dst``; returns its manifest entry (settings, quantization)."""
    import onnx

    info: dict[str, Any] = {"optimization": optimize}
    if name in ("fp32", "fp16"):
        return info | _float_variant(name, optimized, dst)
    portable = name == "int8-portable"
    if portable and quant.embeddings == "int4":
        quant = replace(quant, embeddings="int8")  # GatherBlockQuantized needs onnxruntime 1.22
    proto = onnx.load(str(optimized))
    word = word_gather(proto, cfg)
    exclude = [word.name] if word is not None and quant.embeddings == "int4" else []
    # The portable variant keeps attention in fp32 (QAttention is not needed to be portable
    # and its asymmetric-weight path is untested) and quantizes MatMul weights asymmetrically:
    # loads on onnxruntime 1.15+, and stays off the SME kernels of DynamicQuantizeMatMul.
    ops = ["MatMul"] + ([] if portable else ["Attention"])
    ops += ["Gather"] if quant.embeddings != "fp32" else []
    qat = src["qat"]
    if qat is not None:
        # Only what training simulated is quantized: position and type embeddings stay fp32.
        exclude += [
            n.name
            for n in proto.graph.node
            if n.op_type == "Gather" and (word is None or n.name != word.name)
        ]
    extra = {"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT}
    tmp = work / f"{name}.onnx"
    from onnxruntime.quantization import QuantType

    dynamic = name in ("int8-dynamic", "int8-portable")
    learned = qat is not None and qat.mode == "static"
    if dynamic or not learned:
        from onnxruntime.quantization import quantize_dynamic

        source, feeds = optimized, []
        if not dynamic:  # outsized channels moved into the weights first
            feeds = calibration_feeds(src, optimized, calibration or [])
            source = work / f"{name}-smoothed.onnx"
            tokenwise = token_ranged_inputs(optimized, feeds)
            info["smoothed"] = smooth_activations(
                optimized, source, feeds, SMOOTHING_ALPHA, skip=tokenwise
            )
        quantize_dynamic(
            str(source),
            str(tmp),
            op_types_to_quantize=ops,
            per_channel=quant.per_channel,
            reduce_range=quant.reduce_range,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            extra_options={**extra, "WeightSymmetric": not portable},
        )
        if not dynamic:  # int8-static: the same kernels, each activation range fixed
            info["fixed_ranges"] = fix_activation_ranges(tmp, source, feeds)
            info["per_token"] = per_token_ranges(tmp, tokenwise)
    else:
        _quantize_static_learned(optimized, tmp, work, src, quant, qat, exclude, extra)
    m = onnx.load(str(tmp))
    if exclude:
        node = next(n for n in m.graph.node if n.name == exclude[0])
        gather_to_int4(m, node, quant.block_size)
    onnx.save(m, str(dst))
    info["quantization"] = _int8_settings(name, quant, ops, qat, calibration)
    if info.get("per_token"):
        info["quantization"]["activations"] += (
            f"; {info['per_token']} GELU outputs uint8 per token, ranged as they run"
        )
    return info


def _float_variant(name: str, optimized: Path, dst: Path) -> dict[str, Any]:
    """fp32: the optimized graph as it is; fp16: its weights halved, inputs and outputs kept."""
    if name == "fp32":
        shutil.copy2(optimized, dst)
        return {}
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    m = OnnxModel(onnx.load(str(optimized)))
    m.convert_float_to_float16(keep_io_types=True)
    m.save_model_to_file(str(dst))
    return {"precision": "fp16"}


def _int8_settings(
    name: str,
    quant: QuantizationConfig,
    ops: list[str],
    qat: Any,
    calibration: list[str] | None,
) -> dict[str, Any]:
    """An int8 variant's manifest entry: how weights and activations were quantized."""
    dynamic = name in ("int8-dynamic", "int8-portable")
    portable = name == "int8-portable"
    learned = qat is not None and qat.mode == "static"
    out: dict[str, Any] = {
        "mode": "dynamic" if dynamic else "static",
        "format": "QDQ" if learned else "QOperator",
        "weights": "int8 asymmetric" if portable else "int8 symmetric",
        "activations": "uint8 dynamic per-tensor"
        if dynamic
        else "uint8 static per-tensor (MinMax over the calibration texts)",
        "per_channel": quant.per_channel,
        "reduce_range": quant.reduce_range,
        "target": quant.target,
        "embeddings": quant.embeddings,
        "embedding_block_size": quant.block_size if quant.embeddings == "int4" else None,
        "operators": ops,
    }
    if name == "int8-static" and not (qat and qat.mode == "static"):
        out["calibration_samples"] = len(calibration or [])
        out["smoothing_alpha"] = SMOOTHING_ALPHA  # per-channel, into the weights (SmoothQuant)
    if qat is not None:
        out["qat"] = True
        if qat.mode == "static" and name == "int8-static":
            out["activations"] = "uint8 static (ranges learned in QAT)"
    return out


def _qdq(
    src: Path,
    dst: Path,
    reader: Any,
    quant: QuantizationConfig,
    exclude: list[str],
    extra: dict[str, Any],
) -> None:
    """ORT's static QDQ quantizer with our settings (ranges from ``reader`` or overrides)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(src),
        str(dst),
        reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"] + (["Gather"] if quant.embeddings == "int8" else []),
        per_channel=quant.per_channel,
        reduce_range=quant.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=exclude,
        # MatMul outputs stay float: their consumers (bias + GELU, residual add) run in fp32
        # anyway, and a QDQ pair there adds a rounding step that serves no int8 kernel.
        extra_options={**extra, "OpTypesToExcludeOutputQuantization": ["MatMul"]},
    )


def _shape_inferred(src: Path, work: Path) -> Path:
    """``src`` with every tensor typed, for the static quantizer.

    ORT's symbolic shape inference knows the fused contrib ops; without it the quantizer
    cannot type the tensors between them and silently skips those MatMuls.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inferred = work / "static-inferred.onnx"
    quant_pre_process(str(src), str(inferred), skip_optimization=True, auto_merge=True)
    return inferred


def calibration_feeds(srcinfo: dict[str, Any], graph: Path, texts: list[str]) -> list[Any]:
    """Each calibration text as the graph's input arrays (one row, its own length: no padding
    in the ranges)."""
    import numpy as np
    import onnx
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(srcinfo["model_dir"])
    g = onnx.load(str(graph), load_external_data=False).graph
    names = {i.name for i in g.input} - {t.name for t in g.initializer}
    max_len = min(int(getattr(tok, "model_max_length", 128) or 128), 512)
    feeds = []
    for t in texts:
        enc = tok(t, truncation=True, max_length=max_len, return_tensors="np")
        feeds.append({k: v.astype(np.int64) for k, v in enc.items() if k in names})
    return feeds


SMOOTHING_ALPHA = 0.75  # share of each input channel's range moved into the weights
# Smoothed only where a few channels set the range: largest channel max / median channel max.
# (Each smoothed input costs an elementwise Mul; an even tensor gains nothing from it.)
SMOOTHING_SPREAD = 8.0


def smooth_activations(
    src: Path, dst: Path, feeds: list[Any], alpha: float, skip: frozenset[str] = frozenset()
) -> int:
    """Per-channel smoothing (SmoothQuant): before each MatMul or Attention with a constant
    weight, the input X becomes ``X / s`` and the weight's rows ``s * W``, the same product in
    exact arithmetic. ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` over ``feeds`` moves the
    few channels with outsized activations (LayerNorm and GELU outputs of BERT-like encoders)
    into the weights, which are quantized per output channel, so one activation range per
    tensor fits the rest. Only inputs whose largest channel range is ``SMOOTHING_SPREAD``
    times the median's are smoothed, none of ``skip``. Writes ``dst``; returns the number of
    tensors smoothed."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for x in n.input:
            uses[x] = uses.get(x, 0) + 1
    groups: dict[str, list[Any]] = {}
    for n in model.graph.node:
        const = n.input[1] if len(n.input) > 1 else ""
        if n.op_type not in ("MatMul", "Attention") or n.input[0] in inits:
            continue
        if n.input[0] in skip:
            continue  # ranged per token instead (per_token_ranges)
        if const in inits and uses[const] == 1 and len(inits[const].dims) == 2:
            groups.setdefault(n.input[0], []).append(n)
    if not groups:
        onnx.save(model, str(dst))
        return 0
    amax = _channel_amax(src, sorted(groups), feeds)
    muls = {}
    for x, users in groups.items():
        if amax[x].max() < SMOOTHING_SPREAD * max(float(np.median(amax[x])), 1e-9):
            continue
        weights = {u.input[1]: numpy_helper.to_array(inits[u.input[1]]) for u in users}
        wmax = np.max([np.abs(w).max(axis=1) for w in weights.values()], axis=0)
        s = np.maximum(amax[x], 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha)
        s = np.clip(s, 1e-4, 1e4).astype(np.float32)
        for name, w in weights.items():
            inits[name].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(w.dtype), name))
        inv, y = f"{x}_smooth_inv", f"{x}_smoothed"
        model.graph.initializer.append(numpy_helper.from_array(1 / s, inv))
        muls[x] = helper.make_node("Mul", [x, inv], [y], name=f"{x}_smooth")
        for u in users:
            u.input[0] = y
    # Each Mul right after its input's producer (graph inputs first): still sorted.
    produced = {o for n in model.graph.node for o in n.output}
    nodes = [muls[x] for x in muls if x not in produced]
    for n in model.graph.node:
        nodes.append(n)
        nodes += [muls[o] for o in n.output if o in muls]
    replace_nodes(model, nodes)
    onnx.save(model, str(dst))
    return len(muls)


def _channel_amax(graph: Path, tensors: list[str], feeds: list[Any]) -> dict[str, Any]:
    """Each tensor's largest |value| per channel (last axis) over ``feeds``, in ``graph``."""
    import numpy as np

    amax: dict[str, Any] = {}
    for x, a in _probe(graph, tensors, feeds):
        m = np.abs(a).reshape(-1, a.shape[-1]).max(axis=0)
        amax[x] = m if x not in amax else np.maximum(amax[x], m)
    return amax


def _probe(graph: Path, tensors: list[str], feeds: list[Any]) -> Iterator[tuple[str, Any]]:
    """(name, value) of each of ``graph``'s inner ``tensors`` for each calibration feed."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if not feeds:
        raise BundleError("int8-static needs calibration texts to fix its activation ranges")
    probe = onnx.load(str(graph))
    probe.graph.output.extend(
        helper.make_tensor_value_info(x, TensorProto.FLOAT, None) for x in tensors
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the same figures on any thread count
    session = ort.InferenceSession(
        probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    for feed in feeds:
        yield from zip(tensors, session.run(tensors, feed), strict=True)


def fix_activation_ranges(graph: Path, fp32: Path, feeds: list[Any]) -> int:
    """Each ``DynamicQuantizeLinear`` of the dynamic int8 ``graph`` becomes a
    ``QuantizeLinear`` with a fixed scale and zero point: the input's range over ``feeds``
    in the fp32 graph (MinMax, widened to hold 0, uint8 as the dynamic op computes it).
    The fused int8 kernels (QAttention, MatMulInteger) stay; no row's answer depends on
    another's any more, so the graph runs padded batches. Rewrites ``graph`` in place and
    returns the number of ranges fixed."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(graph))
    dynamic = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    wanted = sorted({n.input[0] for n in dynamic})
    ranges = {x: (0.0, 0.0) for x in wanted}  # every range holds 0
    for x, a in _probe(fp32, wanted, feeds):
        lo, hi = ranges[x]
        ranges[x] = (min(lo, float(a.min())), max(hi, float(a.max())))
    nodes = []
    for n in model.graph.node:
        if n.op_type != "DynamicQuantizeLinear":
            nodes.append(n)
            continue
        mn, mx = ranges[n.input[0]]
        scale = np.float32((mx - mn) / 255) if mx > mn else np.float32(1.0)
        zp = np.uint8(np.clip(np.rint(-mn / scale), 0, 255))
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(scale, np.float32), n.output[1]),
                numpy_helper.from_array(np.array(zp, np.uint8), n.output[2]),
            ]
        )
        quantize = [n.input[0], n.output[1], n.output[2]]
        nodes.append(helper.make_node("QuantizeLinear", quantize, [n.output[0]], name=n.name))
    replace_nodes(model, nodes)
    onnx.save(model, str(graph))
    return len(dynamic)


def quantize_static_qdq(
    src: Path,
    dst: Path,
    work: Path,
    cfg: dict[str, Any],
    srcinfo: dict[str, Any],
    quant: QuantizationConfig,
    texts: list[str],
    exclude: list[str],
    extra: dict[str, Any],
) -> None:
    """QDQ int8 with MinMax ranges collected chunk by chunk (bounded memory); measured
    against the fixed-range int8-static in bench/int8_batched.py."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
    )

    feeds = calibration_feeds(srcinfo, src, texts)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.start, self.end, self.i = 0, len(feeds), 0

        def get_next(self):
            if self.i >= self.end:
                return None
            self.i += 1
            return feeds[self.i - 1]

        def __len__(self) -> int:
            return len(feeds)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.start, self.end, self.i = start_index, end_index, start_index

    inferred = _shape_inferred(src, work)
    # Ranges are collected in strides of `stride` samples and merged, so memory holds one
    # stride's reduced outputs at a time (ORT's own max-intermediate-outputs option drops data).
    stride = max(d for d in range(1, min(32, len(feeds)) + 1) if len(feeds) % d == 0)
    _qdq(inferred, dst, Reader(), quant, exclude, {**extra, "CalibStridedMinMax": stride})


def _quantize_static_learned(
    src: Path,
    dst: Path,
    work: Path,
    srcinfo: dict[str, Any],
    quant: QuantizationConfig,
    qat: Any,
    exclude: list[str],
    extra: dict[str, Any],
) -> None:
    """QDQ int8 whose activation scales are the ranges a static QAT run learned (no calibration).

    Each ONNX MatMul is matched to its PyTorch linear layer by its weight values (the export
    stores ``W^T``), and the layer's learned (min, max) becomes the scale and zero point of the
    MatMul's input, computed as the training simulation computed them.
    """
    import hashlib

    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import (
        CalibrationDataReader,
    )
    from safetensors.numpy import load_file

    from ..quant import QKV_PROJECTIONS, static_scale_zp

    def key(a: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()

    by_weight: dict[str, str] = {}
    for f in sorted(srcinfo["model_dir"].glob("*.safetensors")):
        for name, t in load_file(str(f)).items():
            if name.endswith(".weight") and t.ndim == 2:
                by_weight[key(t.T)] = name[: -len(".weight")]
    inferred = _shape_inferred(src, work)
    model = onnx.load(str(inferred))
    inits = {t.name: t for t in model.graph.initializer}
    overrides: dict[str, list[dict[str, Any]]] = {}
    missing = []
    for n in model.graph.node:
        if n.op_type != "MatMul" or n.input[1] not in inits:
            continue
        layer = by_weight.get(key(numpy_helper.to_array(inits[n.input[1]])))
        r = qat.ranges.get(layer) if layer else None
        if r is None and layer and layer.rsplit(".", 1)[-1] in QKV_PROJECTIONS:
            # Static QAT leaves the attention projections in float (where the optimizer fuses
            # them into Attention); where it did not fuse them (MPNet), they stay fp32 here too.
            exclude = [*exclude, n.name]
            continue
        if r is None:
            missing.append(layer or n.name)
            continue
        scale, zp = static_scale_zp(*r)
        overrides[n.input[0]] = [
            {"scale": np.array(scale, dtype=np.float32), "zero_point": np.array(zp, dtype=np.uint8)}
        ]
    if missing or not overrides:
        raise BundleError(
            f"the static QAT run has no learned range for {', '.join(map(str, missing[:3])) or 'any layer'}; "
            "retrain with --qat static (ranges are learned while QAT is on)"
        )
    feed_names = [i.name for i in model.graph.input if i.name not in inits]

    class One(CalibrationDataReader):  # every quantized tensor has an override; one row suffices
        def __init__(self) -> None:
            self.done = False

        def get_next(self):
            if self.done:
                return None
            self.done = True
            return {k: np.ones((1, 4), dtype=np.int64) for k in feed_names}

    _qdq(inferred, dst, One(), quant, exclude, {**extra, "TensorQuantOverrides": overrides})


GELU_OPS = ("Gelu", "BiasGelu", "FastGelu", "QuickGelu")


# Every GELU output (FFN-down input) is ranged per token where a few tokens set the range of
# any of them: its range over the calibration texts at least this many times the median
# token's own range (mpnet-base: up to 30 in its middle layers; MiniLM-L6: at most 7.5, where
# fixed ranges lose nothing and run fewer operators). All of them, not only the widest: on
# mpnet-base ranging its 5 widest per token (the rest smoothed, fixed) gained nothing.
TOKEN_SPREAD = 12.0


def token_ranged_inputs(graph: Path, feeds: list[Any]) -> frozenset[str]:
    """The GELU outputs of ``graph`` to range per token: all of them where, over ``feeds``,
    one's range (holding 0) is ``TOKEN_SPREAD`` times its median token's range; else none."""
    import numpy as np
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    gelus = sorted(o for n in model.graph.node if n.op_type in GELU_OPS for o in n.output)
    if not gelus or not feeds:
        return frozenset()
    lo, hi = dict.fromkeys(gelus, 0.0), dict.fromkeys(gelus, 0.0)
    tokens: dict[str, list[Any]] = {x: [] for x in gelus}
    for x, a in _probe(graph, gelus, feeds):
        rows = a.reshape(-1, a.shape[-1])
        lo[x], hi[x] = min(lo[x], float(rows.min())), max(hi[x], float(rows.max()))
        tokens[x].append(np.maximum(rows.max(1), 0) - np.minimum(rows.min(1), 0))
    spread = max(
        (hi[x] - lo[x]) / max(float(np.median(np.concatenate(tokens[x]))), 1e-9) for x in gelus
    )
    return frozenset(gelus) if spread >= TOKEN_SPREAD else frozenset()


def _row_consts() -> dict[str, Any]:
    import numpy as np

    return {
        "pt/zero": np.array(0.0, np.float32),
        "pt/255": np.array(255.0, np.float32),
        "pt/inv255": np.array(1 / 255, np.float32),
        "pt/tiny": np.array(1e-30, np.float32),
        "pt/one": np.array(1.0, np.float32),
        "pt/zp": np.array(0, np.uint8),
        "pt/last": np.array([-1], np.int64),
    }


def _row_quantize(x: str, p: str, opset: int) -> list[Any]:
    """Nodes quantizing each row of ``x`` to uint8 from its own min to max (holding 0):
    ``{p}/q``, its scale ``{p}/scale`` and minus its zero point ``{p}/neg_zp``, per row."""
    from onnx import helper

    def reduce(op: str, y: str) -> Any:  # axes an input from opset 18, before an attribute
        if opset >= 18:
            return helper.make_node(op, [x, "pt/last"], [y], keepdims=1)
        return helper.make_node(op, [x], [y], axes=[-1], keepdims=1)

    return [
        reduce("ReduceMax", f"{p}/max"),
        reduce("ReduceMin", f"{p}/min"),
        helper.make_node("Max", [f"{p}/max", "pt/zero"], [f"{p}/hi"]),
        helper.make_node("Min", [f"{p}/min", "pt/zero"], [f"{p}/lo"]),
        helper.make_node("Sub", [f"{p}/hi", f"{p}/lo"], [f"{p}/span"]),
        helper.make_node("Max", [f"{p}/span", "pt/tiny"], [f"{p}/range"]),
        helper.make_node("Div", ["pt/255", f"{p}/range"], [f"{p}/inv"]),
        helper.make_node("Mul", [f"{p}/lo", f"{p}/inv"], [f"{p}/lo_steps"]),
        helper.make_node("Round", [f"{p}/lo_steps"], [f"{p}/neg_zp"]),
        helper.make_node("Mul", [x, f"{p}/inv"], [f"{p}/steps"]),
        helper.make_node("Sub", [f"{p}/steps", f"{p}/neg_zp"], [f"{p}/shifted"]),
        helper.make_node("QuantizeLinear", [f"{p}/shifted", "pt/one", "pt/zp"], [f"{p}/q"]),
        helper.make_node("Mul", [f"{p}/range", "pt/inv255"], [f"{p}/scale"]),
    ]


def per_token_ranges(graph: Path, inputs: frozenset[str]) -> int:
    """Each fixed-range int8 MatMul of ``graph`` reading one of ``inputs`` (GELU outputs, see
    ``token_ranged_inputs``) gets a range per token instead of one per tensor, computed as it
    runs: each row of the input (its last axis) from its own min to max (holding 0) in 255
    steps, ``q = round(x / s) + z`` as uint8 (``_row_quantize``), then
    ``MatMulIntegerToFloat(q, W, s, w_scale)`` scales the exact integer product row by row and
    ``- s * z * w_scale * colsum(W)`` removes the row's zero point. A few tokens carry the
    largest GELU outputs; with one range per tensor they coarsen every other token's steps. No
    row depends on another, so batches stay invariant. Rewrites ``graph`` in place; returns the
    number of MatMuls changed."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(graph))
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    users: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for x in n.input:
            users.setdefault(x, []).append(n)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    drop: set[int] = set()
    added: dict[int, list[Any]] = {}  # id of a node to replace -> the nodes in its place
    quantized: dict[str, tuple[str, str, str]] = {}  # input -> (uint8 rows, scales, -zero points)
    for mm in [n for n in model.graph.node if n.op_type == "MatMulInteger"]:
        ql = producer.get(mm.input[0])
        if ql is None or ql.op_type != "QuantizeLinear" or ql.input[0] not in inputs:
            continue
        cast = users[mm.output[0]][0]
        scale_mul = users[cast.output[0]][0] if cast.op_type == "Cast" else None
        if scale_mul is None or scale_mul.op_type != "Mul":
            continue
        scales = producer.get(scale_mul.input[1])
        if scales is None:
            continue
        x, p = ql.input[0], f"pt/{ql.input[0]}"
        if x not in quantized:
            added[id(ql)] = _row_quantize(x, p, opset)
            quantized[x] = (f"{p}/q", f"{p}/scale", f"{p}/neg_zp")
        q, s_row, neg_zp = quantized[x]
        w, wscale = mm.input[1], scales.input[1]
        wzp = mm.input[3] if len(mm.input) > 3 else ""
        wq = numpy_helper.to_array(inits[w]).astype(np.int64)
        wz = numpy_helper.to_array(inits[wzp]).astype(np.int64) if wzp in inits else 0
        ws = numpy_helper.to_array(inits[wscale]).astype(np.float64)
        colsum = f"{w}/scaled_colsum"
        model.graph.initializer.append(
            numpy_helper.from_array(((wq - wz).sum(0) * ws).astype(np.float32), colsum)
        )
        o = mm.output[0]
        added[id(mm)] = [
            helper.make_node(
                "MatMulIntegerToFloat",
                [q, w, s_row, wscale, "pt/zp", wzp],
                [f"{o}/per_token"],
                name=f"{mm.name}_per_token",
                domain="com.microsoft",
            ),
            helper.make_node("Mul", [s_row, neg_zp], [f"{o}/zp_scale"]),
            helper.make_node("Mul", [f"{o}/zp_scale", colsum], [f"{o}/zp_term"]),
            helper.make_node("Add", [f"{o}/per_token", f"{o}/zp_term"], [scale_mul.output[0]]),
        ]
        drop |= {id(mm), id(cast), id(scale_mul), id(scales)}
        if all(id(u) in added for u in users[ql.output[0]]):
            drop.add(id(ql))  # else the fixed range stays for its other readers
    if not added:
        return 0
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in _row_consts().items())
    nodes = []
    for n in model.graph.node:
        nodes += [] if id(n) in drop else [n]
        nodes += added.get(id(n), [])
    replace_nodes(model, nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(graph))
    return sum(n.op_type == "MatMulIntegerToFloat" for n in nodes)
