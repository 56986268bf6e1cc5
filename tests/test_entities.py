"""edgetune.entities against its references: seqeval (spans, entity metrics) and transformers'
token-classification pipeline (sub-word aggregation); overlapping windows for long texts."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest

from edgetune.entities import (
    STRATEGIES,
    aggregate,
    entity_agreement,
    entity_metrics,
    merge_windows,
    spans,
    split_tag,
    windows,
)

LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
ID2LABEL = dict(enumerate(LABELS))

# -- tags, spans and metrics against seqeval ------------------------------------------------------

# Mostly well-formed IOB2 with invalid transitions; some IOBES, BILOU and tags seqeval only warns about.
TAG_POOL = (
    ["O"] * 8
    + ["B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "I-PER", "I-LOC"] * 2
    + ["E-PER", "S-LOC", "E-LOC", "S-PER", "B-MISC", "I-MISC"]
)
ODD_TAGS = ["L-PER", "U-LOC", "B", "I", "X", "PER", "B-", "I-PER-X", "."]

CRAFTED = {
    "invalid transitions": (
        [["O", "I-PER", "I-PER", "O", "B-LOC", "I-PER", "I-LOC"]],
        [["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "I-LOC", "B-ORG"]],
    ),
    "empty predictions": ([["B-PER", "I-PER", "O"], ["B-LOC"]], [["O", "O", "O"], ["O"]]),
    "all O": ([["O", "O"], ["O"]], [["O", "O"], ["O"]]),
    "at sentence end": ([["O", "B-PER"], ["B-LOC", "I-LOC"]], [["O", "B-PER"], ["O", "B-LOC"]]),
    "adjacent B-X B-X": ([["B-PER", "B-PER", "I-PER"]], [["B-PER", "I-PER", "I-PER"]]),
    "IOBES": ([["S-PER", "B-LOC", "E-LOC", "O"]], [["S-PER", "B-LOC", "I-LOC", "E-LOC"]]),
    "empty sentence": ([[], ["B-PER"]], [[], ["B-PER"]]),
    "no entity across sentences": ([["B-PER"], ["I-PER"]], [["B-PER", "I-PER"][:1], ["B-PER"]]),
    "only predicted type": ([["B-PER", "O"]], [["B-PER", "B-ORG"]]),
}


def _random_tags(rng: random.Random, n: int, odd: bool = False) -> list[str]:
    pool = TAG_POOL + (ODD_TAGS if odd else [])
    return [rng.choice(pool) for _ in range(n)]


def _random_corpora(seed: int, odd: bool = False) -> tuple[list[list[str]], list[list[str]]]:
    rng = random.Random(seed)
    lengths = [rng.randint(0, 12) for _ in range(rng.randint(1, 4))]
    true = [_random_tags(rng, n, odd) for n in lengths]
    # predictions: the truth with some tags replaced, so that some entities match
    pred = [[t if rng.random() < 0.6 else rng.choice(TAG_POOL) for t in s] for s in true]
    return true, pred


def _seqeval(true: list[list[str]], pred: list[list[str]]) -> dict:
    from seqeval import metrics
    from seqeval.metrics.sequence_labeling import classification_report

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning, "... seems not to be NE tag"
        return {
            "precision": metrics.precision_score(true, pred),
            "recall": metrics.recall_score(true, pred),
            "f1": metrics.f1_score(true, pred),
            # seqeval divides by zero on no tokens; entity_metrics says 0.0
            "accuracy": metrics.accuracy_score(true, pred) if any(true) else 0.0,
            "macro": metrics.f1_score(true, pred, average="macro"),
            "report": classification_report(true, pred, output_dict=True),
        }


def _assert_matches_seqeval(true: list[list[str]], pred: list[list[str]]) -> None:
    ref = _seqeval(true, pred)
    got = entity_metrics(true, pred)
    for key in ("precision", "recall", "f1", "accuracy"):
        assert got[key] == ref[key], key
    types = {k: v for k, v in ref["report"].items() if not k.endswith(" avg")}
    assert list(got["per_type"]) == list(types)
    for name, row in types.items():
        mine = got["per_type"][name]
        assert (mine["precision"], mine["recall"], mine["f1"], mine["support"]) == (
            row["precision"],
            row["recall"],
            row["f1-score"],
            row["support"],
        ), name
    supported = [row["f1-score"] for row in types.values() if row["support"] > 0]
    assert got["macro_f1"] == pytest.approx(np.mean(supported) if supported else 0.0, abs=1e-12)
    if supported and len(supported) == len(types):  # no type only predicted: seqeval's macro
        assert got["macro_f1"] == pytest.approx(ref["macro"], abs=1e-12)
    assert got["n_entities"] == ref["report"]["micro avg"]["support"]
    assert got["n_sentences"] == len(true)


def _seqeval_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    from seqeval.metrics.sequence_labeling import get_entities

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(t, s, e + 1) for t, s, e in get_entities(tags)]


def test_split_tag():
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("O") == ("O", "")
    assert [split_tag(f"{p}-LOC")[0] for p in "IESLU"] == list("IESLU")
    assert split_tag("I-WORK-OF-ART") == ("I", "WORK-OF-ART")
    for bad in ("PER", "B-", "B", "PER-B", "X-PER", ""):
        with pytest.raises(ValueError, match="not a tag"):
            split_tag(bad)


def test_spans_known_answers():
    assert spans(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    assert spans(["O", "I-PER", "I-LOC", "B-LOC", "B-LOC"]) == [
        ("PER", 1, 2),
        ("LOC", 2, 3),
        ("LOC", 3, 4),
        ("LOC", 4, 5),
    ]
    assert spans(["S-PER", "B-LOC", "E-LOC", "I-LOC"]) == [
        ("PER", 0, 1),
        ("LOC", 1, 3),
        ("LOC", 3, 4),
    ]
    assert spans([]) == [] and spans(["O", "O"]) == []


@pytest.mark.parametrize("odd", [False, True], ids=["iob", "odd-tags"])
def test_spans_equal_seqeval_on_random_sequences(odd):
    rng = random.Random(1 + odd)
    for _ in range(200):
        tags = _random_tags(rng, rng.randint(0, 15), odd)
        assert spans(tags) == _seqeval_spans(tags), tags


@pytest.mark.parametrize("case", CRAFTED, ids=list(CRAFTED))
def test_entity_metrics_equal_seqeval_on_crafted_cases(case):
    _assert_matches_seqeval(*CRAFTED[case])


@pytest.mark.parametrize("odd", [False, True], ids=["iob", "odd-tags"])
def test_entity_metrics_equal_seqeval_on_random_corpora(odd):
    for seed in range(200):
        true, pred = _random_corpora(seed, odd)
        _assert_matches_seqeval(true, pred)


def test_entity_metrics_known_answers_and_edges():
    m = entity_metrics(*CRAFTED["only predicted type"])
    assert (m["precision"], m["recall"], m["n_entities"], m["n_predicted"]) == (0.5, 1.0, 1, 2)
    assert m["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == 1.0  # seqeval's macro average counts ORG in: 0.5
    empty = entity_metrics([], [])  # seqeval's accuracy divides by zero here
    assert empty["accuracy"] == empty["f1"] == empty["macro_f1"] == 0.0
    assert empty["n_sentences"] == 0 and empty["per_type"] == {}
    with pytest.raises(ValueError, match="sentence 0 has 2 true tags but 1"):
        entity_metrics([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="2 true tag sequences but 1"):
        entity_metrics([["O"], ["O"]], [["O"]])


def test_entity_agreement():
    a = [["B-PER", "I-PER", "O"], ["O", "B-LOC"], ["O"]]
    b = [["B-PER", "B-PER", "O"], ["O", "I-LOC"], ["O"]]  # I-LOC after O is the same entity
    assert entity_agreement(a, b) == pytest.approx(2 / 3)
    assert entity_agreement(a, a) == 1.0 and entity_agreement([], []) == 1.0
    with pytest.raises(ValueError):
        entity_agreement(a, b[:2])


# -- aggregation against transformers' pipeline ---------------------------------------------------

TEXTS = (
    "Zoë Müller flew to Zürich.",
    "Dr. Anne-Marie O'Neil (ACME Corp.) met Bob in New York!!",
    "Zoe\u0308 visited İstanbul, straße and 東京 🙂",
    "Angela Merkel, Barack Obama; the United Nations... in Geneva?",
    "",
)


@pytest.fixture(scope="module")
def tagger():
    """A tiny random BERT token classifier that tags several entities, its tokenizer both as
    transformers loads it and as the runtime does (the ``tokenizers`` library)."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from edgetune.presets import resolve_model

    location = resolve_model("tiny-distilbert").location
    tok = AutoTokenizer.from_pretrained(location)
    fast = Tokenizer.from_file(f"{location}/tokenizer.json")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        num_labels=len(LABELS),
        id2label=ID2LABEL,
        label2id={name: i for i, name in ID2LABEL.items()},
    )
    model = BertForTokenClassification(cfg).eval()
    with torch.no_grad():  # decisive scores, and an O that wins often enough to split entities
        model.classifier.weight.mul_(20)
        model.classifier.bias.zero_()
        model.classifier.bias[0] = 1.0
    return tok, fast, model


def _runtime_inputs(tagger, text: str):
    """Logits, offsets and word ids as the runtime has them: ``tokenizers`` + the model."""
    import torch

    tok, fast, model = tagger
    enc = fast.encode(text)
    assert enc.ids == tok(text)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([enc.ids])).logits[0].numpy()
    return logits, enc.offsets, enc.word_ids


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_aggregate_equals_the_pipeline(tagger, strategy):
    from transformers import pipeline

    tok, _, model = tagger
    pipe = pipeline("token-classification", model=model, tokenizer=tok, device="cpu")
    found = 0
    for text in TEXTS:
        expected = pipe(text, aggregation_strategy=strategy)
        got = aggregate(text, *_runtime_inputs(tagger, text), ID2LABEL, strategy)
        assert len(got) == len(expected), text
        for g, e in zip(got, expected):
            assert g["label"] == e.get("entity_group", e.get("entity"))
            assert (g["start"], g["end"]) == (e["start"], e["end"])
            assert g["score"] == pytest.approx(float(e["score"]), abs=1e-5)
            assert g["text"] == text[g["start"] : g["end"]]
            assert g.get("index") == e.get("index")
        found += len(got)
    assert found >= 10  # the random model tags enough for the comparison to mean something


def test_aggregate_groups_entities_over_tokens_and_words(tagger):
    """The random model exercises every path: O tokens, multi-token and multi-word entities."""
    tokens, simple, words, n_tokens = [], [], [], 0
    for text in TEXTS:
        args = _runtime_inputs(tagger, text)
        tokens += aggregate(text, *args, ID2LABEL, "none")
        simple += aggregate(text, *args, ID2LABEL, "simple")
        words += aggregate(text, *args, ID2LABEL, "first")
        n_tokens += sum(w is not None for w in args[2])
    assert len(simple) < len(tokens) < n_tokens
    assert any(" " in e["text"] for e in simple) and any(" " in e["text"] for e in words)
    assert all(e["label"] in ("PER", "LOC", "ORG") for e in simple + words)
    assert all(e["label"] in LABELS[1:] and "index" in e for e in tokens)


@pytest.mark.parametrize("strategy", ["none", "simple", "average"])
def test_aggregate_ignore_labels_equal_the_pipeline(tagger, strategy):
    from transformers import pipeline

    tok, _, model = tagger
    pipe = pipeline("token-classification", model=model, tokenizer=tok, device="cpu")
    ignore = ["O", "B-PER", "I-PER"] if strategy == "none" else ["O", "PER"]
    text = TEXTS[3]
    expected = pipe(text, aggregation_strategy=strategy, ignore_labels=ignore)
    got = aggregate(text, *_runtime_inputs(tagger, text), ID2LABEL, strategy, ignore)
    assert [(g["label"], g["start"], g["end"]) for g in got] == [
        (e.get("entity_group", e.get("entity")), e["start"], e["end"]) for e in expected
    ]


def test_aggregate_words_follow_word_ids():
    """A word is its tokens with one word id. (The pipeline guesses from token and text lengths,
    and takes a word starting with a combining accent, e.g. "a\\u0300b", for a sub-word.)"""
    text = "Ann a\u0300bba"
    offsets = [(0, 0), (0, 3), (4, 7), (7, 9), (0, 0)]
    word_ids = [None, 0, 1, 1, None]
    logits = np.full((5, len(LABELS)), -5.0, dtype=np.float32)
    logits[[1, 2, 3], [1, 3, 4]] = [5.0, 1.0, 5.0]  # B-PER | B-LOC (unsure) I-LOC
    logits[3, 2] = 12.0  # the sub-word is sure of I-PER
    got = {
        s: [(e["label"], e["text"]) for e in aggregate(text, logits, offsets, word_ids, LABELS, s)]
        for s in ("first", "average", "max")
    }
    assert got["first"] == [("PER", "Ann"), ("LOC", "a\u0300bba")]
    # the word's I-PER continues the B-PER before it
    assert got["average"] == got["max"] == [("PER", "Ann a\u0300bba")]
    scores = aggregate(text, logits.astype(np.float16), offsets, word_ids, LABELS, "first")
    assert all(isinstance(e["score"], float) and 0 < e["score"] <= 1 for e in scores)


def test_aggregate_refuses_bad_input():
    with pytest.raises(ValueError, match="strategy must be one of"):
        aggregate("a", np.zeros((1, 7)), [(0, 1)], [0], LABELS, "mean")
    with pytest.raises(ValueError, match="one logits row"):
        aggregate("a", np.zeros((3, 7)), [(0, 1)], [0], LABELS)


# -- long texts: windows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, max_tokens, stride",
    [(0, 8, 2), (8, 8, 2), (9, 8, 2), (10, 4, 2), (11, 4, 2), (100, 16, 5), (37, 5, 0), (50, 7, 6)],
)
def test_windows_cover_and_overlap(n, max_tokens, stride):
    ws = windows(n, max_tokens, stride)
    assert ws[0][0] == 0 and ws[-1][1] == n
    assert all(0 <= s <= e <= n and e - s <= max_tokens for s, e in ws)
    assert all(e1 - s2 == stride for (_, e1), (s2, _) in zip(ws, ws[1:]))
    assert set().union(*(range(s, e) for s, e in ws)) == set(range(n))
    assert (len(ws) == 1) == (n <= max_tokens)


def test_windows_refuse_bad_settings():
    for args in [(10, 0, 0), (10, 4, 4), (10, 4, -1), (-1, 4, 1)]:
        with pytest.raises(ValueError, match="stride < max_tokens"):
            windows(*args)


def test_merge_windows_takes_each_token_from_the_window_with_most_context():
    n, ws = 10, windows(10, 4, 2)
    assert ws == [(0, 4), (2, 6), (4, 8), (6, 10)]
    per_window = [np.full((e - s, 1), k, dtype=np.float32) for k, (s, e) in enumerate(ws)]
    chosen = merge_windows(per_window, ws, n)[:, 0].astype(int).tolist()
    # token 3 has 1 token of context on either side in window 1, none on the right in window 0
    assert chosen == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]


def test_merged_windows_equal_one_pass_without_context(tagger):
    """Per-token logits that ignore context (a lookup by token id): the windows' merged logits
    are one pass's, and so are the entities aggregated from them."""
    _, fast, _ = tagger
    text = " ".join(TEXTS[:4]) * 3
    enc = fast.encode(text, add_special_tokens=False)
    table = np.random.default_rng(0).normal(0, 3, (fast.get_vocab_size(), len(LABELS)))
    single = table[enc.ids].astype(np.float32)
    n = len(enc.ids)
    ws = windows(n, 24, 8)
    assert len(ws) > 3
    merged = merge_windows([single[s:e] for s, e in ws], ws, n)
    np.testing.assert_array_equal(merged, single)
    args = (enc.offsets, enc.word_ids, LABELS, "average")
    assert aggregate(text, merged, *args) == aggregate(text, single, *args)


def test_merge_windows_refuses_mismatches():
    ws = windows(10, 4, 2)
    with pytest.raises(ValueError, match="logits arrays for"):
        merge_windows([np.zeros((4, 2))], ws, 10)
    with pytest.raises(ValueError, match="got 3 logits rows"):
        merge_windows([np.zeros((3, 2))] + [np.zeros((4, 2))] * 3, ws, 10)
    with pytest.raises(ValueError, match="uncovered"):
        merge_windows([np.zeros((4, 2))], [(0, 4)], 10)
