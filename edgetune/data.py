"""Reading users' labelled text: files, folders of splits, or Hugging Face datasets."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, first_line

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
) -> Data:
    """Load, clean and split labelled text.

    Args:
        spec: a CSV/TSV/JSON/JSONL/Parquet file, a folder with train/validation/test files,
            or a Hugging Face dataset name (``name`` or ``name:config``).
        text_columns: one column, or two for sentence pairs; detected when empty.
        label_column: detected when None.
        val_size, test_size: fraction (< 1) or row count (>= 1) carved from train, stratified by
            label, for each split the data does not provide.
    """
    if len(text_columns) > 2:
        raise DataError(
            f"got {len(text_columns)} text columns; pass one, or two for sentence pairs"
        )
    frames, class_names = _read_splits(spec)
    if "train" not in frames:
        raise DataError(
            f"{spec} has no training split; name a file train.csv (or .tsv, .jsonl, .parquet...)"
        )
    columns = list(frames["train"].columns)
    texts = _text_columns(columns, tuple(text_columns), spec)
    label = _label_column(columns, label_column, texts, spec)
    for name, df in frames.items():
        missing = [c for c in (*texts, label) if c not in df.columns]
        if missing:
            raise DataError(
                f"the {name} split of {spec} lacks column(s) {', '.join(missing)}; "
                f"it has: {', '.join(map(str, df.columns))}"
            )

    report: dict[str, Any] = {"source": spec, "text_columns": list(texts), "label_column": label}
    cleaned = {
        name: _clean(df, texts, label, report.setdefault(name, {})) for name, df in frames.items()
    }
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


def _read_splits(spec: str) -> tuple[dict[str, Any], list[str] | None]:
    path = Path(spec).expanduser()
    if path.is_dir():
        return _read_folder(path), None
    if path.is_file():
        return {"train": _read_file(path)}, None
    if path.suffix.lower() in SUFFIXES or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise DataError(f"data file {spec} does not exist; check the path")
    return _read_hub(spec)


def _read_folder(path: Path) -> dict[str, Any]:
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
    return {split: _read_file(f) for split, f in found.items()}


def _read_file(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
        elif suffix in (".tsv", ".tab"):
            # GLUE-style TSV: no quoting, quotes are part of the text.
            df = pd.read_csv(
                path,
                sep="\t",
                quoting=csv.QUOTE_NONE,
                keep_default_na=False,
                na_values=[""],
                encoding="utf-8-sig",  # tolerate a byte-order mark
            )
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".json":
            try:
                df = pd.read_json(path, dtype=False)
            except ValueError:
                df = pd.read_json(path, lines=True, dtype=False)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise DataError(
                f"unsupported data file type {suffix or '(none)'} for {path}; "
                "use .csv, .tsv, .json, .jsonl or .parquet"
            )
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason}); re-save it as UTF-8") from None
    except Exception as e:  # pandas/pyarrow raise many types for malformed files
        msg = first_line(e)
        raise DataError(
            f"cannot read {path}: {msg}; check that it is a valid {suffix[1:]} file"
        ) from None
    if len(df.columns) == 0 or len(df) == 0:
        raise DataError(f"{path} holds no rows; check the file")
    df.columns = [str(c) for c in df.columns]
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
        if _is_missing(lab) or (isinstance(lab, (int, np.integer)) and lab < 0):
            # Negative integer labels mark unlabelled rows (e.g. GLUE test splits).
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
    """Stratified split of about ``count`` rows out of ``train``."""
    n = len(train)
    frac = count / n
    labels = np.asarray(train.labels)
    take: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(frac * len(idx)))
        take.extend(idx[:k].tolist())
    if not take or len(take) >= n:
        raise DataError(
            f"{spec} has too few rows ({n}) to carve a {name} split of {count:g} rows; "
            f"provide a {name} file or change --{'val' if name == 'validation' else 'test'}-size"
        )
    taken = np.zeros(n, dtype=bool)
    taken[take] = True
    keep_idx = np.flatnonzero(~taken)
    take_idx = np.sort(np.asarray(take))
    return train.subset(keep_idx), train.subset(take_idx)


def load_texts(spec: str, text_columns: tuple[str, ...] = ()) -> list[str]:
    """Texts only (no labels needed), e.g. for calibration: a file, folder (train split) or dataset.

    Sentence pairs are joined with a space; calibration only needs realistic activations.
    """
    frames, _ = _read_splits(spec)
    df = frames.get("train")
    if df is None:
        df = next(iter(frames.values()))
    cols = _text_columns(list(df.columns), tuple(text_columns), spec)
    rows = zip(*(df[c].tolist() for c in cols))
    texts = [" ".join(_text(v) for v in row).strip() for row in rows]
    texts = [t for t in texts if t]
    if not texts:
        raise DataError(f"no non-empty texts in {spec}; check --text-column")
    return texts
