"""Token classification through every stage on the tiny model: train, export, the runtime's
entities and windows, predict's outputs and redaction, and the refusals."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgetune.cli import main

from .conftest import fp32_bundle, train_kwargs

PEOPLE = [["john"], ["mary"], ["anna", "smith"], ["paul"], ["john", "brown"], ["sarah"]]
PLACES = [["paris"], ["london"], ["berlin"], ["new", "york"], ["rome"]]
FILLER = ["the", "a", "good", "day", "was", "and", "then", "it", "is", "very"]


def _sentence(rng: random.Random) -> list[tuple[str, str]]:
    """Words and IOB2 tags: a person visited a place, with filler around."""
    out: list[tuple[str, str]] = []

    def entity(words: list[str], kind: str) -> None:
        out.extend((w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words))

    out += [(w, "O") for w in rng.sample(FILLER, 2)]
    entity(rng.choice(PEOPLE), "PER")
    out += [("visited", "O")]
    entity(rng.choice(PLACES), "LOC")
    out += [(w, "O") for w in rng.sample(FILLER, rng.randint(0, 3))]
    return out


def write_conll(folder: Path, counts=(120, 24, 24), seed: int = 0) -> Path:
    """A CoNLL folder (train/dev/test), -DOCSTART- lines included."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in zip(("train", "dev", "test"), counts):
        lines = ["-DOCSTART- -X- -X- O", ""]
        for _ in range(n):
            lines += [f"{w} X X {t}" for w, t in _sentence(rng)] + [""]
        (folder / f"{name}.txt").write_text("\n".join(lines), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def token_run(tmp_path_factory):
    import edgetune

    root = tmp_path_factory.mktemp("tokens")
    data = write_conll(root / "conll")
    out = root / "run"
    result = edgetune.train(
        data=str(data),
        output=str(out),
        progress=False,
        **train_kwargs(epochs=6, learning_rate=1e-2, max_length=32),
    )
    return out, result, data


@pytest.fixture(scope="module")
def token_bundle(token_run, tmp_path_factory):
    return fp32_bundle(token_run[0], tmp_path_factory, "token-bundle")


def test_token_data_is_detected_and_trained_to_entity_f1(token_run):
    out, result, _ = token_run
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["task"] == "token-classification" and config["metric"] == "f1"
    assert result.label_names[0] == "O" and {"B-PER", "I-PER", "B-LOC", "I-LOC"} <= set(
        result.label_names
    )
    # Entity-level figures (exact spans), the best checkpoint chosen by them.
    assert result.best["metric"] == "f1"
    assert result.test["f1"] > 0.8, result.test
    assert set(result.test["per_type"]) == {"PER", "LOC"}
    assert "val_f1" in result.history[-1]
    assert "entity F1" in result.summary()


def test_export_records_the_task_and_per_token_golden_answers(token_bundle):
    from edgetune.formats import bundle as bundlefmt

    manifest = bundlefmt.verify(token_bundle)
    assert manifest["task"] == "token-classification"
    golden = bundlefmt.read_golden(token_bundle)
    first = golden["variants"]["int8-static"]["logits"][0]
    assert np.asarray(first).ndim == 2 and np.asarray(first).shape[1] == len(manifest["labels"])
    kinds = [r["kind"] for r in golden["rows"]]
    assert "beyond max length" in kinds


def test_runtime_logits_equal_pytorch_and_cover_long_texts(token_run, token_bundle):
    from edgetune.runners import TorchRunner
    from edgetune.runtime import Tagger

    tagger = Tagger.load(token_bundle, variant="fp32")
    long_text = " ".join(["john visited paris and then it was a good day"] * 12)
    texts = ["anna smith visited new york", long_text, "Zoë visited Zürich"]
    got = tagger.token_logits(texts)
    torch_runner = TorchRunner(token_run[0] / "best", 1, tagger.clf.max_length)
    expected = torch_runner.token_logits(texts, 8)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, atol=1e-4)
    # The long text is beyond the 32-token window: every one of its tokens still has logits.
    tokens, _ = tagger.clf.tokens_and_logits([long_text])
    n_tokens = len(tokens[0].ids)
    assert n_tokens > 32 and got[1].shape[0] == n_tokens


def test_entities_carry_offsets_into_the_original_text(token_bundle):
    from edgetune.runtime import Tagger

    tagger = Tagger.load(token_bundle)
    text = "the day john brown visited london"
    ents = tagger.tag([text], aggregation="first")[0]
    assert [(e.label, e.text) for e in ents] == [("PER", "john brown"), ("LOC", "london")]
    assert all(text[e.start : e.end] == e.text for e in ents)
    assert tagger.redact([text], aggregation="first") == ["the day [PER] visited [LOC]"]


def test_predict_prints_entities_and_redacts(token_bundle):
    run = CliRunner()
    text = "the day mary visited rome"
    r = run.invoke(main, ["predict", str(token_bundle), text, "--format", "jsonl"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output.splitlines()[0])
    assert [e["label"] for e in row["entities"]] == ["PER", "LOC"]
    r = run.invoke(main, ["predict", str(token_bundle), text, "--redact"])
    assert r.exit_code == 0 and r.output.strip() == "the day [PER] visited [LOC]"
    r = run.invoke(main, ["predict", str(token_bundle), text, "--format", "csv"])
    assert r.output.splitlines()[1].startswith("0,PER,mary,8,12,")


def test_options_a_token_task_cannot_use_are_refused(tmp_path):
    data = write_conll(tmp_path / "conll", counts=(10, 4, 4))
    run = CliRunner()
    cases = [
        (["--teacher", str(tmp_path), "--unlabeled", str(tmp_path)], "--unlabeled"),
        (["--strategy", "fewshot"], "--strategy fewshot"),
    ]
    for extra, needle in cases:
        r = run.invoke(
            main,
            ["train", "--model", "tiny-distilbert", "--data", str(data)]
            + ["--output", str(tmp_path / "r"), "--quiet", *extra],
        )
        assert r.exit_code == 2, r.output
        assert needle in r.output and "token-classification" in r.output
        assert "Traceback" not in r.output and not (tmp_path / "r").exists()


def test_text_bundles_refuse_token_options(bundle):
    r = CliRunner().invoke(main, ["predict", str(bundle), "fine", "--redact"])
    assert r.exit_code == 2 and "token-classification bundles" in r.output


FAST = dict(threads=1, rounds=3, warmup=0, memory=False, seq_lengths=(16,), pause_s=0.0)


def test_validate_measures_entity_f1_through_the_runtime(token_bundle, tmp_path):
    from edgetune.validate import validate

    r = validate(bundle=str(token_bundle), max_f1_drop=5.0, min_agreement=0.5, **FAST)
    rows = r.report["variants"]
    assert set(rows) == {"pytorch-fp32", "fp32", "int8-static"}
    assert rows["pytorch-fp32"]["f1"] > 0.8 and set(rows["fp32"]["per_type"]) == {"PER", "LOC"}
    # fp32 through the runtime (its tokenizer and windows) answers as PyTorch does.
    assert rows["fp32"]["agreement"] == 1.0 and rows["fp32"]["f1_delta_points"] == 0.0
    assert rows["int8-static"]["batch_invariance"]["flips"] == 0
    gates = {g["gate"]: g for g in r.report["gates"]}
    assert gates["max_f1_drop"]["passed"] and r.passed
    report_md = (token_bundle / "validation" / "report.md").read_text()
    assert "Per entity type (F1)" in report_md and "entity F1" in r.summary()


def test_max_f1_drop_is_for_token_bundles(bundle):
    from edgetune.errors import ConfigError
    from edgetune.validate import validate

    with pytest.raises(ConfigError, match="--max-accuracy-drop"):
        validate(bundle=str(bundle), max_f1_drop=1.0, **FAST)


@pytest.mark.parametrize(
    "extra",
    [
        {"strategy": "lora"},
        {"strategy": "head", "label_all_subwords": True},
        {"qat": "dynamic"},
        {"layers": 1},
    ],
    ids=["lora", "head-all-subwords", "qat", "layers"],
)
def test_token_runs_under_each_strategy_and_export(extra, tmp_path):
    import edgetune
    from edgetune.export import export
    from edgetune.runtime import Tagger

    data = write_conll(tmp_path / "conll", counts=(40, 10, 10))
    run = tmp_path / "run"
    kwargs = train_kwargs(epochs=1, max_length=32, **extra)
    result = edgetune.train(data=str(data), output=str(run), progress=False, **kwargs)
    assert result.config["task"] == "token-classification"
    cfg = json.loads((run / "best" / "config.json").read_text())
    assert cfg["architectures"][0].endswith("ForTokenClassification")
    export(source=str(run), output=str(tmp_path / "b"), progress=False)
    tagged = Tagger.load(tmp_path / "b").tag(["the day paul visited rome"])
    assert isinstance(tagged[0], list)  # the self-check passed on load


TAG_TEXTS = [
    "the day john brown visited london",
    "a good day mary visited new york and then it was very good",
    "Zoë visited Zürich",
    "sarah visited rome",
    "",
]


def test_transformers_js_tags_as_the_python_runtime(token_run, tmp_path):
    """transformers.js's stock token-classification pipeline (Node) on the bundle's
    transformers.js layout: the same tokens, per-token logits and entities as the runtime."""
    import shutil
    import subprocess

    from edgetune.export import export
    from edgetune.runtime import Tagger

    js = Path(__file__).parent / "js"
    node = shutil.which("node")
    if node is None or not (js / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.skip("Node and tests/js/node_modules run the transformers.js test")
    out = tmp_path / "bundle"
    layout = {"layout": "transformers.js", "variants": ("fp32",), "progress": False}
    export(source=str(token_run[0]), output=str(out), **layout)
    for dtype, variant in (("fp32", "fp32"), ("int8", "int8-static")):
        r = subprocess.run(
            [node, str(js / "tag.mjs"), str(out), dtype],
            input=json.dumps(TAG_TEXTS),
            capture_output=True,
            text=True,
            cwd=js,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        got = [json.loads(x) for x in r.stdout.splitlines()]
        tagger = Tagger.load(out, variant=variant)
        tokens, logits = tagger.clf.tokens_and_logits(TAG_TEXTS, batch_size=1)
        for g, tok, lg, text in zip(got, tokens, logits, TAG_TEXTS):
            assert g["ids"][1:-1] == tok.ids  # the same tokens, [CLS]/[SEP] around them
            js_logits = np.asarray(g["logits"], np.float32)[1:-1].reshape(lg.shape)
            np.testing.assert_allclose(js_logits, lg, atol=1e-3)
            ours = tagger.tag([text], aggregation="none")[0]
            theirs = [(e["entity"], e["index"] - 1) for e in g["pipeline"]]
            assert [(e.label, e.index) for e in ours] == theirs


def test_stock_optimum_and_transformers_pipeline_give_the_same_entities(token_bundle):
    """The bundle's fp32 graph in Optimum's ORTModelForTokenClassification with transformers'
    own pipeline: the entities the runtime returns, offsets and scores included."""
    from optimum.onnxruntime import ORTModelForTokenClassification
    from transformers import AutoTokenizer, pipeline

    from edgetune.runtime import Tagger

    model = ORTModelForTokenClassification.from_pretrained(
        token_bundle, file_name="model_fp32.onnx"
    )
    tok = AutoTokenizer.from_pretrained(token_bundle)
    tagger = Tagger.load(token_bundle, variant="fp32")
    for strategy in ("simple", "first", "average", "max"):
        pipe = pipeline(
            "token-classification", model=model, tokenizer=tok, aggregation_strategy=strategy
        )
        for text in TAG_TEXTS[:4]:
            theirs = [(e["entity_group"], e["start"], e["end"]) for e in pipe(text)]
            ours = tagger.tag([text], aggregation=strategy)[0]
            assert [(e.label, e.start, e.end) for e in ours] == theirs, (strategy, text)
            scores = [float(e["score"]) for e in pipe(text)]
            np.testing.assert_allclose([e.score for e in ours], scores, atol=1e-4)


def test_word_teacher_lays_word_logits_on_the_students_subwords():
    from transformers import AutoTokenizer

    from edgetune.data.tokens import TokenSplit
    from edgetune.presets import resolve_model
    from edgetune.train.config import TrainConfig
    from edgetune.train.word_teacher import TokenTeacher

    tok = AutoTokenizer.from_pretrained(resolve_model("tiny-distilbert").location)
    split = TokenSplit([["john", "visited", "berlin"], ["rome"]], [[1, 0, 3], [3]])
    words = np.arange(4 * 5, dtype=np.float32).reshape(4, 5)  # 4 words, 5 tags
    config = TrainConfig(model="m", data="d", output="o", max_length=32)
    teacher = TokenTeacher(words, split, tok, config, "cpu")
    got = teacher[[0, 1]].numpy()
    ids = tok(split.tokens[0], is_split_into_words=True).word_ids()
    assert got.shape[:2] == (2, len(ids))
    for p, w in enumerate(ids):  # every sub-word of word w carries w's logits; specials zeros
        np.testing.assert_array_equal(got[0, p], words[w] if w is not None else 0)
    np.testing.assert_array_equal(got[1, 1], words[3])


def test_a_token_student_learns_from_a_teacher_on_words(token_run, tmp_path):
    import edgetune

    out = tmp_path / "student"
    result = edgetune.train(
        data=str(token_run[2]),
        output=str(out),
        teacher=str(token_run[0]),
        distill_alpha=0.7,
        progress=False,
        **train_kwargs(epochs=4, learning_rate=1e-2, max_length=32),
    )
    words = sum(
        len(s)
        for s in edgetune.data.labelled.load_run_data(
            json.loads((out / "config.json").read_text())
        ).train.tokens
    )
    logits = np.load(out / "teacher_logits.npy")
    assert logits.shape == (words, len(result.label_names))
    assert result.teacher["test"]["f1"] > 0.8  # the teacher's own figures, on words
    assert result.test["f1"] > 0.8, result.test


def test_onnxruntime_web_wasm_gives_the_same_token_logits(token_bundle):
    """Every CPU variant of the token bundle in onnxruntime-web (WASM, Node): per-token logits
    within the tolerances the text bundles meet, and the same tags where they are clear."""
    import shutil
    import subprocess

    from edgetune.runtime import Tagger
    from edgetune.runtime.tokens import special_ids, untruncated

    js = Path(__file__).parent / "js"
    node = shutil.which("node")
    if node is None or not (js / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("Node and tests/js/node_modules run the WASM test")
    manifest = json.loads((token_bundle / "edgetune.json").read_text())
    texts = TAG_TEXTS[:4]
    for variant, tol in (("fp32", 1e-4), ("int8-static", 0.02)):
        tagger = Tagger.load(token_bundle, variant=variant)
        tokens, want = tagger.clf.tokens_and_logits(texts, batch_size=1)
        head, tail = special_ids(untruncated(tagger.clf.tokenizer))  # [CLS] / [SEP]
        feeds = [{"input_ids": head + t.ids + tail} for t in tokens]
        model = token_bundle / manifest["variants"][variant]["file"]
        r = subprocess.run(
            [node, str(js / "ortweb.mjs"), str(model)],
            input=json.dumps(feeds),
            capture_output=True,
            text=True,
            cwd=js,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout.splitlines()[0])["logits"]
        for g, w in zip(got, want):
            g = np.asarray(g, np.float32).reshape(-1, w.shape[1])[1:-1]
            assert float(np.abs(g - w).max()) <= tol, variant
            top2 = np.sort(w, axis=1)[:, -2:]
            clear = top2[:, 1] - top2[:, 0] > 2 * tol
            assert (g.argmax(1) == w.argmax(1))[clear].all()


def test_bad_token_data_is_one_line_and_exit_2(tmp_path):
    cases = {
        "train.conll": ("john B-PER\nvisited O\nparis X-LOC\n", "X-LOC"),
        "spans.jsonl": (
            '{"text": "ann in rome", "entities": [{"start": 7, "end": 40, "label": "LOC"}]}\n',
            "outside",
        ),
    }
    for name, (content, needle) in cases.items():
        data = tmp_path / name
        data.write_text(content, encoding="utf-8")
        out = tmp_path / f"run-{name}"
        r = CliRunner().invoke(
            main,
            ["train", "--model", "tiny-distilbert", "--data", str(data), "--output", str(out)],
        )
        assert r.exit_code == 2, r.output
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and needle in lines[0] and name in lines[0], r.output
        assert "Traceback" not in r.output and not out.exists()
        assert not rundir_partial(out).exists()


def rundir_partial(path: Path) -> Path:
    from edgetune.formats import rundir

    return rundir.partial_path(path)


def test_static_and_portable_int8_calibrate_on_the_runs_sentences(token_run, tmp_path):
    from edgetune.export import export
    from edgetune.runtime import Tagger
    from edgetune.validate import validate

    out = tmp_path / "b"
    r = export(
        source=str(token_run[0]),
        output=str(out),
        variants=("int8-static", "int8-portable"),
        data=str(token_run[2]),  # checked as token data before the export starts
        validator=validate,
        progress=False,
    )
    assert {"int8-static", "int8-portable"} <= set(r.variants)
    assert r.validation is not None and "int8-static" in r.validation.report["variants"]
    for variant in ("int8-static", "int8-portable"):
        assert Tagger.load(out, variant=variant).tag(["the day paul visited rome"])[0]
    # Row-independent int8 per token too (the tag head runs on every token, quantized).
    tagger = Tagger.load(out, variant="int8-static")
    assert tagger.clf.batching == "padded"
    texts = ["the day paul visited rome", "rome", "paul and anna met in paris on a long day"]
    one = tagger.token_logits(texts * 4, batch_size=1)
    for a, b in zip(one, tagger.token_logits(texts * 4, batch_size=32), strict=True):
        assert np.array_equal(a, b)


def test_check_and_bench_run_token_bundles(token_bundle):
    run = CliRunner()
    r = run.invoke(main, ["check", str(token_bundle)])
    assert r.exit_code == 0 and r.output.count("PASS") == 2, r.output
    args = ["bench", str(token_bundle), "--seq-lengths", "16", "--batch-sizes", "1,4"]
    r = run.invoke(main, args + ["--rounds", "3", "--warmup", "0", "--threads", "1"])
    assert r.exit_code == 0 and "rows/s" in r.output, r.output
