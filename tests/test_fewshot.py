"""Few-shot, zero-shot and cloze (PET) classifiers: pairs, shots, prompts, export, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import ASSETS, train_kwargs

PROMPTS = "negative=This movie is bad, a mess.,positive=This movie is good and fun."
TEXTS = ["what a delightful movie !", "a mess", "the film is smart .", "dull , dull , dull"]


def test_pairs_are_balanced_and_seeded():
    from edgetune.train.fewshot import make_pairs

    labels = np.array([0] * 5 + [1] * 3 + [2] * 4)
    p = make_pairs(labels, 200, seed=3)
    assert p.shape == (200, 3)
    same = labels[p[:, 0]] == labels[p[:, 1]]
    assert (same == (p[:, 2] == 1)).all()  # the target says what the labels say
    assert p[:, 2].sum() == 100  # half positive, half negative
    assert (p[:, 0] != p[:, 1]).all()
    # 19 positive pairs exist (10 + 3 + 6): oversampled evenly, each 5 or 6 times of 100
    from collections import Counter

    counts = Counter(tuple(sorted(r)) for r in p[p[:, 2] == 1][:, :2].tolist())
    assert len(counts) == 19 and set(counts.values()) <= {5, 6}
    assert np.array_equal(make_pairs(labels, 200, seed=3), p)
    assert not np.array_equal(make_pairs(labels, 200, seed=4), p)
    # a set too large to list every pair is sampled, still balanced and correct
    big = np.arange(3000) % 3
    q = make_pairs(big, 64, seed=0)
    assert q[:, 2].sum() == 32 and ((big[q[:, 0]] == big[q[:, 1]]) == (q[:, 2] == 1)).all()


def test_shots_sample_per_class():
    from edgetune.data.split import Split
    from edgetune.errors import ConfigError
    from edgetune.train.fewshot import sample_shots

    s = Split([f"t{i}" for i in range(30)], [i % 3 for i in range(30)])
    a = sample_shots(s, 4, seed=1)
    assert np.bincount(a.labels).tolist() == [4, 4, 4]
    assert sample_shots(s, 4, seed=1).texts == a.texts
    assert sample_shots(s, 4, seed=2).texts != a.texts
    with pytest.raises(ConfigError, match=r"--shots 11: class 0 has only 10 training rows"):
        sample_shots(s, 11, seed=1)


@pytest.fixture(scope="module")
def fewshot_run(tmp_path_factory):
    import edgetune

    out = tmp_path_factory.mktemp("fs") / "run"
    r = edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(out),
        progress=False,
        **train_kwargs(
            strategy="fewshot", shots=4, label_prompts=PROMPTS, learning_rate=1e-3, layers=1
        ),
    )
    return out, r


def test_fewshot_run_trains_on_shots_and_exports_one_graph(fewshot_run, tmp_path):
    import torch
    from transformers import AutoTokenizer

    from edgetune.export import export
    from edgetune.heads import HEAD_CONFIG, PooledClassifier
    from edgetune.modeling import load_saved
    from edgetune.runtime import Classifier

    run, result = fewshot_run
    assert result.data["train"]["rows"] == 8 and result.data["shots"] == 4
    assert result.environment["layers_kept"] == [0]  # --layers makes a shallower encoder too
    assert result.history[0]["step"] > 0  # the encoder learnt from pairs
    best = run / "best"
    assert json.loads((best / HEAD_CONFIG).read_text())["pooling"] == "mean"
    assert (best / "modules.json").is_file() and (best / "1_Pooling" / "config.json").is_file()
    model = load_saved(best).eval()
    assert isinstance(model, PooledClassifier)
    tok = AutoTokenizer.from_pretrained(best)
    with torch.inference_mode():
        ref = model(**tok(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    b = export(
        source=str(run),
        output=str(tmp_path / "b"),
        variants=("fp32",),
        progress=False,
        validate=False,
    )
    clf = Classifier.load(b.output, variant="fp32")
    got = clf.logits(TEXTS)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert np.array_equal(got.argmax(-1), ref.argmax(-1))
    # stock loaders read the bundle's default (int8) model.onnx as any text classifier (labels
    # compared: dynamic int8 scales depend on how a batch is padded)
    from optimum.onnxruntime import ORTModelForSequenceClassification

    stock = ORTModelForSequenceClassification.from_pretrained(b.output)
    enc = AutoTokenizer.from_pretrained(b.output)(TEXTS, padding=True, return_tensors="pt")
    ours = Classifier.load(b.output).logits(TEXTS)
    stock_logits = stock(**enc).logits.numpy()
    assert np.array_equal(stock_logits.argmax(-1), ours.argmax(-1))
    np.testing.assert_allclose(stock_logits, ours, atol=0.1)


def test_fewshot_run_teaches_a_student(fewshot_run, tmp_path):
    """A few-shot model labels texts for a compact student (--teacher takes the run)."""
    import edgetune

    run, result = fewshot_run
    r = edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(tmp_path / "student"),
        progress=False,
        **train_kwargs(teacher=str(run), distill_augment=1, epochs=1),
    )
    assert r.teacher["test"]["accuracy"] == pytest.approx(result.test["accuracy"])
    assert r.teacher["unlabeled"]["rows"] > 0


def test_zero_shot_from_label_prompts(tmp_path):
    """No labelled rows: the head is each prompt's normalised embedding (scaled); test
    figures are those of that classifier."""
    import torch
    from transformers import AutoTokenizer

    import edgetune
    from edgetune.heads import PROMPT_SCALE
    from edgetune.modeling import load_saved

    out = tmp_path / "zs"
    r = edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(out),
        progress=False,
        **train_kwargs(strategy="fewshot", shots=0, label_prompts=PROMPTS),
    )
    assert r.data["train"]["rows"] == 0 and r.timing["samples_per_s"] == 0
    model = load_saved(out / "best").eval()
    tok = AutoTokenizer.from_pretrained(out / "best")
    with torch.inference_mode():
        e = model.embed(
            **tok(
                ["This movie is bad, a mess.", "This movie is good and fun."],
                padding=True,
                return_tensors="pt",
            )
        )
        np.testing.assert_allclose(model.head.weight.numpy(), (e * PROMPT_SCALE).numpy(), atol=1e-5)
        assert float(model.head.bias.abs().max()) == 0.0
        # the prompts themselves are classified as their own class
        assert model(
            **tok(
                ["This movie is bad, a mess.", "This movie is good and fun."],
                padding=True,
                return_tensors="pt",
            )
        ).logits.argmax(-1).tolist() == [0, 1]
    assert 0.0 <= r.test["accuracy"] <= 1.0 and r.test["per_class"]


def test_cloze_verbalizer_on_a_tiny_masked_lm(tmp_path):
    """PET: the template is put around the text inside the model, so the run's model and its
    ONNX export read plain encodings; its logits are the masked-LM's scores for the words."""
    import torch
    from transformers import AutoTokenizer

    import edgetune
    from edgetune.export import export
    from edgetune.heads import ClozeClassifier
    from edgetune.modeling import load_saved
    from edgetune.runtime import Classifier

    out = tmp_path / "pet"
    template = "{text} It was [MASK]."
    edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(out),
        progress=False,
        **train_kwargs(template=template, verbalizer="negative=bad,positive=good", epochs=3),
    )
    model = load_saved(out / "best").eval()
    assert isinstance(model, ClozeClassifier)
    tok = AutoTokenizer.from_pretrained(out / "best")
    words = tok.convert_tokens_to_ids(["bad", "good"])
    with torch.inference_mode():
        got = model(**tok(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
        for i, text in enumerate(TEXTS):  # the template typed out, read at the mask by hand
            e = tok(
                template.replace("{text}", text).replace("[MASK]", tok.mask_token),
                return_tensors="pt",
            )
            at = int((e.input_ids[0] == tok.mask_token_id).nonzero()[0, 0])
            ref = model.mlm(**e).logits[0, at, words].numpy()
            np.testing.assert_allclose(got[i], ref, atol=1e-4)
    b = export(
        source=str(out),
        output=str(tmp_path / "b"),
        variants=("fp32",),
        progress=False,
        validate=False,
    )
    onnx = Classifier.load(b.output, variant="fp32").logits(TEXTS)
    np.testing.assert_allclose(onnx, got, atol=1e-4)


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            [
                "--strategy",
                "fewshot",
                "--label-prompts",
                "negative=bad.,neutral=meh.,positive=good.",
            ],
            "--label-prompts names label 'neutral', which the data lacks",
        ),
        (
            ["--strategy", "fewshot", "--label-prompts", "negative=bad."],
            "--label-prompts has nothing for label(s) positive",
        ),
        (["--shots", "40"], "--shots 40: class"),
        (
            ["--template", "{text} It was great.", "--verbalizer", "negative=bad,positive=good"],
            "needs [MASK] exactly once",
        ),
        (["--template", "{text} [MASK]."], "--template and --verbalizer go together"),
        (["--shots", "0"], "--shots 0 leaves no training rows"),
    ],
)
def test_bad_few_shot_input_is_one_line_exit_2(tmp_path, extra, message):
    from edgetune.cli import main

    out = tmp_path / "run"
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--model",
            "tiny-distilbert",
            "--data",
            str(ASSETS / "sentiment.csv"),
            "--output",
            str(out),
            "--quiet",
            "--epochs",
            "1",
            *extra,
        ],
    )
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not out.exists()


def test_pooling_is_read_from_the_checkpoint(tmp_path):
    """The sentence-transformers files say how to pool; what edgetune writes reads back."""
    from edgetune.errors import ModelError
    from edgetune.heads import read_pooling, write_sentence_transformers

    assert read_pooling(tmp_path) == ("mean", True)  # says nothing: mean + normalised
    for pooling, normalize in (("cls", False), ("max", True), ("mean_sqrt_len", False)):
        d = tmp_path / pooling
        d.mkdir()
        write_sentence_transformers(d, pooling, normalize, 64)
        assert read_pooling(d) == (pooling, normalize)
    (tmp_path / "cls" / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_weightedmean_tokens": True})
    )
    with pytest.raises(ModelError, match="pools with cls\\+weightedmean_tokens"):
        read_pooling(tmp_path / "cls")


def test_interrupted_fewshot_run_leaves_nothing(tmp_path):
    import edgetune
    from edgetune.train import TrainingInterrupted
    from tests.step_hooks import interrupt_at

    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match="a few-shot run keeps no checkpoint"):
        edgetune.train(
            data=str(ASSETS / "sentiment.csv"),
            output=str(out),
            progress=False,
            on_step=interrupt_at("counted", 2),
            **train_kwargs(strategy="fewshot", shots=4, pairs=64),
        )
    assert not out.exists() and not list(tmp_path.glob("run*"))
