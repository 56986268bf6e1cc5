"""Reading multi-label data: label lists, delimited labels, 0/1 columns, the Hub, carving,
detection for --task auto, and one-line errors that name the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgetune.data.multilabel import (
    MultiLabelSplit,
    is_multilabel_data,
    load_multilabel_data,
)
from edgetune.errors import DataError

ASSETS = Path(__file__).parent / "assets"
TOPICS = ["politics", "sports", "tech"]

# Twelve texts and their topics; two hold none.
ROWS = [
    ("the match went to extra time", ["sports"]),
    ("parliament passed the budget", ["politics"]),
    ("a new phone chip is out", ["tech"]),
    ("the minister opened the stadium", ["politics", "sports"]),
    ("clubs use data to pick players", ["sports", "tech"]),
    ("an app tracks election results", ["politics", "tech"]),
    ("nice weather today", []),
    ("the striker scored twice", ["sports"]),
    ("senate debates the chip subsidy", ["politics", "tech"]),
    ("open source tools for coaches", ["sports", "tech"]),
    ("what a lovely cake", []),
    ("voters queue at dawn", ["politics"]),
]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, rows, sep: str = ",", labels: str = "labels") -> Path:
    df = pd.DataFrame({"text": [t for t, _ in rows], labels: [sep.join(ls) for _, ls in rows]})
    df.to_csv(path, index=False)
    return path


def named(split: MultiLabelSplit, names: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    return [(t, tuple(names[i] for i in ids)) for t, ids in zip(split.texts, split.labels)]


def everything(d) -> list[tuple[str, tuple[str, ...]]]:
    """Every row of every split with its label names, in a stable order."""
    return sorted(row for s in (d.train, d.validation, d.test) for row in named(s, d.label_names))


EXPECTED = sorted((t, tuple(ls)) for t, ls in ROWS)


def corpus(n: int = 60) -> list[tuple[str, list[str]]]:
    """``n`` distinct texts: topic sets cycling through singles, pairs and none; "rare" in 3."""
    sets = [["a"], ["b"], ["a", "b"], ["c"], ["b", "c"], []]
    out = [(f"text number {i}", sets[i % len(sets)]) for i in range(n)]
    for i in (5, 25, 45):  # the rare label rides on rows that hold other labels too
        out[i] = (out[i][0], sorted({*out[i][1], "rare", "a"}))
    return out


# -- shapes ------------------------------------------------------------------------------------


def test_jsonl_lists_keep_given_splits_and_count_texts_without_labels(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": t, "labels": ls} for t, ls in ROWS[:8]])
    write_jsonl(tmp_path / "dev.jsonl", [{"text": t, "labels": ls} for t, ls in ROWS[8:10]])
    write_jsonl(tmp_path / "test.jsonl", [{"text": t, "labels": ls} for t, ls in ROWS[10:]])
    d = load_multilabel_data(str(tmp_path))
    assert d.label_names == TOPICS and d.num_labels == 3
    assert d.text_columns == ("text",) and d.label_columns == ("labels",)
    assert named(d.train, TOPICS) == [(t, tuple(ls)) for t, ls in ROWS[:8]]
    assert d.train.labels[3] == [0, 1] and d.train.labels[6] == []
    assert d.validation.texts == [ROWS[8][0], ROWS[9][0]]
    assert named(d.test, TOPICS) == [
        ("what a lovely cake", ()),
        ("voters queue at dawn", ("politics",)),
    ]
    r = d.report
    assert r["format"] == "lists" and r["columns"] == {"text": ["text"], "labels": ["labels"]}
    assert r["train"] == {
        "read": 8, "dropped_empty_text": 0, "dropped_duplicates": 0, "rows": 8, "no_label": 1
    }  # fmt: skip
    assert r["test"]["no_label"] == 1 and r["validation"]["no_label"] == 0
    assert r["files"]["validation"] == str(tmp_path / "dev.jsonl")
    assert r["label_counts"] == {"politics": 3, "sports": 4, "tech": 3}
    np.testing.assert_array_equal(
        d.test.targets(3), np.array([[0, 0, 0], [1, 0, 0]], dtype=np.float32)
    )
    assert d.test.targets(3).dtype == np.float32


def test_parquet_lists_of_integer_ids_take_the_given_names(tmp_path):
    ids = [[TOPICS.index(x) for x in ls] for _, ls in ROWS]
    pd.DataFrame({"sentence": [t for t, _ in ROWS], "labels": ids}).to_parquet(
        tmp_path / "d.parquet"
    )
    d = load_multilabel_data(
        str(tmp_path / "d.parquet"), label_names=TOPICS, val_size=2, test_size=2, seed=0
    )
    assert d.label_names == TOPICS and d.report["format"] == "lists"
    assert everything(d) == EXPECTED
    assert (len(d.train), len(d.validation), len(d.test)) == (8, 2, 2)


def test_csv_delimited_strings_with_names_in_the_given_order(tmp_path):
    path = write_csv(tmp_path / "d.csv", [(t, ls[::-1]) for t, ls in ROWS], sep="|")
    names = ["tech", "sports", "politics"]
    d = load_multilabel_data(str(path), label_names=names, label_sep="|", seed=3)
    assert d.label_names == names and d.report["format"] == "delimited"
    assert everything(d) == sorted((t, tuple(sorted(ls, key=names.index))) for t, ls in ROWS)
    assert all(ids == sorted(ids) for s in (d.train, d.validation, d.test) for ids in s.labels)


def test_csv_delimited_strings_name_the_labels_in_sorted_order(tmp_path):
    rows = [(t, [x.upper() for x in ls]) for t, ls in ROWS]
    path = write_csv(tmp_path / "d.csv", [(t, [f" {x} " for x in ls]) for t, ls in rows])
    d = load_multilabel_data(str(path), seed=1)
    assert d.label_names == ["POLITICS", "SPORTS", "TECH"]
    assert everything(d) == sorted((t, tuple(ls)) for t, ls in rows)


def test_goemotions_headerless_tsv_with_ids_and_a_labels_file(tmp_path):
    names = ["admiration", "amusement", "anger", "neutral"]
    (tmp_path / "emotions.txt").write_text("\n".join(names) + "\n\n", encoding="utf-8")
    lines = [
        "My favourite food is anything I didn't have to cook myself.\t3\teebbqej",
        'Now if he does off himself, everyone will think he\'s having a "laugh"\t1,3\ted00q6i',
        "WHY THE FUCK IS BAYLESS ISOING\t2\teezlygj",
        "To make her feel threatened\t0,2\ted7ypvh",
    ]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("Dirty Southern Wankers\t2\ted0bdzj\n", encoding="utf-8")
    (tmp_path / "test.tsv").write_text("I'm not sure\t3,0\teefx57y\n", encoding="utf-8")
    d = load_multilabel_data(
        str(tmp_path),
        text_columns=("0",),
        label_columns=(1,),  # a column number, as in load_data
        label_names=(str(tmp_path / "emotions.txt"),),
        header=False,
    )
    assert d.label_names == names and d.text_columns == ("0",) and d.label_columns == ("1",)
    assert d.train.labels == [[3], [1, 3], [2], [0, 2]]
    assert (
        d.train.texts[1] == 'Now if he does off himself, everyone will think he\'s having a "laugh"'
    )
    assert named(d.validation, names) == [("Dirty Southern Wankers", ("anger",))]
    assert d.test.labels == [[0, 3]]
    assert d.report["format"] == "delimited"
    assert d.report["label_counts"] == {"admiration": 1, "amusement": 1, "anger": 2, "neutral": 2}
    # without --no-header the first row is taken for a header: the message says so
    with pytest.raises(DataError) as e:
        load_multilabel_data(str(tmp_path / "train.tsv"), label_names=names)
    assert str(e.value) == (
        f"no text column found in {tmp_path / 'train.tsv'} (columns: {lines[0].split(chr(9))[0]}, "
        "3, eebbqej); pass --text-column NAME; or, if the first row of "
        f"{tmp_path / 'train.tsv'} is data, not a header (its column '3' reads like label "
        "ids), pass --no-header (columns are then 0, 1, ...)"
    )


def test_csv_cells_holding_written_lists(tmp_path):
    cells = [json.dumps(ls) if i % 2 else repr(ls) for i, (_, ls) in enumerate(ROWS)]
    pd.DataFrame({"text": [t for t, _ in ROWS], "label": cells}).to_csv(
        tmp_path / "d.csv", index=False
    )
    assert cells[:2] == ["['sports']", '["politics"]']
    d = load_multilabel_data(str(tmp_path / "d.csv"))
    assert d.report["format"] == "lists" and everything(d) == EXPECTED


def test_integer_ids_without_names_are_named_by_number(tmp_path):
    rows = [(f"t{i}", [str(i % 3), str((i + 1) % 3 * 10)]) for i in range(9)]
    d = load_multilabel_data(str(write_csv(tmp_path / "d.csv", rows)), val_size=1, test_size=1)
    assert d.label_names == ["0", "1", "2", "10", "20"]  # numeric order
    assert sorted((t, tuple(ls)) for t, ls in everything(d)) == sorted(
        (t, tuple(sorted(ls, key=int))) for t, ls in rows
    )


def test_indicator_columns_named_one_by_one_or_by_a_pattern(tmp_path):
    df = pd.DataFrame(
        {
            "text": [t for t, _ in ROWS],
            "label_tech": [int("tech" in ls) for _, ls in ROWS],
            "label_politics": [bool("politics" in ls) for _, ls in ROWS],
            "label_sports": ["1" if "sports" in ls else "0" for _, ls in ROWS],
            "id": range(len(ROWS)),
        }
    )
    df.to_csv(tmp_path / "d.csv", index=False)
    given = ("label_politics", "label_sports", "label_tech")
    d = load_multilabel_data(str(tmp_path / "d.csv"), label_columns=given)
    assert d.label_names == list(given) and d.label_columns == given
    assert d.report["format"] == "indicator columns"
    strip = sorted((t, tuple(n[6:] for n in ls)) for t, ls in everything(d))
    assert strip == EXPECTED
    d2 = load_multilabel_data(str(tmp_path / "d.csv"), label_columns=("label_*",))
    # the pattern takes the columns in the file's order
    assert d2.label_columns == ("label_tech", "label_politics", "label_sports")
    assert d2.label_names == ["label_tech", "label_politics", "label_sports"]
    assert sorted((t, tuple(sorted(n[6:] for n in ls))) for t, ls in everything(d2)) == EXPECTED
    d3 = load_multilabel_data(
        str(tmp_path / "d.csv"), label_columns=("label_*",), label_names=["T", "P", "S"]
    )
    assert d3.label_names == ["T", "P", "S"]
    assert sum(int(s.targets(3)[:, 0].sum()) for s in (d3.train, d3.validation, d3.test)) == 5
    assert d3.report["label_counts"]["T"] == int(d3.train.targets(3)[:, 0].sum())


def test_hub_dataset_sequence_of_class_labels(monkeypatch):
    """The Hub path, on a DatasetDict built here (the Hub itself is not reachable in tests)."""
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features(
        {
            "text": datasets.Value("string"),
            "labels": datasets.Sequence(datasets.ClassLabel(names=TOPICS)),
        }
    )

    def split(rows):
        return datasets.Dataset.from_dict(
            {
                "text": [t for t, _ in rows],
                "labels": [[TOPICS.index(x) for x in ls] for _, ls in rows],
            },
            features=feats,
        )

    ds = datasets.DatasetDict(
        {"train": split(ROWS[:8]), "validation": split(ROWS[8:10]), "test": split(ROWS[10:])}
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: ds)
    d = load_multilabel_data("someone/topics")
    assert d.label_names == TOPICS and d.report["format"] == "lists"
    assert named(d.train, TOPICS) == [(t, tuple(ls)) for t, ls in ROWS[:8]]
    assert d.validation.texts == [ROWS[8][0], ROWS[9][0]] and d.test.labels == [[], [0]]
    assert d.report["files"]["train"] == "someone/topics (split train)"


def test_sentence_pairs_empty_texts_and_duplicates_are_dropped_and_counted(tmp_path):
    records = [
        {"premise": "a cat", "hypothesis": "an animal", "labels": ["x", "y"]},
        {"premise": "a cat", "hypothesis": "an animal", "labels": ["y", "x", "x"]},  # same
        {"premise": "a cat", "hypothesis": "an animal", "labels": ["x"]},  # other labels
        {"premise": " ", "hypothesis": "empty", "labels": ["x"]},
        {"premise": "a dog", "hypothesis": None, "labels": ["y"]},
        {"premise": "a fox", "hypothesis": "wild", "labels": []},
        {"premise": "a cow", "hypothesis": "farm", "labels": ["y"]},
    ]
    path = write_jsonl(tmp_path / "train.jsonl", records)
    write_jsonl(tmp_path / "test.jsonl", [{"premise": "p", "hypothesis": "h", "labels": ["x"]}])
    write_jsonl(tmp_path / "val.jsonl", [{"premise": "", "hypothesis": "h", "labels": ["x"]}])
    d = load_multilabel_data(str(path.parent), val_size=1)
    assert d.text_columns == ("premise", "hypothesis")
    r = d.report
    assert r["train"]["read"] == 7 and r["train"]["dropped_empty_text"] == 2
    assert r["train"]["dropped_duplicates"] == 1
    assert r["validation"]["note"] == "empty after cleaning; carved from train instead"
    assert r["validation"]["carved_from_train"] == 1
    assert len(d.train) + len(d.validation) == 4
    rows = sorted(
        (a, b, tuple(ls))
        for s in (d.train, d.validation)
        for a, b, ls in zip(s.texts, s.pairs or [], s.labels)
    )
    assert rows == [
        ("a cat", "an animal", (0,)),
        ("a cat", "an animal", (0, 1)),
        ("a cow", "farm", (1,)),
        ("a fox", "wild", ()),
    ]
    assert d.test.pairs == ["h"]


def test_subset_and_targets():
    s = MultiLabelSplit(["a", "b", "c"], [[0, 2], [], [1]], ["x", "y", "z"])
    sub = s.subset(np.array([2, 0]))
    assert sub == MultiLabelSplit(["c", "a"], [[1], [0, 2]], ["z", "x"]) and len(sub) == 2
    np.testing.assert_array_equal(
        s.targets(3), np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=np.float32)
    )


# -- carving -----------------------------------------------------------------------------------


def test_carving_is_disjoint_seeded_and_keeps_every_label_in_train(tmp_path):
    rows = corpus()
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": t, "labels": ls} for t, ls in rows])
    d = load_multilabel_data(str(path), val_size=0.2, test_size=0.2, seed=7)
    splits = (d.train, d.validation, d.test)
    # 12 asked for each; each stratum (rarest label) gives its rounded share, as split.carve
    # rounds classes: "rare" (3 rows) gives one to each split.
    assert [len(s) for s in splits] == [34, 13, 13]
    texts = [set(s.texts) for s in splits]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert everything(d) == sorted((t, tuple(ls)) for t, ls in rows)
    assert {i for ids in d.train.labels for i in ids} == set(range(d.num_labels))
    assert d.label_names == ["a", "b", "c", "rare"]
    assert d.report["test"] == {"carved_from_train": 13, "rows": 13, "no_label": 2}
    assert d.report["label_counts"]["rare"] == 1
    # the texts without labels are a stratum: each split holds its share of the 9
    assert [d.report[n]["no_label"] for n in ("train", "validation", "test")] == [5, 2, 2]
    again = load_multilabel_data(str(path), val_size=0.2, test_size=0.2, seed=7)
    assert again.train == d.train and again.test == d.test
    other = load_multilabel_data(str(path), val_size=0.2, test_size=0.2, seed=8)
    assert other.test.texts != d.test.texts


def test_carving_gives_back_a_row_whose_label_would_leave_training(tmp_path):
    # "z" rides only on rows whose rarest label is "y": carving by stratum may take them all.
    rows = [(f"t{i}", ["x"]) for i in range(6)]
    rows += [("u1", ["y", "z"]), ("u2", ["y", "z"]), ("u3", ["y"]), ("u4", ["y"])]
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": t, "labels": ls} for t, ls in rows])
    for seed in range(10):
        d = load_multilabel_data(str(path), val_size=2, test_size=2, seed=seed)
        assert {i for ids in d.train.labels for i in ids} == {0, 1, 2}
        assert everything(d) == sorted((t, tuple(ls)) for t, ls in rows)


# -- detection ---------------------------------------------------------------------------------


def test_detection(tmp_path, monkeypatch):
    lists = write_jsonl(tmp_path / "l.jsonl", [{"text": t, "labels": ls} for t, ls in ROWS])
    assert is_multilabel_data(str(lists))
    pd.DataFrame({"text": ["a"], "labels": [["x", "y"]]}).to_parquet(tmp_path / "p.parquet")
    assert is_multilabel_data(str(tmp_path / "p.parquet"))
    assert is_multilabel_data(str(write_csv(tmp_path / "d.csv", ROWS)))
    assert is_multilabel_data(str(write_csv(tmp_path / "p.csv", ROWS, sep="|")), label_sep="|")
    assert not is_multilabel_data(str(tmp_path / "p.csv"))  # "|" is not the separator asked
    assert not is_multilabel_data(str(ASSETS / "sentiment.csv"))
    assert is_multilabel_data(str(ASSETS / "sentiment.csv"), label_columns=("a", "b"))
    assert is_multilabel_data(str(ASSETS / "sentiment.csv"), label_columns=("label_*",))
    json_text = pd.DataFrame({"text": ["a", "b"], "topics": ['["x", "y"]', "[]"]})
    json_text.to_csv(tmp_path / "j.csv", index=False)
    assert is_multilabel_data(str(tmp_path / "j.csv"), label_columns=("topics",))
    for label in ("great film, loved the ending and the cast", "bad. awful, dull"):
        pd.DataFrame({"text": ["a", "b"], "label": [label, "x"]}).to_csv(
            tmp_path / "s.csv", index=False
        )
        assert not is_multilabel_data(str(tmp_path / "s.csv"))  # sentences are no labels
    (tmp_path / "g.tsv").write_text("so happy\t0,27\tid1\nmeh\t5\tid2\n", encoding="utf-8")
    assert not is_multilabel_data(str(tmp_path / "g.tsv"))  # no column named as labels
    assert is_multilabel_data(str(tmp_path / "g.tsv"), label_columns=("1",))
    folder = tmp_path / "f"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"text": "a", "labels": ["x"]}])
    assert is_multilabel_data(str(folder))
    assert not is_multilabel_data(str(tmp_path / "missing.csv"))
    assert not is_multilabel_data("someone/unreachable")  # offline: not taken for multi-label


def test_detection_of_a_hub_dataset_reads_its_features_only(monkeypatch):
    datasets = pytest.importorskip("datasets")
    features = {
        "text": datasets.Value("string"),
        "labels": datasets.Sequence(datasets.ClassLabel(names=TOPICS)),
        "label": datasets.ClassLabel(names=TOPICS),
    }

    class Builder:
        info = datasets.DatasetInfo(features=datasets.Features(features))

    monkeypatch.setattr(datasets, "load_dataset_builder", lambda name, config=None: Builder())
    assert is_multilabel_data("someone/topics", label_columns=("labels",))
    assert not is_multilabel_data("someone/topics", label_columns=("label",))
    assert not is_multilabel_data("someone/topics")  # "label" and "labels": ambiguous


# -- refusals ----------------------------------------------------------------------------------


def refused(tmp_path, records, match, name="train.jsonl", **kwargs):
    path = write_jsonl(tmp_path / name, records)
    with pytest.raises(DataError, match=match) as e:
        load_multilabel_data(str(path), **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_label_met_only_outside_training_is_refused(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": t, "labels": ls} for t, ls in ROWS])
    write_jsonl(tmp_path / "dev.jsonl", [{"text": "x", "labels": ["sports"]}])
    test = [{"text": "a", "labels": ["tech"]}, {"text": "b", "labels": ["tech", "science"]}]
    write_jsonl(tmp_path / "test.jsonl", test)
    with pytest.raises(DataError, match="no training rows") as e:
        load_multilabel_data(str(tmp_path))
    msg = str(e.value)
    assert "label 'science' (" in msg and str(tmp_path / "test.jsonl") + ", row 2)" in msg
    assert "add training rows for it" in msg


def test_a_given_label_met_only_outside_training_is_refused(tmp_path):
    write_csv(tmp_path / "train.csv", [("a", ["0"]), ("b", ["1"])])
    write_csv(tmp_path / "test.csv", [("c", ["0", "2"])])
    with pytest.raises(DataError, match=r"label 'z' \(.*test\.csv, row 1\) has no training"):
        load_multilabel_data(str(tmp_path), label_names=["x", "y", "z"], val_size=1)


def test_an_unknown_integer_id_is_refused(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("a", ["0"]), ("b", ["1", "0"]), ("c", ["1", "3"])])
    with pytest.raises(DataError) as e:
        load_multilabel_data(str(path), label_names=["x", "y", "z"])
    assert str(e.value) == (
        f"{path}, row 3: label id 3 is outside the 3 label names (--label-names; ids 0 to 2); "
        "fix the id or name every id"
    )


def test_a_name_not_among_the_given_names_is_refused(tmp_path):
    refused(
        tmp_path,
        [{"text": "a", "labels": ["x"]}, {"text": "b", "labels": ["w"]}],
        r"train\.jsonl, row 2: label 'w' is not among the 2 label names \(--label-names: x, y\)",
        label_names=["x", "y"],
    )


def test_a_label_column_empty_in_every_training_row_is_refused(tmp_path):
    refused(
        tmp_path,
        [{"text": "a", "labels": []}, {"text": "b", "labels": None}],
        r"label column labels of .*train\.jsonl is empty in every row; name the label column",
    )
    df = pd.DataFrame({"text": ["a", "b"], "l1": [0, 0], "l2": [0, 0]})
    df.to_csv(tmp_path / "z.csv", index=False)
    with pytest.raises(DataError, match=r"label columns l1, l2 of .*z\.csv hold 0 in every row"):
        load_multilabel_data(str(tmp_path / "z.csv"), label_columns=("l1", "l2"))


def test_a_label_name_holding_the_separator_is_refused(tmp_path):
    records = [{"text": "a", "labels": ["x"]}, {"text": "b", "labels": ["y"]}]
    refused(
        tmp_path,
        records,
        r"label name 'a,b' \(--label-names\) holds the label separator ','; "
        r"choose another --label-sep \(e\.g\. '\|'\)",
        label_names=["a,b", "c"],
    )
    refused(
        tmp_path,
        [{"text": "a", "labels": ["Science, Tech"]}, *records],
        r"train\.jsonl, row 1: label 'Science, Tech' holds the label separator ','; choose another --label-sep",
    )
    (tmp_path / "names.txt").write_text("a|b\nc\n", encoding="utf-8")
    refused(
        tmp_path,
        records,
        r"label name 'a\|b' \(labels file .*names\.txt\) holds .* \(e\.g\. ';'\)",
        label_names=str(tmp_path / "names.txt"),
        label_sep="|",
    )


def test_bad_labels_files_and_names_are_refused(tmp_path):
    records = [{"text": "a", "labels": [0]}, {"text": "b", "labels": [1]}]
    (tmp_path / "names.txt").write_text("a\n\nb\n", encoding="utf-8")
    refused(
        tmp_path,
        records,
        r"names\.txt, line 2 is empty; give one label name per line",
        label_names=[str(tmp_path / "names.txt")],
    )
    refused(tmp_path, records, r"--label-names names 'a' 2 times", label_names=["a", "a"])


def test_bad_cells_are_refused_with_their_row(tmp_path):
    refused(
        tmp_path,
        [{"text": "a", "labels": ["x"]}, {"text": "b", "labels": True}],
        r"train\.jsonl, row 2: column labels holds True, not labels; .*pass --label-column for each",
    )
    refused(
        tmp_path,
        [{"text": "a", "labels": ["x"]}, {"text": "b", "labels": [{"x": 1}]}],
        r"row 2: label \{'x': 1\} is neither a name nor an integer id",
    )
    pd.DataFrame({"text": ["a", "b"], "labels": ["[x, y]", "x"]}).to_csv(
        tmp_path / "b.csv", index=False
    )
    with pytest.raises(
        DataError, match=r"b\.csv, row 1: column labels holds '\[x, y\]', which is not a list"
    ):
        load_multilabel_data(str(tmp_path / "b.csv"))


def test_bad_indicator_columns_are_refused(tmp_path):
    df = pd.DataFrame({"text": ["a", "b", "c"], "l1": [1, 0, 2], "l2": [0, 1, None]})
    df.to_csv(tmp_path / "d.csv", index=False)
    spec = str(tmp_path / "d.csv")
    with pytest.raises(DataError, match=r"d\.csv, row 3: label column l1 holds 2, not 0 or 1"):
        load_multilabel_data(spec, label_columns=("l1", "l2"))
    df.assign(l1=[1, 0, 1]).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"row 3: label column l2 holds an empty cell, not 0 or 1"):
        load_multilabel_data(spec, label_columns=("l1", "l2"))
    df.assign(l1=[1, 0, 1], l2=[0, 1, 1]).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"pattern 'x_\*' matches no column of .*; 0/1 label"):
        load_multilabel_data(spec, label_columns=("x_*",))
    with pytest.raises(DataError, match=r"pattern 'l1\*' matches only column l1 of"):
        load_multilabel_data(spec, label_columns=("l1*",))
    with pytest.raises(DataError, match=r"label column\(s\) l3 not in .*; it has: text, l1, l2"):
        load_multilabel_data(spec, label_columns=("l1", "l3"))
    with pytest.raises(DataError, match=r"column text cannot be both text and label"):
        load_multilabel_data(spec, label_columns=("l1", "text"))
    with pytest.raises(DataError, match=r"gives 3 names for 2 label columns \(l1, l2\)"):
        load_multilabel_data(spec, label_columns=("l1", "l2"), label_names=["a", "b", "c"])


def test_other_refusals(tmp_path, monkeypatch):
    records = [{"text": "a", "labels": ["x"]}, {"text": "b", "labels": ["x"]}]
    refused(tmp_path, records, r"holds one label only \('x'\); multi-label classification")
    refused(
        tmp_path,
        [{"text": "a", "topics": ["x"]}],
        r"no label column found in .*; or, for 0/1 columns, one per label, pass --label-column",
    )
    refused(tmp_path, records, r"got 3 text columns", text_columns=("a", "b", "c"))
    refused(tmp_path, records, r"--label-sep is empty", label_sep="")
    refused(
        tmp_path,
        [{"text": f"t{i}", "labels": [f"l{i}"]} for i in range(3)],
        r"cannot carve a test split of 1 row\(s\) from .*: of its 3 training rows, each label "
        r"must keep one in training; lower --test-size",
    )
    refused(
        tmp_path,
        [{"text": " ", "labels": ["x"]}, {"text": None, "labels": ["y"]}],
        r"no training rows left after cleaning .*train\.jsonl \(2 empty texts\); check --text-column",
    )
    with pytest.raises(DataError, match=r"data file .*nope\.csv does not exist"):
        load_multilabel_data(str(tmp_path / "nope.csv"))
    datasets = pytest.importorskip("datasets")

    def fail(name, config=None):
        raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DataError, match=r"cannot load Hugging Face dataset 'nobody/none': "):
        load_multilabel_data("nobody/none")
