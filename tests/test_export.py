from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer

from edgetune.cli import main
from edgetune.errors import BundleError, ModelError
from edgetune.export import ExportConfig, QuantizationConfig, export
from edgetune.formats import bundle as bundlefmt

from .conftest import ASSETS

TEXTS = [
    "a wonderful and moving film .",
    "the script is awful .",
    "what a boring mess !",
    "brilliant , charming cast",
    "the ending feels dull and weak .",
    "a delightful comedy",
    "ugly , tedious picture",
    "the story is smart and fresh .",
    "terrible performance",
    "this drama feels beautiful and funny .",
]


def ort_logits(path, tok_dir, texts):
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    enc = tok(texts, padding=True, return_tensors="np")
    return sess.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]


def torch_logits(model_dir, texts):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return model(**tok(texts, padding=True, return_tensors="pt")).logits.numpy()


def test_bundle_layout_and_manifest(bundle_dir):
    m = bundlefmt.verify(bundle_dir)
    assert m["default_variant"] == "int8-static"  # a run: calibrated on its training texts
    assert set(m["variants"]) == {"int8-dynamic", "fp32", "int8-static"}
    assert m["variants"]["int8-static"]["file"] == "model.onnx"
    assert m["labels"] == ["negative", "positive"] and m["max_length"] == 64
    for f in (
        "model.onnx",
        "model_fp32.onnx",
        "model_int8_dynamic.onnx",
        "config.json",
        "tokenizer.json",
    ):
        assert (bundle_dir / f).is_file() and m["files"][f] == bundlefmt.sha256(bundle_dir / f)
    assert set(m["versions"]) >= {"torch", "transformers", "optimum", "onnxruntime"}
    assert "features" in m["export_cpu"]
    cfg = json.loads((bundle_dir / "config.json").read_text())
    assert cfg["id2label"] == {"0": "negative", "1": "positive"}
    with tarfile.open(bundle_dir.with_name("b.tar.gz")) as tar:
        assert "b/edgetune.json" in tar.getnames()


def test_fp32_onnx_matches_pytorch(bundle_dir, trained_run):
    ref = torch_logits(trained_run / "best", TEXTS)
    got = ort_logits(bundle_dir / "model_fp32.onnx", bundle_dir, TEXTS)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert np.array_equal(got.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize("file", ["model.onnx", "model_int8_dynamic.onnx"])
def test_int8_agrees_with_fp32(bundle_dir, file):
    import pandas as pd

    texts = pd.read_csv(ASSETS / "sentiment.csv")["text"].tolist() + TEXTS
    fp32 = ort_logits(bundle_dir / "model_fp32.onnx", bundle_dir, texts).argmax(-1)
    int8 = ort_logits(bundle_dir / file, bundle_dir, texts).argmax(-1)
    assert np.mean(fp32 == int8) >= 0.95


def test_int8_is_much_smaller(bundle_dir):
    m = bundlefmt.read_manifest(bundle_dir)
    for name, mode in (("int8-static", "static"), ("int8-dynamic", "dynamic")):
        assert m["variants"][name]["size_bytes"] < 0.4 * m["fp32_onnx_bytes"]
        q = m["variants"][name]["quantization"]
        assert q["embeddings"] == "int4" and q["mode"] == mode


def test_stock_optimum_loader_and_pipeline(bundle_dir):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    model = ORTModelForSequenceClassification.from_pretrained(bundle_dir)
    tok = AutoTokenizer.from_pretrained(bundle_dir)
    clf = pipeline("text-classification", model=model, tokenizer=tok)
    labels = [r["label"] for r in clf(TEXTS)]
    ours = ort_logits(bundle_dir / "model.onnx", bundle_dir, TEXTS).argmax(-1)
    assert labels == [["negative", "positive"][i] for i in ours]


def test_tampered_or_truncated_bundle_is_refused(bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its SHA-256"):
        bundlefmt.verify(copy)
    (copy / "config.json").unlink()
    with pytest.raises(BundleError, match="missing config.json"):
        bundlefmt.verify(copy)


def test_fp16_and_per_tensor_variants(trained_run, tmp_path):
    r = export(
        source=str(trained_run),
        output=str(tmp_path / "b16"),
        quantize="fp16",
        per_channel=False,
        variants=("int8-dynamic",),
        embeddings="int8",
        progress=False,
        validate=False,
    )
    assert r.default_variant == "fp16"
    assert r.variants["fp16"]["size_bytes"] < 0.6 * r.fp32_onnx_bytes
    q = r.variants["int8-dynamic"]["quantization"]
    assert q["per_channel"] is False and q["embeddings"] == "int8"
    # Works from a plain HF model directory too (no run around it): no texts to calibrate on,
    # so auto is dynamic int8 (served one row per call).
    r2 = export(source=str(trained_run / "best"), output=str(tmp_path / "plain"), progress=False)
    assert bundlefmt.verify(tmp_path / "plain")["source"]["run"] is None
    assert r2.default_variant == "int8-dynamic"
    assert r2.variants["int8-dynamic"]["batching"] == "row"
    assert r2.validation is None and "not validated" in r2.note  # no labelled data known


def test_auto_is_static_where_there_are_texts_to_calibrate_on(trained_run, tmp_path):
    """--quantize auto: int8-static (batches) when a run's training texts or
    --calibration-data are there to fix its ranges on (a bare model directory without them gets
    dynamic int8, as in test_fp16_and_per_tensor_variants)."""
    r = export(
        source=str(trained_run / "best"),
        output=str(tmp_path / "calibrated"),
        calibration_data=str(ASSETS / "sentiment.csv"),
        progress=False,
        validate=False,
    )
    assert r.default_variant == "int8-static" and r.variants["int8-static"]["batching"] == "padded"
    out = tmp_path / "uncalibrated"
    cli = CliRunner().invoke(
        main, ["export", str(trained_run / "best"), "--output", str(out), "--no-validate"]
    )
    assert cli.exit_code == 0, cli.output
    assert "no texts to calibrate on; --calibration-data FILE makes it int8-static" in cli.output
    assert bundlefmt.verify(out)["default_variant"] == "int8-dynamic"


def test_quantization_presets_follow_the_cpu(monkeypatch):
    assert QuantizationConfig.avx2().reduce_range and QuantizationConfig.avx512().reduce_range
    assert not QuantizationConfig.avx512_vnni().reduce_range
    assert not QuantizationConfig.arm64().reduce_range
    import edgetune.hw as hw

    base = {k: False for k in hw.cpu_features()}
    monkeypatch.setattr(hw, "cpu_features", lambda: {**base, "avx2": True})
    assert QuantizationConfig.for_target("auto").target == "avx2"
    monkeypatch.setattr(
        hw, "cpu_features", lambda: {**base, "avx2": True, "avx512": True, "avx512_vnni": True}
    )
    assert QuantizationConfig.for_target("auto").target == "avx512_vnni"
    monkeypatch.setattr(hw, "cpu_features", lambda: {**base, "neon": True, "arm_dotprod": True})
    assert QuantizationConfig.for_target("auto").target == "arm64"


def test_bad_sources_and_outputs(trained_run, bundle_dir, tmp_path, tiny_model_dir):
    with pytest.raises(BundleError, match="not an edgetune run or a Hugging Face model"):
        export(source=str(tmp_path), output=str(tmp_path / "x"), progress=False)
    (tmp_path / "unfinished.partial" / "checkpoint").mkdir(parents=True)
    with pytest.raises(BundleError, match="unfinished"):
        export(source=str(tmp_path / "unfinished"), output=str(tmp_path / "y"), progress=False)
    from transformers import AutoModel

    base = tmp_path / "base"
    AutoModel.from_pretrained(tiny_model_dir).save_pretrained(base)
    with pytest.raises(ModelError, match="not a model for text-classification"):
        export(source=str(base), output=str(tmp_path / "z"), progress=False)
    stamp = (bundle_dir / "edgetune.json").read_bytes()
    r = CliRunner().invoke(
        main, ["export", str(trained_run), "--output", str(bundle_dir), "--quiet"]
    )
    assert r.exit_code == 2 and "already holds a bundle" in r.output and "Traceback" not in r.output
    assert (bundle_dir / "edgetune.json").read_bytes() == stamp
    r = CliRunner().invoke(
        main, ["export", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]
    )
    assert r.exit_code == 2 and r.output.startswith("error: ")
    assert not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]
    assert ExportConfig(source="a", output="b", quantize="static").default_variant == "int8-static"


def test_static_needs_calibration_texts_for_plain_models(trained_run, tmp_path):
    from edgetune.errors import ConfigError

    with pytest.raises(ConfigError, match="--calibration-data"):
        export(
            source=str(trained_run / "best"),
            output=str(tmp_path / "s"),
            quantize="static",
            progress=False,
        )
    r = export(
        source=str(trained_run / "best"),
        output=str(tmp_path / "s"),
        quantize="static",
        calibration_data=str(ASSETS / "sentiment.csv"),
        calibration_samples=20,
        progress=False,
    )
    assert r.variants["int8-static"]["quantization"]["calibration_samples"] == 20


def test_layernorm_rewrite_keeps_the_maths(trained_run, tmp_path):
    import onnx
    import onnxruntime as ort

    from edgetune.export.graph import layernorm_as_instancenorm

    export(
        source=str(trained_run),
        output=str(tmp_path / "plain"),
        quantize="none",
        instance_norm=False,
        validate=False,
        progress=False,
    )
    src = tmp_path / "plain" / "model.onnx"
    before = [n.op_type for n in onnx.load(str(src)).graph.node]
    norms = sum(op in ("SkipLayerNormalization", "LayerNormalization") for op in before)
    assert norms >= 3  # embeddings + 2 per layer, fused by O2
    model = onnx.load(str(src))
    layernorm_as_instancenorm(model)
    dst = tmp_path / "rewritten.onnx"
    onnx.save(model, str(dst))
    after = [n.op_type for n in onnx.load(str(dst)).graph.node]
    assert "SkipLayerNormalization" not in after and "LayerNormalization" not in after
    assert after.count("InstanceNormalization") == norms
    rng = np.random.default_rng(0)
    for length in (1, 7, 33):
        feed = {
            "input_ids": rng.integers(5, 500, (3, length)),
            "attention_mask": np.ones((3, length), dtype=np.int64),
        }
        a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        b = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_max_int8_drop_chooses_the_default_by_measurement(trained_run, tmp_path):
    """Every int8 kind and fp32 run the validation split through the runtime; the default is
    the fastest int8 variant within the limit, named model.onnx; candidates the user did not
    ask for are not shipped; the manifest records every candidate's figures and why."""
    from edgetune.export.choose import CANDIDATES, pick
    from edgetune.runtime import Classifier

    out = tmp_path / "b"
    r = CliRunner().invoke(
        main,
        ["export", str(trained_run), "--output", str(out), "--variants", "fp32"]
        + ["--max-int8-drop", "100", "--no-validate", "--quiet"],
    )
    assert r.exit_code == 0, r.output
    m = bundlefmt.verify(out)
    choice = m["default_choice"]
    assert set(choice["candidates"]) == set(CANDIDATES) and choice["split"] == "validation"
    figures = choice["candidates"]
    assert figures["fp32"]["drop_points"] == 0 and all(
        f["rows_per_s"] > 0 and 0 <= f["accuracy"] <= 1 for f in figures.values()
    )
    rows = choice["rows"]
    for f in figures.values():  # the drop is the accuracy difference, told by the paired rows
        assert f["rows_lost"] - f["rows_won"] == round(
            (figures["fp32"]["accuracy"] - f["accuracy"]) * rows
        )
        assert f["ci95_points"] >= 0 and (f["ci95_points"] > 0) == (f["agreement"] < 1)
    fastest = max(
        ("int8-dynamic", "int8-static", "int8-portable"), key=lambda n: figures[n]["rows_per_s"]
    )
    assert choice["chosen"] == fastest == m["default_variant"]
    assert set(m["variants"]) == {fastest, "fp32"}  # only what was asked for, and the default
    assert m["variants"][fastest]["file"] == "model.onnx"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert f"default    {fastest}: the fastest int8 variant within 100 points" in r.output
    assert Classifier.load(out, threads=1).variant == fastest  # golden and hashes agree
    # The rule alone: the fastest within the limit, else fp32 with the closest named.
    f = {
        "fp32": {"drop_points": 0.0, "rows_per_s": 300.0},
        "int8-dynamic": {"drop_points": 0.35, "rows_per_s": 900.0},
        "int8-static": {"drop_points": 0.1, "rows_per_s": 600.0},
        "int8-portable": {"drop_points": -0.1, "rows_per_s": 500.0},
    }
    assert pick(f, 0.2, 872)[0] == "int8-static"
    assert pick(f, 0.5, 872)[0] == "int8-dynamic"
    chosen, why = pick(f, 0.05, 872)
    assert chosen == "int8-portable"  # a gain is within any limit
    f["int8-portable"]["drop_points"] = 0.3
    chosen, why = pick(f, 0.05, 872)
    assert chosen == "fp32" and "the closest, int8-static, loses 0.10" in why and "--qat" in why


def test_smoothing_moves_channel_ranges_into_the_weights_without_changing_the_maths(
    bundle_dir, tmp_path, monkeypatch
):
    """int8-static first divides each MatMul/Attention input by per-channel factors and
    multiplies the weight rows by them: the fp32 answers stay the same, the channels' ranges
    even out."""
    import onnx
    from transformers import AutoTokenizer

    import edgetune.export.quantize as quantize
    from edgetune.export.quantize import _channel_amax, smooth_activations

    fp32 = bundle_dir / "model_fp32.onnx"
    tok = AutoTokenizer.from_pretrained(bundle_dir)
    names = {i.name for i in onnx.load(str(fp32), load_external_data=False).graph.input}
    feeds = [
        {k: v.astype(np.int64) for k, v in tok(t, return_tensors="np").items() if k in names}
        for t in TEXTS
    ]
    out = tmp_path / "smoothed.onnx"
    monkeypatch.setattr(quantize, "SMOOTHING_SPREAD", 1.0)  # every input, however even
    n = smooth_activations(fp32, out, feeds, 0.75)
    graph = onnx.load(str(out)).graph
    muls = [x for x in graph.node if x.name.endswith("_smooth")]
    assert n == len(muls) > 0
    np.testing.assert_allclose(
        ort_logits(out, bundle_dir, TEXTS), ort_logits(fp32, bundle_dir, TEXTS), atol=1e-4
    )
    before = _channel_amax(fp32, [m.input[0] for m in muls], feeds)
    after = _channel_amax(out, [m.output[0] for m in muls], feeds)
    spread = [
        (b.max() / max(b.mean(), 1e-9), a.max() / max(a.mean(), 1e-9))
        for b, a in zip(before.values(), after.values(), strict=True)
    ]
    assert sum(a for _, a in spread) < sum(b for b, _ in spread)
    # Export smooths only the uneven inputs: one Mul each in the shipped graph.
    m = bundlefmt.verify(bundle_dir)["variants"]["int8-static"]
    shipped = onnx.load(str(bundle_dir / m["file"])).graph
    assert m["smoothed"] == sum(x.name.endswith("_smooth") for x in shipped.node) < n
    assert m["quantization"]["smoothing_alpha"] == 0.75
    monkeypatch.setattr(quantize, "SMOOTHING_SPREAD", float("inf"))
    assert smooth_activations(fp32, tmp_path / "none.onnx", feeds, 0.75) == 0


def test_paired_drop_interval():
    from edgetune.metrics import paired_drop

    truth = np.ones(10, dtype=int)
    d = paired_drop(truth, truth, np.array([0, 0] + [1] * 8))  # two rows lost, none won
    assert d["drop_points"] == 20.0 and (d["rows_lost"], d["rows_won"]) == (2, 0)
    assert d["ci95_points"] == pytest.approx(1.96 * np.sqrt(2 - 4 / 10) / 10 * 100, abs=1e-3)
    same = paired_drop(truth, truth, truth)
    assert same["drop_points"] == 0 and same["ci95_points"] == 0
    swapped = paired_drop(truth, np.array([0] + [1] * 9), np.array([1] * 9 + [0]))
    assert swapped["drop_points"] == 0 and swapped["ci95_points"] > 0  # one lost, one won


def test_max_int8_drop_needs_a_validation_split_of_a_text_classifier(tiny_model_dir, tmp_path):
    r = CliRunner().invoke(
        main,
        ["export", str(tiny_model_dir), "--output", str(tmp_path / "b"), "--max-int8-drop", "0.2"],
    )
    assert r.exit_code == 2 and "--max-int8-drop measures the int8 variants" in r.output
    assert not (tmp_path / "b").exists()
    r = CliRunner().invoke(
        main,
        ["export", str(tiny_model_dir), "--output", str(tmp_path / "c"), "--max-int8-drop", "-1"],
    )
    assert r.exit_code == 2 and "--max-int8-drop is the accuracy points" in r.output
    r = CliRunner().invoke(
        main,
        ["export", str(tiny_model_dir), "--output", str(tmp_path / "d")]
        + ["--max-int8-drop", "0.2", "--quantize", "static"],
    )
    assert r.exit_code == 2 and "give one of them" in r.output


def test_static_int8_is_row_independent_by_construction(bundle_dir):
    """int8-static: dynamic int8's fused kernels with every activation range fixed by
    calibration (QuantizeLinear, not DynamicQuantizeLinear); its answers at batch 32 equal
    batch 1's exactly."""
    import onnx

    from edgetune.runtime import Classifier

    m = bundlefmt.verify(bundle_dir)
    info = m["variants"]["int8-static"]
    dynamic = onnx.load(str(bundle_dir / m["variants"]["int8-dynamic"]["file"])).graph
    graph = onnx.load(str(bundle_dir / info["file"])).graph
    ops = {n.op_type for n in graph.node}
    assert "QAttention" in ops and "MatMulInteger" in ops and "QuantizeLinear" in ops
    assert "DynamicQuantizeLinear" not in ops
    assert info["fixed_ranges"] == sum(n.op_type == "DynamicQuantizeLinear" for n in dynamic.node)
    assert info["quantization"]["format"] == "QOperator" and info["batching"] == "padded"
    clf = Classifier.load(bundle_dir, variant="int8-static", threads=1)
    texts = TEXTS * 3 + ["a much longer text about a film that goes on and on " * 4]
    one = clf.logits(texts, batch_size=1)
    assert np.array_equal(one, clf.logits(texts, batch_size=32))


@pytest.fixture(scope="module")
def token_ranged(trained_run, tmp_path_factory):
    """The trained run exported with every GELU output ranged per token (spread limit 0)."""
    from edgetune.export import quantize

    out = tmp_path_factory.mktemp("token") / "b"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quantize, "TOKEN_SPREAD", 0.0)
        export(source=str(trained_run), output=str(out), progress=False, validate=False)
    return out


def test_a_fixed_range_is_kept_where_no_few_tokens_dominate(bundle_dir):
    """The tiny model's GELU outputs spread evenly over its tokens: no per-token ranges (the
    operators they add would cost speed for nothing)."""
    info = bundlefmt.verify(bundle_dir)["variants"]["int8-static"]
    assert info["per_token"] == 0 and "per token" not in info["quantization"]["activations"]


def test_gelu_outputs_are_quantized_per_token(token_ranged):
    """int8-static ranges an FFN-down input (a GELU's output) per token as it runs where a few
    tokens set its range: the graph computes ``(q - z) * s @ W`` for each row's own range,
    each row's answer is within half a step per input of the float product with the same
    int8 weights, and batches stay invariant."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgetune.runtime import Classifier

    bundle_dir = token_ranged
    m = bundlefmt.verify(bundle_dir)
    info = m["variants"]["int8-static"]
    cfg = json.loads((bundle_dir / "config.json").read_text())
    layers = cfg.get("num_hidden_layers", cfg.get("n_layers"))
    model = onnx.load(str(bundle_dir / info["file"]))
    nodes = [n for n in model.graph.node if n.name.endswith("_per_token")]
    assert info["per_token"] == len(nodes) == layers
    assert f"{layers} GELU outputs uint8 per token" in info["quantization"]["activations"]
    mm = nodes[0]
    x = mm.input[0][len("pt/") : -len("/q")]  # the GELU output it ranges
    add = next(n for n in model.graph.node if n.op_type == "Add" and mm.output[0] in n.input)
    model.graph.output.extend(
        helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in (x, add.output[0])
    )
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    wq, ws = inits[mm.input[1]].astype(np.float64), inits[mm.input[3]].astype(np.float64)
    w = (wq - inits[mm.input[5]]) * ws if mm.input[5] else wq * ws
    tok = Tokenizer.from_file(str(bundle_dir / "tokenizer.json"))
    enc = tok.encode_batch(["a film that goes on and on", "short"])
    n = max(len(e.ids) for e in enc)
    feed = {
        "input_ids": np.array([e.ids + [0] * (n - len(e.ids)) for e in enc], np.int64),
        "attention_mask": np.array([[1] * len(e.ids) + [0] * (n - len(e.ids)) for e in enc]),
    }
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    xs, ys = sess.run([x, add.output[0]], {k: v for k, v in feed.items() if k in names})
    rows, out = xs.reshape(-1, xs.shape[-1]).astype(np.float64), ys.reshape(-1, w.shape[1])
    lo, hi = np.minimum(rows.min(1, keepdims=True), 0), np.maximum(rows.max(1, keepdims=True), 0)
    step = (hi - lo) / 255
    z = np.round(-lo / step)
    q = np.clip(np.round(rows / step) + z, 0, 255)
    np.testing.assert_allclose(out, ((q - z) * step) @ w, rtol=1e-4, atol=1e-4)
    bound = step / 2 * np.abs(w).sum(0) + 1e-4
    assert (np.abs(out - rows @ w) <= bound).all()
    assert np.unique(step).size > 1  # rows really have their own ranges
    clf = Classifier.load(bundle_dir, variant="int8-static", threads=1)
    texts = TEXTS * 3 + ["a much longer text about a film that goes on and on " * 4]
    assert np.array_equal(clf.logits(texts, batch_size=1), clf.logits(texts, batch_size=32))


def test_a_model_without_label_names_exports_with_transformers_defaults(tiny_model_dir, tmp_path):
    """transformers leaves the default id2label out of config.json: the bundle names the
    labels LABEL_0.. as transformers does, instead of failing at its first prediction."""
    from edgetune.runtime import Classifier

    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    assert "id2label" not in cfg  # what transformers wrote for num_labels=2
    r = CliRunner().invoke(
        main, ["export", str(tiny_model_dir), "--output", str(tmp_path / "b"), "--no-validate"]
    )
    assert r.exit_code == 0, r.output
    assert bundlefmt.verify(tmp_path / "b")["labels"] == ["LABEL_0", "LABEL_1"]
    (pred,) = Classifier.load(tmp_path / "b", threads=1).predict(["fine"])
    assert pred.label in ("LABEL_0", "LABEL_1")
