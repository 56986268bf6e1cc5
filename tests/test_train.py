from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import edgetune
from edgetune.errors import ConfigError, ModelError, RunError
from edgetune.formats import rundir
from edgetune.train import TrainConfig, load_result

from .conftest import ASSETS, train_kwargs


def predict_with_saved(run_dir, texts):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run_dir / "best")
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "best").eval()
    with torch.inference_mode():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
    return logits.argmax(-1).numpy()


def test_full_run_writes_a_complete_run_directory(csv_file, tmp_path):
    out = tmp_path / "run"
    r = edgetune.train(
        data=str(csv_file), output=str(out), progress=False, **train_kwargs(epochs=3)
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "best",
        "config.json",
        "metrics.json",
        "training_curve.png",
    ]
    assert not rundir.partial_path(out).exists()
    cfg = json.loads((out / "best" / "config.json").read_text())
    assert cfg["id2label"] == {"0": "negative", "1": "positive"}
    assert any(p.suffix == ".safetensors" for p in (out / "best").iterdir())
    assert (out / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    # The resolved config reproduces the run's settings.
    saved = TrainConfig.from_dict(json.loads((out / "config.json").read_text())["config"])
    assert saved.learning_rate == 5e-3 and saved.max_length == 64 and saved.precision == "fp32"
    # Metrics on disk equal the returned result, and test accuracy is what the saved model gives.
    again = load_result(out)
    assert again.test == r.test and len(r.history) == 3
    from edgetune.data import load_data

    d = load_data(str(csv_file), val_size=0.25, test_size=0.25, seed=0)
    preds = predict_with_saved(out, d.test.texts)
    assert r.test["accuracy"] == pytest.approx(float(np.mean(preds == np.array(d.test.labels))))
    assert r.test["n"] == len(d.test)
    assert set(r.test["per_class"]) == {"negative", "positive"}
    assert np.array(r.test["confusion_matrix"]).sum() == len(d.test)
    assert r.timing["samples_per_s"] > 0


def test_tiny_model_learns_the_easy_task(csv_file, tmp_path):
    r = edgetune.train(
        data=str(csv_file),
        output=str(tmp_path / "r"),
        progress=False,
        **train_kwargs(epochs=8, learning_rate=1e-2),
    )
    assert r.best["value"] >= 0.75 and r.test["accuracy"] >= 0.75
    assert r.config["freeze_embeddings"] is False  # random init: embeddings must learn


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_head_strategy_trains_only_the_head(csv_file, tmp_path, tiny_model_dir):
    out = tmp_path / "head"
    edgetune.train(
        data=str(csv_file),
        output=str(out),
        progress=False,
        **train_kwargs(model=str(tiny_model_dir), strategy="head"),
    )
    before, after = _weights(tiny_model_dir), _weights(out / "best")
    enc = [k for k in after if k.startswith("distilbert.")]
    head = [k for k in after if not k.startswith("distilbert.")]
    assert enc and head
    assert all(np.array_equal(before[k], after[k]) for k in enc)
    assert any(not np.array_equal(before[k], after[k]) for k in head if k in before)


def test_full_strategy_freezes_only_word_embeddings_by_default(csv_file, tmp_path, tiny_model_dir):
    out = tmp_path / "full"
    edgetune.train(
        data=str(csv_file),
        output=str(out),
        progress=False,
        **train_kwargs(model=str(tiny_model_dir)),
    )
    before, after = _weights(tiny_model_dir), _weights(out / "best")
    emb = "distilbert.embeddings.word_embeddings.weight"
    assert np.array_equal(before[emb], after[emb])
    layer = "distilbert.transformer.layer.0.attention.q_lin.weight"
    assert not np.array_equal(before[layer], after[layer])
    out2 = tmp_path / "full2"
    edgetune.train(
        data=str(csv_file),
        output=str(out2),
        progress=False,
        **train_kwargs(model=str(tiny_model_dir), freeze_embeddings=False),
    )
    assert not np.array_equal(before[emb], _weights(out2 / "best")[emb])


def test_lora_is_merged_into_a_plain_model(csv_file, tmp_path, tiny_model_dir):
    out = tmp_path / "lora"
    r = edgetune.train(
        data=str(csv_file),
        output=str(out),
        progress=False,
        **train_kwargs(model=str(tiny_model_dir), strategy="lora", lora_r=4),
    )
    before, after = _weights(tiny_model_dir), _weights(out / "best")
    assert not any("lora" in k for k in after)
    assert set(after) == set(before)  # same architecture as the source, no adapter keys
    q = "distilbert.transformer.layer.0.attention.q_lin.weight"
    ffn = "distilbert.transformer.layer.0.ffn.lin1.weight"
    assert not np.array_equal(before[q], after[q])  # LoRA target, merged
    assert np.array_equal(before[ffn], after[ffn])  # not a LoRA target
    from edgetune.data import load_data

    d = load_data(str(csv_file), val_size=0.25, test_size=0.25, seed=0)
    preds = predict_with_saved(out, d.test.texts)
    assert r.test["accuracy"] == pytest.approx(float(np.mean(preds == np.array(d.test.labels))))


def test_resume_without_checkpoint_is_refused(tmp_path):
    with pytest.raises(RunError, match="no unfinished run .* without --resume"):
        edgetune.train(output=str(tmp_path / "none"), resume=True)


def test_early_stopping_and_eval_steps(csv_file, tmp_path):
    r = edgetune.train(
        data=str(csv_file),
        output=str(tmp_path / "es"),
        progress=False,
        **train_kwargs(epochs=6, learning_rate=1e-9, patience=1),
    )
    assert r.stopped_early and len(r.history) == 2 and r.best["step"] == r.history[0]["step"]
    r = edgetune.train(
        data=str(csv_file),
        output=str(tmp_path / "steps"),
        progress=False,
        **train_kwargs(epochs=2, eval_steps=2),
    )
    assert [h["step"] for h in r.history] == [2, 3, 4, 6]  # every 2 steps and at epoch ends


def test_grad_accum_class_weights_augment_dropout(csv_file, tmp_path):
    r = edgetune.train(
        data=str(csv_file),
        output=str(tmp_path / "x"),
        progress=False,
        **train_kwargs(
            grad_accum=2,
            class_weights="balanced",
            augment=0.2,
            dropout=0.0,
            label_names=("neg", "pos"),
        ),
    )
    assert r.history[-1]["step"] == 2 * 2  # 23 rows / bs 8 = 3 batches -> 2 steps per epoch
    assert r.label_names == ["neg", "pos"]
    cfg = json.loads((tmp_path / "x" / "best" / "config.json").read_text())
    assert cfg["dropout"] == 0.0 and cfg["id2label"]["1"] == "pos"


def test_existing_output_is_protected(csv_file, tmp_path):
    out = tmp_path / "run"
    edgetune.train(data=str(csv_file), output=str(out), progress=False, **train_kwargs(epochs=1))
    stamp = (out / "metrics.json").read_bytes()
    with pytest.raises(RunError, match="--overwrite"):
        edgetune.train(
            data=str(csv_file), output=str(out), progress=False, **train_kwargs(epochs=1)
        )
    assert (out / "metrics.json").read_bytes() == stamp
    edgetune.train(
        data=str(csv_file),
        output=str(out),
        overwrite=True,
        progress=False,
        **train_kwargs(epochs=1, seed=5),
    )
    assert (out / "metrics.json").read_bytes() != stamp


def test_bad_options_and_models(csv_file, tmp_path):
    with pytest.raises(ConfigError, match="--strategy"):
        TrainConfig(model="tiny-distilbert", data=str(csv_file), output="x", strategy="bogus")
    with pytest.raises(ConfigError, match="--output is the data path"):
        TrainConfig(model="tiny-distilbert", data=str(tmp_path), output=str(tmp_path))
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        edgetune.train(
            data=str(csv_file),
            output=str(tmp_path / "a"),
            progress=False,
            **train_kwargs(precision="fp16"),
        )
    with pytest.raises(ModelError, match="cannot load model"):
        edgetune.train(
            data=str(csv_file),
            output=str(tmp_path / "b"),
            progress=False,
            **train_kwargs(model="no-such-org/no-such-model"),
        )
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text('{"model_type": "distilbert"}')
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ModelError, match="no safetensors"):
        edgetune.train(
            data=str(csv_file),
            output=str(tmp_path / "c"),
            progress=False,
            **train_kwargs(model=str(pickled)),
        )
    assert not (tmp_path / "c").exists() and not (tmp_path / "c.partial").exists()


def test_ema_keeps_an_average_not_the_last_weights(csv_file, tmp_path, tiny_model_dir):
    kw = train_kwargs(model=str(tiny_model_dir), epochs=2, data=str(csv_file), progress=False)
    raw = edgetune.train(output=str(tmp_path / "raw"), **kw)
    ema = edgetune.train(output=str(tmp_path / "ema"), ema=0.9, **kw)
    assert ema.config["ema"] == 0.9 and raw.config["ema"] == 0.0  # tiny preset: EMA off
    a, b = _weights(tmp_path / "raw" / "best"), _weights(tmp_path / "ema" / "best")
    q = "distilbert.transformer.layer.0.attention.q_lin.weight"
    assert not np.allclose(a[q], b[q])
    # Averaged weights move less from the initial weights than the raw ones.
    init = _weights(tiny_model_dir)[q]
    assert np.abs(b[q] - init).sum() < np.abs(a[q] - init).sum()


def test_sentence_pairs_train_and_predict(tmp_path):
    import pandas as pd

    rows = []
    for i in range(30):
        a = f"the film {i} is great"
        rows.append((a, f"the film {i} is great", "same"))
        rows.append((a, f"the movie {i} is awful", "different"))
    path = tmp_path / "pairs.jsonl"
    pd.DataFrame(rows, columns=["sentence1", "sentence2", "label"]).to_json(
        path, orient="records", lines=True
    )
    r = edgetune.train(
        data=str(path), output=str(tmp_path / "run"), progress=False, **train_kwargs()
    )
    assert r.config["text_columns"] == [] and r.data["text_columns"] == ["sentence1", "sentence2"]
    assert (
        r.label_names == ["different", "same"] and r.test["n"] == 16
    )  # 8 per class (per-class rounding)


def test_gradient_checkpointing_gives_the_same_training(tmp_path):
    kw = train_kwargs(dropout=0.0, epochs=2)
    a = edgetune.train(
        data=str(ASSETS / "sentiment.csv"), output=str(tmp_path / "a"), progress=False, **kw
    )
    b = edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(tmp_path / "b"),
        progress=False,
        gradient_checkpointing=True,
        **kw,
    )
    assert b.config["gradient_checkpointing"] is True
    for x, y in zip(a.history, b.history):
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-5)
        assert y["val_loss"] == pytest.approx(x["val_loss"], rel=1e-5)
