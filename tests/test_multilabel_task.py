"""Multi-label classification through every stage on the tiny model: train with BCE and tuned
thresholds, export with the decision rule, the runtime's label sets, validate, predict, and
the stock loaders."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgetune.cli import main

from .conftest import fp32_bundle, train_kwargs

TOPICS = {
    "sport": ["goal", "match", "team", "score"],
    "money": ["price", "bank", "cash", "market"],
    "food": ["bread", "cook", "dinner", "soup"],
}
FILLER = ["the", "a", "was", "and", "it", "very", "day", "good"]


def write_jsonl(path: Path, n: int = 160, seed: int = 0) -> Path:
    """Texts mentioning zero to three topics, each labelled with the topics it mentions."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        topics = [t for t in TOPICS if rng.random() < 0.4]
        words = rng.sample(FILLER, 3) + [w for t in topics for w in rng.sample(TOPICS[t], 2)]
        rng.shuffle(words)
        lines.append(json.dumps({"text": " ".join(words), "labels": topics}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory):
    import edgetune

    root = tmp_path_factory.mktemp("multi")
    data = write_jsonl(root / "topics.jsonl")
    out = root / "run"
    result = edgetune.train(
        data=str(data),
        output=str(out),
        threshold="tuned",
        progress=False,
        **train_kwargs(epochs=10, learning_rate=3e-3, max_length=32),
    )
    return out, result, data


@pytest.fixture(scope="module")
def multi_bundle(multi_run, tmp_path_factory):
    return fp32_bundle(multi_run[0], tmp_path_factory, "multi-bundle")


def test_lists_are_detected_trained_with_bce_and_thresholds_tuned(multi_run):
    out, result, _ = multi_run
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["task"] == "multi-label" and config["metric"] == "micro_f1"
    assert result.label_names == ["food", "money", "sport"]
    model_cfg = json.loads((out / "best" / "config.json").read_text())
    assert model_cfg["problem_type"] == "multi_label_classification"
    saved = json.loads((out / "best" / "thresholds.json").read_text())
    assert saved["rule"] == "tuned" and set(saved["thresholds"]) == set(result.label_names)
    assert all(0 < t < 1 for t in saved["thresholds"].values())
    assert result.test["micro_f1"] > 0.7 and result.test["macro_f1"] > 0.6, result.test
    assert "at_0.5" in result.test and "micro F1" in result.summary()


def test_the_bundle_carries_its_thresholds_and_decides_as_pytorch(multi_run, multi_bundle):
    import torch

    from edgetune.formats import bundle as bundlefmt
    from edgetune.modeling import load_saved
    from edgetune.runtime import Classifier

    manifest = bundlefmt.verify(multi_bundle)
    saved = json.loads((multi_run[0] / "best" / "thresholds.json").read_text())
    assert manifest["task"] == "multi-label" and manifest["thresholds"] == saved["thresholds"]
    texts = ["goal and bread", "the bank price was good", "a very good day", "soup cash team"]
    clf = Classifier.load(multi_bundle, variant="fp32")
    preds = clf.predict(texts, all_scores=True)
    model = load_saved(multi_run[0] / "best").eval()
    tok = clf.tokenizer
    thr = np.asarray([saved["thresholds"][n] for n in clf.labels])
    for text, p in zip(texts, preds):
        ids = torch.tensor([tok.encode(text).ids])
        with torch.inference_mode():
            probs = torch.sigmoid(model(input_ids=ids).logits)[0].numpy()
        expected = {clf.labels[i] for i in np.flatnonzero(probs >= thr)}
        assert set(p.labels) == expected
        np.testing.assert_allclose([p.scores[n] for n in clf.labels], probs, atol=1e-5)


def test_tampered_thresholds_are_refused(multi_bundle, tmp_path):
    import shutil

    from edgetune.errors import BundleError
    from edgetune.formats import bundle as bundlefmt

    copy = tmp_path / "b"
    shutil.copytree(multi_bundle, copy)
    m = json.loads((copy / "edgetune.json").read_text())
    m["thresholds"] = {k: 0.01 for k in m["thresholds"]}
    (copy / "edgetune.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="thresholds"):
        bundlefmt.verify(copy)


def test_validate_measures_label_sets_through_the_runtime(multi_bundle):
    from edgetune.validate import validate

    fast = dict(threads=1, rounds=3, warmup=0, memory=False, seq_lengths=(16,), pause_s=0.0)
    r = validate(bundle=str(multi_bundle), max_f1_drop=5.0, progress=False, **fast)
    rows = r.report["variants"]
    assert rows["fp32"]["agreement"] == 1.0 and rows["fp32"]["label_agreement"] == 1.0
    assert rows["int8-static"]["batch_invariance"]["flips"] == 0
    assert set(rows["pytorch-fp32"]["per_label"]) == {"food", "money", "sport"}
    assert {g["gate"] for g in r.report["gates"]} >= {"max_f1_drop"} and r.passed


def test_predict_prints_label_sets(multi_bundle):
    from edgetune.runtime import Classifier

    texts = ["goal team and bread soup", "the bank price was good", "a very good day"]
    expected = [p.labels for p in Classifier.load(multi_bundle).predict(texts)]
    run = CliRunner()
    r = run.invoke(main, ["predict", str(multi_bundle), *texts, "--format", "jsonl"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.output.splitlines()]
    assert [row["labels"] for row in rows] == expected
    assert [row["label"] for row in rows] == [";".join(e) for e in expected]
    r = run.invoke(main, ["predict", str(multi_bundle), *texts, "--format", "csv"])
    cells = [line.split(",")[1] for line in r.output.splitlines()[1:]]
    assert r.exit_code == 0 and cells == [";".join(e) for e in expected]
    r = run.invoke(main, ["predict", str(multi_bundle), *texts])
    shown = [line.split()[1] for line in r.output.splitlines()[1:]]
    assert shown == [";".join(e) or "-" for e in expected]


def test_stock_optimum_pipeline_gives_the_same_label_sets(multi_run, multi_bundle):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    from edgetune.runtime import Classifier

    model = ORTModelForSequenceClassification.from_pretrained(
        multi_bundle, file_name="model_fp32.onnx"
    )
    tok = AutoTokenizer.from_pretrained(multi_bundle)
    pipe = pipeline("text-classification", model=model, tokenizer=tok, top_k=None)
    clf = Classifier.load(multi_bundle, variant="fp32")
    thresholds = json.loads((multi_bundle / "edgetune.json").read_text())["thresholds"]
    texts = ["goal and bread", "the bank price was good", "soup cash team"]
    for text, p in zip(texts, clf.predict(texts, all_scores=True)):
        scores = {e["label"]: e["score"] for e in pipe([text])[0]}  # sigmoid: problem_type
        assert {n for n, s in scores.items() if s >= thresholds[n]} == set(p.labels)
        np.testing.assert_allclose(
            [scores[n] for n in clf.labels], [p.scores[n] for n in clf.labels], atol=1e-5
        )


def test_multi_label_options_are_refused_elsewhere(tmp_path):
    data = write_jsonl(tmp_path / "t.jsonl", n=20)
    run = CliRunner()
    r = run.invoke(
        main,
        [
            "train",
            "--model",
            "tiny-distilbert",
            "--data",
            str(data),
            "--output",
            str(tmp_path / "r"),
        ]
        + ["--strategy", "fewshot", "--shots", "0", "--label-prompts", "sport=a", "--quiet"],
    )
    assert r.exit_code == 2 and "--shots 0 (zero-shot) does not apply to multi-label" in r.output
    assert not (tmp_path / "r").exists()
    csv = tmp_path / "one.csv"
    csv.write_text("text,label\n" + "\n".join(f"row {i},{'ab'[i % 2]}" for i in range(20)))
    r = run.invoke(
        main,
        ["train", "--model", "tiny-distilbert", "--data", str(csv), "--output", str(tmp_path / "s")]
        + ["--threshold", "tuned", "--quiet"],
    )
    assert r.exit_code == 2 and "--threshold does not apply to text-classification" in r.output


@pytest.mark.parametrize(
    "extra",
    [{"strategy": "lora"}, {"strategy": "head"}, {"qat": "dynamic"}, {"class_weights": "balanced"}],
    ids=["lora", "head", "qat", "balanced"],
)
def test_multi_label_runs_under_each_strategy_and_export(extra, tmp_path):
    import edgetune
    from edgetune.export import export
    from edgetune.runtime import Classifier

    data = write_jsonl(tmp_path / "t.jsonl", n=60)
    run = tmp_path / "run"
    kwargs = train_kwargs(epochs=1, max_length=32, **extra)
    result = edgetune.train(data=str(data), output=str(run), progress=False, **kwargs)
    assert result.config["task"] == "multi-label" and (run / "best" / "thresholds.json").is_file()
    export(source=str(run), output=str(tmp_path / "b"), progress=False)
    (pred,) = Classifier.load(tmp_path / "b").predict(["goal and bread"])  # self-checked
    assert isinstance(pred.labels, list)


def test_bad_multi_label_data_is_one_line_and_exit_2(tmp_path):
    cases = {
        "ids.jsonl": ('{"text": "a b", "labels": [0, 7]}\n' * 4, "--label-names", "a,b"),
        "empty.jsonl": ('{"text": "a b", "labels": []}\n' * 4, None, None),
        "sep.jsonl": ('{"text": "a b", "labels": ["x,y", "z"]}\n' * 4, None, None),
    }
    for name, (content, option, value) in cases.items():
        data = tmp_path / name
        data.write_text(content, encoding="utf-8")
        out = tmp_path / f"run-{name}"
        args = ["train", "--model", "tiny-distilbert", "--data", str(data), "--output", str(out)]
        args += ["--task", "multi-label", "--quiet"] + ([option, value] if option else [])
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, (name, r.output)
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and "Traceback" not in r.output, r.output
        assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_transformers_js_reads_the_sigmoid_from_the_config(multi_run, tmp_path):
    """transformers.js's text-classification pipeline applies the sigmoid that
    ``problem_type`` asks for: its scores are the runtime's per-label probabilities."""
    import shutil
    import subprocess

    from edgetune.export import export
    from edgetune.runtime import Classifier

    js = Path(__file__).parent / "js"
    node = shutil.which("node")
    if node is None or not (js / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.skip("Node and tests/js/node_modules run the transformers.js test")
    out = tmp_path / "bundle"
    export(
        source=str(multi_run[0]),
        output=str(out),
        layout="transformers.js",
        variants=("fp32",),
        progress=False,
    )
    texts = ["goal and bread", "the bank price was good", "soup cash team"]
    for dtype, variant in (("fp32", "fp32"), ("int8", "int8-static")):
        r = subprocess.run(
            [node, str(js / "classify.mjs"), str(out), dtype],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            cwd=js,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        got = [json.loads(x) for x in r.stdout.splitlines()]
        clf = Classifier.load(out, variant=variant)
        np.testing.assert_allclose(
            [g["logits"] for g in got], clf.logits(texts, batch_size=1), atol=1e-3
        )
        for g, p in zip(got, clf.predict(texts, all_scores=True)):
            assert g["pipeline"]["score"] == pytest.approx(
                p.scores[g["pipeline"]["label"]], abs=1e-3
            )


def test_a_multi_label_student_learns_each_labels_sigmoid_from_a_teacher(multi_run, tmp_path):
    import edgetune

    out = tmp_path / "student"
    result = edgetune.train(
        data=str(multi_run[2]),
        output=str(out),
        teacher=str(multi_run[0]),
        distill_alpha=0.5,
        threshold="tuned",  # a new head starts at the label rates (40%): below 0.5 at first
        progress=False,
        **train_kwargs(epochs=4, learning_rate=3e-3, max_length=32),
    )
    logits = np.load(out / "teacher_logits.npy")
    assert logits.shape == (result.data["train"]["rows"], 3)
    assert set(result.teacher["test"]) == {"micro_f1", "macro_f1"}
    assert result.teacher["test"]["micro_f1"] > 0.5 and result.test["micro_f1"] > 0.5


def test_check_proves_a_multi_label_bundle_on_this_device(multi_bundle):
    r = CliRunner().invoke(main, ["check", str(multi_bundle)])
    assert r.exit_code == 0 and r.output.count("PASS") == 2, r.output


@pytest.mark.parametrize(
    "columns",
    [["--label-column", "l_sport", "--label-column", "l_food"], ["--label-column", "l_*"]],
)
def test_zero_one_columns_from_the_command_line(columns, tmp_path):
    rng = random.Random(1)
    rows = ["text,l_sport,l_food,other"]
    for _ in range(40):
        s, f = rng.random() < 0.5, rng.random() < 0.5
        words = (["goal", "team"] if s else []) + (["soup", "bread"] if f else []) + ["day"]
        rows.append(f"{' '.join(words)},{int(s)},{int(f)},x")
    data = tmp_path / "flags.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    args = ["train", "--model", "tiny-distilbert", "--data", str(data), "--output", str(out)]
    args += ["--epochs", "1", "--device", "cpu", "--precision", "fp32", "--quiet", *columns]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["task"] == "multi-label"
    assert sorted(m["label_names"]) == ["l_food", "l_sport"]


def test_static_int8_calibrates_on_the_runs_own_texts(multi_run, tmp_path):
    from edgetune.export import export
    from edgetune.runtime import Classifier

    out = tmp_path / "b"
    r = export(source=str(multi_run[0]), output=str(out), variants=("int8-static",), progress=False)
    assert "int8-static" in r.variants
    (pred,) = Classifier.load(out, variant="int8-static").predict(["goal and bread"])
    assert isinstance(pred.labels, list)


def test_the_f1_gate_names_the_macro_f1(multi_bundle):
    from edgetune.validate import validate

    fast = dict(threads=1, rounds=3, warmup=0, memory=False, seq_lengths=(16,), pause_s=0.0)
    r = validate(bundle=str(multi_bundle), max_f1_drop=5.0, progress=False, **fast)
    (gate,) = [g for g in r.report["gates"] if g["gate"] == "max_f1_drop"]
    assert gate["message"].startswith("macro F1 drop of int8-static")


def test_validate_and_export_read_other_multi_label_data(multi_run, multi_bundle, tmp_path):
    """--data in the same shape as the run's (names), and as integer ids of the model's labels."""
    from edgetune.export import export
    from edgetune.validate import validate

    ids = tmp_path / "ids.jsonl"
    names = ["food", "money", "sport"]
    rows = [json.loads(x) for x in multi_run[2].read_text().splitlines()]
    ids.write_text(
        "".join(
            json.dumps({"text": r["text"], "labels": [names.index(n) for n in r["labels"]]}) + "\n"
            for r in rows
        )
    )
    fast = dict(threads=1, rounds=3, warmup=0, memory=False, seq_lengths=(16,), pause_s=0.0)
    by_names = validate(bundle=str(multi_bundle), data=str(multi_run[2]), progress=False, **fast)
    by_ids = validate(bundle=str(multi_bundle), data=str(ids), progress=False, **fast)
    for key in ("micro_f1", "macro_f1"):
        assert by_ids.report["variants"]["fp32"][key] == by_names.report["variants"]["fp32"][key]
    r = export(source=str(multi_run[0]), output=str(tmp_path / "b"), data=str(ids), progress=False)
    assert "int8-static" in r.variants


def test_a_new_head_starts_at_each_labels_rate():
    """The bias of a new multi-label head is the log-odds of each label's train rate (a label
    never or always present is clipped, not infinite); a model without such a head is left."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from edgetune.train.trainable import start_at_label_rates

    cfg = DistilBertConfig(
        vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32, num_labels=3
    )
    model = DistilBertForSequenceClassification(cfg)
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    assert start_at_label_rates(model, targets)
    bias = model.classifier.bias.detach().numpy()
    assert bias[0] == pytest.approx(np.log(3), abs=1e-6)  # 3 of 4: log(0.75 / 0.25)
    assert bias[1] == pytest.approx(-np.log(3), abs=1e-6)
    assert np.isfinite(bias[2]) and bias[2] == pytest.approx(np.log(1 / 5), abs=1e-6)
    probs = torch.sigmoid(model.classifier.bias).detach().numpy()
    assert probs[0] == pytest.approx(0.75, abs=1e-6)
    assert not start_at_label_rates(model, np.zeros((4, 5)))  # 5 labels, a 3-output head


def test_few_shot_learns_label_sets_with_a_one_vs_rest_head(tmp_path):
    """--strategy fewshot --shots k on label sets: at least k rows per label, pairs alike when
    their sets share a label, one logistic regression per label; exported and decided alike."""
    import edgetune
    from edgetune.export import export
    from edgetune.runtime import Classifier
    from edgetune.train.fewshot import make_pairs, sample_shots

    data = write_jsonl(tmp_path / "t.jsonl", n=160)
    run = tmp_path / "run"
    kwargs = train_kwargs(strategy="fewshot", shots=6, learning_rate=1e-3, max_length=32)
    result = edgetune.train(
        data=str(data), output=str(run), threshold="tuned", progress=False, **kwargs
    )
    assert result.config["task"] == "multi-label" and result.data["shots"] == 6
    assert 6 <= result.data["train"]["rows"] <= 18  # rows carry several labels
    assert result.test["micro_f1"] > 0.6, result.test  # the words name the topics
    assert set(result.history[0]) >= {"val_micro_f1", "val_macro_f1", "val_loss"}
    export(source=str(run), output=str(tmp_path / "b"), progress=False)
    clf = Classifier.load(tmp_path / "b")
    assert clf.task.multi_label and clf.thresholds is not None
    (pred,) = clf.predict(["goal match bank price"])
    assert set(pred.labels) == {"money", "sport"}

    sets = [[0], [0, 1], [2], [], []]
    pairs = make_pairs(sets, 40, seed=0)
    for i, j, same in pairs:
        alike = bool(set(sets[i]) & set(sets[j])) or sets[i] == sets[j] == []
        assert alike == bool(same)
    assert pairs[:, 2].sum() == 20
    from edgetune.data.multilabel import MultiLabelSplit

    split = MultiLabelSplit([f"t{i}" for i in range(6)], [[0], [0, 1], [1], [1], [2], [2]])
    picked = sample_shots(split, 2, seed=0, num_labels=3)
    t = picked.targets(3)
    assert (t.sum(0) >= 2).all() and len(picked) <= 6
    with pytest.raises(edgetune.errors.ConfigError, match="--shots 3: label 0 has only 2"):
        sample_shots(split, 3, seed=0, num_labels=3)
    with pytest.raises(edgetune.errors.ConfigError, match="--shots 1: label 3 has only 0"):
        sample_shots(split, 1, seed=0, num_labels=4)  # a label no training row carries
    # Many rows whose sets rarely meet: the pairs found are cycled, never short.
    many = [[i % 100] for i in range(3200)]
    pairs = make_pairs(many, 8000, seed=0)
    assert len(pairs) == 8000 and pairs[:, 2].sum() == 4000
    assert all(many[i] == many[j] for i, j, same in pairs[:50] if same)
