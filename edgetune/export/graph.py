"""The ONNX graph: Optimum's export, ORT's graph optimization, and the CPU rewrites.

The CPU variants are built from a rewritten graph: Gemm as MatMul + Add, LayerNorm through
InstanceNormalization; the word-embedding Gather is found here and turned into 4-bit
GatherBlockQuantized after quantization.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ModelError, first_line
from ..quant import FUSED_ARCHITECTURES


def export_onnx(
    model_dir: Path,
    out: Path,
    opset: int,
    trust_remote_code: bool,
    task: str = "text-classification",
) -> Path:
    """Optimum's ONNX export of ``model_dir`` for ``task`` into ``out``; returns the checked
    ``model.onnx``."""
    import warnings

    from optimum.exporters.onnx import main_export

    from ..heads import is_head_model
    from ..modeling import quiet_transformers

    try:
        with quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about constants in the trace
            if is_head_model(model_dir):
                _export_head_model(model_dir, out, opset)
            else:
                main_export(
                    str(model_dir),
                    output=str(out),
                    task=task,
                    library_name="transformers",
                    opset=opset,
                    do_validation=False,
                    trust_remote_code=trust_remote_code,
                )
    except (ValueError, KeyError, NotImplementedError) as e:
        msg = first_line(e)
        raise ModelError(f"Optimum cannot export {model_dir} to ONNX: {msg}") from None
    path = out / "model.onnx"
    import onnx

    onnx.checker.check_model(str(path))
    return path


def _export_head_model(model_dir: Path, out: Path, opset: int) -> None:
    """One graph for an encoder with an edgetune head (pooling and head, or a cloze template
    and verbaliser, inside it), exported with Optimum's ONNX config of the encoder's
    architecture: the inputs, outputs and dynamic axes of its text-classification export."""
    from optimum.exporters.onnx import export
    from optimum.exporters.tasks import TasksManager
    from transformers import AutoTokenizer

    from ..modeling import load_saved

    model = load_saved(model_dir).eval()
    make_config = TasksManager.get_exporter_config_constructor(
        exporter="onnx",
        model_type=model.config.model_type,
        task="text-classification",
        library_name="transformers",
    )
    out.mkdir(parents=True, exist_ok=True)
    export(model, make_config(model.config), out / "model.onnx", opset=opset)
    model.config.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)


def _heads_hidden(cfg: dict[str, Any]) -> tuple[int, int]:
    heads = cfg.get("num_attention_heads") or cfg.get("n_heads") or 0
    hidden = cfg.get("hidden_size") or cfg.get("dim") or 0
    return int(heads), int(hidden)


# ORT's skip-layer-norm fusion logs this when symbolic shape inference failed; ORT imports its
# module under its bare name (it puts its own folder on sys.path) or as part of the package.
_SHAPE_MESSAGE = "symbolic shape inference disabled or failed."
_SHAPE_LOGGERS = ("fusion_skiplayernorm", "onnxruntime.transformers.fusion_skiplayernorm")
_SHAPE_PRINT = "failed in shape inference"


class _ShapeInferenceFailed(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _SHAPE_MESSAGE


@contextlib.contextmanager
def _expected_shape_failure() -> Iterator[None]:
    """Keep ORT's symbolic shape inference failure out of the output while the graph is
    optimized. It is expected: the inference cannot follow the Expand of a pooling head's
    mask, and the fusions that need shapes are skipped, so the graph stays correct. ORT logs
    it per fusion and prints (not logs) the exception's type once."""
    import io
    import sys

    f = _ShapeInferenceFailed()
    loggers = [logging.getLogger(name) for name in _SHAPE_LOGGERS]
    for lg in loggers:
        lg.addFilter(f)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        for lg in loggers:
            lg.removeFilter(f)
        for line in printed.getvalue().splitlines(keepends=True):
            if not line.startswith(_SHAPE_PRINT):
                sys.stdout.write(line)


def optimize(src: Path, dst: Path, cfg: dict[str, Any], level: str) -> Path:
    """O1: ORT's basic graph rewrites; O2: + transformer fusions; O3: + GELU approximation."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = FUSED_ARCHITECTURES.get(cfg.get("model_type", ""))
    heads, hidden = _heads_hidden(cfg)
    if level == "O1" or model_type is None:
        m = optimize_model(str(src), model_type="bert", opt_level=1, only_onnxruntime=True)
    else:
        opts = FusionOptions(model_type)
        # The word-embedding Gather stays separate so it can be quantized on its own.
        opts.enable_embed_layer_norm = False
        opts.enable_gelu_approximation = level == "O3"
        with _expected_shape_failure():
            m = optimize_model(
                str(src),
                model_type=model_type,
                num_heads=heads,
                hidden_size=hidden,
                optimization_options=opts,
                opt_level=0,
            )
    m.save_model_to_file(str(dst))
    return dst


def build_cpu_graph(src: Path, dst: Path, instance_norm: bool) -> Path:
    """The graph the CPU variants are built from: the rewrites below, one load and one save."""
    import onnx

    model = onnx.load(str(src))
    _gemm_as_matmul(model)
    if instance_norm:
        layernorm_as_instancenorm(model)
    onnx.save(model, str(dst))
    return dst


def _gemm_as_matmul(model: Any) -> None:
    """Rewrite linear-layer Gemm nodes (2-D inputs, e.g. classifier heads) as MatMul + Add.

    The int8 quantizers handle MatMul in every mode, so every linear layer of every architecture
    is quantized alike (and as quantization-aware training simulated it).
    """
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes = []
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if (
            n.op_type != "Gemm"
            or n.input[1] not in inits
            or attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
        ):
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        if attrs.get("transB", 0):
            w = w.T
        name = n.name or n.output[0]
        wname = f"{n.input[1]}/matmul_b"
        g.initializer.append(numpy_helper.from_array(w.copy(), wname))
        has_bias = len(n.input) > 2 and n.input[2]
        mm_out = f"{name}/matmul" if has_bias else n.output[0]
        nodes.append(
            helper.make_node("MatMul", [n.input[0], wname], [mm_out], name=f"{name}/MatMul")
        )
        if has_bias:
            nodes.append(
                helper.make_node("Add", [mm_out, n.input[2]], [n.output[0]], name=f"{name}/Add")
            )
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)


def layernorm_as_instancenorm(model: Any) -> None:
    """Compute each LayerNorm over the hidden axis with ONNX InstanceNormalization.

    ORT's CPU (Skip)LayerNormalization kernel accumulates row statistics in a scalar loop; its
    InstanceNormalization kernel is vectorized. Measured at batch 1, sequence 128, hidden 384:
    134 us vs 58 us per normalization, about 1 ms of an 8 ms int8 MiniLM-L6 forward pass.
    The maths is the same: rows of [tokens, hidden] are reshaped to [tokens, 1, hidden],
    normalized, reshaped back, then scaled by gamma and shifted by beta.
    """
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    used = {o.name for o in g.output} | {k for k, v in consumers.items() if v}
    added: set[str] = set()

    def const(name: str, value: Any) -> str:
        if name not in added:
            g.initializer.append(numpy_helper.from_array(value, name))
            added.add(name)
        return name

    new_nodes = []
    for n in g.node:
        gamma = _layernorm_gamma(n, inits, used)
        if gamma is None:
            new_nodes.append(n)
            continue
        x, nodes = _skip_sum(n)
        new_nodes += nodes + _instance_norm(n, x, gamma, const)
    del g.node[:]
    g.node.extend(new_nodes)


def _is_skip_layernorm(n: Any) -> bool:
    return n.op_type == "SkipLayerNormalization" and n.domain == "com.microsoft"


def _layernorm_gamma(n: Any, inits: dict[str, Any], used: set[str]) -> Any:
    """The scale initializer of a LayerNorm this rewrite can take over (else None): over the
    last axis, with a 1-D scale, and no use of its mean / inverse std-dev outputs (they have
    no equivalent here; SkipLayerNormalization's sum output does)."""
    is_sln = _is_skip_layernorm(n)
    is_ln = n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx")
    if not (is_sln or is_ln):
        return None
    gamma = inits.get(n.input[2] if is_sln else n.input[1])
    axis = next((a.i for a in n.attribute if a.name == "axis"), -1)
    stats_used = any(o and o in used for o in n.output[1:3])
    if gamma is None or len(gamma.dims) != 1 or axis != -1 or stats_used:
        return None
    return gamma


def _skip_sum(n: Any) -> tuple[str, list[Any]]:
    """The normalized input: for SkipLayerNormalization, input + skip (+ bias), with its sum
    output kept when something reads it."""
    from onnx import helper

    if not _is_skip_layernorm(n):
        return n.input[0], []
    p = n.name or n.output[0]
    x = f"{p}/sum"
    nodes = [helper.make_node("Add", [n.input[0], n.input[1]], [x], name=f"{p}/add")]
    if len(n.input) > 4 and n.input[4]:
        nodes.append(
            helper.make_node("Add", [x, n.input[4]], [f"{p}/sum_bias"], name=f"{p}/add_bias")
        )
        x = f"{p}/sum_bias"
    if len(n.output) == 4 and n.output[3]:
        nodes.append(helper.make_node("Identity", [x], [n.output[3]], name=f"{p}/sum_out"))
    return x, nodes


def _instance_norm(n: Any, x: str, gamma: Any, const: Any) -> list[Any]:
    """Rows of ``x`` normalized by InstanceNormalization, then scaled and shifted."""
    import numpy as np
    from onnx import helper

    is_sln = _is_skip_layernorm(n)
    eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
    hidden = int(gamma.dims[0])
    p = n.name or n.output[0]
    beta = n.input[3] if is_sln else (n.input[2] if len(n.input) > 2 else "")
    rows = const(f"edgetune/ln_rows_{hidden}", np.array([-1, 1, hidden], dtype=np.int64))
    one = const("edgetune/ln_one", np.ones(1, dtype=np.float32))
    zero = const("edgetune/ln_zero", np.zeros(1, dtype=np.float32))
    scaled = f"{p}/scaled" if beta else n.output[0]
    nodes = [
        helper.make_node("Shape", [x], [f"{p}/shape"], name=f"{p}/shape"),
        helper.make_node("Reshape", [x, rows], [f"{p}/rows"], name=f"{p}/to_rows"),
        helper.make_node(
            "InstanceNormalization",
            [f"{p}/rows", one, zero],
            [f"{p}/norm"],
            name=f"{p}/norm",
            epsilon=eps,
        ),
        helper.make_node(
            "Reshape", [f"{p}/norm", f"{p}/shape"], [f"{p}/back"], name=f"{p}/from_rows"
        ),
        helper.make_node("Mul", [f"{p}/back", gamma.name], [scaled], name=f"{p}/gamma"),
    ]
    if beta:
        nodes.append(helper.make_node("Add", [scaled, beta], [n.output[0]], name=f"{p}/beta"))
    return nodes


def word_gather(model: Any, cfg: dict[str, Any]) -> Any:
    """The Gather that reads the fp32 [vocab, hidden] word-embedding table, or None."""
    import onnx

    vocab = cfg.get("vocab_size")
    _, hidden = _heads_hidden(cfg)
    inits = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        t = inits.get(n.input[0]) if n.op_type == "Gather" else None
        if (
            t is not None
            and list(t.dims) == [vocab, hidden]
            and t.data_type == onnx.TensorProto.FLOAT
        ):
            return n
    return None


def gather_to_int4(model: Any, node: Any, block: int) -> None:
    """Replace the fp32 word-embedding Gather by com.microsoft GatherBlockQuantized (4-bit)."""
    import numpy as np
    from onnx import helper, numpy_helper

    init = next(t for t in model.graph.initializer if t.name == node.input[0])
    w = numpy_helper.to_array(init).astype(np.float32)
    v, h = w.shape
    blk = w.reshape(v, h // block, block)
    scale = np.abs(blk).max(-1) / 7.0
    scale[scale == 0] = 1.0
    q = (np.clip(np.rint(blk / scale[..., None]) + 8, 0, 15).astype(np.uint8)).reshape(v, h)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)  # low nibble = even column
    model.graph.initializer.remove(init)
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(packed, init.name + "_q4"),
            numpy_helper.from_array(scale.astype(np.float32), init.name + "_scales"),
        ]
    )
    idx = list(model.graph.node).index(node)
    new = helper.make_node(
        "GatherBlockQuantized",
        [init.name + "_q4", node.input[1], init.name + "_scales"],
        list(node.output),
        name=node.name + "_q4",
        domain="com.microsoft",
        block_size=block,  # bits: 4 is the default; writing it would need onnxruntime 1.23
        gather_axis=0,
        quantize_axis=1,
    )
    model.graph.node.remove(node)
    model.graph.node.insert(idx, new)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def replace_nodes(model: Any, nodes: list[Any]) -> None:
    """The graph's nodes become ``nodes`` (a rewrite's output); initializers left unread go."""
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    drop_unused_initializers(model)


def drop_unused_initializers(model: Any) -> None:
    """Remove the initializers no node reads any more (after a rewrite)."""
    used = {i for n in model.graph.node for i in n.input}
    for t in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(t)
