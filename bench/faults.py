"""Subtle faults injected into a bundle variant's graph, as a miscompiling kernel or a corrupted
copy would make them, with every hash re-recorded so only the self-check can tell.

Each fault is small on purpose: one layer's weights scaled by 1%, one attention head zeroed, an
int8 weight scale one step (1/127) off, an int8 weight zero point one step off.
Used by ``bench/selfcheck_faults.py`` and by the fault-injection tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

FAULTS = ("layer scaled 1%", "head zeroed", "weight scale one step", "zero point one step")
# The attention output projection of BERT-, DistilBERT- and MPNet-style exports.
_OUT_PROJ = re.compile(r"attention/(output/dense|out_lin|attn/o)/MatMul")


def _weight_matmuls(model: Any) -> list[tuple[Any, str]]:
    """(node, weight name) of each MatMul/MatMulInteger with a constant weight, in graph order."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type in ("MatMul", "MatMulInteger") and len(n.input) > 1 and n.input[1] in inits:
            out.append((n, n.input[1]))
    return out


def applies(fault: str, graph: Path) -> bool:
    """Whether ``fault`` has something to change in ``graph``."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(graph)).graph.node}
    if fault == "weight scale one step":
        return "MatMulInteger" in ops
    if fault == "zero point one step":
        return "MatMulInteger" in ops
    return True


def inject(fault: str, graph: Path, config: dict[str, Any], strength: int = 1) -> str:
    """Apply ``fault`` to the ONNX file ``graph`` in place; returns what was changed.
    ``strength`` multiplies the size of a fault (1% per unit, one step per unit)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    inits = {t.name: t for t in model.graph.initializer}

    def edit(name: str, change: Any) -> None:
        a = numpy_helper.to_array(inits[name]).copy()
        inits[name].CopyFrom(numpy_helper.from_array(change(a).astype(a.dtype), name))

    matmuls = _weight_matmuls(model)
    node, weight = matmuls[len(matmuls) // 2]
    quantized = node.op_type == "MatMulInteger"
    if fault == "layer scaled 1%":
        base = weight.removesuffix("_quantized")
        edit(f"{base}_scale" if quantized else weight, lambda a: a * (1 + 0.01 * strength))
        what = node.name
    elif fault == "head zeroed":
        node, weight = next((n, w) for n, w in matmuls if _OUT_PROJ.search(n.name))
        hidden = config.get("hidden_size", config.get("dim"))
        d = hidden // config.get("num_attention_heads", config.get("n_heads"))
        zp = numpy_helper.to_array(inits[node.input[3]]) if quantized else 0

        def zero_head(a: np.ndarray) -> np.ndarray:
            a[:d] = zp
            return a

        edit(weight, zero_head)
        what = f"{node.name}, head 0 ({d} rows)"
    elif fault == "weight scale one step":
        edit(weight.removesuffix("_quantized") + "_scale", lambda a: a * (1 + strength / 127))
        what = node.name
    elif fault == "zero point one step":  # the weight's zero point, as the kernel reads it
        edit(node.input[3], lambda a: a + strength)
        what = node.name
    else:
        raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
    onnx.save(model, str(graph))
    return what


def rehash(root: Path) -> None:
    """Re-record every hash of a bundle whose files were edited (golden.json, then the manifest),
    as a careless or hostile tool would."""
    from edgetune.formats import bundle as bundlefmt

    golden = json.loads((root / bundlefmt.GOLDEN).read_text())
    for v in golden["variants"].values():
        v["sha256"] = bundlefmt.sha256(root / v["file"])
    bundlefmt.write_golden(root, golden)
    manifest = {
        k: v
        for k, v in bundlefmt.read_manifest(root).items()
        if k not in ("format", "version", "files")
    }
    bundlefmt.write_manifest(root, manifest)
