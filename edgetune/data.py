"""Reading users' labelled text: files, folders of splits, or Hugging Face datasets."""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, first_line
from .runtime import (
    SNIFF_BYTES,
    first_row_is_data,
    first_row_may_be_data,
    sniff_delimiter,
    text_encoding,
    text_sample,
)

SUFFIXES = {".csv", ".tsv", ".tab", ".json", ".jsonl", ".ndjson", ".parquet", ".pq"}
SPLIT_NAMES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval"),
}
TEXT_NAMES = ("text", "sentence", "review", "content", "document", "utterance", "comment")
PAIR_NAMES = (
    ("sentence1", "sentence2"),
    ("text_a", "text_b"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("question", "sentence"),
)
LABEL_NAMES = ("label", "labels", "class", "target", "category")
KNOWN_NAMES = (*TEXT_NAMES, *LABEL_NAMES, *(n for pair in PAIR_NAMES for n in pair))


@dataclass
class Split:
    """One split: texts (one or two columns) and integer label ids."""

    texts: list[str]
    labels: list[int]
    pairs: list[str] | None = None  # second text column for sentence-pair tasks

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray) -> Split:
        return Split(
            [self.texts[i] for i in idx],
            [self.labels[i] for i in idx],
            None if self.pairs is None else [self.pairs[i] for i in idx],
        )


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
    frames, class_names = _read_splits(spec, header)
    if "train" not in frames:
        raise DataError(
            f"{spec} has no training split; name a file train.csv (or .tsv, .jsonl, .parquet...)"
        )
    train_df = frames["train"]
    columns = list(train_df.columns)
    try:
        texts = _text_columns(columns, tuple(_name(c, header) for c in text_columns), spec)
        given = None if label_column is None else _name(label_column, header)
        label = _label_column(columns, given, texts, spec)
    except DataError as e:
        raise _header_error(train_df, e, need_label=True) from None
    if train_df.attrs.get("guessed_header") and first_row_is_data(
        [label], [train_df[label].head(1000).tolist()], KNOWN_NAMES
    ):
        raise _first_row_error(train_df, need_label=True)
    for name, df in frames.items():
        missing = [c for c in (*texts, label) if c not in df.columns]
        if missing:
            raise DataError(
                f"the {name} split of {spec} lacks column(s) {', '.join(missing)}; "
                f"it has: {', '.join(map(str, df.columns))}"
            )
        _refuse_nested(df, texts, label, spec)

    report: dict[str, Any] = {"source": spec, "text_columns": list(texts), "label_column": label}
    cleaned = {
        name: _clean(df, texts, label, report.setdefault(name, {})) for name, df in frames.items()
    }
    _drop_unlabelled(cleaned, class_names, report)
    label_names, to_id = _label_map([c[2] for c in cleaned.values()], class_names, label)
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
            splits["train"], splits[name] = _carve(splits["train"], count, rng, name, spec)
            report.setdefault(name, {})["carved_from_train"] = len(splits[name])
    if len({*splits["train"].labels}) < 2:
        only = label_names[splits["train"].labels[0]]
        raise DataError(
            f"the training data has one class only ({only!r} in column {label}); "
            "classification needs at least two"
        )
    _refuse_untrained(splits, label_names, spec)
    train_texts = set(zip(splits["train"].texts, splits["train"].pairs or splits["train"].texts))
    for name in ("validation", "test"):
        s = splits[name]
        report[name]["rows"] = len(s)
        report[name]["also_in_train"] = sum(
            t in train_texts for t in zip(s.texts, s.pairs or s.texts)
        )
    report["train"]["rows"] = len(splits["train"])
    report["label_names"] = label_names
    report["class_counts"] = {
        label_names[i]: int(c)
        for i, c in enumerate(np.bincount(splits["train"].labels, minlength=len(label_names)))
    }
    return Data(
        splits["train"], splits["validation"], splits["test"], label_names, texts, label, report
    )


# -- reading -----------------------------------------------------------------------------------


def _read_splits(spec: str, header: bool | None) -> tuple[dict[str, Any], list[str] | None]:
    path = Path(spec).expanduser()
    if path.is_dir():
        return _read_folder(path, header), None
    if path.is_file():
        return {"train": _read_file(path, header)}, None
    if path.suffix.lower() in SUFFIXES or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise DataError(f"data file {spec} does not exist; check the path")
    return _read_hub(spec)


def _read_folder(path: Path, header: bool | None) -> dict[str, Any]:
    files = [f for f in sorted(path.iterdir()) if f.is_file() and f.suffix.lower() in SUFFIXES]
    found: dict[str, Path] = {}
    for split, names in SPLIT_NAMES.items():
        matches = [f for f in files if f.stem.lower() in names]
        if len(matches) > 1:
            raise DataError(
                f"{path} has several {split} files ({', '.join(f.name for f in matches)}); keep one"
            )
        if matches:
            found[split] = matches[0]
    if "train" not in found:
        raise DataError(
            f"folder {path} has no train file; expected train.csv/.tsv/.json/.jsonl/.parquet "
            "(plus optional validation/dev and test files)"
        )
    return {split: _read_file(f, header) for split, f in found.items()}


def _read_file(path: Path, header: bool | None = None) -> Any:
    """A file as a DataFrame with string column names; ``header`` applies to CSV/TSV only."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"unsupported data file type {suffix or '(none)'} for {path}; "
            "use .csv, .tsv, .json, .jsonl or .parquet"
        )
    table = suffix in (".csv", ".tsv", ".tab")
    encoding = sample = ""
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            with open(path, "rb") as f:
                head = f.read(SNIFF_BYTES)
            encoding = text_encoding(head)  # UTF-16 after its byte-order mark, else UTF-8
            sample = text_sample(head, encoding)
        if table:
            df = pd.read_csv(
                path,
                sep=sniff_delimiter(sample) if suffix == ".csv" else "\t",
                # GLUE-style TSV: no quoting, quotes are part of the text.
                quoting=csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE,
                header=None if header is False else "infer",
                keep_default_na=False,
                na_values=[""],
                encoding=encoding,
            )
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True, dtype=False, encoding=encoding)
        elif suffix == ".json":
            try:
                df = pd.read_json(path, dtype=False, encoding=encoding)
            except ValueError:
                df = pd.read_json(path, lines=True, dtype=False, encoding=encoding)
    except UnicodeDecodeError as e:
        codec = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise DataError(f"{path} is not {codec} text ({e.reason}); re-save it as UTF-8") from None
    except Exception as e:  # pandas/pyarrow raise many types for malformed files
        msg = first_line(e)
        raise DataError(
            f"cannot read {path}: {msg}; check that it is a valid {suffix[1:]} file"
        ) from None
    if len(df.columns) == 0 or len(df) == 0:
        raise DataError(f"{path} holds no rows; check the file")
    if suffix == ".csv" and len(df.columns) == 1:
        lines = [x for x in sample.splitlines() if x.strip()]
        for sep in ";|\t":
            if len(lines) > 1 and sum(sep in x for x in lines) >= 0.8 * len(lines):
                raise DataError(
                    f"{path} reads as one column, yet most of its lines hold {sep!r}; the "
                    f"{sep!r}-separated fields vary in number (unquoted {sep!r} in a text?): "
                    "quote those fields, or save the file comma-separated"
                )
    df.columns = [str(c) for c in df.columns]
    df.attrs.update(path=str(path), guessed_header=table and header is None)
    return df


def _read_hub(spec: str) -> tuple[dict[str, Any], list[str] | None]:
    import datasets

    name, _, config = spec.partition(":")
    try:
        ds = datasets.load_dataset(name, config or None)
    except Exception as e:
        msg = first_line(e)
        raise DataError(
            f"cannot load Hugging Face dataset {spec!r}: {msg}; "
            "check the name (name or name:config) and the network, or pass a local file"
        ) from None
    frames: dict[str, Any] = {}
    class_names = None
    for split_name, split in ds.items():
        for canonical, names in SPLIT_NAMES.items():
            if split_name.lower() in names and canonical not in frames:
                frames[canonical] = split.to_pandas()
                for feat_name, feat in split.features.items():
                    if isinstance(feat, datasets.ClassLabel) and feat_name in LABEL_NAMES:
                        class_names = list(feat.names)
    return frames, class_names


# -- columns -----------------------------------------------------------------------------------


def _find(columns: list[str], name: str) -> str | None:
    for c in columns:
        if c.lower() == name:
            return c
    return None


def _text_columns(columns: list[str], given: tuple[str, ...], spec: str) -> tuple[str, ...]:
    if given:
        missing = [c for c in given if c not in columns]
        if missing:
            raise DataError(
                f"text column(s) {', '.join(missing)} not in {spec}; it has: {', '.join(columns)}"
            )
        return given
    for a, b in PAIR_NAMES:
        ca, cb = _find(columns, a), _find(columns, b)
        if ca and cb:
            return (ca, cb)
    hits = [c for n in TEXT_NAMES if (c := _find(columns, n))]
    if len(hits) == 1:
        return (hits[0],)
    if len(hits) > 1:
        raise DataError(
            f"ambiguous text column in {spec}: {' and '.join(hits)} both qualify; "
            "pass --text-column NAME (twice for sentence pairs)"
        )
    raise DataError(
        f"no text column found in {spec} (columns: {', '.join(columns)}); pass --text-column NAME"
    )


def _name(given: Any, header: bool | None) -> str:
    """A column name as given; without a header, " 1", "01" or 1 also name column "1"."""
    return str(int(given)) if header is False and str(given).strip().isdigit() else str(given)


def _first_row_error(df: Any, need_label: bool) -> DataError:
    """Refuse a guessed header that is a data row, naming the positional columns to pass."""
    names = list(df.columns)
    rows = df.head(1000)
    # The text is the column of longest values; the label, of the others the fewest distinct.
    lengths = [rows[c].astype(str).str.len().mean() for c in names]
    text = int(np.argmax(lengths))
    fix = f"--text-column {text}"
    others = [i for i in range(len(names)) if i != text]
    if need_label and others:
        fix += f" --label-column {min(others, key=lambda i: rows[names[i]].nunique())}"
    return DataError(
        f"the first row of {df.attrs['path']} looks like data "
        f"({', '.join(map(repr, names))}), not a header; "
        f"pass --no-header (columns are then 0, 1, ...) and {fix}"
    )


def _header_error(df: Any, e: DataError, need_label: bool) -> DataError:
    """A column-choice error, pointing to --no-header when the guessed header may be data."""
    if not df.attrs.get("guessed_header"):
        return e
    names = list(df.columns)
    values = [df[c].head(1000).tolist() for c in names]
    if first_row_is_data(names, values, KNOWN_NAMES):
        return _first_row_error(df, need_label)
    if first_row_may_be_data(names, values, KNOWN_NAMES):
        return DataError(
            f"{e}; or, if the first row of {df.attrs['path']} is data, not a header, "
            "pass --no-header (columns are then 0, 1, ...)"
        )
    return e


def _label_column(columns: list[str], given: str | None, texts: tuple[str, ...], spec: str) -> str:
    if given:
        if given not in columns:
            raise DataError(f"label column {given} not in {spec}; it has: {', '.join(columns)}")
        if given in texts:
            raise DataError(
                f"column {given} cannot be both text and label; pass another --label-column"
            )
        return given
    hits = [c for n in LABEL_NAMES if (c := _find(columns, n)) and c not in texts]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise DataError(
            f"ambiguous label column in {spec}: {' and '.join(hits)} both qualify; "
            "pass --label-column NAME"
        )
    raise DataError(
        f"no label column found in {spec} (columns: {', '.join(columns)}); pass --label-column NAME"
    )


# -- cleaning and labels -----------------------------------------------------------------------


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and not v.strip()


def _text(v: Any) -> str:
    return "" if _is_missing(v) else str(v).strip()


def _refuse_nested(df: Any, texts: tuple[str, ...], label: str | None, spec: str) -> None:
    """Refuse columns of dicts or lists (Parquet structs, nested JSON): their printed form
    is no text, and no label."""
    for c in (*texts, label) if label else texts:
        if df[c].dtype != object:  # numbers or pandas strings: nothing nested
            continue
        v = next((v for v in df[c] if isinstance(v, (dict, list, tuple, set, np.ndarray))), None)
        if v is None:
            continue
        kind = "dict" if isinstance(v, dict) else "list"
        shown = repr(v.tolist() if isinstance(v, np.ndarray) else v)
        shown = shown if len(shown) <= 40 else shown[:36] + " ..."
        what, option = ("labels", "--label-column") if c == label else ("text", "--text-column")
        raise DataError(
            f"column {c} of {spec} holds {kind} values (e.g. {shown}), not {what}; "
            f"pick a {what.rstrip('s')} column with {option} or flatten it"
        )


def _clean(df: Any, texts: tuple[str, ...], label: str, report: dict[str, Any]):
    """Strip, drop empty texts, missing labels and exact duplicates; count each."""
    a = [_text(v) for v in df[texts[0]].tolist()]
    b = [_text(v) for v in df[texts[1]].tolist()] if len(texts) == 2 else None
    raw = df[label].tolist()
    report["read"] = len(a)
    out_a: list[str] = []
    out_b: list[str] | None = [] if b is not None else None
    out_l: list[Any] = []
    seen: set[tuple[Any, ...]] = set()
    empty = missing = dupes = 0
    for i in range(len(a)):
        if not a[i] or (b is not None and not b[i]):
            empty += 1
            continue
        lab = raw[i]
        if _is_missing(lab):
            missing += 1
            continue
        lab = _normalise_label(lab)
        key = (a[i], b[i] if b is not None else None, lab)
        if key in seen:
            dupes += 1
            continue
        seen.add(key)
        out_a.append(a[i])
        if out_b is not None and b is not None:
            out_b.append(b[i])
        out_l.append(lab)
    report.update(dropped_empty_text=empty, dropped_missing_label=missing, dropped_duplicates=dupes)
    return out_a, out_b, out_l


def _normalise_label(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        return int(s) if s.lstrip("-").isdigit() else s
    return str(v)


def _drop_unlabelled(
    cleaned: dict[str, Any], class_names: list[str] | None, report: dict[str, Any]
) -> None:
    """Drop rows whose negative label means "no label" (the rule is in ``load_data``)."""

    def negative(v: Any) -> bool:
        return isinstance(v, int) and v < 0

    labels = [labs for *_, labs in cleaned.values()]
    minus_one_is_class = any(negative(v) and v != -1 for labs in labels for v in labs) or any(
        -1 in labs and any(v != -1 for v in labs) for labs in labels
    )
    for name, (a, b, labs) in cleaned.items():
        if class_names:  # a ClassLabel's -1 is "no label" by definition
            keep = [not negative(v) for v in labs]
        elif not minus_one_is_class and labs and all(v == -1 for v in labs):
            keep = [False] * len(labs)
        else:
            continue
        cleaned[name] = (
            [x for x, k in zip(a, keep) if k],
            None if b is None else [x for x, k in zip(b, keep) if k],
            [x for x, k in zip(labs, keep) if k],
        )
        report[name]["dropped_missing_label"] += keep.count(False)


def _refuse_untrained(splits: dict[str, Split], label_names: list[str], spec: str) -> None:
    """Refuse classes met in validation or test data with no training row: none can be learnt."""
    trained = set(splits["train"].labels)
    found = []
    for name in ("validation", "test"):
        counts = Counter(v for v in splits[name].labels if v not in trained)
        found += [f"{label_names[c]!r} ({n} {name} row{'s' * (n > 1)})" for c, n in counts.items()]
    if found:
        one = len(found) == 1
        raise DataError(
            f"{'class' if one else 'classes'} {', '.join(found)} {'has' if one else 'have'} "
            f"no training rows in {spec}, so no model can learn {'it' if one else 'them'}; "
            f"add training rows for {'it' if one else 'them'}, or drop those rows"
        )


def _label_map(
    columns: list[list[Any]], class_names: list[str] | None, label: str
) -> tuple[list[str], dict[Any, int]]:
    values = {v for col in columns for v in col}
    if class_names and all(isinstance(v, int) and 0 <= v < len(class_names) for v in values):
        return list(class_names), {i: i for i in range(len(class_names))}
    if all(isinstance(v, int) for v in values):
        ordered: list[Any] = sorted(values)
    elif any(isinstance(v, int) for v in values) and any(isinstance(v, str) for v in values):
        ordered = sorted(values, key=str)
    else:
        ordered = sorted(values, key=str)
    if len(ordered) > 1000:
        raise DataError(
            f"label column {label} has {len(ordered)} distinct values; "
            "is it really the label? pass --label-column NAME"
        )
    return [str(v) for v in ordered], {v: i for i, v in enumerate(ordered)}


def _carve(train: Split, count: float, rng: np.random.Generator, name: str, spec: str):
    """Stratified split of about ``count`` rows out of ``train``.

    Each class gives its rounded share. Where that takes nothing, or a class's last row, the
    total is brought to round(count) by largest remainder instead, so that many small classes
    (whose shares all round to 0) still give a split and every class keeps a training row.
    """
    labels = np.asarray(train.labels)
    groups = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        groups.append(idx)
    sizes = np.array([len(g) for g in groups])
    share = count / len(train) * sizes
    take = np.round(share).astype(int)
    # Per-class rounding, where it works, is kept: runs re-create the splits they trained with.
    if not (take.sum() > 0 and (take < sizes).all()):
        _balance(take, share, sizes, count, rng, name, spec)
    picked = np.sort(np.concatenate([g[:k] for g, k in zip(groups, take)]))
    taken = np.zeros(len(train), dtype=bool)
    taken[picked] = True
    return train.subset(np.flatnonzero(~taken)), train.subset(picked)


def _balance(
    take: np.ndarray,
    share: np.ndarray,
    sizes: np.ndarray,
    count: float,
    rng: np.random.Generator,
    name: str,
    spec: str,
) -> None:
    """Bring ``take`` (rows per class) to round(count) by largest remainder, in place."""
    np.minimum(take, sizes - 1, out=take)
    target, spare = max(1, round(count)), int((sizes - 1).sum())
    if spare == 0:
        raise DataError(
            f"cannot carve a {name} split from {spec}: each of its {len(sizes)} classes has a "
            f"single training row, which must stay in training; provide a {name} file, or add "
            "rows (at least 2 per class)"
        )
    if target > spare:
        raise DataError(
            f"cannot carve a {name} split of {target} rows from {spec}: its {len(sizes)} classes "
            f"can spare only {spare} of {int(sizes.sum())} training rows (a class's last row stays in "
            f"training); lower --{'val' if name == 'validation' else 'test'}-size or provide "
            f"a {name} file"
        )
    if take.sum() != target:
        # Classes cut most by rounding gain a row first, those rounded up most lose one first;
        # ties in random order.
        order = rng.permutation(len(sizes))
        order = order[np.argsort(take[order] - share[order], kind="stable")]
        step = 1 if take.sum() < target else -1
        while take.sum() != target:
            for i in order if step > 0 else order[::-1]:
                if take.sum() != target and 0 <= take[i] + step < sizes[i]:
                    take[i] += step


def load_texts(
    spec: str, text_columns: tuple[str, ...] = (), *, header: bool | None = None
) -> list[str]:
    """Texts only (no labels needed), e.g. for calibration: a file, folder (train split) or dataset.

    Sentence pairs are joined with a space; calibration only needs realistic activations.
    ``header`` is as in ``load_data``.
    """
    frames, _ = _read_splits(spec, header)
    df = frames.get("train")
    if df is None:
        df = next(iter(frames.values()))
    try:
        cols = _text_columns(list(df.columns), tuple(_name(c, header) for c in text_columns), spec)
    except DataError as e:
        raise _header_error(df, e, need_label=False) from None
    _refuse_nested(df, cols, None, spec)
    rows = zip(*(df[c].tolist() for c in cols))
    texts = [" ".join(_text(v) for v in row).strip() for row in rows]
    texts = [t for t in texts if t]
    if not texts:
        raise DataError(f"no non-empty texts in {spec}; check --text-column")
    return texts
