from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from edgetune.data import load_data
from edgetune.errors import DataError


def write(df: pd.DataFrame, path, fmt: str):
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "tsv":
        df.to_csv(path, sep="\t", index=False)
    elif fmt == "json":
        df.to_json(path, orient="records")
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True)
    elif fmt == "parquet":
        df.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_each_file_format_reads_the_same_rows(sentiment, tmp_path, fmt):
    path = write(sentiment, tmp_path / f"data.{fmt}", fmt)
    d = load_data(str(path), val_size=0.25, test_size=0.25, seed=1)
    assert d.label_names == ["negative", "positive"]
    total = len(d.train) + len(d.validation) + len(d.test)
    assert total == 47  # 48 rows, one exact duplicate
    assert d.report["train"]["dropped_duplicates"] == 1
    assert set(d.test.texts) <= set(sentiment["text"])


def test_folder_with_all_splits_keeps_them(sentiment, tmp_path):
    write(sentiment.iloc[:30], tmp_path / "train.csv", "csv")
    write(sentiment.iloc[30:40], tmp_path / "dev.jsonl", "jsonl")
    write(sentiment.iloc[40:], tmp_path / "test.parquet", "parquet")
    d = load_data(str(tmp_path))
    assert len(d.validation) == 10 and len(d.test) == 8
    assert d.validation.texts == [t.strip() for t in sentiment["text"].iloc[30:40]]
    assert "carved_from_train" not in d.report["test"]


def test_missing_test_split_is_carved_stratified_and_reproducible(sentiment, tmp_path):
    write(sentiment.iloc[:40], tmp_path / "train.csv", "csv")
    write(sentiment.iloc[40:], tmp_path / "validation.csv", "csv")
    a = load_data(str(tmp_path), test_size=0.5, seed=3)
    b = load_data(str(tmp_path), test_size=0.5, seed=3)
    c = load_data(str(tmp_path), test_size=0.5, seed=4)
    assert a.test.texts == b.test.texts and a.test.texts != c.test.texts
    assert a.report["test"]["carved_from_train"] == len(a.test)
    assert not set(a.test.texts) & set(a.train.texts)
    # Stratified: each class contributes half of its rows.
    train_counts = np.bincount(a.train.labels + a.test.labels)
    test_counts = np.bincount(a.test.labels)
    assert np.all(np.abs(test_counts - train_counts / 2) <= 1)


def test_absolute_split_sizes(sentiment, tmp_path):
    path = write(sentiment, tmp_path / "d.csv", "csv")
    d = load_data(str(path), val_size=6, test_size=10)
    assert len(d.test) == 10 and len(d.validation) == 6


@pytest.mark.parametrize(
    "text,label",
    [("sentence", "labels"), ("review", "class"), ("content", "target"), ("Text", "Label")],
)
def test_common_column_names_are_detected(sentiment, tmp_path, text, label):
    df = sentiment.rename(columns={"text": text, "label": label}).assign(id=range(len(sentiment)))
    d = load_data(str(write(df, tmp_path / "d.csv", "csv")))
    assert d.text_columns == (text,) and d.label_column == label


def test_sentence_pairs_detected_and_explicit(tmp_path):
    df = pd.DataFrame(
        {
            "premise": [f"a man plays {i}" for i in range(20)],
            "hypothesis": [f"someone plays {i}" for i in range(20)],
            "label": ["entailment", "contradiction"] * 10,
        }
    )
    path = write(df, tmp_path / "nli.csv", "csv")
    d = load_data(str(path))
    assert d.text_columns == ("premise", "hypothesis")
    assert d.train.pairs is not None and len(d.train.pairs) == len(d.train.texts)
    e = load_data(str(path), text_columns=["hypothesis", "premise"])
    assert e.text_columns == ("hypothesis", "premise")
    assert e.train.texts[0].startswith("someone")


def test_integer_and_string_labels(tmp_path):
    df = pd.DataFrame({"text": [f"row {i}" for i in range(30)], "stars": [1, 3, 5] * 10})
    d = load_data(str(write(df, tmp_path / "d.csv", "csv")), label_column="stars")
    assert d.label_names == ["1", "3", "5"]
    assert sorted(set(d.train.labels)) == [0, 1, 2]
    # Floats from a column with gaps are still integer labels.
    df.loc[0, "stars"] = None
    d = load_data(str(write(df, tmp_path / "e.csv", "csv")), label_column="stars")
    assert d.label_names == ["1", "3", "5"]
    assert d.report["train"]["dropped_missing_label"] == 1


def test_cleaning_counts_every_drop(tmp_path):
    rows = [
        ("  good film  ", "pos"),
        ("good film", "pos"),
        ("", "neg"),
        ("   ", "neg"),
        ("bad film", None),
        ("bad film", "neg"),
        ("fine", "pos"),
        ("awful", "neg"),
    ] + [(f"extra {i}", "pos" if i % 2 else "neg") for i in range(12)]
    df = pd.DataFrame(rows, columns=["text", "label"])
    d = load_data(str(write(df, tmp_path / "d.jsonl", "jsonl")), val_size=2, test_size=2)
    r = d.report["train"]
    assert (
        r["read"],
        r["dropped_empty_text"],
        r["dropped_missing_label"],
        r["dropped_duplicates"],
    ) == (20, 2, 1, 1)
    all_texts = d.train.texts + d.validation.texts + d.test.texts
    assert "good film" in all_texts and "  good film  " not in all_texts
    assert len(all_texts) == 16


def test_hub_dataset_conversion_uses_class_names(monkeypatch):
    import datasets

    feats = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["negative", "positive"]),
        }
    )
    texts = [f"text number {i}" for i in range(20)]
    ds = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"sentence": texts, "label": [0, 1] * 10}, features=feats
            ),
            "validation": datasets.Dataset.from_dict(
                {"sentence": ["v1", "v2"], "label": [0, 1]}, features=feats
            ),
            # GLUE-style unlabelled test split (-1): carved from train instead.
            "test": datasets.Dataset.from_dict(
                {"sentence": ["t1", "t2"], "label": [-1, -1]},
                features=datasets.Features(
                    {"sentence": datasets.Value("string"), "label": datasets.Value("int64")}
                ),
            ),
        }
    )
    seen = {}

    def fake_load(name, config=None):
        seen["args"] = (name, config)
        return ds

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    d = load_data("someorg/sst:default", test_size=4)
    assert seen["args"] == ("someorg/sst", "default")
    assert d.label_names == ["negative", "positive"]
    assert d.validation.texts == ["v1", "v2"]
    assert len(d.test) == 4 and d.report["test"]["dropped_missing_label"] == 2


def test_unknown_hub_dataset_is_a_data_error():
    with pytest.raises(DataError, match="cannot load Hugging Face dataset"):
        load_data("no-such-org/no-such-dataset")


@pytest.mark.parametrize(
    "content,suffix,match",
    [
        (b"PAR1 not really parquet", ".parquet", "cannot read"),
        (b'{"text": "a", "label": ', ".json", "cannot read"),
        (b"\xff\xfe\x00bad", ".csv", "not UTF-8"),
        (b"", ".csv", "cannot read|no rows"),
        (b"text,label\n", ".csv", "no rows"),
        (b"a,b", ".xlsx", "does not exist|unsupported"),
    ],
)
def test_malformed_files_are_data_errors(tmp_path, content, suffix, match):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        load_data(str(path))


def test_missing_file_and_folder_without_train(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(str(tmp_path / "nope.csv"))
    (tmp_path / "test.csv").write_text("text,label\na,1\n")
    with pytest.raises(DataError, match="no train file"):
        load_data(str(tmp_path))


def test_column_errors(tmp_path, sentiment):
    amb = sentiment.assign(review=sentiment["text"])
    with pytest.raises(DataError, match="ambiguous text column.*--text-column"):
        load_data(str(write(amb, tmp_path / "a.csv", "csv")))
    nolabel = sentiment.rename(columns={"label": "verdict"})
    with pytest.raises(DataError, match="no label column.*--label-column"):
        load_data(str(write(nolabel, tmp_path / "b.csv", "csv")))
    with pytest.raises(DataError, match="text column\\(s\\) body not in"):
        load_data(str(write(sentiment, tmp_path / "c.csv", "csv")), text_columns=["body"])
    notext = sentiment.rename(columns={"text": "words"}).assign(more="x")
    with pytest.raises(DataError, match="no text column"):
        load_data(str(write(notext, tmp_path / "d.csv", "csv")))


def test_one_class_and_nothing_left(tmp_path):
    one = pd.DataFrame({"text": [f"t{i}" for i in range(20)], "label": ["pos"] * 20})
    with pytest.raises(DataError, match="one class only"):
        load_data(str(write(one, tmp_path / "one.csv", "csv")))
    empty = pd.DataFrame({"text": ["  "] * 5 + ["x"], "label": ["a"] * 5 + [None]})
    with pytest.raises(DataError, match="no training rows left after cleaning"):
        load_data(str(write(empty, tmp_path / "empty.csv", "csv")))


def test_glue_style_tsv_keeps_quotes(tmp_path):
    path = tmp_path / "train.tsv"
    lines = ["sentence\tlabel"] + [
        f'he said " great {i} \t1' if i % 2 else f"bad {i}\t0" for i in range(20)
    ]
    path.write_text("\n".join(lines) + "\n")
    d = load_data(str(path), val_size=2, test_size=2)
    assert any('"' in t for t in d.train.texts + d.test.texts + d.validation.texts)
    assert len(d.train) + len(d.validation) + len(d.test) == 20
    json.dumps(d.report)  # the report is JSON-serialisable


def test_byte_order_mark_does_not_hide_the_header(tmp_path, sentiment):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + sentiment.to_csv(index=False).encode())
    assert load_data(str(path)).text_columns == ("text",)
