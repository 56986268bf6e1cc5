"""An experiment, not a shipped option: `edgetune export` with every FFN-down MatMul (the one
whose input is a GELU's output, after any smoothing Mul) left in fp32, to measure how much of
an encoder's int8 drop sits in the GELU outputs (a few tokens carry their largest values,
which one per-tensor range cannot hold).

    python bench/export_ffn_fp32.py export runs/mpnet-sst2 --output bundles/mpnet-ffn \
        --variants fp32 --no-validate
    python bench/int8_drop.py base=bundles/mpnet ffn-fp32=bundles/mpnet-ffn \
        --data ../shared/data/sst2 --splits validation --name int8_drop_mpnet_ffn
    edgetune bench bundles/mpnet-ffn --compare bundles/mpnet --batch-sizes 1,32 \
        --seq-lengths 32,128 --threads 2 --rounds 10 --output bench/results/mpnet_ffn_latency.json

Every argument goes to edgetune's command line; only the quantizer's exclusion list changes.
"""

from __future__ import annotations

import sys

import onnx
import onnxruntime.quantization as oq

from edgetune.export.quantize import GELU_OPS

_quantize_dynamic = oq.quantize_dynamic


def _ffn_down(model_input: object, model_output: object, **kw: object) -> None:
    m = onnx.load(str(model_input), load_external_data=False)
    producer = {o: n for n in m.graph.node for o in n.output}

    def source_op(x: str) -> str | None:
        n = producer.get(x)
        while n is not None and n.op_type == "Mul" and n.name.endswith("_smooth"):
            n = producer.get(n.input[0])
        return n.op_type if n is not None else None

    keep = [
        n.name for n in m.graph.node if n.op_type == "MatMul" and source_op(n.input[0]) in GELU_OPS
    ]
    print(f"{len(keep)} FFN-down MatMuls kept in fp32", flush=True)
    kw["nodes_to_exclude"] = [*(kw.get("nodes_to_exclude") or []), *keep]  # type: ignore[misc]
    _quantize_dynamic(model_input, model_output, **kw)  # type: ignore[arg-type]


oq.quantize_dynamic = _ffn_down

from edgetune.cli import main  # noqa: E402

main(sys.argv[1:])
