from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import edgetune
from edgetune.cli import main
from edgetune.export import export
from edgetune.modeling import load_saved
from edgetune.quant import read_scheme
from edgetune.train.qat import fake_quant_dynamic, fake_quant_weight, load_fake_quant

from .conftest import ASSETS, train_kwargs


def probe_texts():
    import pandas as pd

    texts = pd.read_csv(ASSETS / "sentiment.csv")["text"].tolist()
    words = " ".join(texts).split()
    rng = np.random.default_rng(0)
    return texts + [" ".join(rng.choice(words, rng.integers(3, 30))) for _ in range(150)]


def logits_pair(torch_model, onnx_path, tok_dir, texts):
    """Per-text logits (batch 1, as deployed) of a PyTorch model and an ONNX file."""
    import onnxruntime as ort
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    a, b = [], []
    with torch.inference_mode():
        for t in texts:
            e = tok(t, return_tensors="np")
            a.append(
                torch_model(**{k: torch.from_numpy(v) for k, v in e.items()}).logits.numpy()[0]
            )
            b.append(sess.run(None, {k: v for k, v in e.items() if k in names})[0][0])
    return np.array(a), np.array(b)


@pytest.fixture(scope="module")
def qat_run(trained_run, tmp_path_factory):
    # QAT fine-tuning of an existing run (`--model RUN/best --qat`).
    out = tmp_path_factory.mktemp("qat") / "run"
    edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(out),
        progress=False,
        **train_kwargs(
            model=str(trained_run / "best"), epochs=3, learning_rate=2e-3, qat="dynamic"
        ),
    )
    return out


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_qat_export_reproduces_fake_quant_better_than_ptq(mode, qat_run, trained_run, tmp_path):
    run = qat_run
    if mode == "static":
        run = tmp_path / "static-run"
        edgetune.train(
            data=str(ASSETS / "sentiment.csv"),
            output=str(run),
            progress=False,
            **train_kwargs(
                model=str(trained_run / "best"), epochs=3, learning_rate=2e-3, qat="static"
            ),
        )
    scheme = read_scheme(run / "best")
    assert scheme.mode == mode and (scheme.ranges != {}) == (mode == "static")
    m = json.loads((run / "metrics.json").read_text())
    assert m["qat"]["scheme"]["mode"] == mode and "accuracy" in m["qat"]["test_float"]

    qb = export(
        source=str(run), output=str(tmp_path / "qat-bundle"), progress=False, validate=False
    )
    assert qb.default_variant == f"int8-{mode}"  # export follows the run's scheme
    q = qb.variants[qb.default_variant]["quantization"]
    assert q["qat"] is True and q["mode"] == mode
    if mode == "static":
        assert "learned" in q["activations"] and "calibration_samples" not in q

    ptq = export(
        source=str(trained_run),
        output=str(tmp_path / "ptq-bundle"),
        quantize=mode,
        progress=False,
        validate=False,
    )
    texts = probe_texts()
    fq, q_onnx = logits_pair(
        load_fake_quant(run / "best"), tmp_path / "qat-bundle" / "model.onnx", run / "best", texts
    )
    fp, p_onnx = logits_pair(
        load_saved(trained_run / "best").eval(),
        tmp_path / "ptq-bundle" / "model.onnx",
        trained_run / "best",
        texts,
    )
    scale_q = np.abs(fq).mean()
    scale_p = np.abs(fp).mean()
    qat_err = np.abs(q_onnx - fq).mean() / scale_q
    ptq_err = np.abs(p_onnx - fp).mean() / scale_p
    assert ptq.default_variant == f"int8-{mode}"
    assert qat_err < ptq_err / 3, (qat_err, ptq_err)
    assert np.mean(q_onnx.argmax(1) == fq.argmax(1)) >= np.mean(p_onnx.argmax(1) == fp.argmax(1))


def test_qat_distill_keeps_the_int8_model_close_to_the_float_one(qat_run, trained_run, tmp_path):
    import torch
    from transformers import AutoTokenizer

    out = tmp_path / "kd"
    edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(out),
        progress=False,
        **train_kwargs(
            model=str(trained_run / "best"),
            epochs=3,
            learning_rate=2e-3,
            qat="dynamic",
            qat_distill=0.9,
        ),
    )
    texts = probe_texts()
    tok = AutoTokenizer.from_pretrained(trained_run / "best")

    def probs(model):
        model.eval()
        with torch.inference_mode():
            return np.array(
                [
                    torch.softmax(model(**tok(t, return_tensors="pt")).logits, -1)[0].numpy()
                    for t in texts
                ]
            )

    teacher = probs(load_saved(trained_run / "best"))
    plain = np.abs(probs(load_fake_quant(qat_run / "best")) - teacher).mean()
    distilled = np.abs(probs(load_fake_quant(out / "best")) - teacher).mean()
    # Same QAT run but for the distillation term: it stays much nearer the float model
    # (measured 2-3x nearer over three seeds).
    assert distilled < 0.6 * plain, (distilled, plain)
    assert json.loads((out / "config.json").read_text())["config"]["qat_distill"] == 0.9


def test_lora_qat_saves_a_plain_model(tmp_path):
    out = tmp_path / "lora"
    r = edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(out),
        progress=False,
        **train_kwargs(strategy="lora", qat="dynamic", qat_start="1steps", epochs=2),
    )
    assert r.qat is not None
    from safetensors.numpy import load_file

    keys = load_file(str(out / "best" / "model.safetensors")).keys()
    assert not any("lora" in k for k in keys)
    assert read_scheme(out / "best").mode == "dynamic"
    b = export(source=str(out), output=str(tmp_path / "b"), progress=False, validate=False)
    assert b.variants["int8-dynamic"]["quantization"]["qat"] is True


def test_fake_quant_matches_onnx_quantization_formulas():
    import torch
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    x = torch.tensor([[-1.3, 0.2, 2.7, 0.05]])
    rmin, rmax = np.float32(-1.3), np.float32(2.7)
    zp, scale = compute_scale_zp(rmin, rmax, np.uint8(0), np.uint8(255))
    expect = (np.clip(np.rint(x.numpy() / scale) + zp, 0, 255) - zp) * scale
    np.testing.assert_allclose(fake_quant_dynamic(x).numpy(), expect, rtol=1e-6)
    w = torch.tensor([[0.5, -0.25, 0.1], [2.0, 1.0, -0.7]])
    got = fake_quant_weight(w, per_channel=True, qmax=127).numpy()
    for row, g in zip(w.numpy(), got):
        s = np.abs(row).max() / 127
        np.testing.assert_allclose(g, np.clip(np.rint(row / s), -127, 127) * s, rtol=1e-6)
    # Gradients pass straight through the rounding.
    w.requires_grad_(True)
    fake_quant_weight(w, True, 127).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_bad_qat_options_exit_2(tmp_path):
    base = [
        "train",
        "--model",
        "tiny-distilbert",
        "--data",
        str(ASSETS / "sentiment.csv"),
        "--epochs",
        "2",
    ]
    cases = [
        (
            ["--output", str(tmp_path / "a"), "--qat", "--strategy", "head"],
            "--qat needs --strategy full or lora",
        ),
        (["--output", str(tmp_path / "b"), "--qat", "--qat-start", "soon"], "--qat-start 'soon'"),
        (["--output", str(tmp_path / "d"), "--qat-distill", "0.5"], "--qat-distill needs --qat"),
        (["--output", str(tmp_path / "e"), "--qat", "--qat-distill", "1"], "a weight in [0, 1)"),
        (
            ["--output", str(tmp_path / "f"), "--qat", "--qat-distill", "0.5"],
            "has an untrained classifier",
        ),
        (
            ["--output", str(tmp_path / "c"), "--qat", "--qat-start", "5"],
            "at or after the end of training",
        ),
    ]
    for args, msg in cases:
        r = CliRunner().invoke(main, base + args)
        assert r.exit_code == 2, r.output
        assert msg in r.output and "Traceback" not in r.output


def test_static_qat_where_attention_is_not_fused_keeps_its_projections_float(tmp_path):
    """MPNet's attention is not fused by ONNX Runtime's optimizer (its relative position bias):
    static QAT leaves the query/key/value projections in float, and so does the export, whose
    int8 graph then answers as the fake-quantized model does."""
    import onnx
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, MPNetConfig

    from edgetune.presets import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("tiny-distilbert").location)
    torch.manual_seed(0)
    cfg = MPNetConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=130,  # positions start after the padding id
        pad_token_id=tok.pad_token_id,
        num_labels=2,
    )
    model_dir = tmp_path / "tiny-mpnet"
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    run = tmp_path / "run"
    edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(run),
        progress=False,
        **train_kwargs(model=str(model_dir), epochs=2, learning_rate=2e-3, qat="static"),
    )
    assert not any(k.endswith((".q", ".k", ".v")) for k in read_scheme(run / "best").ranges)
    qb = export(source=str(run), output=str(tmp_path / "b"), progress=False, validate=False)
    assert qb.default_variant == "int8-static"
    graph = onnx.load(str(tmp_path / "b" / "model.onnx")).graph
    float_weights = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    matmuls = {n.name: n for n in graph.node if n.op_type == "MatMul"}
    qkv = [n for name, n in matmuls.items() if name.split("/")[-2] in ("q", "k", "v")]
    assert len(qkv) == 6 and all(n.input[1] in float_weights for n in qkv)
    assert any(n.op_type == "DequantizeLinear" for n in graph.node)  # the rest is int8
    texts = probe_texts()[:40]
    fq, onnx_logits = logits_pair(
        load_fake_quant(run / "best"), tmp_path / "b" / "model.onnx", run / "best", texts
    )
    assert np.mean(fq.argmax(1) == onnx_logits.argmax(1)) >= 0.95
