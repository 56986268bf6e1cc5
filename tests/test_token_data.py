"""Reading token-classification data: CoNLL, word/tag records, text + spans, tag schemes,
splits, detection for --task auto, and one-line errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from edgetune.data.tokens import TokenSplit, is_token_data, load_token_data, split_words
from edgetune.errors import DataError

NAMES = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]

# Four sentences in IOB2; ids are NAMES' indices.
SENTENCES = [
    (["Peter", "Blackburn", "flew"], ["B-PER", "I-PER", "O"]),
    (["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]),
    (["BRUSSELS", "1996-08-22"], ["B-LOC", "O"]),
    (["Ann", "met", "Bob", "in", "New", "York"], ["B-PER", "O", "B-PER", "O", "B-LOC", "I-LOC"]),
]


def write_conll(path: Path, sentences, docstart: bool = True, extra: str = "NNP O") -> Path:
    """CoNLL-2003 style: word POS chunk tag, a blank line between sentences."""
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for words, tags in sentences:
        lines += [f"{w} {extra} {t}" for w, t in zip(words, tags)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_jsonl(path: Path, records) -> Path:
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8"
    )
    return path


def named(split: TokenSplit, names: list[str]) -> list[list[str]]:
    return [[names[t] for t in tags] for tags in split.tags]


def everything(d) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Every sentence of every split with its tag names, in a stable order."""
    return sorted(
        (tuple(w), tuple(t))
        for s in (d.train, d.validation, d.test)
        for w, t in zip(s.tokens, named(s, d.label_names))
    )


def corpus(n: int = 40) -> list[tuple[list[str], list[str]]]:
    """``n`` distinct sentences: a quarter each PER, LOC, ORG and no entity."""
    kinds = ["PER", "LOC", "ORG", None]
    out = []
    for i in range(n):
        kind = kinds[i % 4]
        words = [f"w{i}", "saw", f"x{i}"]
        out.append((words, ["O", "O", f"B-{kind}"] if kind else ["O", "O", "O"]))
    return out


# -- formats -----------------------------------------------------------------------------------


def test_conll_file_skips_docstart_and_reads_the_last_column(tmp_path):
    path = write_conll(tmp_path / "train.txt", SENTENCES * 3)
    d = load_token_data(str(path), val_size=2, test_size=2, seed=0)
    assert d.label_names == [
        "O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"
    ]  # fmt: skip
    assert d.entity_types == ["LOC", "MISC", "ORG", "PER"] and d.num_labels == 9
    assert d.scheme == "IOB2" and d.report["repaired"] == 0
    assert d.report["format"] == "conll" and d.report["converted_from"] is None
    # 2 asked for each; strata give rounded shares (PER 6, LOC 3, MISC 3: the sentence where
    # ORG and MISC tie counts as MISC, first by name), as split.carve rounds classes.
    assert (len(d.train), len(d.validation), len(d.test)) == (8, 3, 1)
    assert d.report["train"]["read"] == 12 and d.report["train"]["rows"] == 8
    assert d.report["test"]["carved_from_train"] == 1
    assert d.report["test"]["tokens"] == sum(map(len, d.test.tokens))
    assert all("-DOCSTART-" not in words for words in d.train.tokens + d.test.tokens)
    assert sorted(everything(d)) == sorted((tuple(w), tuple(t)) for w, t in SENTENCES * 3)
    i = d.train.tokens.index(["Peter", "Blackburn", "flew"])
    assert named(d.train, d.label_names)[i] == ["B-PER", "I-PER", "O"]
    assert d.train.texts[i] == "Peter Blackburn flew"


def test_conll_folder_keeps_its_train_dev_and_test_files(tmp_path):
    write_conll(tmp_path / "train.txt", SENTENCES[:2])
    write_conll(tmp_path / "dev.txt", SENTENCES[2:3], docstart=False)
    write_conll(tmp_path / "test.txt", SENTENCES[3:])
    (tmp_path / "README.txt").write_text("not data", encoding="utf-8")
    d = load_token_data(str(tmp_path))
    assert d.train.tokens == [SENTENCES[0][0], SENTENCES[1][0]]
    assert d.validation.tokens == [["BRUSSELS", "1996-08-22"]]
    assert named(d.test, d.label_names) == [SENTENCES[3][1]]
    assert d.report["files"]["validation"] == str(tmp_path / "dev.txt")
    assert "carved_from_train" not in d.report["test"] and d.report["test"]["rows"] == 1
    assert d.report["validation"]["entities"] == 1 and d.report["test"]["entities"] == 3


def test_conll_tabs_crlf_and_byte_order_mark(tmp_path):
    text = "\ufeffNew York\tB-LOC\r\nis\tO\r\n\r\nZoë\tB-PER\r\n\r\nA\xa0B\tB-ORG\r\n"
    path = tmp_path / "train.conll"
    path.write_bytes(text.encode("utf-8"))
    d = load_token_data(str(path), seed=1)
    assert everything(d) == [
        (("A\xa0B",), ("B-ORG",)),  # a no-break space stays inside its word
        (("New York", "is"), ("B-LOC", "O")),
        (("Zoë",), ("B-PER",)),
    ]


def test_jsonl_string_tags_with_detected_columns(tmp_path):
    records = [{"id": i, "words": w, "tags": t} for i, (w, t) in enumerate(SENTENCES)]
    path = write_jsonl(tmp_path / "data.jsonl", records * 2)
    d = load_token_data(str(path), val_size=1, test_size=1)
    assert d.report["columns"] == {"tokens": "words", "tags": "tags"}
    assert d.report["format"] == "jsonl"
    assert everything(d) == sorted((tuple(w), tuple(t)) for w, t in SENTENCES * 2)


def test_jsonl_integer_tags_named_by_label_names(tmp_path):
    records = [
        {
            "tokens": ["Ann", "lives", "in", "Rome"],
            "ner_tags": [3, 0, 0, 1],
            "pos_tags": [1, 2, 3, 4],
        },
        {"tokens": ["Bob", "Smith"], "ner_tags": [3, 4], "pos_tags": [1, 1]},
        {"tokens": ["Oslo"], "ner_tags": [1], "pos_tags": [1]},
    ]
    path = write_jsonl(tmp_path / "train.jsonl", records)
    d = load_token_data(str(path), label_names=NAMES)
    assert d.report["columns"] == {"tokens": "tokens", "tags": "ner_tags"}
    assert everything(d) == [
        (("Ann", "lives", "in", "Rome"), ("B-PER", "O", "O", "B-LOC")),
        (("Bob", "Smith"), ("B-PER", "I-PER")),
        (("Oslo",), ("B-LOC",)),
    ]


def test_label_names_keep_types_no_sentence_holds(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"tokens": ["Bob"], "ner_tags": [1]}] * 3)
    d = load_token_data(str(path), label_names=["O", "B-PER", "I-PER", "B-ORG", "I-ORG"])
    assert d.label_names == ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert d.report["entity_counts"] == {"ORG": 0, "PER": 1}


def test_parquet_with_integer_tags(tmp_path):
    df = pd.DataFrame(
        {
            "tokens": [["Ann", "ran"], ["to", "Rome"], ["Bob", "Lee", "sat"]],
            "ner_tags": [[3, 0], [0, 1], [3, 4, 0]],
        }
    )
    df.to_parquet(tmp_path / "train.parquet")
    d = load_token_data(str(tmp_path / "train.parquet"), label_names=NAMES)
    assert d.report["format"] == "parquet"
    assert everything(d) == [
        (("Ann", "ran"), ("B-PER", "O")),
        (("Bob", "Lee", "sat"), ("B-PER", "I-PER", "O")),
        (("to", "Rome"), ("O", "B-LOC")),
    ]


def test_json_array_of_records(tmp_path):
    records = [{"tokens": w, "labels": t} for w, t in SENTENCES]
    (tmp_path / "train.json").write_text(json.dumps(records), encoding="utf-8")
    d = load_token_data(str(tmp_path / "train.json"), val_size=1, test_size=1, seed=3)
    assert d.report["format"] == "json" and d.report["columns"]["tags"] == "labels"
    assert everything(d) == sorted((tuple(w), tuple(t)) for w, t in SENTENCES)


def test_text_and_spans_become_word_tags(tmp_path):
    text = "Zoë Müller visited Zürich."
    records = [
        {"text": text, "entities": [[0, 10, "PER"], [19, 25, "LOC"]]},  # spaCy triples
        {"text": "Ann went to Paris", "entities": [{"start": 0, "end": 3, "label": "PER"}]},
        # Label Studio: a "labels" list; a span ending inside "Parisian"; one on a space.
        {
            "text": "Bob is Parisian",
            "entities": [
                {"start": 0, "end": 3, "labels": ["PER"]},
                {"start": 3, "end": 4, "label": "LOC"},
                {"start": 7, "end": 12, "label": "LOC"},
            ],
        },
        {"text": "", "entities": []},  # no words: dropped
    ]
    path = write_jsonl(tmp_path / "train.jsonl", records)
    d = load_token_data(str(path), seed=0)
    assert everything(d) == [
        (("Ann", "went", "to", "Paris"), ("B-PER", "O", "O", "O")),
        (("Bob", "is", "Parisian"), ("B-PER", "O", "B-LOC")),
        (("Zoë", "Müller", "visited", "Zürich", "."), ("B-PER", "I-PER", "O", "B-LOC", "O")),
    ]
    assert d.report["columns"] == {"text": "text", "spans": "entities"}
    assert d.report["spans"] == 6
    assert d.report["spans_not_on_word_boundaries"] == 1
    assert d.report["spans_without_words"] == 1
    assert d.report["train"]["dropped_empty_text"] == 1


def test_spans_under_a_spans_field_and_a_custom_word_splitter(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"text": "New-York is big", "spans": [[0, 8, "LOC"]]}] * 3
    )

    def on_spaces(text: str) -> list[tuple[str, tuple[int, int]]]:
        out, pos = [], 0
        for w in text.split(" "):
            out.append((w, (pos, pos + len(w))))
            pos += len(w) + 1
        return out

    d = load_token_data(str(path), words=on_spaces, val_size=1, test_size=1)
    assert d.test.tokens == [["New-York", "is", "big"]]
    assert named(d.test, d.label_names) == [["B-LOC", "O", "O"]]
    assert [w for w, _ in split_words("New-York")] == ["New", "-", "York"]


def test_empty_sentences_are_dropped_and_counted(tmp_path):
    records = [{"tokens": [], "tags": []}, {"tokens": ["Ann"], "tags": ["B-PER"]}] * 3
    d = load_token_data(str(write_jsonl(tmp_path / "d.jsonl", records)), val_size=1, test_size=1)
    assert d.report["train"]["read"] == 6 and d.report["train"]["dropped_empty_text"] == 3
    assert len(d.train) + len(d.validation) + len(d.test) == 3


def test_hub_dataset_integer_tags_take_the_class_label_names(monkeypatch):
    """The Hub path, on a DatasetDict built here (the Hub itself is not reachable in tests)."""
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=NAMES)),
        }
    )

    def split(rows):
        return datasets.Dataset.from_dict(
            {"tokens": [r[0] for r in rows], "ner_tags": [r[1] for r in rows]}, features=feats
        )

    ds = datasets.DatasetDict(
        {
            "train": split([(["Ann", "ran"], [3, 0]), (["Rome"], [1])]),
            "validation": split([(["Bob"], [3])]),
            "test": split([(["in", "Paris"], [0, 1])]),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: ds)
    d = load_token_data("someone/ner")
    assert d.report["format"] == "hub" and d.label_names == NAMES
    assert named(d.train, d.label_names) == [["B-PER", "O"], ["B-LOC"]]
    assert d.validation.tokens == [["Bob"]] and d.test.tokens == [["in", "Paris"]]


# -- tag schemes ---------------------------------------------------------------------------------


def test_iob1_is_converted_to_iob2(tmp_path):
    iob1 = [
        (["Ann", "Lee", "met", "Bob"], ["I-PER", "I-PER", "O", "I-PER"]),
        # B- only between two adjacent entities of one type
        (["Rome", "Paris", "Oslo"], ["I-LOC", "B-LOC", "I-LOC"]),
    ]
    d = load_token_data(str(write_conll(tmp_path / "a.conll", iob1 * 2)))
    assert d.scheme == "IOB1" and d.report["converted_from"] == "IOB1"
    assert d.report["repaired"] == 0
    assert everything(d) == [
        (("Ann", "Lee", "met", "Bob"), ("B-PER", "I-PER", "O", "B-PER")),
        (("Ann", "Lee", "met", "Bob"), ("B-PER", "I-PER", "O", "B-PER")),
        (("Rome", "Paris", "Oslo"), ("B-LOC", "B-LOC", "I-LOC")),
        (("Rome", "Paris", "Oslo"), ("B-LOC", "B-LOC", "I-LOC")),
    ]


@pytest.mark.parametrize(
    "tags",
    [
        ["B-PER", "E-PER", "O", "S-LOC", "B-ORG", "I-ORG", "E-ORG"],  # BIOES
        ["B-PER", "L-PER", "O", "U-LOC", "B-ORG", "I-ORG", "L-ORG"],  # BILOU
    ],
)
def test_bioes_and_bilou_are_converted_to_iob2(tmp_path, tags):
    words = ["Ann", "Lee", "in", "Rome", "Acme", "Big", "Corp"]
    d = load_token_data(str(write_conll(tmp_path / "b.iob", [(words, tags)] * 3)))
    assert d.scheme == "BIOES" and d.report["converted_from"] == "BIOES"
    assert d.report["repaired"] == 0
    iob2 = ("B-PER", "I-PER", "O", "B-LOC", "B-ORG", "I-ORG", "I-ORG")
    assert everything(d) == [(tuple(words), iob2)] * 3


def test_invalid_iob2_transitions_are_repaired_as_conlleval_reads_them(tmp_path):
    sentences = [
        (["Ann", "Lee", "in", "New", "York"], ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]),
        (["Rome", "is", "old"], ["I-LOC", "O", "O"]),  # I- opens the sentence
        (["Acme", "Bob"], ["B-ORG", "I-PER"]),  # I- after another type
        (["Bob", "Ann"], ["B-PER", "B-PER"]),
    ]
    d = load_token_data(str(write_conll(tmp_path / "c.bio", sentences)), seed=0)
    assert d.scheme == "IOB2" and d.report["repaired"] == 2
    assert dict(everything(d))[("Rome", "is", "old")] == ("B-LOC", "O", "O")
    assert dict(everything(d))[("Acme", "Bob")] == ("B-ORG", "B-PER")


# -- splits ------------------------------------------------------------------------------------


def test_carving_is_by_sentence_stratified_and_seeded(tmp_path):
    path = write_conll(tmp_path / "train.conll", corpus(40))
    a = load_token_data(str(path), val_size=0.2, test_size=0.2, seed=5)
    b = load_token_data(str(path), val_size=0.2, test_size=0.2, seed=5)
    c = load_token_data(str(path), val_size=0.2, test_size=0.2, seed=6)
    assert (len(a.train), len(a.validation), len(a.test)) == (24, 8, 8)
    assert a.test.tokens == b.test.tokens and a.validation.tokens == b.validation.tokens
    assert a.test.tokens != c.test.tokens
    parts = [set(map(tuple, s.tokens)) for s in (a.train, a.validation, a.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(parts[0] | parts[1] | parts[2]) == 40
    for s in (a.validation, a.test):  # each stratum (three types, no entity) gives 2 of 8
        kinds = [next((n[2:] for n in tags if n != "O"), "") for tags in named(s, a.label_names)]
        assert sorted(kinds) == sorted(["", "LOC", "ORG", "PER"] * 2)
    assert a.report["validation"]["carved_from_train"] == 8
    assert a.report["entity_counts"] == {"LOC": 6, "ORG": 6, "PER": 6}


def test_missing_test_split_is_carved_from_train_only(tmp_path):
    write_conll(tmp_path / "train.txt", corpus(20))
    write_conll(tmp_path / "valid.txt", SENTENCES)
    d = load_token_data(str(tmp_path), test_size=8, seed=1)
    assert len(d.validation) == 4 and len(d.test) == 8 and len(d.train) == 12
    assert d.report["test"]["carved_from_train"] == 8
    assert "carved_from_train" not in d.report["validation"]


# -- detection for --task auto -------------------------------------------------------------------


def test_is_token_data_recognises_token_sources(tmp_path):
    assert is_token_data(str(write_conll(tmp_path / "x.txt", SENTENCES)))
    assert is_token_data(str(write_conll(tmp_path / "x.conll", SENTENCES, docstart=False)))
    folder = tmp_path / "conll"
    folder.mkdir()
    write_conll(folder / "train.txt", SENTENCES)
    assert is_token_data(str(folder))
    words = [{"tokens": w, "ner_tags": t} for w, t in SENTENCES]
    assert is_token_data(str(write_jsonl(tmp_path / "w.jsonl", words)))
    (tmp_path / "w.json").write_text(json.dumps(words), encoding="utf-8")
    assert is_token_data(str(tmp_path / "w.json"))
    spans = [{"text": "Ann ran", "spans": [[0, 3, "PER"]]}]
    assert is_token_data(str(write_jsonl(tmp_path / "s.jsonl", spans)))
    pd.DataFrame(words).to_parquet(tmp_path / "w.parquet")
    assert is_token_data(str(tmp_path / "w.parquet"))


def test_is_token_data_rejects_other_data(tmp_path, csv_file):
    assert not is_token_data(str(csv_file))  # a plain sentiment CSV
    rows = [{"text": "good film", "label": "pos"}, {"text": "dull", "label": "neg"}]
    assert not is_token_data(str(write_jsonl(tmp_path / "sentiment.jsonl", rows)))
    pd.DataFrame(rows).to_parquet(tmp_path / "sentiment.parquet")
    assert not is_token_data(str(tmp_path / "sentiment.parquet"))
    (tmp_path / "prose.txt").write_text("A sentence of prose.\nAnother one.\n", encoding="utf-8")
    assert not is_token_data(str(tmp_path / "prose.txt"))
    folder = tmp_path / "texts"
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "train.csv", index=False)
    assert not is_token_data(str(folder))
    assert not is_token_data(str(tmp_path / "missing.conll"))


# -- bad input: one line naming the file, the place and the fix ----------------------------------


def refused(spec, **kwargs) -> str:
    with pytest.raises(DataError) as e:
        load_token_data(str(spec), **kwargs)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_a_conll_line_without_a_tag_is_refused(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("Ann B-PER\nran\n\nBob B-PER\n", encoding="utf-8")
    msg = refused(path)
    assert f"{path}, line 2" in msg and "no tag" in msg


def test_conll_lines_with_a_missing_column_are_refused(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP\n", encoding="utf-8")
    msg = refused(path)
    assert f"{path}, line 2 has 3 columns but line 1 has 4" in msg


def test_a_record_with_more_words_than_tags_is_refused(tmp_path):
    records = [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["Ann", "ran"], "tags": ["B-PER"]}]
    path = write_jsonl(tmp_path / "train.jsonl", records)
    msg = refused(path)
    assert f"{path}, line 2 has 2 words in tokens but 1 tags in tags" in msg
    (tmp_path / "train.json").write_text(json.dumps(records), encoding="utf-8")
    assert f"{tmp_path / 'train.json'}, record 2 has 2 words" in refused(tmp_path / "train.json")


@pytest.mark.parametrize("tag", ["PERSON", "X-PER", "B-"])
def test_a_tag_outside_the_schemes_is_refused(tmp_path, tag):
    path = write_conll(tmp_path / "train.conll", [(["Ann", "ran"], [tag, "O"])], docstart=True)
    msg = refused(path)
    assert f"tag {tag!r} at {path}, line 3 is not an entity tag" in msg
    rec = write_jsonl(tmp_path / "r.jsonl", [{"tokens": ["Ann", "ran"], "tags": ["O", tag]}])
    assert f"{rec}, line 1 (word 2)" in refused(rec)


def test_integer_tags_without_names_or_outside_them_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"tokens": ["Ann"], "ner_tags": [1]}])
    msg = refused(path)
    assert msg.startswith("integer tags need --label-names") and f"{path}, line 1" in msg
    msg = refused(path, label_names=["O"])
    assert f"tag id 1 at {path}, line 1 (word 1) is outside --label-names" in msg
    assert "--label-names holds 'PER'" in refused(path, label_names=["O", "PER"])


def test_spans_outside_their_text_or_overlapping_are_refused(tmp_path):
    outside = write_jsonl(tmp_path / "a.jsonl", [{"text": "Ann ran", "entities": [[4, 9, "PER"]]}])
    msg = refused(outside)
    assert f"{outside}, line 1: span [4, 9) PER lies outside its text of 7 characters" in msg
    overlap = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"text": "x", "entities": []},
            {"text": "New York City", "entities": [[0, 8, "LOC"], [4, 13, "LOC"]]},
        ],
    )
    msg = refused(overlap)
    assert f"{overlap}, line 2: spans [0, 8) LOC and [4, 13) LOC overlap" in msg
    bad = write_jsonl(tmp_path / "c.jsonl", [{"text": "Ann", "entities": [["0", 3, "PER"]]}])
    assert f"{bad}, line 1: span" in refused(bad)


def test_an_empty_split_is_refused(tmp_path):
    write_conll(tmp_path / "train.txt", SENTENCES)
    (tmp_path / "dev.txt").write_text("-DOCSTART- -X- -X- O\n\n", encoding="utf-8")
    msg = refused(tmp_path)
    assert f"the validation split ({tmp_path / 'dev.txt'}) holds no sentences" in msg
    empty = write_jsonl(tmp_path / "e.jsonl", [{"tokens": [], "tags": []}])
    assert f"({empty}) holds no sentences (1 without words)" in refused(empty)


def test_missing_columns_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"tokens": ["Ann"], "pos_tags": ["NNP"]}])
    msg = refused(path)
    assert f"no tag column (ner_tags/tags/labels/ner) in {path}" in msg and "--label-column" in msg
    assert f"column nope (--text-column) is not in {path}" in refused(path, tokens_column="nope")
    other = write_jsonl(tmp_path / "other.jsonl", [{"sentence": "Ann ran", "label": 1}])
    assert f"no word-list column (tokens/words) and no text with entities/spans in {other}" in (
        refused(other)
    )


def test_undecodable_and_malformed_files_are_refused(tmp_path):
    latin = tmp_path / "train.conll"
    latin.write_bytes("Ann B-PER\nZo\xeb B-PER\n".encode("latin-1"))
    msg = refused(latin)
    assert f"{latin} is not UTF-8 text" in msg and "line 2" in msg and "re-save it as UTF-8" in msg
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"tokens": ["a"], "tags": ["O"]}\n{"tokens": [\n', encoding="utf-8")
    assert f"{broken}, line 2: not valid JSON" in refused(broken)


def test_data_without_entities_or_sentences_to_carve_is_refused(tmp_path):
    path = write_conll(tmp_path / "o.conll", [(["a", "b"], ["O", "O"])] * 3)
    assert f"the training data of {path} holds no entities" in refused(path)
    one = write_conll(tmp_path / "one.conll", [(["Ann"], ["B-PER"])])
    msg = refused(one)
    assert f"cannot carve a test split of 1 sentence(s) from {one}" in msg
    assert "--test-size" in msg


def test_a_missing_path_is_refused(tmp_path):
    assert f"data file {tmp_path / 'none.conll'} does not exist" in refused(tmp_path / "none.conll")
