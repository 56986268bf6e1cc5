"""Reading users' text files, shared by training data and ``edgetune predict`` inputs.

Encoding detection (UTF-8, a byte-order mark, UTF-16), delimiter sniffing, the column names
taken for text, column names without a header, empty cells, and the test of whether a CSV/TSV
header row is really data. The standard library only: the torch-free runtime reads its inputs
through this module, and so does ``edgetune.data`` (which adds pandas on top).
"""

from __future__ import annotations

import codecs
import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# Columns (or JSON fields) taken for the text when none is given, in order of preference.
TEXT_NAMES = ("text", "sentence", "review", "content", "document", "body", "utterance", "comment")
SNIFF_BYTES = 8192  # enough for a header and a few rows; csv.Sniffer is slow on long samples


def text_encoding(head: bytes) -> str:
    """The codec for a text file that starts with ``head``.

    "utf-16" after a UTF-16 byte-order mark (Windows tools write one), else "utf-8-sig": UTF-8,
    skipping a byte-order mark, which would otherwise stick to the first column or line.
    """
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = codecs.getincrementaldecoder("utf-16")().decode(head)
        except UnicodeDecodeError:
            return "utf-8-sig"
        # Real text holds some ASCII (a space, a line break, a delimiter); binary junk that
        # happens to start with \xff\xfe mostly does not, and is then refused as not UTF-8.
        if any(ch < "\x80" for ch in text):
            return "utf-16"
    return "utf-8-sig"


def codec_name(encoding: str) -> str:
    """How messages name an encoding from ``text_encoding``: "UTF-16" or "UTF-8"."""
    return "UTF-16" if encoding == "utf-16" else "UTF-8"


def text_sample(head: bytes, encoding: str) -> str:
    """The whole lines of ``head`` decoded (a line cut at the end of a partial head is dropped)."""
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head)
    return (text.rpartition("\n")[0] or text) if len(head) >= SNIFF_BYTES else text


def sniff_delimiter(sample: str) -> str:
    """The delimiter of CSV text (, ; | or tab) from its first lines, as pandas' ``sep=None``
    does; a comma when unclear (one column, or no consistent candidate)."""
    try:
        return csv.Sniffer().sniff("\n".join(sample.splitlines()[:20]), ",;|\t").delimiter
    except csv.Error:
        return ","


def column_name(given: Any, header: bool | None) -> str:
    """A column name as given; without a header, " 1", "01" or 1 also name column "1"."""
    return str(int(given)) if header is False and str(given).strip().isdigit() else str(given)


def is_missing(v: Any) -> bool:
    """Whether a cell holds nothing: None, NaN (pandas' empty cell) or blank text."""
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and not v.strip()


def cell_text(v: Any) -> str:
    """A cell as stripped text; "" when it is missing."""
    return "" if is_missing(v) else str(v).strip()


def _numeric(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _present(values: Iterable[Any]) -> list[str]:
    return [t for v in values if (t := cell_text(v))]


def first_row_is_data(
    names: Sequence[str], columns: Sequence[Sequence[Any]], known: Iterable[str] = ()
) -> bool:
    """Whether a header row read from a CSV/TSV file is surely a data row.

    Some column whose name is not a ``known`` one is named by one of its own values, or by a
    number over a column of numbers ("good movie,1" over "bad plot,0").
    """
    skip = {k.lower() for k in known}
    for name, values in zip(names, columns):
        vals = _present(values)
        if name.lower() in skip or not vals:
            continue
        if name.strip() in vals or (_numeric(name) and all(_numeric(v) for v in vals)):
            return True
    return False


def first_row_may_be_data(
    names: Sequence[str], columns: Sequence[Sequence[Any]], known: Iterable[str]
) -> bool:
    """Whether a header row could be data: no ``known`` name, and each name is a number exactly
    where its column holds numbers."""
    if {n.lower() for n in names} & {k.lower() for k in known}:
        return False
    return all(
        _numeric(n) == all(_numeric(v) for v in _present(vals)) for n, vals in zip(names, columns)
    )


def first_json_values(path: Path, limit: int, max_bytes: int = 32 * SNIFF_BYTES) -> list[Any]:
    """The first ``limit`` values of a JSON array or JSON Lines file, read from its start (at
    most ``max_bytes``; a value cut there is left out): what detection looks at."""
    import json

    with open(path, "rb") as f:
        head = f.read(max_bytes)
    text = text_sample(head, text_encoding(head)).lstrip()
    text = text[1:] if text.startswith("[") else text
    decoder, pos = json.JSONDecoder(), 0
    out: list[Any] = []
    while len(out) < limit:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        out.append(value)
    return out
