"""Real-world training and predict inputs: negative labels, classes missing from training,
nested columns, headerless and semicolon CSV, UTF-16 files, many small classes."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from edgetune.data import load_data, load_texts
from edgetune.errors import ConfigError, DataError
from edgetune.runtime import iter_inputs, iter_lines

TEXTS = [f"review number {i} of a film" for i in range(30)]


def csv_of(tmp_path, labels, name="d.csv"):
    path = tmp_path / name
    pd.DataFrame({"text": TEXTS[: len(labels)], "label": labels}).to_csv(path, index=False)
    return str(path)


# -- 1. negative integer labels ----------------------------------------------------------------


def test_minus_one_is_a_class_when_the_labels_say_so(tmp_path):
    d = load_data(csv_of(tmp_path, [-1, 0, 1] * 10), val_size=3, test_size=3)
    assert d.label_names == ["-1", "0", "1"]
    assert d.report["train"]["dropped_missing_label"] == 0
    assert sorted(set(d.train.labels)) == [0, 1, 2]
    d = load_data(csv_of(tmp_path, [-1, 1] * 15, "e.csv"), val_size=2, test_size=2)
    assert d.label_names == ["-1", "1"] and d.num_labels == 2


def test_a_split_all_minus_one_is_unlabelled(tmp_path):
    pd.DataFrame({"text": TEXTS[:20], "label": [0, 1] * 10}).to_csv(
        tmp_path / "train.csv", index=False
    )
    pd.DataFrame({"text": ["t1", "t2", "t3"], "label": [-1] * 3}).to_csv(
        tmp_path / "test.tsv", sep="\t", index=False
    )
    d = load_data(str(tmp_path), test_size=4, val_size=2)
    assert d.label_names == ["0", "1"]
    assert d.report["test"]["dropped_missing_label"] == 3 and len(d.test) == 4
    # Where -1 is a class in training, a test split of -1 only is labelled data.
    pd.DataFrame({"text": TEXTS[:21], "label": [-1, 0, 1] * 7}).to_csv(
        tmp_path / "train.csv", index=False
    )
    d = load_data(str(tmp_path), val_size=3)
    assert d.test.texts == ["t1", "t2", "t3"] and {d.label_names[i] for i in d.test.labels} == {
        "-1"
    }


# -- 2. classes without training rows ----------------------------------------------------------


def test_a_class_only_in_the_test_split_is_refused(tmp_path):
    pd.DataFrame({"text": TEXTS[:20], "label": ["pos", "neg"] * 10}).to_csv(
        tmp_path / "train.csv", index=False
    )
    test = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["pos", "neutral", "neutral", "x"]})
    test.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(DataError) as e:
        load_data(str(tmp_path))
    msg = str(e.value)
    assert "'neutral' (2 test rows)" in msg and "'x' (1 test row)" in msg
    assert "no training rows" in msg and "add training rows" in msg and "drop those rows" in msg
    # A training class missing from the test split is fine.
    test.assign(label="pos").to_csv(tmp_path / "test.csv", index=False)
    assert load_data(str(tmp_path)).label_names == ["neg", "pos"]


# -- 3. nested values --------------------------------------------------------------------------


def test_struct_and_list_columns_are_refused(tmp_path):
    df = pd.DataFrame(
        {
            "text": [{"title": f"t{i}", "body": "b"} for i in range(10)],
            "label": [[0, 1], [1]] * 5,
            "review": TEXTS[:10],
        }
    )
    df.to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"column text of .* holds dict values \(e\.g\. \{'title'"):
        load_data(str(tmp_path / "d.parquet"), text_columns=["text"], label_column="label")
    with pytest.raises(DataError, match="pick a text column with --text-column or flatten it"):
        load_texts(str(tmp_path / "d.parquet"), text_columns=("text",))
    with pytest.raises(DataError, match=r"column label .* holds list values.*--label-column"):
        load_data(str(tmp_path / "d.parquet"), text_columns=["review"], label_column="label")
    (tmp_path / "d.jsonl").write_text(
        "".join(f'{{"text": "t{i}", "label": {{"id": {i % 2}}}}}\n' for i in range(10))
    )
    with pytest.raises(DataError, match="column label .* holds dict values"):
        load_data(str(tmp_path / "d.jsonl"))


# -- 4. headerless CSV/TSV ---------------------------------------------------------------------


@pytest.fixture
def headerless(tmp_path):
    path = tmp_path / "train.tsv"
    rows = ["good movie\t1"] + [f"{t}\t{i % 2}" for i, t in enumerate(TEXTS[:19])]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_headerless_tsv_is_refused_then_read_with_no_header(headerless):
    fix = "pass --no-header (columns are then 0, 1, ...) and --text-column 0 --label-column 1"
    with pytest.raises(DataError, match=r"first row of .*train.tsv looks like data") as e:
        load_data(str(headerless))
    assert "('good movie', '1')" in str(e.value) and fix in str(e.value)
    # Naming columns after the first row does not make it a header either.
    for kw in (
        dict(text_columns=["good movie"], label_column="1"),
        dict(text_columns=["0"], label_column="1"),
    ):
        with pytest.raises(DataError, match="--no-header"):
            load_data(str(headerless), **kw)
    with pytest.raises(DataError, match="--no-header"):
        load_texts(str(headerless), text_columns=("0",))
    for label in ("1", " 1", 1):
        d = load_data(
            str(headerless), header=False, text_columns=["0"], label_column=label, val_size=2
        )
        assert d.text_columns == ("0",) and d.label_column == "1"
        assert len(d.train) + len(d.validation) + len(d.test) == 20
        assert "good movie" in d.train.texts + d.validation.texts + d.test.texts
    assert load_texts(str(headerless), ("0",), header=False)[0] == "good movie"
    # header=True keeps the first row as names, as pandas and datasets do.
    d = load_data(str(headerless), header=True, text_columns=["good movie"], label_column="1")
    assert len(d.train) + len(d.validation) + len(d.test) == 19


def test_a_real_header_with_unknown_names_gets_both_fixes(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"tweet": TEXTS[:20], "mood": ["up", "down"] * 10}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"no text column.*--text-column NAME; or, if the first"):
        load_data(str(path))
    d = load_data(str(path), text_columns=["tweet"], label_column="mood")
    assert d.label_names == ["down", "up"]


def test_header_false_applies_to_folder_csv_but_not_json(tmp_path):
    lines = [f"{t},{'pos' if i % 2 else 'neg'}" for i, t in enumerate(TEXTS[:20])]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "dev.csv").write_text("fine film,pos\nawful,neg\n")
    (tmp_path / "test.jsonl").write_text('{"0": "meh", "1": "neg"}\n')
    d = load_data(str(tmp_path), header=False, text_columns=["0"], label_column="1")
    assert d.validation.texts == ["fine film", "awful"] and d.test.texts == ["meh"]


# -- 5. delimiters -----------------------------------------------------------------------------


@pytest.mark.parametrize("sep", [";", "|", "\t"])
def test_csv_delimiter_is_sniffed(tmp_path, sep):
    texts = [f"good, really{sep} good {i}" for i in range(10)] + [f"bad {i}" for i in range(10)]
    df = pd.DataFrame({"text": texts, "label": ["pos"] * 10 + ["neg"] * 10})
    path = tmp_path / "d.csv"
    df.to_csv(path, sep=sep, index=False, quoting=csv.QUOTE_ALL)
    assert f'"good, really{sep} good 0"{sep}"pos"' in path.read_text()
    d = load_data(str(path), val_size=2, test_size=2)
    assert d.text_columns == ("text",) and d.label_names == ["neg", "pos"]
    assert sorted(d.train.texts + d.validation.texts + d.test.texts) == sorted(texts)
    (tmp_path / "p.csv").write_text(path.read_text().replace("text", "review"))
    items = list(iter_inputs(str(tmp_path / "p.csv")))
    assert [it.text for it in items] == texts


def test_one_column_with_semicolons_in_most_lines_says_so(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text;label\n" + "".join(f"a;b;{i}\n" if i % 2 else "c;d\n" for i in range(9)))
    with pytest.raises(DataError, match="reads as one column, yet most of its lines hold ';'"):
        load_data(str(path))


# -- 6. UTF-16 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "json"])
@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_utf16_training_files_are_decoded(tmp_path, suffix, codec):
    df = pd.DataFrame({"text": ["café crème"] + TEXTS[:19], "label": ["a", "b"] * 10})
    text = {
        "csv": df.to_csv(index=False),
        "tsv": df.to_csv(sep="\t", index=False),
        "jsonl": df.to_json(orient="records", lines=True, force_ascii=False),
        "json": df.to_json(orient="records", force_ascii=False),
    }[suffix]
    path = tmp_path / f"d.{suffix}"
    bom = b"\xfe\xff" if codec == "utf-16-be" else b""  # "utf-16" writes its own
    path.write_bytes(bom + text.encode(codec))
    d = load_data(str(path), val_size=2, test_size=2)
    assert d.text_columns == ("text",) and d.label_names == ["a", "b"]
    assert sorted(d.train.texts + d.validation.texts + d.test.texts) == sorted(df["text"])


def test_utf16_predict_inputs_have_no_extra_rows(tmp_path):
    texts = ["café crème", "dull", "fine"]
    files = {
        "in.txt": "\r\n".join(texts) + "\r\n",
        "in.csv": "id,review\r\n" + "".join(f"{i},{t}\r\n" for i, t in enumerate(texts)),
        "in.jsonl": "".join(f'{{"text": "{t}"}}\n' for t in texts),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content.encode("utf-16"))
        items = list(iter_inputs(str(tmp_path / name)))
        assert [(it.text, it.warning, it.error) for it in items] == [(t, None, None) for t in texts]
    # stdin may be any binary stream, peekable or not
    items = list(iter_lines(io.BytesIO(files["in.txt"].encode("utf-16"))))
    assert [it.text for it in items] == texts
    items = list(iter_lines(io.BytesIO(b"ok\nbad \xff here\n")))
    assert items[0].warning is None and "invalid UTF-8" in (items[1].warning or "")


def test_predict_input_header_and_positional_columns(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("a delightful comedy,5\ndull,1\nfine,3\n")
    with pytest.raises(ConfigError, match=r"looks like data.*--no-header.*--text-column 0"):
        list(iter_inputs(str(path), "0"))
    items = list(iter_inputs(str(path), "0", header=False))
    assert [it.text for it in items] == ["a delightful comedy", "dull", "fine"]
    assert [it.text for it in iter_inputs(str(path), "a delightful comedy")] == ["dull", "fine"]


# -- 7. carving many small classes -------------------------------------------------------------


def many_classes(tmp_path, per_class):
    n = 200
    labels = [f"c{i:03d}" for i in range(n) for _ in range(per_class)]
    texts = [f"text {j} of {lab}" for j, lab in enumerate(labels)]
    path = tmp_path / f"many{per_class}.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("per_class", [2, 3])
def test_many_small_classes_still_carve(tmp_path, per_class):
    d = load_data(many_classes(tmp_path, per_class), seed=0)
    n = 200 * per_class
    assert len(d.test) == round(0.1 * n) and len(d.validation) == round(0.1 * n)
    assert set(d.train.labels) == set(range(200))  # every class keeps a training row
    a, b = (load_data(many_classes(tmp_path, per_class), seed=s).test.texts for s in (1, 1))
    assert a == b


def test_single_row_classes_name_the_real_reason(tmp_path):
    with pytest.raises(DataError) as e:
        load_data(many_classes(tmp_path, 1))
    msg = str(e.value)
    assert "each of its 200 classes has a single training row" in msg
    assert "provide a test file" in msg and "too few rows" not in msg


def test_carving_keeps_the_old_splits_where_shares_add_up(tmp_path):
    """Runs trained before re-load their held-out test split with the same seed."""
    labels = ["p", "n"] * 15
    d = load_data(csv_of(tmp_path, labels), val_size=0.2, test_size=0.2, seed=5)

    def old_carve(idx, count, rng):  # the earlier per-class rounding
        take = []
        for c in sorted(set(labels)):
            mine = np.array([i for i in idx if labels[i] == c])
            rng.shuffle(mine)
            take += mine[: round(count / len(idx) * len(mine))].tolist()
        return [i for i in idx if i not in take], sorted(take)

    rng = np.random.default_rng(5)
    train, test = old_carve(list(range(30)), 6, rng)
    train, val = old_carve(train, 6, rng)
    assert d.test.texts == [TEXTS[i] for i in test]
    assert d.validation.texts == [TEXTS[i] for i in val]
