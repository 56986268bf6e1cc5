"""Which onnxruntime release can load a given ONNX graph.

A bundle that names too old an onnxruntime fails on the device with an opaque ``INVALID_GRAPH``
(onnxruntime 1.22 rejects our int8 graph: ``Unrecognized attribute: bits for operator
GatherBlockQuantized``), so the minimum version has to be known when the bundle is written.

Every entry below was verified empirically, not read from release notes: for each onnxruntime
CPU wheel (cp311, manylinux x86_64) 1.15.1, 1.16.0-1.16.3, 1.17.0, 1.17.3, 1.18.0, 1.18.1, 1.19.0,
1.19.2, 1.20.0, 1.20.1, 1.21.0, 1.21.1, 1.22.0, 1.22.1, 1.23.0, 1.23.2, 1.24.1, 1.24.4, 1.25.0,
1.25.1, 1.26.0, 1.27.0, 1.28.0, 1.29.0, 1.30.0, 1.31.1 and 1.32.0, a minimal graph using exactly
that op (with that attribute), opset or IR version was built with ``onnx.helper``, loaded with
``InferenceSession(..., providers=["CPUExecutionProvider"])`` and run once on small inputs. The
version recorded is the oldest tested release from which every tested release loads and runs it.
``OLDEST_TESTED`` (1.15.1) means "at or before 1.15.1": nothing older was tried.

This module must stay importable without ``onnx``/``onnxruntime`` (the torch-free runtime uses
it), so a model is read duck-typed: only ``.graph.node[].domain/.op_type/.attribute[]``,
``.opset_import[].domain/.version`` and ``.ir_version`` are touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "IR_SINCE",
    "OLDEST_TESTED",
    "OPSET_SINCE",
    "ORT_ATTR_SINCE",
    "ORT_ATTR_VALUE_SINCE",
    "ORT_SINCE",
    "CONTRIB_ATTRS",
    "parse_version",
    "requirements",
    "requirements_from_ops",
    "satisfies",
]

OLDEST_TESTED = "1.15.1"
ONNX = "ai.onnx"
MS = "com.microsoft"

# (domain, op) -> first onnxruntime that loads and runs it. Standard ai.onnx ops are not listed:
# OPSET_SINCE covers them (verified at opset 18 from 1.15.1 on: Add, Cast, Constant,
# DequantizeLinear with/without axis, DynamicQuantizeLinear, Erf, Gather, Gemm,
# InstanceNormalization, LayerNormalization, MatMul, MatMulInteger, Mul, QuantizeLinear,
# ReduceMean, ReduceSum, Relu, Reshape, Shape, Slice, Softmax, Sqrt, Tanh, Unsqueeze).
ORT_SINCE: dict[tuple[str, str], str] = {
    (MS, "Attention"): OLDEST_TESTED,
    (MS, "BiasGelu"): OLDEST_TESTED,
    (MS, "DequantizeLinear"): OLDEST_TESTED,
    (MS, "DynamicQuantizeMatMul"): OLDEST_TESTED,
    (MS, "EmbedLayerNormalization"): OLDEST_TESTED,
    (MS, "FastGelu"): OLDEST_TESTED,
    (MS, "Gelu"): OLDEST_TESTED,
    (MS, "MatMulIntegerToFloat"): OLDEST_TESTED,
    (MS, "MultiHeadAttention"): OLDEST_TESTED,
    (MS, "QAttention"): OLDEST_TESTED,  # scalar and per-column weight scale/zero point alike
    (MS, "QuantizeLinear"): OLDEST_TESTED,
    (MS, "SkipLayerNormalization"): OLDEST_TESTED,
    # 1.16.0/1.15.1: "com.microsoft:MatMulNBits(-1) is not a registered function/op".
    (MS, "MatMulNBits"): "1.16.2",
    # Registered in 1.20.0, but only for INT4/UINT4-typed data; the uint8 (packed) data that our
    # exporter writes is rejected ("Type 'tensor(uint8)' ... is invalid") until 1.22.0.
    # We do not look at data types, so the uint8 floor is the one claimed.
    (MS, "GatherBlockQuantized"): "1.22.0",
}

# (domain, op, attribute) whose attribute arrived after the op itself.
ORT_ATTR_SINCE: dict[tuple[str, str, str], str] = {
    # 1.20.0-1.22.1: "INVALID_GRAPH ... Unrecognized attribute: bits for operator
    # GatherBlockQuantized". Without the attribute, uint8 data means 4 bits: 1.22.1 gives
    # bit-identical output to 1.23.0 with bits=4.
    (MS, "GatherBlockQuantized", "bits"): "1.23.0",
    # Opset 21 blockwise DequantizeLinear: 1.18.x loads the graph but fails at run time
    # ("scale must be 1D tensor").
    (ONNX, "DequantizeLinear", "block_size"): "1.19.0",
}

# (domain, op, attribute, integer value) for attributes whose accepted *values* grew over time.
# A value not listed here for such an attribute is unverified and raises ValueError.
ORT_ATTR_VALUE_SINCE: dict[tuple[str, str, str, int], str] = {
    (MS, "GatherBlockQuantized", "bits", 4): "1.23.0",
    (MS, "GatherBlockQuantized", "bits", 8): "1.23.0",
    (MS, "MatMulNBits", "bits", 4): "1.16.2",
    # Before 1.23.0: "nbits_ == 4 was false. Only 4b quantization is supported".
    (MS, "MatMulNBits", "bits", 8): "1.23.0",
}

# The attributes each contrib op was tested with. Another attribute may be newer than the op,
# so it is refused rather than guessed.
CONTRIB_ATTRS: dict[tuple[str, str], frozenset[str]] = {
    (MS, "Attention"): frozenset({"num_heads", "mask_filter_value"}),
    (MS, "BiasGelu"): frozenset(),
    (MS, "DequantizeLinear"): frozenset(),
    (MS, "DynamicQuantizeMatMul"): frozenset(),
    (MS, "EmbedLayerNormalization"): frozenset({"epsilon"}),
    (MS, "FastGelu"): frozenset(),
    (MS, "Gelu"): frozenset(),
    (MS, "MatMulIntegerToFloat"): frozenset(),
    (MS, "MultiHeadAttention"): frozenset({"num_heads"}),
    (MS, "QAttention"): frozenset({"num_heads", "mask_filter_value"}),
    (MS, "QuantizeLinear"): frozenset(),
    (MS, "SkipLayerNormalization"): frozenset({"epsilon"}),
    (MS, "MatMulNBits"): frozenset({"K", "N", "bits", "block_size"}),
    (MS, "GatherBlockQuantized"): frozenset({"bits", "block_size", "gather_axis", "quantize_axis"}),
}

# ai.onnx opset -> first onnxruntime that loads a trivial Add graph at that opset (stamped with
# the lowest IR version onnx allows for it). Older releases fail with "ONNX Runtime only
# *guarantees* support for models stamped with official released onnx opset versions" or with
# the IR version gate below.
OPSET_SINCE: dict[int, str] = {
    **{v: OLDEST_TESTED for v in range(11, 20)},
    20: "1.17.0",
    21: "1.18.0",
    22: "1.21.0",
    23: "1.23.0",
    24: "1.24.1",
    25: "1.24.1",
    26: "1.25.0",
}

# Opset versions of com.microsoft that were tested (all contrib graphs use version 1).
CONTRIB_OPSETS: dict[int, str] = {1: OLDEST_TESTED}

# IR version -> first onnxruntime that loads it ("Unsupported model IR version: N, max
# supported IR version: M" before).
IR_SINCE: dict[int, str] = {
    6: OLDEST_TESTED,
    7: OLDEST_TESTED,
    8: OLDEST_TESTED,
    9: OLDEST_TESTED,
    10: "1.18.0",
    11: "1.23.0",
    12: "1.24.1",
    13: "1.24.1",
}

_STAGES = {"dev": -4, "a": -3, "alpha": -3, "b": -2, "beta": -2, "c": -1, "rc": -1, "post": 1}
_VERSION = re.compile(
    r"^v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[.\-_]?(?P<stage>dev|alpha|a|beta|b|rc|c|post)[.\-_]?(?P<n>\d*))?"
    r"(?:\+[\w.\-]*)?$",
    re.IGNORECASE,
)


def parse_version(s: str) -> tuple[int, ...]:
    """``"1.23.0"`` -> ``(1, 23, 0, 0, 0, 0)``, comparable as a tuple.

    The release is padded to four parts, then a (stage, number) pair that orders pre-releases
    as PEP 440 does: ``1.23.0.dev20250612 < 1.23.0rc1 < 1.23.0 < 1.23.0.post1``. A nightly of
    1.23.0 may predate the feature, so it does not count as 1.23.0. A local tag (``+cpu``) is
    ignored: it names a build of the same source.
    """
    m = _VERSION.match(s.strip())
    if m is None:
        raise ValueError(f"not a version: {s!r}")
    release = [int(p) for p in m["release"].split(".")]
    if len(release) > 4:
        raise ValueError(f"not a version: {s!r}")
    release += [0] * (4 - len(release))
    stage = _STAGES[m["stage"].lower()] if m["stage"] else 0
    return (*release, stage, int(m["n"] or 0))


def satisfies(installed: str, required: str) -> bool:
    """True when onnxruntime ``installed`` is at least ``required``."""
    return parse_version(installed) >= parse_version(required)


def _domain(d: str) -> str:
    return ONNX if d in ("", ONNX) else d


def requirements_from_ops(
    ops: Iterable[tuple[str, str, Iterable[str] | Mapping[str, Any]]],
    opsets: Mapping[str, int],
    ir_version: int | None = None,
) -> dict[str, Any]:
    """The oldest onnxruntime that loads a graph, from (domain, op_type, attributes) triples.

    ``attributes`` is either attribute names or a name -> value mapping; values matter only for
    ORT_ATTR_VALUE_SINCE, and a name given without a value counts as its newest tested value.
    Anything not verified (an unknown contrib op, attribute, value, domain or version) raises
    ValueError instead of claiming a version that may not load.
    """
    needs: list[tuple[tuple[int, ...], str, str]] = []

    def need(version: str, tag: str) -> None:
        needs.append((parse_version(version), tag, version))

    norm_opsets = {_domain(d): int(v) for d, v in opsets.items()}
    for dom, ver in sorted(norm_opsets.items()):
        table = OPSET_SINCE if dom == ONNX else CONTRIB_OPSETS if dom == MS else None
        if table is None:
            raise ValueError(f"opset domain {dom!r} has no verified onnxruntime version")
        if ver not in table:
            raise ValueError(f"{dom} opset {ver} has no verified onnxruntime version")
        need(table[ver], f"{dom} opset {ver}")
    if ir_version is not None:
        if ir_version not in IR_SINCE:
            raise ValueError(f"IR version {ir_version} has no verified onnxruntime version")
        need(IR_SINCE[ir_version], f"IR version {ir_version}")

    tags: set[str] = set()
    for raw_domain, op, attrs in ops:
        dom = _domain(raw_domain)
        if dom not in norm_opsets:
            raise ValueError(f"{dom}/{op} is used but the model imports no {dom} opset")
        values: Mapping[str, Any] = attrs if isinstance(attrs, Mapping) else dict.fromkeys(attrs)
        tag = f"{dom}/{op}"
        tags.add(tag)
        if dom == MS:
            if (dom, op) not in ORT_SINCE:
                raise ValueError(f"{tag}: contrib op with no verified onnxruntime version")
            unknown = sorted(set(values) - CONTRIB_ATTRS[(dom, op)])
            if unknown:
                raise ValueError(f"{tag}: attribute(s) {unknown} have no verified version")
            need(ORT_SINCE[(dom, op)], tag)
        elif dom != ONNX:
            raise ValueError(f"{tag}: domain {dom!r} has no verified onnxruntime version")
        for name, value in values.items():
            floor = ORT_SINCE.get((dom, op), OLDEST_TESTED)
            if (dom, op, name) in ORT_ATTR_SINCE:
                floor = ORT_ATTR_SINCE[(dom, op, name)]
                tags.add(f"{tag}[{name}]")
                need(floor, f"{tag}[{name}]")
            tested = {k[3]: v for k, v in ORT_ATTR_VALUE_SINCE.items() if k[:3] == (dom, op, name)}
            if not tested:
                continue
            if value is None:  # name only: assume the newest tested value
                value = max(tested, key=lambda k: parse_version(tested[k]))
            if value not in tested:
                raise ValueError(f"{tag}: {name}={value} has no verified onnxruntime version")
            if parse_version(tested[value]) > parse_version(floor):  # only when it raises the bar
                tags.add(f"{tag}[{name}={value}]")
                need(tested[value], f"{tag}[{name}={value}]")

    if not needs:
        raise ValueError("no opset imports: nothing to base a version on")
    # Highest version wins; among equals the alphabetically first tag, so output is stable.
    best = min(needs, key=lambda n: (tuple(-p for p in n[0]), n[1]))
    return {
        "min_onnxruntime": best[2],
        "opsets": dict(sorted(norm_opsets.items())),
        "ir_version": ir_version,
        "ops": sorted(tags),
        "because": best[1],
    }


def _attr_value(a: Any) -> Any:
    """An INT attribute's value (the only kind ORT_ATTR_VALUE_SINCE keys on), else None."""
    return int(a.i) if getattr(a, "type", None) == 2 else None  # AttributeProto.INT == 2


def nodes(graph: Any) -> Iterable[Any]:
    """Every node, including those in If/Loop/Scan bodies (GRAPH and GRAPHS attributes)."""
    for node in graph.node:
        yield node
        for a in node.attribute:
            if getattr(a, "type", None) == 5:  # GRAPH
                yield from nodes(a.g)
            elif getattr(a, "type", None) == 10:  # GRAPHS
                for g in a.graphs:
                    yield from nodes(g)


def requirements(model: Any) -> dict[str, Any]:
    """The oldest onnxruntime that loads ``model`` (an onnx ModelProto, read duck-typed).

    Returns ``min_onnxruntime``, ``opsets``, ``ir_version``, ``ops`` (``domain/Op`` plus
    ``domain/Op[attr]`` for late attributes) and ``because`` (the need that sets the floor).
    """
    ops = [
        (n.domain, n.op_type, {a.name: _attr_value(a) for a in n.attribute})
        for n in nodes(model.graph)
    ]
    opsets = {o.domain: int(o.version) for o in model.opset_import}
    return requirements_from_ops(ops, opsets, int(model.ir_version))
