"""edgetune.ort_versions: the onnxruntime version a graph needs, from hand-built minimal graphs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgetune.ort_versions import (  # noqa: E402
    OLDEST_TESTED,
    parse_version,
    requirements,
    requirements_from_ops,
    satisfies,
)

MS = "com.microsoft"


def _model(nodes, inputs, outputs, inits=(), opset=18, ir=8, ms=True):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS, 1)] if ms else [])
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = ir
    return model


def _x(shape=(2, 3, 64)):
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))


def _y(et=TensorProto.FLOAT):
    return helper.make_tensor_value_info("y", et, None)


def add_graph(opset=18, ir=8):
    return _model(
        [helper.make_node("Add", ["x", "x"], ["y"])], [_x()], [_y()], opset=opset, ir=ir, ms=False
    )


def bias_gelu_graph():
    b = numpy_helper.from_array(np.zeros(64, np.float32), "b")
    return _model([helper.make_node("BiasGelu", ["x", "b"], ["y"], domain=MS)], [_x()], [_y()], [b])


def gbq_graph(bits: int | None = 4):
    """4-bit block-quantized embedding rows, uint8-packed, as our exporter writes them."""
    attrs = {"block_size": 32, "gather_axis": 0, "quantize_axis": 1}
    if bits is not None:
        attrs["bits"] = bits
    inits = [
        numpy_helper.from_array(np.full((50, 32), 0x88, np.uint8), "d"),
        numpy_helper.from_array(np.full((50, 2), 0.01, np.float32), "s"),
    ]
    node = helper.make_node("GatherBlockQuantized", ["d", "i", "s"], ["y"], domain=MS, **attrs)
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3])
    return _model([node], [i], [_y()], inits)


def qattention_graph():
    h = 64
    inits = [
        numpy_helper.from_array(np.zeros((h, 3 * h), np.int8), "w"),
        numpy_helper.from_array(np.zeros(3 * h, np.float32), "bb"),
        numpy_helper.from_array(np.float32(0.02), "xs"),
        numpy_helper.from_array(np.full(3 * h, 0.01, np.float32), "ws"),
        numpy_helper.from_array(np.uint8(128), "xz"),
        numpy_helper.from_array(np.zeros(3 * h, np.int8), "wz"),
    ]
    node = helper.make_node(
        "QAttention",
        ["qx", "w", "bb", "xs", "ws", "mask", "xz", "wz"],
        ["y"],
        domain=MS,
        num_heads=2,
        mask_filter_value=-3.4e38,
    )
    qx = helper.make_tensor_value_info("qx", TensorProto.UINT8, [2, 3, h])
    mask = helper.make_tensor_value_info("mask", TensorProto.INT32, [2])
    return _model([node], [qx, mask], [_y()], inits)


def test_plain_opset18_graph_needs_only_the_oldest_tested_release():
    r = requirements(add_graph())
    assert r == {
        "min_onnxruntime": OLDEST_TESTED,
        "opsets": {"ai.onnx": 18},
        "ir_version": 8,
        "ops": ["ai.onnx/Add"],
        "because": "IR version 8",
    }


def test_newer_opset_and_ir_set_the_floor():
    assert requirements(add_graph(opset=21, ir=10))["min_onnxruntime"] == "1.18.0"
    r = requirements(add_graph(opset=23, ir=11))
    assert r["min_onnxruntime"] == "1.23.0"
    assert r["because"] in {"IR version 11", "ai.onnx opset 23"}
    with pytest.raises(ValueError, match="opset 99"):
        requirements(add_graph(opset=99))
    with pytest.raises(ValueError, match="IR version 42"):
        requirements(add_graph(ir=42))


def test_gather_block_quantized_bits_needs_1_23():
    r = requirements(gbq_graph(bits=4))
    assert r["min_onnxruntime"] == "1.23.0"
    assert r["because"] == "com.microsoft/GatherBlockQuantized[bits]"
    assert "com.microsoft/GatherBlockQuantized[bits]" in r["ops"]
    assert r["opsets"] == {"ai.onnx": 18, "com.microsoft": 1}
    # Without the attribute (uint8 data then means 4 bits) 1.22 loads it.
    assert requirements(gbq_graph(bits=None))["min_onnxruntime"] == "1.22.0"
    with pytest.raises(ValueError, match="bits=3"):
        requirements(gbq_graph(bits=3))


def test_qattention():
    r = requirements(qattention_graph())
    assert r["min_onnxruntime"] == OLDEST_TESTED
    assert r["ops"] == ["com.microsoft/QAttention"]


def test_unknown_contrib_op_or_attribute_is_refused():
    node = helper.make_node("NoSuchFusedOp", ["x"], ["y"], domain=MS)
    with pytest.raises(ValueError, match="com.microsoft/NoSuchFusedOp"):
        requirements(_model([node], [_x()], [_y()]))
    node = helper.make_node("Attention", ["x"], ["y"], domain=MS, num_heads=2, do_rotary=1)
    with pytest.raises(ValueError, match="do_rotary"):
        requirements(_model([node], [_x()], [_y()]))
    with pytest.raises(ValueError, match="ai.onnx.ml"):
        requirements_from_ops([("ai.onnx.ml", "TreeEnsemble", [])], {"": 18, "ai.onnx.ml": 5})


def test_requirements_from_parsed_ops():
    ops = [("", "Add", []), (MS, "MatMulNBits", ["K", "N", "bits", "block_size"])]
    # A value-dependent attribute given by name only counts as its newest tested value.
    assert requirements_from_ops(ops, {"": 18, MS: 1}, 8)["because"] == (
        "com.microsoft/MatMulNBits[bits=8]"
    )
    ops[1] = (MS, "MatMulNBits", {"K": 64, "N": 16, "bits": 4, "block_size": 32})
    r = requirements_from_ops(ops, {"": 18, MS: 1})
    assert (r["min_onnxruntime"], r["because"]) == ("1.16.2", "com.microsoft/MatMulNBits")
    assert r["ir_version"] is None


def test_nodes_in_subgraphs_count():
    inner = helper.make_graph(
        [helper.make_node("NoSuchFusedOp", [], ["z"], domain=MS)], "body", [], [_y()]
    )
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    node = helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=inner)
    with pytest.raises(ValueError, match="NoSuchFusedOp"):
        requirements(_model([node], [cond], [_y()]))


@pytest.mark.parametrize(
    ("installed", "required", "ok"),
    [
        ("1.22.0", "1.23.0", False),
        ("1.23.0", "1.23.0", True),
        ("1.23", "1.23.0", True),
        ("1.23.2", "1.23.0", True),
        ("1.100.0", "1.23.0", True),  # numeric, not lexicographic
        ("2.0", "1.99.9", True),
        ("1.20.1+cpu", "1.20.1", True),
        ("1.20.1+cpu", "1.21.0", False),
        ("1.23.0.dev20250612002", "1.23.0", False),  # a nightly may predate the feature
        ("1.23.0.dev20250612002", "1.22.1", True),
        ("1.23.0rc1", "1.23.0", False),
        ("1.23.0.post1", "1.23.0", True),
        (" v1.23.0 ", "1.23.0", True),
    ],
)
def test_satisfies(installed, required, ok):
    assert satisfies(installed, required) is ok


def test_parse_version():
    assert parse_version("1.22.0") == (1, 22, 0, 0, 0, 0)
    assert parse_version("1.23.0.dev20250612") < parse_version("1.23.0rc1") < parse_version("1.23")
    for bad in ("", "one.two", "1.2.3.4.5", "1.2-foo"):
        with pytest.raises(ValueError):
            parse_version(bad)


@pytest.mark.parametrize(
    "build", [add_graph, bias_gelu_graph, qattention_graph, gbq_graph], ids=lambda f: f.__name__
)
def test_installed_onnxruntime_meets_what_it_loads(build):
    ort = pytest.importorskip("onnxruntime")
    model = build()
    assert satisfies(ort.__version__, requirements(model)["min_onnxruntime"])
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_ort_versions_does_not_import_onnx():
    code = "import sys, edgetune.ort_versions; sys.exit('onnx' in sys.modules or 'onnxruntime' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]
        ).returncode
        == 0
    )
