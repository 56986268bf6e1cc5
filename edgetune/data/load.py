"""``load_data``, ``load_texts`` and ``load_unlabeled``: read, choose columns, clean, map labels and split."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from ..textio import cell_text, column_name
from .clean import clean, drop_unlabelled, label_map, refuse_untrained
from .columns import (
    header_error,
    refuse_data_header,
    refuse_nested,
    resolve_label_column,
    resolve_text_columns,
)
from .read import read_splits
from .split import Split, carve


@dataclass
class Data:
    """Cleaned train/validation/test splits with the label map and a cleaning report."""

    train: Split
    validation: Split
    test: Split
    label_names: list[str]
    text_columns: tuple[str, ...]
    label_column: str
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def load_data(
    spec: str,
    *,
    text_columns: tuple[str, ...] | list[str] = (),
    label_column: str | None = None,
    val_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
    header: bool | None = None,
) -> Data:
    """Load, clean and split labelled text.

    Integer labels below zero are classes (-1/0/1 sentiment), except where -1 means "no label":
    in a split whose labels are all -1 (a GLUE test split) when -1 is no class elsewhere (no
    other negative label, no split mixing -1 with other labels), and always under a Hugging
    Face ``ClassLabel``. Those rows are dropped as unlabelled.

    Args:
        spec: a CSV/TSV/JSON/JSONL/Parquet file, a folder with train/validation/test files,
            or a Hugging Face dataset name (``name`` or ``name:config``).
        text_columns: one column, or two for sentence pairs; detected when empty.
        label_column: detected when None.
        val_size, test_size: fraction (< 1) or row count (>= 1) carved from train, stratified by
            label, for each split the data does not provide.
        header: for CSV/TSV files: True, the first row names the columns; False, it is data and
            the columns are "0", "1", ...; None, as True, but refuse a first row that looks like
            data. JSON, Parquet and Hub datasets name their own columns.
    """
    if len(text_columns) > 2:
        raise DataError(
            f"got {len(text_columns)} text columns; pass one, or two for sentence pairs"
        )
    frames, class_names = read_splits(spec, header)
    if "train" not in frames:
        raise DataError(
            f"{spec} has no training split; name a file train.csv (or .tsv, .jsonl, .parquet...)"
        )
    texts, label = _columns(frames, spec, text_columns, label_column, header)
    report: dict[str, Any] = {"source": spec, "text_columns": list(texts), "label_column": label}
    cleaned = {
        name: clean(df, texts, label, report.setdefault(name, {})) for name, df in frames.items()
    }
    drop_unlabelled(cleaned, class_names, report)
    label_names, to_id = label_map([c[2] for c in cleaned.values()], class_names, label)
    splits: dict[str, Split] = {}
    for name, (a, b, raw_labels) in cleaned.items():
        if not a:
            if name == "train":
                raise DataError(
                    f"no training rows left after cleaning {spec} (empty texts or missing labels); "
                    f"check columns {', '.join(texts)} and {label}"
                )
            report[name]["note"] = "empty after cleaning; carved from train instead"
            continue
        splits[name] = Split(a, [to_id[v] for v in raw_labels], b)

    rng = np.random.default_rng(seed)
    n_labelled = len(splits["train"])  # fractions are of all labelled training rows
    for name, size in (("test", test_size), ("validation", val_size)):
        if name not in splits:
            count = size * n_labelled if size < 1 else size
            splits["train"], splits[name] = carve(splits["train"], count, rng, name, spec)
            report.setdefault(name, {})["carved_from_train"] = len(splits[name])
    if len({*splits["train"].labels}) < 2:
        only = label_names[splits["train"].labels[0]]
        raise DataError(
            f"the training data has one class only ({only!r} in column {label}); "
            "classification needs at least two"
        )
    refuse_untrained(splits, label_names, spec)
    _count(splits, label_names, report)
    return Data(
        splits["train"], splits["validation"], splits["test"], label_names, texts, label, report
    )


def _columns(
    frames: dict[str, Any],
    spec: str,
    text_columns: tuple[str, ...] | list[str],
    label_column: str | None,
    header: bool | None,
) -> tuple[tuple[str, ...], str]:
    """The text and label columns, chosen on the training split and present in every split."""
    train_df = frames["train"]
    columns = list(train_df.columns)
    try:
        texts = resolve_text_columns(
            columns, tuple(column_name(c, header) for c in text_columns), spec
        )
        given = None if label_column is None else column_name(label_column, header)
        label = resolve_label_column(columns, given, texts, spec)
    except DataError as e:
        raise header_error(train_df, e, need_label=True) from None
    refuse_data_header(train_df, label)
    for name, df in frames.items():
        missing = [c for c in (*texts, label) if c not in df.columns]
        if missing:
            raise DataError(
                f"the {name} split of {spec} lacks column(s) {', '.join(missing)}; "
                f"it has: {', '.join(map(str, df.columns))}"
            )
        refuse_nested(df, texts, label, spec)
    return texts, label


def _count(splits: dict[str, Split], label_names: list[str], report: dict[str, Any]) -> None:
    """Rows per split, held-out rows also in train, and the training rows per class."""
    train = splits["train"]
    train_texts = set(zip(train.texts, train.pairs or train.texts))
    for name in ("validation", "test"):
        s = splits[name]
        report[name]["rows"] = len(s)
        report[name]["also_in_train"] = sum(
            t in train_texts for t in zip(s.texts, s.pairs or s.texts)
        )
    report["train"]["rows"] = len(train)
    report["label_names"] = label_names
    report["class_counts"] = {
        label_names[i]: int(c)
        for i, c in enumerate(np.bincount(train.labels, minlength=len(label_names)))
    }


def load_texts(
    spec: str, text_columns: tuple[str, ...] = (), *, header: bool | None = None
) -> list[str]:
    """Texts only (no labels needed), e.g. for calibration: a file, folder (train split) or dataset.

    Sentence pairs are joined with a space; calibration only needs realistic activations.
    ``header`` is as in ``load_data``.
    """
    rows = _text_rows(spec, text_columns, header)
    texts = [" ".join(row).strip() for row in rows]
    texts = [t for t in texts if t]
    if not texts:
        raise DataError(f"no non-empty texts in {spec}; check --text-column")
    return texts


def load_unlabeled(
    spec: str, text_columns: tuple[str, ...] = (), *, pairs: bool, header: bool | None = None
) -> Split:
    """Texts without labels (``--unlabeled``): one column, or two where ``pairs``; any label
    column is ignored. Empty rows are dropped; labels are -1."""
    rows = _text_rows(spec, text_columns, header)
    width = len(rows[0]) if rows else 0
    if rows and width != (2 if pairs else 1):
        want = "two text columns (a sentence pair)" if pairs else "one text column"
        raise DataError(
            f"{spec} gives {width} text column(s) but the training data has {want}; "
            "pass --text-column to name them"
        )
    rows = [tuple(x.strip() for x in row) for row in rows]
    rows = [row for row in rows if all(row)]
    if not rows:
        raise DataError(f"no non-empty texts in {spec}; check --text-column")
    return Split([r[0] for r in rows], [-1] * len(rows), [r[1] for r in rows] if pairs else None)


def _text_rows(
    spec: str, text_columns: tuple[str, ...], header: bool | None
) -> list[tuple[str, ...]]:
    """The text column(s) of a file, folder (its train split) or dataset, row by row."""
    frames, _ = read_splits(spec, header)
    df = frames.get("train")
    if df is None:
        df = next(iter(frames.values()))
    try:
        cols = resolve_text_columns(
            list(df.columns), tuple(column_name(c, header) for c in text_columns), spec
        )
    except DataError as e:
        raise header_error(df, e, need_label=False) from None
    refuse_nested(df, cols, None, spec)
    return [tuple(cell_text(v) for v in row) for row in zip(*(df[c].tolist() for c in cols))]
