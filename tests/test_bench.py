from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

from edgetune.bench import BenchConfig, bench, parse_fraction
from edgetune.cli import main
from edgetune.errors import ConfigError, GateFailed

from .conftest import rerecord_hashes

GRID = dict(
    batch_sizes=(4,),
    seq_lengths=(32, 64),
    rounds=8,
    warmup=2,
    pause_s=0.01,
    threads=1,
    progress=False,
)


def slowed_copy(src, dst, matmuls=3):
    """A valid bundle whose default model does extra, input-dependent work (same outputs)."""
    import onnx
    from onnx import helper, numpy_helper

    shutil.copytree(src, dst)
    path = dst / "model.onnx"
    m = onnx.load(str(path))
    g = m.graph
    logits = g.output[0].name
    for n in g.node:
        n.output[:] = [logits + "_orig" if o == logits else o for o in n.output]
        n.input[:] = [logits + "_orig" if i == logits else i for i in n.input]
    rng = np.random.default_rng(0)
    g.initializer.extend(
        [
            numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "slow_shape"),
            numpy_helper.from_array(rng.standard_normal((1, 384)).astype(np.float32), "slow_w0"),
            numpy_helper.from_array(
                (rng.standard_normal((384, 384)) * 0.01).astype(np.float32), "slow_w"
            ),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "slow_zero"),
        ]
    )
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["slow_m"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Reshape", ["slow_m", "slow_shape"], ["slow_col"]),
        helper.make_node("MatMul", ["slow_col", "slow_w0"], ["slow_0"]),
    ]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"slow_{i}", "slow_w"], [f"slow_{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"slow_{matmuls}"], ["slow_sum"], keepdims=0),
        helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nil"]),
        helper.make_node("Add", [logits + "_orig", "slow_nil"], [logits]),
    ]
    g.node.extend(nodes)
    onnx.save(m, str(path))
    rerecord_hashes(dst)
    return dst


@pytest.fixture(scope="module")
def slow_bundle(bundle_dir, tmp_path_factory):
    return slowed_copy(bundle_dir, tmp_path_factory.mktemp("slow") / "b", matmuls=6)


def test_a_bundle_compared_with_itself_passes(bundle_dir, tmp_path):
    r = bench(
        bundle=str(bundle_dir),
        compare=str(bundle_dir),
        max_regression=0.10,
        output=str(tmp_path / "b.json"),
        **GRID,
    )
    assert r.passed, r.summary()
    rep = json.loads((tmp_path / "b.json").read_text())
    assert rep["schema"] == "edgetune-bench" and rep["compare"]["kind"] == "bundle"
    assert [(c["batch_size"], c["seq_len"]) for c in rep["grid"]] == [(4, 32), (4, 64)]
    for c in rep["grid"]:
        assert c["p50_ms"] > 0 and c["compare"]["p50_ms"] > 0 and c["throughput_per_s"] > 0
        assert c["ratio"]["ci_low"] <= c["ratio"]["ratio"] <= c["ratio"]["ci_high"]
    assert [g["passed"] for g in rep["gates"]] == [True, True]


def test_a_slower_variant_fails_the_gate(bundle_dir, slow_bundle, tmp_path):
    # Same predictions, several times the work: a regression the gate must catch.
    r = CliRunner().invoke(
        main,
        [
            "bench",
            str(slow_bundle),
            "--compare",
            str(bundle_dir),
            "--max-regression",
            "10%",
            "--batch-sizes",
            "4",
            "--seq-lengths",
            "32,64",
            "--rounds",
            "8",
            "--pause",
            "0.01",
            "--threads",
            "1",
            "--junit",
            str(tmp_path / "j.xml"),
            "--markdown",
            str(tmp_path / "s.md"),
            "--output",
            str(tmp_path / "slow.json"),
            "--quiet",
        ],
    )
    assert r.exit_code == 1, r.output
    fails = [ln for ln in r.output.splitlines() if ln.startswith("gate failed")]
    assert len(fails) == 2 and "batch 4 x sequence 64" in fails[1]
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "2"
    assert len(suite.findall("testcase/failure")) == 2
    assert "**FAIL**" in (tmp_path / "s.md").read_text()
    # The other way round the slow bundle is the comparator and the fast one passes.
    ok = bench(bundle=str(bundle_dir), compare=str(slow_bundle), max_regression=0.10, **GRID)
    assert ok.passed and all(c["ratio"]["ratio"] < 1 for c in ok.report["grid"])


def test_baseline_compares_ratios(bundle_dir, slow_bundle, tmp_path):
    base = tmp_path / "base.json"
    bench(bundle=str(bundle_dir), compare=str(bundle_dir), output=str(base), **GRID)
    # Same comparison against the baseline: passes.
    r = bench(
        bundle=str(bundle_dir),
        compare=str(bundle_dir),
        baseline=str(base),
        max_regression=0.10,
        **GRID,
    )
    assert r.passed, r.summary()
    # The slow bundle's ratio against the same comparator has grown: fails.
    with pytest.raises(GateFailed, match="in the baseline"):
        bench(
            bundle=str(slow_bundle),
            compare=str(bundle_dir),
            baseline=str(base),
            max_regression=0.10,
            **GRID,
        )


def test_compare_with_pytorch_and_bad_input(bundle_dir, tmp_path):
    r = bench(bundle=str(bundle_dir), compare="pytorch", **{**GRID, "seq_lengths": (32,)})
    assert r.report["compare"]["kind"] == "pytorch" and r.report["grid"][0]["ratio"]["ratio"] > 0
    with pytest.raises(ConfigError, match="add --compare"):
        BenchConfig(bundle="b", max_regression=0.1)
    with pytest.raises(ConfigError, match="not absolute times"):
        BenchConfig(bundle="b", baseline="old.json")
    assert parse_fraction("10%") == pytest.approx(0.1) and parse_fraction("0.25") == 0.25
    cases = [
        (["bench", str(tmp_path)], "not an edgetune bundle"),
        (
            ["bench", str(bundle_dir), "--max-regression", "lots", "--compare", "pytorch"],
            "not a fraction",
        ),
        (["bench", str(bundle_dir), "--seq-lengths", "128"], "exceed the model's max length"),
        (
            [
                "bench",
                str(bundle_dir),
                "--compare",
                str(bundle_dir),
                "--baseline",
                str(tmp_path / "none.json"),
                "--max-regression",
                "5%",
            ],
            "not a readable bench JSON",
        ),
    ]
    for args, msg in cases:
        out = CliRunner().invoke(main, args)
        assert out.exit_code == 2 and msg in out.output, (args, out.output)
