"""Reading labelled data for multi-label text classification: any number of labels per text.

Labels come as one column of lists (JSON arrays, Parquet lists, a Hub ``Sequence(ClassLabel)``),
as one column of delimited strings ("sports,politics", or GoEmotions' integer ids "0,27"), or as
several 0/1 columns, one per label. Files, folders of splits and Hub datasets are read as
``load_data`` reads them; a text with no label holds the empty set. Validation and test splits
the data lacks are carved from training, stratified by each text's rarest label.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, first_line
from ..textio import (
    SNIFF_BYTES,
    cell_text,
    codec_name,
    column_name,
    first_json_values,
    is_missing,
    sniff_delimiter,
    text_encoding,
    text_sample,
)
from .columns import (
    header_error,
    refuse_data_header,
    refuse_nested,
    resolve_label_column,
    resolve_text_columns,
)
from .read import SPLIT_NAMES, SUFFIXES, read_splits, split_files
from .split import Split, carve

SAMPLE_ROWS = 300  # rows read to detect multi-label data (``is_multilabel_data``)
MAX_LABELS = 1000  # more distinct labels than this: the column is surely no label column
PATTERN_CHARS = "*?["  # a label column given with one of these is a pattern of 0/1 columns
FLAGS = {"0": False, "1": True, "0.0": False, "1.0": True, "false": False, "true": True}

Token = str | int  # a label as read: a name, or an integer (an id, or a number used as name)


@dataclass
class MultiLabelSplit:
    """One split: texts (one or two columns) and each text's label ids, sorted, no repeats."""

    texts: list[str]
    labels: list[list[int]]  # [] is a text with no label
    pairs: list[str] | None = None  # second text column for sentence pairs

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Iterable[int]) -> MultiLabelSplit:
        rows = [int(i) for i in idx]
        return MultiLabelSplit(
            [self.texts[i] for i in rows],
            [self.labels[i] for i in rows],
            None if self.pairs is None else [self.pairs[i] for i in rows],
        )

    def targets(self, num_labels: int) -> np.ndarray:
        """The labels as a [texts, num_labels] float32 matrix of 0s and 1s."""
        out = np.zeros((len(self.labels), num_labels), dtype=np.float32)
        for i, ids in enumerate(self.labels):
            out[i, ids] = 1.0
        return out


@dataclass
class MultiLabelData:
    """Cleaned train/validation/test splits, the label names in id order and a reading report."""

    train: MultiLabelSplit
    validation: MultiLabelSplit
    test: MultiLabelSplit
    label_names: list[str]
    text_columns: tuple[str, ...]
    label_columns: tuple[str, ...]  # one list or delimited column, or several 0/1 columns
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


@dataclass
class _Rows:
    """A split's rows with a text, their labels as read, and where each row is."""

    source: str  # the file (or Hub split) the rows come from
    texts: list[str] = field(default_factory=list)
    pairs: list[str] | None = None
    labels: list[tuple[Token, ...]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # 1-based row numbers in the source
    read: int = 0
    empty: int = 0
    lists: bool = False  # some labels were lists (not delimited strings)

    def where(self, k: int) -> str:
        return f"{self.source}, row {self.rows[k]}"


def load_multilabel_data(
    spec: str,
    *,
    text_columns: tuple[str, ...] | list[str] = (),
    label_columns: tuple[str, ...] | list[str] = (),
    label_names: tuple[str, ...] | list[str] | str = (),
    label_sep: str = ",",
    val_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
    header: bool | None = None,
) -> MultiLabelData:
    """Read, check, clean and split multi-label text.

    Args:
        spec: a CSV/TSV/JSON/JSONL/Parquet file, a folder of train/validation (or dev)/test
            files, or a Hugging Face dataset (``name`` or ``name:config``).
        text_columns: one column, or two for sentence pairs; detected when empty.
        label_columns: one column of lists or ``label_sep``-delimited labels (detected by name
            when empty); or several 0/1 columns, one per label, named one by one or by one
            pattern such as ``label_*`` (the column names are the label names).
        label_names: the name of each integer label id, in id order, or one file holding one
            name per line (GoEmotions' emotions.txt); else the names found in training, sorted
            (a Hub ``ClassLabel``'s names for its ids).
        label_sep: what separates the labels of a delimited string.
        val_size, test_size: fraction (< 1) or row count (>= 1) carved from train, stratified
            by each row's rarest label, for each split the data does not provide.
        header: for CSV/TSV files, as in ``load_data``.
    """
    if not label_sep:
        raise DataError("--label-sep is empty; give what separates the labels, like ',' or '|'")
    if len(text_columns) > 2:
        raise DataError(
            f"got {len(text_columns)} text columns; pass one, or two for sentence pairs"
        )
    given, origin = _given_names(label_names, label_sep)
    frames, class_names = _read(spec, header)
    texts, labels, indicator = _columns(
        frames, spec, text_columns, label_columns, header, label_sep
    )
    if given is None and not indicator and labels[0] in class_names:
        given, origin = class_names[labels[0]], f"the ClassLabel of column {labels[0]}"
        _refuse_separator(given, label_sep, f"({origin} of {spec})")
    read = {
        name: _parse(df, texts, labels, indicator, label_sep, df.attrs.get("path") or spec)
        for name, df in frames.items()
    }
    _refuse_no_labels(read["train"], labels, indicator)
    lm = _LabelMap(read["train"], given, origin, labels if indicator else None, label_sep, spec)
    fmt = "indicator columns" if indicator else "lists" if read["train"].lists else "delimited"
    report: dict[str, Any] = {
        "source": spec,
        "columns": {"text": list(texts), "labels": list(labels)},
        "files": {name: rows.source for name, rows in read.items()},
        "format": fmt,
    }
    splits = _to_splits(read, lm, spec, report)
    rng = np.random.default_rng(seed)
    n_train = len(splits["train"])  # fractions are of all training rows
    for name, size in (("test", test_size), ("validation", val_size)):
        if name not in splits:
            count = size * n_train if size < 1 else size
            splits["train"], splits[name] = _carve(splits["train"], lm.size, count, rng, name, spec)
            report.setdefault(name, {})["carved_from_train"] = len(splits[name])
    _count(splits, lm.names, report)
    return MultiLabelData(
        splits["train"],
        splits["validation"],
        splits["test"],
        lm.names,
        texts,
        labels,
        report,
    )


def _to_splits(
    read: dict[str, _Rows], lm: _LabelMap, spec: str, report: dict[str, Any]
) -> dict[str, MultiLabelSplit]:
    """Each split's rows with label ids, exact duplicates dropped; a label met outside
    training only is refused, and an empty held-out split is left to be carved."""
    ids = {name: [lm.ids(rows, k) for k in range(len(rows.labels))] for name, rows in read.items()}
    trained = {i for labs in ids["train"] for i in labs if i >= 0}
    untrained: dict[str, str] = {}
    for name in ("validation", "test"):
        for k, labs in enumerate(ids.get(name, [])):
            for i, t in zip(labs, read[name].labels[k]):
                if i < 0 or i not in trained:
                    untrained.setdefault(lm.names[i] if i >= 0 else str(t), read[name].where(k))
    if untrained:
        _refuse_untrained(untrained, spec)
    splits: dict[str, MultiLabelSplit] = {}
    for name, rows in read.items():
        split, dupes = _dedupe(rows, ids[name])
        report[name] = {"read": rows.read, "dropped_empty_text": rows.empty}
        report[name]["dropped_duplicates"] = dupes
        if len(split):
            splits[name] = split
        else:  # training rows are checked earlier
            report[name]["note"] = "empty after cleaning; carved from train instead"
    return splits


def _dedupe(rows: _Rows, ids: list[list[int]]) -> tuple[MultiLabelSplit, int]:
    """The rows as a split of sorted label ids, exact (text, pair, labels) repeats dropped."""
    out = MultiLabelSplit([], [], None if rows.pairs is None else [])
    seen: set[tuple[Any, ...]] = set()
    dupes = 0
    for k, labs in enumerate(ids):
        labels = sorted(set(labs))
        pair = None if rows.pairs is None else rows.pairs[k]
        key = (rows.texts[k], pair, tuple(labels))
        if key in seen:
            dupes += 1
            continue
        seen.add(key)
        out.texts.append(rows.texts[k])
        out.labels.append(labels)
        if out.pairs is not None and pair is not None:
            out.pairs.append(pair)
    return out, dupes


def _refuse_untrained(untrained: dict[str, str], spec: str) -> None:
    shown = [f"{n!r} ({where})" for n, where in list(untrained.items())[:5]]
    more = f" and {len(untrained) - 5} more" if len(untrained) > 5 else ""
    one = len(untrained) == 1
    raise DataError(
        f"{'label' if one else 'labels'} {', '.join(shown)}{more} "
        f"{'has' if one else 'have'} no training rows in {spec}, so no model can learn "
        f"{'it' if one else 'them'}; add training rows for {'it' if one else 'them'}, "
        "or drop those rows"
    )


# -- reading ---------------------------------------------------------------------------------


def _read(spec: str, header: bool | None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """DataFrames by split name, and the names of each Hub column that is a ``ClassLabel``
    or a list of one (none for files)."""
    if _is_local(spec):
        frames, _ = read_splits(spec, header)
        names: dict[str, list[str]] = {}
    else:
        frames, names = _read_hub(spec)
    if "train" not in frames:
        raise DataError(
            f"{spec} has no training split; name a file train.csv (or .tsv, .jsonl, .parquet...)"
        )
    return frames, names


def _is_local(spec: str) -> bool:
    """Whether ``spec`` is (or was meant as) a file or folder, not a Hub dataset name."""
    path = Path(spec).expanduser()
    return (
        path.exists()
        or path.suffix.lower() in SUFFIXES
        or spec.startswith((".", "/", "~"))
        or spec.count("/") > 1
    )


def _read_hub(spec: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    import datasets

    name, _, config = spec.partition(":")
    try:
        ds = datasets.load_dataset(name, config or None)
    except Exception as e:
        raise DataError(
            f"cannot load Hugging Face dataset {spec!r}: {first_line(e)}; "
            "check the name (name or name:config) and the network, or pass a local file"
        ) from None
    frames: dict[str, Any] = {}
    names: dict[str, list[str]] = {}
    for split_name, split in ds.items():
        canonical = next((c for c, ns in SPLIT_NAMES.items() if split_name.lower() in ns), None)
        if canonical is None or canonical in frames:
            continue
        df = split.to_pandas()
        df.columns = [str(c) for c in df.columns]
        df.attrs["path"] = f"{spec} (split {split_name})"
        frames[canonical] = df
        for col, feat in split.features.items():
            inner = getattr(feat, "feature", feat)  # Sequence(ClassLabel) or ClassLabel
            if isinstance(inner, datasets.ClassLabel):
                names.setdefault(str(col), [str(n) for n in inner.names])
    return frames, names


def _columns(
    frames: dict[str, Any],
    spec: str,
    text_columns: Sequence[str],
    label_columns: Sequence[str],
    header: bool | None,
    sep: str,
) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """The text columns, the label column(s), and whether those are 0/1 columns: chosen on
    the training split and present in every split."""
    df = frames["train"]
    columns = list(df.columns)
    given = tuple(column_name(c, header) for c in label_columns)
    try:
        texts = resolve_text_columns(
            columns, tuple(column_name(c, header) for c in text_columns), spec
        )
        if len(given) == 1 and any(ch in given[0] for ch in PATTERN_CHARS):
            labels, indicator = _pattern_columns(columns, given[0], texts, spec), True
        elif len(given) > 1:
            labels, indicator = _indicator_columns(columns, given, texts, spec), True
        else:
            try:
                labels = (resolve_label_column(columns, given[0] if given else None, texts, spec),)
            except DataError as e:
                if given:
                    raise
                raise DataError(
                    f"{e}; or, for 0/1 columns, one per label, pass --label-column for each "
                    "or a pattern like 'label_*'"
                ) from None
            indicator = False
    except DataError as e:
        raise _header_error(df, e, sep) from None
    if not indicator:
        refuse_data_header(df, labels[0])
    for name, split_df in frames.items():
        missing = [c for c in (*texts, *labels) if c not in split_df.columns]
        if missing:
            raise DataError(
                f"the {name} split of {spec} lacks column(s) {', '.join(missing)}; "
                f"it has: {', '.join(map(str, split_df.columns))}"
            )
        refuse_nested(split_df, texts, None, spec)
    return texts, labels, indicator


def _header_error(df: Any, e: DataError, sep: str) -> DataError:
    """A column-choice error, pointing to --no-header when the guessed header may be data:
    as ``columns.header_error`` does, or where a column is named like its label ids ("27"
    over "0,27" in GoEmotions' files, which have no header)."""
    err = header_error(df, e, need_label=True)
    if err is not e or not df.attrs.get("guessed_header"):
        return err
    for c in df.columns:
        values = [t for v in df[c].head(SAMPLE_ROWS).tolist() if (t := cell_text(v))]
        if values and _ids(c, sep) and all(_ids(v, sep) for v in values):
            return DataError(
                f"{e}; or, if the first row of {df.attrs['path']} is data, not a header (its "
                f"column {c!r} reads like label ids), pass --no-header (columns are then 0, 1, ...)"
            )
    return e


def _ids(s: str, sep: str) -> bool:
    """Whether ``s`` is integer ids separated by ``sep``."""
    return all(p.strip().isdigit() for p in s.split(sep))


def _pattern_columns(
    columns: list[str], pattern: str, texts: tuple[str, ...], spec: str
) -> tuple[str, ...]:
    """The 0/1 label columns a pattern such as ``label_*`` names, in the file's order."""
    found = tuple(c for c in columns if fnmatchcase(c, pattern) and c not in texts)
    if len(found) < 2:
        got = f"only column {found[0]}" if found else "no column"
        raise DataError(
            f"label column pattern {pattern!r} matches {got} of {spec} (columns: "
            f"{', '.join(columns)}); 0/1 label columns need at least two: fix the pattern"
        )
    return found


def _indicator_columns(
    columns: list[str], given: tuple[str, ...], texts: tuple[str, ...], spec: str
) -> tuple[str, ...]:
    missing = [c for c in given if c not in columns]
    if missing:
        raise DataError(
            f"label column(s) {', '.join(missing)} not in {spec}; it has: {', '.join(columns)}"
        )
    for c in given:
        if c in texts:
            raise DataError(f"column {c} cannot be both text and label; pass another column")
        if given.count(c) > 1:
            raise DataError(f"label column {c} is given {given.count(c)} times; give it once")
    return given


def _parse(
    df: Any, texts: tuple[str, ...], labels: tuple[str, ...], indicator: bool, sep: str, src: str
) -> _Rows:
    """A split's rows with a text (or both texts of a pair) and their labels as read."""
    a = [cell_text(v) for v in df[texts[0]].tolist()]
    b = [cell_text(v) for v in df[texts[1]].tolist()] if len(texts) == 2 else None
    flags = _indicator_labels(df, labels, src) if indicator else None
    values = None if indicator else df[labels[0]].tolist()
    out = _Rows(src, pairs=None if b is None else [], read=len(a))
    for i in range(len(a)):
        if not a[i] or (b is not None and not b[i]):
            out.empty += 1
            continue
        if flags is not None:
            labs: tuple[Token, ...] = flags[i]
        else:
            assert values is not None
            labs, is_list = _cell_labels(values[i], sep, f"{src}, row {i + 1}", labels[0])
            out.lists |= is_list
        out.texts.append(a[i])
        if out.pairs is not None and b is not None:
            out.pairs.append(b[i])
        out.labels.append(labs)
        out.rows.append(i + 1)
    return out


def _cell_labels(v: Any, sep: str, where: str, column: str) -> tuple[tuple[Token, ...], bool]:
    """A label cell's labels (empty when the cell is), and whether it held a list."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return _items(list(v.tolist() if isinstance(v, np.ndarray) else v), sep, where), True
    if is_missing(v):
        return (), False
    if isinstance(v, str):
        s = v.strip()
        if s.startswith("[") and s.endswith("]"):  # a list written as text (JSON, Python)
            return _items(_text_list(s, where, column), sep, where), True
        return tuple(p for p in (x.strip() for x in s.split(sep)) if p), False
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return (int(v),), False
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return (int(v),), False
    hint = (
        "; for 0/1 columns, one per label, pass --label-column for each"
        if isinstance(v, (bool, np.bool_))
        else ""
    )
    raise DataError(
        f"{where}: column {column} holds {_shown(v)}, not labels; give a list of labels, "
        f"or labels separated by {sep!r}{hint}"
    )


def _text_list(s: str, where: str, column: str) -> list[Any]:
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(s)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, list):
            return value
    raise DataError(
        f"{where}: column {column} holds {_shown(s)}, which is not a list; quote the labels "
        '(["a", "b"]) or write them without brackets (a,b)'
    )


def _items(items: list[Any], sep: str, where: str) -> tuple[Token, ...]:
    """A list's labels: names (stripped, empty ones skipped) and integer ids."""
    out: list[Token] = []
    for x in items:
        if isinstance(x, str):
            name = x.strip()
            if sep in name:
                raise DataError(
                    f"{where}: label {name!r} holds the label separator {sep!r}; "
                    f"choose another --label-sep (e.g. {_other_sep(sep)!r})"
                )
            if name:
                out.append(name)
        elif isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
            out.append(int(x))
        elif isinstance(x, (float, np.floating)) and float(x).is_integer():
            out.append(int(x))
        elif not is_missing(x):
            raise DataError(
                f"{where}: label {_shown(x)} is neither a name nor an integer id; fix it"
            )
    return tuple(out)


def _indicator_labels(df: Any, columns: tuple[str, ...], src: str) -> list[tuple[int, ...]]:
    """Each row's labels from 0/1 columns: the positions of the columns holding 1."""
    flags = np.zeros((len(df), len(columns)), dtype=bool)
    for j, c in enumerate(columns):
        col = df[c]
        if col.dtype.kind in "biuf":
            values = col.to_numpy(dtype=float)
            bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
            if len(bad) == 0:
                flags[:, j] = values == 1.0
                continue
        for i, v in enumerate(col.tolist()):
            flags[i, j] = _flag(v, f"{src}, row {i + 1}", c)
    return [tuple(int(j) for j in np.flatnonzero(row)) for row in flags]


def _flag(v: Any, where: str, column: str) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in FLAGS:
        return FLAGS[v.strip().lower()]
    shown = "an empty cell" if is_missing(v) else _shown(v)
    raise DataError(
        f"{where}: label column {column} holds {shown}, not 0 or 1; give each label column "
        "1 where the text has that label and 0 where not"
    )


def _shown(v: Any) -> str:
    """A value for a message, cut short."""
    s = repr(v.tolist() if isinstance(v, np.ndarray) else v)
    return s if len(s) <= 40 else s[:36] + " ..."


def _other_sep(sep: str) -> str:
    return "|" if sep != "|" else ";"


# -- label names -----------------------------------------------------------------------------


def _given_names(label_names: Sequence[str] | str, sep: str) -> tuple[list[str] | None, str]:
    """The given label names (or those of a labels file), and where they came from."""
    given = [label_names] if isinstance(label_names, str) else list(label_names)
    if not given:
        return None, ""
    names, origin = [str(n).strip() for n in given], "--label-names"
    path = Path(names[0]).expanduser()
    if len(names) == 1 and path.is_file():
        names, origin = _names_file(path), f"labels file {path}"
    for i, n in enumerate(names):
        if not n:
            raise DataError(f"--label-names holds an empty name (number {i + 1}); name every id")
        if names.count(n) > 1:
            raise DataError(f"{origin} names {n!r} {names.count(n)} times; give each name once")
    _refuse_separator(names, sep, f"({origin})")
    return names, origin


def _names_file(path: Path) -> list[str]:
    """One label name per line; blank lines at the end are skipped."""
    raw = path.read_bytes()
    encoding = text_encoding(raw[:SNIFF_BYTES])
    try:
        lines = [x.strip() for x in raw.decode(encoding).splitlines()]
    except UnicodeDecodeError as e:
        raise DataError(
            f"labels file {path} is not {codec_name(encoding)} text ({e.reason}); "
            "re-save it as UTF-8"
        ) from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DataError(f"labels file {path} is empty; give one label name per line, in id order")
    if "" in lines:
        raise DataError(
            f"labels file {path}, line {lines.index('') + 1} is empty; give one label name "
            "per line, in id order"
        )
    return lines


def _refuse_separator(names: Iterable[str], sep: str, origin: str) -> None:
    for n in names:
        if sep in n:
            raise DataError(
                f"label name {n!r} {origin} holds the label separator {sep!r}; "
                f"choose another --label-sep (e.g. {_other_sep(sep)!r})"
            )


def _refuse_no_labels(train: _Rows, labels: tuple[str, ...], indicator: bool) -> None:
    """Refuse training data without texts, or whose label column(s) hold no label at all."""
    if not train.texts:
        raise DataError(
            f"no training rows left after cleaning {train.source} ({train.empty} empty "
            "texts); check --text-column"
        )
    if any(train.labels):
        return
    if indicator:
        raise DataError(
            f"label columns {', '.join(labels)} of {train.source} hold 0 in every row; "
            "pass the 0/1 label columns with --label-column"
        )
    raise DataError(
        f"label column {labels[0]} of {train.source} is empty in every row; name the label "
        "column with --label-column (and the separator with --label-sep)"
    )


def _int_like(t: Token) -> bool:
    return isinstance(t, int) or (t[1:] if t.startswith("-") else t).isdigit()


class _LabelMap:
    """Label names in id order, and the id of each label as read.

    Given names (``--label-names``, a labels file, a Hub ``ClassLabel``): a label is a name or
    an integer id. 0/1 columns: a label is the column's position. Otherwise the names are those
    found in training, sorted (numerically where all are integers).
    """

    def __init__(
        self,
        train: _Rows,
        given: list[str] | None,
        origin: str,
        columns: tuple[str, ...] | None,
        sep: str,
        spec: str,
    ) -> None:
        self.given, self.origin, self.numeric = given is not None, origin, False
        if columns is not None:
            self.given = True  # the column positions are the ids
            if given is not None and len(given) != len(columns):
                raise DataError(
                    f"{origin} gives {len(given)} names for {len(columns)} label columns "
                    f"({', '.join(columns)}); give one name per column, or none"
                )
            names = given or list(columns)
            _refuse_separator(names, sep, f"(a label column of {spec})")
        elif given is not None:
            names = given
        else:
            found = {t for labs in train.labels for t in labs}
            self.numeric = all(_int_like(t) for t in found)
            if self.numeric:
                names = [str(v) for v in sorted({int(t) for t in found})]
            else:
                names = sorted({str(t) for t in found})
        if len(names) > MAX_LABELS:
            raise DataError(
                f"the label column of {spec} holds {len(names)} distinct labels; is it really "
                "the label column? pass --label-column NAME (and --label-sep)"
            )
        if len(names) < 2:
            holds = f"{origin} names" if given else f"the training data of {spec} holds"
            raise DataError(
                f"{holds} one label only ({names[0]!r}); multi-label classification needs at "
                "least two (for one yes/no label, train single-label classification)"
            )
        self.names = names
        self.index = {n: i for i, n in enumerate(names)}

    @property
    def size(self) -> int:
        return len(self.names)

    def ids(self, rows: _Rows, k: int) -> list[int]:
        """The ids of row ``k``'s labels; -1 for a label the names lack (found names only:
        refused by the caller as untrained)."""
        try:
            return [self.id(t) for t in rows.labels[k]]
        except LookupError as e:
            raise DataError(f"{rows.where(k)}: {e.args[0]}") from None

    def id(self, t: Token) -> int:
        if isinstance(t, str) and t in self.index:
            return self.index[t]
        if not self.given:
            return self.index.get(str(int(t)) if self.numeric and _int_like(t) else str(t), -1)
        if not _int_like(t):
            raise LookupError(
                f"label {t!r} is not among the {self.size} label names ({self.origin}: "
                f"{', '.join(self.names[:5])}{', ...' if self.size > 5 else ''}); fix the label "
                "or the names"
            )
        if not 0 <= int(t) < self.size:
            raise LookupError(
                f"label id {t} is outside the {self.size} label names ({self.origin}; "
                f"ids 0 to {self.size - 1}); fix the id or name every id"
            )
        return int(t)


# -- splitting and counting ------------------------------------------------------------------


def _carve(
    train: MultiLabelSplit,
    num_labels: int,
    count: float,
    rng: np.random.Generator,
    name: str,
    spec: str,
) -> tuple[MultiLabelSplit, MultiLabelSplit]:
    """About ``count`` rows out of ``train``, stratified by each row's rarest label where the
    labels have rows to spare, else from all rows alike; a held-out row whose label would
    have no training row left goes back to training."""
    counts = np.bincount([i for ids in train.labels for i in ids], minlength=num_labels)
    strata = [min(ids, key=lambda i: (counts[i], i)) if ids else num_labels for ids in train.labels]
    # split.carve stratifies a Split's rows by label: a stand-in whose texts are row numbers
    # and whose labels are strata carves rows by the same rules.
    numbers = [str(i) for i in range(len(train))]
    for labels in (strata, [0] * len(train)):
        try:
            rest, held = carve(Split(numbers, labels), count, rng, name, spec)
        except DataError:
            continue
        keep, out = [int(i) for i in rest.texts], [int(i) for i in held.texts]
        have = {i for r in keep for i in train.labels[r]}
        for r in list(out):
            if not have.issuperset(train.labels[r]):
                out.remove(r)
                keep.append(r)
                have.update(train.labels[r])
        if out:
            return train.subset(sorted(keep)), train.subset(out)
    option = "--val-size" if name == "validation" else "--test-size"
    raise DataError(
        f"cannot carve a {name} split of {max(1, round(count))} row(s) from {spec}: of its "
        f"{len(train)} training rows, each label must keep one in training; lower {option} "
        f"or provide a {name} file"
    )


def _count(splits: dict[str, MultiLabelSplit], names: list[str], report: dict[str, Any]) -> None:
    """Rows and texts without a label per split; the training rows per label."""
    for name, split in splits.items():
        r = report.setdefault(name, {})
        r["rows"] = len(split)
        r["no_label"] = sum(not ids for ids in split.labels)
    counts = np.bincount([i for ids in splits["train"].labels for i in ids], minlength=len(names))
    report["label_names"] = names
    report["label_counts"] = {n: int(c) for n, c in zip(names, counts)}


# -- detection -------------------------------------------------------------------------------


def is_multilabel_data(spec: str, label_columns: Sequence[str] = (), label_sep: str = ",") -> bool:
    """Whether ``spec`` holds multi-label data (for ``--task auto``), from its first rows:
    several label columns (or a pattern) are given, or the label column holds lists, or
    ``label_sep``-delimited labels in some rows."""
    given = tuple(str(c) for c in label_columns)
    if len(given) > 1 or (given and any(ch in given[0] for ch in PATTERN_CHARS)):
        return True
    try:
        path = Path(spec).expanduser()
        if path.is_dir():
            path = split_files(path, SUFFIXES, "a train file")["train"]
        elif not path.is_file():
            return False if _is_local(spec) else _hub_has_label_lists(spec, given)
        df = _sample(path, None)
        label = given[0] if given else None
        if label is not None and label not in df.columns and label.strip().isdigit():
            df = _sample(path, False)  # "1": the second column of a file without a header
            label = column_name(label, False)
        label = _label_column(list(df.columns), label, str(path))
        return label is not None and _looks_multilabel(df[label].tolist(), label_sep)
    except Exception:  # unreadable or malformed: the reader that takes it says why
        return False


def _label_column(columns: list[str], given: str | None, spec: str) -> str | None:
    if given is not None:
        return given if given in columns else None
    try:
        texts = resolve_text_columns(columns, (), spec)
    except DataError:
        texts = ()
    try:
        return resolve_label_column(columns, None, texts, spec)
    except DataError:
        return None


def _sample(path: Path, header: bool | None) -> Any:
    """A file's first rows as a DataFrame with string column names."""
    import csv

    import pandas as pd

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        batch = next(pq.ParquetFile(path).iter_batches(batch_size=SAMPLE_ROWS))
        df = batch.to_pandas()
    elif suffix in (".json", ".jsonl", ".ndjson"):
        df = pd.DataFrame(_first_records(path))
    else:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
        encoding = text_encoding(head)
        df = pd.read_csv(
            path,
            sep=sniff_delimiter(text_sample(head, encoding)) if suffix == ".csv" else "\t",
            quoting=csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE,
            header=None if header is False else "infer",
            nrows=SAMPLE_ROWS,
            keep_default_na=False,
            na_values=[""],
            encoding=encoding,
        )
    df.columns = [str(c) for c in df.columns]
    return df


def _first_records(path: Path) -> list[Any]:
    """The first JSON values of a JSON array or JSON Lines file."""
    return first_json_values(path, SAMPLE_ROWS, 32 * SNIFF_BYTES)


def _looks_multilabel(values: list[Any], sep: str) -> bool:
    """Lists, or some delimited strings whose every part could be a label (no sentence)."""
    if any(isinstance(v, (list, tuple, np.ndarray)) for v in values):
        return True
    strings = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    if any(s.startswith("[") and s.endswith("]") for s in strings):
        return True
    if not sep or not any(sep in s for s in strings):
        return False
    return all(_plausible(p) for s in strings for p in s.split(sep) if p)


def _plausible(part: str) -> bool:
    """Whether part of a delimited string could be a label: short, a few words, no sentence
    (no full stop, question or exclamation mark before a space or at the end)."""
    p = part.strip()
    ends = any(p.endswith(m) or f"{m} " in p for m in ".!?")
    return 0 < len(p) <= 50 and len(p.split()) <= 4 and not ends


def _hub_has_label_lists(spec: str, given: tuple[str, ...]) -> bool:
    """Whether a Hub dataset's declared label column is a list (``Sequence``)."""
    import logging

    import datasets  # first: importing it sets the hub's log level

    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # offline, its retries would print a line each
    try:
        name, _, config = spec.partition(":")
        features = datasets.load_dataset_builder(name, config or None).info.features or {}
    except Exception:  # unknown, private or offline: not taken for multi-label data
        return False
    finally:
        hub_log.setLevel(level)
    label = _label_column([str(k) for k in features], given[0] if given else None, spec)
    feat = features.get(label) if label is not None else None
    return isinstance(feat, list) or getattr(feat, "feature", None) is not None
