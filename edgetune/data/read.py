"""Reading a data spec into DataFrames: a file, a folder of split files, or a Hub dataset."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..errors import DataError, first_line
from ..textio import SNIFF_BYTES, codec_name, sniff_delimiter, text_encoding, text_sample
from .columns import LABEL_NAMES

SUFFIXES = {".csv", ".tsv", ".tab", ".json", ".jsonl", ".ndjson", ".parquet", ".pq"}
SPLIT_NAMES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval"),
}


def read_splits(spec: str, header: bool | None) -> tuple[dict[str, Any], list[str] | None]:
    """DataFrames by split name ("train", "validation", "test"), and a Hub ``ClassLabel``'s
    class names (None elsewhere)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return _read_folder(path, header), None
    if path.is_file():
        return {"train": _read_file(path, header)}, None
    if path.suffix.lower() in SUFFIXES or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise DataError(f"data file {spec} does not exist; check the path")
    return _read_hub(spec)


def _read_folder(path: Path, header: bool | None) -> dict[str, Any]:
    found = split_files(path, SUFFIXES, "train.csv/.tsv/.json/.jsonl/.parquet")
    return {split: _read_file(f, header) for split, f in found.items()}


def split_files(path: Path, suffixes: Any, expected: str) -> dict[str, Path]:
    """A folder's train file and optional validation and test files, by split name
    (``expected`` names the train file in the message when there is none)."""
    files = [f for f in sorted(path.iterdir()) if f.is_file() and f.suffix.lower() in suffixes]
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
            f"folder {path} has no train file; expected {expected} "
            "(plus optional validation/dev and test files)"
        )
    return found


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
            sep = sniff_delimiter(sample) if suffix == ".csv" else "\t"
            # GLUE-style TSV: no quoting, quotes are part of the text.
            quoting = csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE
            if header is not False:
                _refuse_repeated_names(path, sample, sep, quoting)
            df = pd.read_csv(
                path,
                sep=sep,
                quoting=quoting,
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
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not {codec_name(encoding)} text ({e.reason}); re-save it as UTF-8"
        ) from None
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


def _refuse_repeated_names(path: Path, sample: str, sep: str, quoting: Any) -> None:
    """pandas renames a second "label" to "label.1" and the first is used without a word."""
    first = next(csv.reader(sample.splitlines()[:1], delimiter=sep, quoting=quoting), [])
    names = [n.strip() for n in first]
    for name in names:
        if name and names.count(name) > 1:
            where = [str(i) for i, n in enumerate(names) if n == name]
            raise DataError(
                f"the header of {path} names column {name!r} {len(where)} times (columns "
                f"{', '.join(where)}); rename all but one, or pass --no-header if that row is data"
            )


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
