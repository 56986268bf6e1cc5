"""Inputs for ``edgetune predict``: plain lines, CSV, TSV or JSONL, streamed (never loaded whole).

Text is UTF-8, or UTF-16 after its byte-order mark. Bad bytes become U+FFFD (a warning on the
item) and a line that cannot be classified becomes an item with an error: one bad line never
stops a run.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..textio import (
    SNIFF_BYTES,
    TEXT_NAMES,
    codec_name,
    column_name,
    first_row_is_data,
    first_row_may_be_data,
    sniff_delimiter,
    text_encoding,
    text_sample,
)

if TYPE_CHECKING:
    pass


@dataclass
class Item:
    """One input line: its text, or why it cannot be classified."""

    index: int
    text: str | None
    warning: str | None = None
    error: str | None = None


def _text_file(raw: Any, newline: str = "\n") -> tuple[Any, bytes]:
    """A text view of a binary stream in its encoding (bad bytes become U+FFFD), and its head.

    Lines end at "\n" only, as in the bytes; the csv module wants ``newline=""``.
    """
    if not hasattr(raw, "peek"):  # e.g. a BytesIO standing in for stdin
        raw = io.BufferedReader(raw)
    head = raw.peek(SNIFF_BYTES)[:SNIFF_BYTES]
    f = io.TextIOWrapper(raw, encoding=text_encoding(head), errors="replace", newline=newline)
    return f, head


def _replaced(text: str, f: Any) -> str | None:
    if "\ufffd" not in text:
        return None
    return f"invalid {codec_name(f.encoding)} bytes replaced by U+FFFD"


def text_item(index: int, text: str, warning: str | None = None) -> Item:
    """An input text, or an ``empty text`` error when it holds nothing to classify."""
    if not text.strip():
        return Item(index, None, warning, "empty text")
    return Item(index, text, warning)


def iter_lines(stream: Any) -> Iterator[Item]:
    """Plain text, one text per line (a binary stream; bad bytes are replaced, not fatal)."""
    f, _ = _text_file(stream)
    try:
        for i, line in enumerate(f):
            text = line.rstrip("\r\n")
            yield text_item(i, text, _replaced(text, f))
    finally:
        f.detach()  # the caller owns the stream (stdin must not be closed under it)


def iter_table(path: Path, text_column: str | None, header: bool | None = None) -> Iterator[Item]:
    """CSV / TSV rows or JSONL objects, reading the text column (see ``iter_inputs``)."""
    suffix = path.suffix.lower()
    with open(path, "rb") as raw:
        f, head = _text_file(raw, "\n" if suffix == ".jsonl" else "")
        if suffix == ".jsonl":
            for i, line in enumerate(f):
                warning = _replaced(line, f)
                try:
                    obj = json.loads(line) if line.strip() else {}
                except json.JSONDecodeError as e:
                    yield Item(i, None, warning, f"not valid JSON ({e.msg})")
                    continue
                if not isinstance(obj, dict):  # a bare 5, null or "text" line
                    yield Item(i, None, warning, 'not a JSON object; write {"text": ...}')
                    continue
                col = text_column or next((c for c in TEXT_NAMES if c in obj), None)
                value = obj.get(col) if col else None
                if value is None:
                    yield Item(i, None, warning, f"no {col or 'text'} field; pass --text-column")
                    continue
                yield text_item(i, str(value), warning)
            return
        sample = text_sample(head, f.encoding)
        sep = sniff_delimiter(sample) if suffix == ".csv" else "\t"
        csv.field_size_limit(1 << 30)  # a megabyte-long text is a text, not an error
        reader: Iterator[list[str]] = (r for r in csv.reader(f, delimiter=sep) if r)  # no blanks
        first = next(reader, [])
        if header is False:
            cols = [str(i) for i in range(len(first))]
            if text_column is not None:
                text_column = column_name(text_column, header)  # " 1" or "01" name column 1
            reader = itertools.chain([first], reader)
        else:
            cols = first
        below = [r for r in csv.reader(sample.splitlines(), delimiter=sep) if r][1:]
        at = cols.index(_input_column(path, cols, text_column, header, below))
        for i, row in enumerate(reader):
            text = row[at] if at < len(row) else ""
            yield text_item(i, text, _replaced(text, f))


def _input_column(
    path: Path, cols: list[str], given: str | None, header: bool | None, below: list[list[str]]
) -> str:
    """The text column of a predict input table; refuses a header row that looks like data."""
    col = given or next((c for c in cols if c.lower() in TEXT_NAMES), None)
    if col is None and len(cols) == 1:
        col = cols[0]
        if header is None:  # one column of an unknown name: say which line was not classified
            warnings.warn(
                f"{path}: the first line ({col[:40]!r}) was read as the column's name, not as "
                "a text; pass --no-header if it is a text",
                stacklevel=2,
            )
    if col is not None and col in cols:
        return col
    what = col or "(text, sentence, review, content)"
    values = [[r[i] if i < len(r) else None for r in below] for i in range(len(cols))]
    if header is None and first_row_is_data(cols, values, TEXT_NAMES):
        longest = max(range(len(cols)), key=lambda i: len(cols[i]))
        raise ConfigError(
            f"the first row of {path} looks like data ({', '.join(map(repr, cols))}), not a "
            f"header; pass --no-header (columns are then 0, 1, ...) and --text-column {longest}"
        )
    hint = ""
    if header is None and first_row_may_be_data(cols, values, TEXT_NAMES):
        hint = "; if its first row is data, pass --no-header and --text-column 0 (or 1, ...)"
    raise ConfigError(
        f"{path} has no text column {what}; columns: {', '.join(cols)}; pass --text-column{hint}"
    )


def iter_inputs(
    path: str | None, text_column: str | None = None, *, header: bool | None = None
) -> Iterator[Item]:
    """Items from a file (plain lines, .csv, .tsv, .jsonl) or, for None or ``-``, stdin.

    Text is UTF-8, or UTF-16 after its byte-order mark. A .csv file's delimiter (, ; | or tab) is
    sniffed. ``header`` (CSV/TSV only): None or True, the first row names the columns; False,
    it is data and columns are "0", "1", ... (so ``text_column="1"``).
    """
    import sys

    if path is None or path == "-":
        yield from iter_lines(sys.stdin.buffer)
        return
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"--input {path} is a directory; pass a text, CSV, TSV or JSONL file")
    if not p.is_file():
        raise ConfigError(f"--input {path} does not exist; pass a text, CSV, TSV or JSONL file")
    if p.suffix.lower() in (".csv", ".tsv", ".jsonl"):
        yield from iter_table(p, text_column, header)
    else:
        with open(p, "rb") as f:
            yield from iter_lines(f)


def predict_items(
    clf: Any, items: Iterable[Item], *, chunk: int = 256, **kwargs: Any
) -> Iterator[tuple[Item, Any]]:
    """(item, prediction) in input order; items with an error get None. ``clf`` is a
    ``Classifier`` (Predictions) or a ``Tagger`` (Tagged results): anything with ``predict``."""
    buf: list[Item] = []

    def flush() -> Iterator[tuple[Item, Any]]:
        ok = [it for it in buf if it.text is not None]
        preds = iter(clf.predict([it.text for it in ok if it.text is not None], **kwargs))
        for it in buf:
            yield it, (next(preds) if it.text is not None else None)

    for it in items:
        buf.append(it)
        if len(buf) >= chunk:
            yield from flush()
            buf = []
    if buf:
        yield from flush()
