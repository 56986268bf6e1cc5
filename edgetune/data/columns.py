"""Choosing the text and label columns: by name or given, and refusing a header that is data."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError
from ..textio import TEXT_NAMES, first_row_is_data, first_row_may_be_data

PAIR_NAMES = (
    ("sentence1", "sentence2"),
    ("text_a", "text_b"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("question", "sentence"),
)
LABEL_NAMES = ("label", "labels", "class", "target", "category")
KNOWN_NAMES = (*TEXT_NAMES, *LABEL_NAMES, *(n for pair in PAIR_NAMES for n in pair))


def _find(columns: list[str], name: str) -> str | None:
    for c in columns:
        if c.lower() == name:
            return c
    return None


def resolve_text_columns(columns: list[str], given: tuple[str, ...], spec: str) -> tuple[str, ...]:
    """The ``given`` text columns, checked, or else a known pair or the one known text name."""
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


def resolve_label_column(
    columns: list[str], given: str | None, texts: tuple[str, ...], spec: str
) -> str:
    """The ``given`` label column, checked, or else the one known label name among the rest."""
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


def header_error(df: Any, e: DataError, need_label: bool) -> DataError:
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


def refuse_data_header(df: Any, label: str) -> None:
    """Refuse a guessed header whose label column is named by data (e.g. "1" over 0s and 1s)."""
    if df.attrs.get("guessed_header") and first_row_is_data(
        [label], [df[label].head(1000).tolist()], KNOWN_NAMES
    ):
        raise _first_row_error(df, need_label=True)


def refuse_nested(df: Any, texts: tuple[str, ...], label: str | None, spec: str) -> None:
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
