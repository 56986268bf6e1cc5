"""Reading labelled data for token classification (named entities, personal data): a tag per word.

Sources: CoNLL files (a word per line, its tag in the last column, a blank line between
sentences), JSON/JSONL/Parquet records holding a word list and a tag list, JSON/JSONL records
holding a text and its entities as character spans, and Hugging Face datasets. Tags written in
IOB1, IOB2 or BIOES (BILOU) are stored as IOB2; validation and test splits the data lacks are
carved from training by sentence.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import DataError, first_line
from ..textio import (
    SNIFF_BYTES,
    TEXT_NAMES,
    codec_name,
    first_json_values,
    text_encoding,
    text_sample,
)
from .read import SPLIT_NAMES
from .split import Split, carve

CONLL_SUFFIXES = (".conll", ".txt", ".iob", ".bio")
RECORD_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet", ".pq")
TOKEN_NAMES = ("tokens", "words")  # the word-list column, when not given
TAG_NAMES = ("ner_tags", "tags", "labels", "ner")  # the tag-list column (never pos_tags)
SPAN_NAMES = ("entities", "spans")  # character spans beside a text column
WORD_PATTERN = re.compile(r"\w+|[^\w\s]")  # str patterns match Unicode words: "Zoë", "Zürich"
# BILOU's L- (last) and U- (unit) are BIOES's E- and S-.
PREFIXES = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}
TAG_HELP = "O, or B-/I-/E-/S- (or BILOU's L-/U-) and a type, like B-PER"
SAMPLE_RECORDS = 20  # records read to choose columns and to detect token data

Words = Callable[[str], list[tuple[str, tuple[int, int]]]]


@dataclass
class TokenSplit:
    """One split of token-classification data: words per sentence and a tag id per word."""

    tokens: list[list[str]]
    tags: list[list[int]]

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, idx: Iterable[int]) -> TokenSplit:
        rows = list(idx)
        return TokenSplit([self.tokens[i] for i in rows], [self.tags[i] for i in rows])

    @property
    def texts(self) -> list[str]:
        """Each sentence's words joined by spaces (for display and calibration)."""
        return [" ".join(words) for words in self.tokens]

    @property
    def pairs(self) -> None:
        """No second text (what code reading either kind of split expects of a ``Split``)."""
        return None


@dataclass
class TokenData:
    """Train/validation/test splits of tagged words, the IOB2 tag names and a reading report."""

    train: TokenSplit
    validation: TokenSplit
    test: TokenSplit
    label_names: list[str]  # "O", then B-TYPE and I-TYPE for each entity type, sorted
    scheme: str  # the scheme the source was written in: IOB2, IOB1 or BIOES
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def entity_types(self) -> list[str]:
        return [n[2:] for n in self.label_names if n.startswith("B-")]


def split_words(text: str) -> list[tuple[str, tuple[int, int]]]:
    """The words of ``text`` with their character offsets: runs of word characters, and each
    other non-space character on its own ("Zürich." → "Zürich", ".")."""
    return [(m.group(), m.span()) for m in WORD_PATTERN.finditer(text)]


def is_tag(tag: str) -> bool:
    """Whether ``tag`` is O or a scheme prefix (IOB, BIOES, BILOU), a hyphen and a type."""
    return tag == "O" or (len(tag) > 2 and tag[0] in PREFIXES and tag[1] == "-")


class _Sentence(NamedTuple):
    """Words and their tag names as read, with where they came from (for messages)."""

    tokens: list[str]
    tags: list[str]
    source: str
    unit: str  # "line" or "record"
    number: int  # the line or record the sentence starts at
    step: int  # 1 where each word has its own line (CoNLL), else 0

    def at(self, i: int) -> str:
        """Where word ``i`` is: its own line (CoNLL), or its place in a record."""
        if self.step:
            return f"{self.source}, {self.unit} {self.number + i}"
        return f"{self.source}, {self.unit} {self.number} (word {i + 1})"


def load_token_data(
    spec: str,
    *,
    tokens_column: str | None = None,
    tags_column: str | None = None,
    label_names: list[str] | None = None,
    val_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
    words: Words | None = None,
) -> TokenData:
    """Read, check, convert to IOB2 and split labelled words.

    Args:
        spec: a CoNLL (.conll/.txt/.iob/.bio), JSON, JSONL or Parquet file, a folder of
            train/dev (or validation)/test files, or a Hugging Face dataset (``name[:config]``).
        tokens_column: the records' word-list column (or the text column of text + spans
            records); detected when None.
        tags_column: the records' tag-list column (or spans column); detected when None.
        label_names: the tag name of each integer tag id (a Hub ``ClassLabel`` names them
            otherwise); their entity types are kept even where no sentence holds one.
        val_size, test_size: fraction (< 1) or sentence count (>= 1) carved from train,
            stratified by each sentence's most frequent entity type, for missing splits.
        words: splits the text of text + spans records into (word, (start, end)) pairs;
            ``split_words`` when None.
    """
    reader = _Reader(tokens_column, tags_column, label_names, words or split_words)
    kept = _drop_empty(reader.read(spec), reader.files)
    scheme, repaired, tagged = _to_iob2({name: ss for name, (_, _, ss) in kept.items()})
    report: dict[str, Any] = {"source": spec, **reader.info, "scheme": scheme}
    report.update(converted_from=None if scheme == "IOB2" else scheme, repaired=repaired)
    names = _label_names(tagged, reader.names or [])
    to_id = {n: i for i, n in enumerate(names)}
    splits = {}
    for name, (read, dropped, sentences) in kept.items():
        report[name] = {"read": read, "dropped_empty_text": dropped}
        tags = [[to_id[t] for t in ts] for ts in tagged[name]]
        splits[name] = TokenSplit([s.tokens for s in sentences], tags)
    _refuse_no_entities(splits["train"], spec, carved=False)
    rng = np.random.default_rng(seed)
    n_train = len(splits["train"])  # fractions are of all training sentences
    for name, size in (("test", test_size), ("validation", val_size)):
        if name not in splits:
            count = size * n_train if size < 1 else size
            splits["train"], splits[name] = _carve(splits["train"], names, count, rng, name, spec)
            report[name] = {"carved_from_train": len(splits[name])}
    _refuse_no_entities(splits["train"], spec, carved=True)
    _count(splits, names, report)
    return TokenData(splits["train"], splits["validation"], splits["test"], names, scheme, report)


def _drop_empty(
    read: dict[str, list[_Sentence]], files: dict[str, str]
) -> dict[str, tuple[int, int, list[_Sentence]]]:
    """(sentences read, dropped for holding no words, those kept) by split; an empty split is
    refused."""
    out = {}
    for name, sentences in read.items():
        kept = [s for s in sentences if s.tokens]
        dropped = len(sentences) - len(kept)
        if not kept:
            raise DataError(
                f"the {name} split ({files[name]}) holds no sentences"
                + (f" ({dropped} without words)" if dropped else "")
                + "; check the file: a word and its tag per line with a blank line between "
                "sentences (CoNLL), or records holding words and tags"
            )
        out[name] = (len(sentences), dropped, kept)
    return out


class _Reader:
    """Reads a spec's splits as sentences of words and tag names, noting what it found."""

    def __init__(
        self,
        tokens_column: str | None,
        tags_column: str | None,
        label_names: list[str] | None,
        words: Words,
    ) -> None:
        self.tokens_column, self.tags_column, self.words = tokens_column, tags_column, words
        self.names = [str(n).strip() for n in label_names] if label_names else None
        for n in self.names or []:
            if not is_tag(n):
                raise DataError(
                    f"--label-names holds {n!r}, which is not a tag ({TAG_HELP}); "
                    "give the tag name of each integer tag id, in id order"
                )
        self.files: dict[str, str] = {}
        self.info: dict[str, Any] = {}
        self.spans: Counter[str] = Counter()

    def read(self, spec: str) -> dict[str, list[_Sentence]]:
        """Sentences by split name ("train", "validation", "test")."""
        path = Path(spec).expanduser()
        if path.is_dir():
            found = _split_files(path)
            self.files = {name: str(f) for name, f in found.items()}
            out = {name: self.read_file(f) for name, f in found.items()}
        elif path.is_file():
            self.files = {"train": str(path)}
            out = {"train": self.read_file(path)}
        elif _looks_like_path(spec):
            raise DataError(f"data file {spec} does not exist; check the path")
        else:
            out = self.read_hub(spec)
        if self.spans:
            self.info["spans"] = self.spans["read"]
            self.info["spans_not_on_word_boundaries"] = self.spans["off_boundary"]
            self.info["spans_without_words"] = self.spans["without_words"]
        self.info["files"] = dict(self.files)
        return out

    def read_file(self, path: Path) -> list[_Sentence]:
        suffix = path.suffix.lower()
        if suffix in CONLL_SUFFIXES:
            self.info.setdefault("format", "conll")
            self.info.setdefault("columns", {"tokens": "first", "tags": "last"})
            return _read_conll(path)
        if suffix in (".parquet", ".pq"):
            import pandas as pd

            self.info.setdefault("format", "parquet")
            try:
                records = pd.read_parquet(path).to_dict("records")
            except Exception as e:  # pyarrow raises many types for malformed files
                raise DataError(
                    f"cannot read {path}: {first_line(e)}; check that it is a valid Parquet file"
                ) from None
            return self.from_records(records, str(path), "record", range(1, len(records) + 1))
        if suffix in (".json", ".jsonl", ".ndjson"):
            self.info.setdefault("format", "json" if suffix == ".json" else "jsonl")
            records, unit, numbers = _read_json(path)
            return self.from_records(records, str(path), unit, numbers)
        raise DataError(
            f"unsupported token data file type {suffix or '(none)'} for {path}; use .conll, "
            ".txt, .iob or .bio (CoNLL), .json, .jsonl or .parquet"
        )

    def read_hub(self, spec: str) -> dict[str, list[_Sentence]]:
        import datasets

        name, _, config = spec.partition(":")
        try:
            ds = datasets.load_dataset(name, config or None)
        except Exception as e:
            raise DataError(
                f"cannot load Hugging Face dataset {spec!r}: {first_line(e)}; "
                "check the name (name or name:config) and the network, or pass a local file"
            ) from None
        self.info["format"] = "hub"
        out: dict[str, list[_Sentence]] = {}
        for split_name, split in ds.items():
            canonical = next((c for c, ns in SPLIT_NAMES.items() if split_name.lower() in ns), None)
            if canonical is None or canonical in out:
                continue
            source = f"{spec} (split {split_name})"
            records = split.to_list()
            _, _, tags = self.columns(records, source)
            inner = getattr(split.features.get(tags), "feature", None)
            if self.names is None and isinstance(inner, datasets.ClassLabel):
                self.names = list(inner.names)  # integer tags are ids of the ClassLabel's names
            self.files[canonical] = source
            out[canonical] = self.from_records(
                records, source, "record", range(1, len(records) + 1)
            )
        if "train" not in out:
            raise DataError(
                f"Hugging Face dataset {spec!r} has no train split (it has "
                f"{', '.join(ds.keys())}); pass a local file or folder"
            )
        return out

    def columns(self, records: list[Any], source: str) -> tuple[str, str, str]:
        """("tokens", word-list column, tag-list column) or ("spans", text column, spans
        column): given, or found by name in the first records."""
        sample = [r for r in records[:SAMPLE_RECORDS] if isinstance(r, dict)]
        keys = list(dict.fromkeys(k for r in sample for k in r))
        fields = ", ".join(map(str, keys)) or "none"
        for given, option in (
            (self.tokens_column, "--text-column"),
            (self.tags_column, "--label-column"),
        ):
            if given is not None and given not in keys:
                raise DataError(f"column {given} ({option}) is not in {source}; it has: {fields}")
        words = self.tokens_column or _pick(keys, TOKEN_NAMES)
        if words is None or (sample and isinstance(sample[0].get(words), str)):
            text = words or _pick(keys, TEXT_NAMES)
            spans = self.tags_column or _pick(keys, SPAN_NAMES)
            if text is None or spans is None:
                raise DataError(
                    f"no word-list column ({'/'.join(TOKEN_NAMES)}) and no text with "
                    f"{'/'.join(SPAN_NAMES)} in {source} (fields: {fields}); name the word "
                    "list with --text-column and the tag list with --label-column"
                )
            self.info.setdefault("columns", {"text": text, "spans": spans})
            return "spans", text, spans
        tags = self.tags_column or _pick(keys, TAG_NAMES)
        if tags is None:
            raise DataError(
                f"no tag column ({'/'.join(TAG_NAMES)}) in {source} (fields: {fields}); "
                "name the tag list with --label-column"
            )
        self.info.setdefault("columns", {"tokens": words, "tags": tags})
        return "tokens", words, tags

    def from_records(
        self, records: list[Any], source: str, unit: str, numbers: Iterable[int]
    ) -> list[_Sentence]:
        """Records as sentences; ``unit`` and ``numbers`` say where each record is."""
        if not records:
            return []
        kind, a, b = self.columns(records, source)
        out = []
        for rec, n in zip(records, numbers):
            where = f"{source}, {unit} {n}"
            if not isinstance(rec, dict):
                raise DataError(
                    f"{where} holds a JSON {type(rec).__name__}, not a record; give each "
                    f"record as an object with fields {a} and {b}"
                )
            if kind == "tokens":
                words, tags = _tagged_words(rec, a, b, where, self.names)
            else:
                words, tags = self.tagged_text(rec, a, b, where)
            sentence = _Sentence(words, tags, source, unit, n, 0)
            _check_tags(sentence)
            out.append(sentence)
        return out

    def tagged_text(
        self, rec: dict[str, Any], text_col: str, spans_col: str, where: str
    ) -> tuple[list[str], list[str]]:
        """A text's words and their IOB2 tags from its character spans.

        A word takes the tag of the span it overlaps (B- on the span's first word, I- after);
        a span that starts or ends inside a word still tags that whole word.
        """
        text = rec.get(text_col)
        text = "" if _missing(text) else text
        if not isinstance(text, str):
            raise DataError(
                f"{where}: field {text_col} holds {_shown(text)}, not text; "
                "give the text as a string (or name the text field with --text-column)"
            )
        spans = sorted(_span(s, where) for s in _as_list(rec.get(spans_col)))
        words = sorted(self.words(text), key=lambda w: w[1])
        ends = [end for _, (_, end) in words]
        tags = ["O"] * len(words)
        for k, (start, end, label) in enumerate(spans):
            if not 0 <= start < end <= len(text):
                raise DataError(
                    f"{where}: span [{start}, {end}) {label} lies outside its text of "
                    f"{len(text)} characters, or is empty; fix its offsets (end is exclusive)"
                )
            if k and start < spans[k - 1][1]:
                p = spans[k - 1]
                raise DataError(
                    f"{where}: spans [{p[0]}, {p[1]}) {p[2]} and [{start}, {end}) {label} "
                    "overlap; a word takes one tag: keep one of them"
                )
            self.spans["read"] += 1
            self.spans["off_boundary"] += _inside(words, ends, start) or _inside(words, ends, end)
            i, first = bisect_right(ends, start), True  # the first word ending after start
            while i < len(words) and words[i][1][0] < end:
                if tags[i] == "O":  # a word two spans share keeps the first span's tag
                    tags[i], first = ("B-" if first else "I-") + label, False
                i += 1
            self.spans["without_words"] += first
        return [w for w, _ in words], tags


def _inside(words: list[tuple[str, tuple[int, int]]], ends: list[int], pos: int) -> bool:
    """Whether character offset ``pos`` falls strictly inside a word."""
    j = bisect_right(ends, pos)  # the first word ending after pos
    return j < len(words) and words[j][1][0] < pos


def _split_files(path: Path) -> dict[str, Path]:
    """A folder's train and optional validation and test files, by split name."""
    from .read import split_files

    expected = "train.conll (or .txt, .iob, .bio, .json, .jsonl, .parquet)"
    return split_files(path, CONLL_SUFFIXES + RECORD_SUFFIXES, expected)


def _looks_like_path(spec: str) -> bool:
    """Whether a spec that is no file or folder was meant as one (not a Hub dataset name)."""
    suffix = Path(spec).suffix.lower()
    known = (*CONLL_SUFFIXES, *RECORD_SUFFIXES, ".csv", ".tsv")
    return suffix in known or spec.startswith((".", "/", "~")) or spec.count("/") > 1


def _pick(keys: list[str], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` among ``keys`` (in any case), as the key is spelled."""
    lower = {str(k).lower(): k for k in reversed(keys)}
    return next((lower[n] for n in names if n in lower), None)


def _read_text(path: Path) -> str:
    """A text file's content: UTF-8 (a byte-order mark skipped) or UTF-16 after its mark."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}; check the file") from None
    encoding = text_encoding(raw[:SNIFF_BYTES])
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        lines = raw[: e.start].count(b"\n") + 1
        line = f" at line {lines}" if encoding != "utf-16" else ""
        raise DataError(
            f"{path} is not {codec_name(encoding)} text ({e.reason}{line}); re-save it as UTF-8"
        ) from None


def _fields(line: str) -> list[str]:
    """A CoNLL line's columns: tab-separated where it holds a tab (words may hold spaces),
    else separated by spaces. A no-break space stays inside its word."""
    if "\t" in line:
        return [f.strip(" ") for f in line.strip(" \t\r\f\v").split("\t")]
    return [f for f in re.split(r"[ \r\f\v]+", line) if f]


def _read_conll(path: Path) -> list[_Sentence]:
    """Sentences of a CoNLL file: a word per line, its tag last, blank lines between sentences,
    ``-DOCSTART-`` lines skipped."""
    sentences: list[_Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    first = width = width_line = 0
    for n, line in enumerate(_read_text(path).split("\n"), 1):
        fields = _fields(line)
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                sentences.append(_Sentence(words, tags, str(path), "line", first, 1))
                words, tags = [], []
            continue
        if len(fields) < 2:
            raise DataError(
                f"{path}, line {n}: {_shown(line.strip())} has a word but no tag; a CoNLL line "
                "holds the word, any other columns and the tag last, separated by spaces or tabs"
            )
        if not width:
            width, width_line = len(fields), n
        elif len(fields) != width:
            raise DataError(
                f"{path}, line {n} has {len(fields)} columns but line {width_line} has {width}; "
                "give every line the same columns, the tag last (is a word or tag missing?)"
            )
        if not words:
            first = n
        words.append(fields[0])
        tags.append(fields[-1])
    if words:
        sentences.append(_Sentence(words, tags, str(path), "line", first, 1))
    for s in sentences:
        _check_tags(s)
    return sentences


def _read_json(path: Path) -> tuple[list[Any], str, list[int]]:
    """A JSON file's records (an array of objects, or JSON Lines), with where each one is:
    ("record", 1, 2, ...) in an array, ("line", its line numbers) in JSON Lines."""
    text = _read_text(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":  # more after one value: JSON Lines in a .json file
                raise DataError(
                    f"{path}, line {e.lineno}: not valid JSON ({e.msg}); fix the file"
                ) from None
        else:
            records = data if isinstance(data, list) else [data]
            return records, "record", list(range(1, len(records) + 1))
    records, numbers = [], []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}, line {n}: not valid JSON ({e.msg}); a JSON Lines file holds one "
                "record (an object) per line"
            ) from None
        numbers.append(n)
    return records, "line", numbers


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _as_list(v: Any) -> Any:
    """A record's list field as a list ([] when missing); numpy arrays (Parquet) as lists."""
    if _missing(v):
        return []
    if isinstance(v, tuple):
        return list(v)
    return v.tolist() if hasattr(v, "tolist") and not isinstance(v, str) else v


def _shown(v: Any) -> str:
    """A value for a message, cut short."""
    s = repr(v)
    return s if len(s) <= 40 else s[:36] + " ..."


def _tagged_words(
    rec: dict[str, Any], words_col: str, tags_col: str, where: str, names: list[str] | None
) -> tuple[list[str], list[str]]:
    """A record's words and tag names (integer tags named by ``names``)."""
    words, tags = _as_list(rec.get(words_col)), _as_list(rec.get(tags_col))
    for col, v, what in ((words_col, words, "words"), (tags_col, tags, "tags")):
        if not isinstance(v, list):
            raise DataError(
                f"{where}: field {col} holds {_shown(v)}, not a list of {what}; give a list "
                f"of {what} (or name the {what} field with "
                f"{'--text-column' if what == 'words' else '--label-column'})"
            )
    if len(words) != len(tags):
        raise DataError(
            f"{where} has {len(words)} words in {words_col} but {len(tags)} tags in {tags_col}; "
            "give one tag per word"
        )
    for w in words:
        if not isinstance(w, (str, int, float)) or isinstance(w, bool) or _missing(w):
            raise DataError(f"{where}: word {_shown(w)} in {words_col} is not text; fix it")
    return [str(w) for w in words], [
        _tag_name(t, f"{where} (word {i + 1})", names) for i, t in enumerate(tags)
    ]


def _tag_name(tag: Any, where: str, names: list[str] | None) -> str:
    if isinstance(tag, str):
        return tag.strip()
    if isinstance(tag, Integral) and not isinstance(tag, bool):
        if names is None:
            raise DataError(
                f"integer tags need --label-names, the tag name of each id in order "
                f"(e.g. O,B-PER,I-PER); {where} holds tag {tag}"
            )
        if not 0 <= int(tag) < len(names):
            raise DataError(
                f"tag id {tag} at {where} is outside --label-names (ids 0 to {len(names) - 1}); "
                "name every tag id"
            )
        return names[int(tag)]
    return repr(tag)  # refused as no tag by _check_tags, which says where


def _check_tags(s: _Sentence) -> None:
    for i, tag in enumerate(s.tags):
        if not is_tag(tag):
            raise DataError(
                f"tag {tag!r} at {s.at(i)} is not an entity tag ({TAG_HELP}); fix the tag"
                + (" (the tag is the last column of a line)" if s.step else "")
            )


def _span(s: Any, where: str) -> tuple[int, int, str]:
    """A span as (start, end, label): {"start", "end", "label"} (Label Studio's "labels" list
    and "value" wrapper too) or a [start, end, label] triple (spaCy)."""
    start: Any = None
    end: Any = None
    label: Any = None
    if isinstance(s, dict):
        v = s["value"] if isinstance(s.get("value"), dict) else s
        start, end, label = v.get("start"), v.get("end"), v.get("label", v.get("labels"))
        if isinstance(label, list) and len(label) == 1:
            label = label[0]
    elif isinstance(s, (list, tuple)) and len(s) == 3:
        start, end, label = s
    ok = all(isinstance(x, Integral) and not isinstance(x, bool) for x in (start, end))
    if not ok or not isinstance(label, str) or not label.strip():
        raise DataError(
            f"{where}: span {_shown(s)} is not {{start, end, label}} or [start, end, label] "
            "with integer character offsets and a label; fix it"
        )
    return int(start), int(end), label.strip()


def _to_iob2(
    splits: dict[str, list[_Sentence]],
) -> tuple[str, int, dict[str, list[list[str]]]]:
    """The scheme the tags were written in, how many transitions it does not allow were read
    as conlleval reads them, and the tags in IOB2, by split.

    BIOES where an E-, S-, L- or U- tag appears; else IOB1 where I- starts more entities than
    B- does (IOB1 writes B- only between two adjacent entities of one type); else IOB2. Both
    IOB schemes convert alike: an I-X that continues no X entity starts one (B-X).
    """
    counts: Counter[str] = Counter()
    out = {name: [_convert(s.tags, counts) for s in ss] for name, ss in splits.items()}
    if counts["closing"]:
        return "BIOES", counts["i_start"], out
    if counts["i_start"] > counts["b_start"]:
        return "IOB1", counts["b_start"], out  # a B-X after O or another type, read as B-X
    return "IOB2", counts["i_start"], out


def _convert(tags: list[str], counts: Counter[str]) -> list[str]:
    """One sentence's tags in IOB2, counting entities started by B- and by I- (or E-)."""
    out = []
    open_type = None  # the type of the entity the previous word leaves open
    for tag in tags:
        if tag == "O":
            out.append(tag)
            open_type = None
            continue
        prefix, kind = PREFIXES[tag[0]], tag[2:]
        if prefix in "ES":
            counts["closing"] += 1
        if prefix in "BS":
            counts["b_start"] += open_type != kind
            out.append("B-" + kind)
        elif open_type == kind:
            out.append("I-" + kind)
        else:
            counts["i_start"] += 1
            out.append("B-" + kind)
        open_type = kind if prefix in "BI" else None
    return out


def _label_names(tagged: dict[str, list[list[str]]], declared: list[str]) -> list[str]:
    """ "O", then B- and I- for each entity type (of the data and of ``declared``), sorted."""
    types = {t[2:] for ss in tagged.values() for tags in ss for t in tags if t != "O"}
    types |= {n[2:] for n in declared if n != "O"}
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in "BI"]


def _refuse_no_entities(train: TokenSplit, spec: str, carved: bool) -> None:
    """Refuse training sentences without an entity: as read, or once splits were carved."""
    if any(t for tags in train.tags for t in tags):  # id 0 is "O"
        return
    if carved:
        raise DataError(
            f"no entities left in the training sentences of {spec} once validation and test "
            "sentences were carved out; provide validation and test files, or more sentences"
        )
    raise DataError(
        f"the training data of {spec} holds no entities (every word is tagged O); tag the "
        "entities (B-TYPE, I-TYPE, or spans), or name the tag column with --label-column"
    )


def _carve(
    train: TokenSplit,
    names: list[str],
    count: float,
    rng: np.random.Generator,
    name: str,
    spec: str,
) -> tuple[TokenSplit, TokenSplit]:
    """About ``count`` sentences out of ``train``, stratified by each sentence's most frequent
    entity type where the types have sentences to spare, else from all sentences alike."""
    # split.carve stratifies a Split's rows by label: a stand-in whose texts are sentence
    # numbers and whose labels are strata carves sentences by the same rules.
    ids = [str(i) for i in range(len(train))]
    for strata in (_strata(train, names), [0] * len(train)):
        try:
            rest, held = carve(Split(ids, strata), count, rng, name, spec)
        except DataError:
            continue
        return train.subset(int(i) for i in rest.texts), train.subset(int(i) for i in held.texts)
    option = "--val-size" if name == "validation" else "--test-size"
    raise DataError(
        f"cannot carve a {name} split of {max(1, round(count))} sentence(s) from {spec}: it has "
        f"{len(train)} training sentence(s) and one must stay in training; lower {option} "
        f"or provide a {name} file"
    )


def _strata(split: TokenSplit, names: list[str]) -> list[int]:
    """Each sentence's most frequent entity type (ties: the first by name) as a number; the
    sentences without entities form their own stratum."""
    keys = []
    for tags in split.tags:
        c = Counter(names[t][2:] for t in tags if names[t].startswith("B-"))
        keys.append(max(sorted(c), key=c.__getitem__) if c else "")
    index = {k: i for i, k in enumerate(sorted(set(keys)))}
    return [index[k] for k in keys]


def _count(splits: dict[str, TokenSplit], names: list[str], report: dict[str, Any]) -> None:
    """Sentences, words and entities per split; the training entities per type."""
    for name, split in splits.items():
        r = report.setdefault(name, {})
        r["rows"] = len(split)
        r["tokens"] = sum(len(t) for t in split.tokens)
        r["entities"] = sum(names[t].startswith("B-") for tags in split.tags for t in tags)
    train = Counter(names[t][2:] for tags in splits["train"].tags for t in tags)
    report["label_names"] = names
    report["entity_counts"] = {n[2:]: train[n[2:]] for n in names if n.startswith("B-")}


def is_token_data(spec: str) -> bool:
    """Whether ``spec`` holds token-classification data (for ``--task auto``), from a look at
    its start: a CoNLL file, or records holding a word list or a text with entities/spans."""
    path = Path(spec).expanduser()
    if path.is_dir():
        suffixes = CONLL_SUFFIXES + RECORD_SUFFIXES
        return any(
            _is_token_file(f)
            for f in sorted(path.iterdir())
            if f.is_file()
            and f.stem.lower() in SPLIT_NAMES["train"]
            and f.suffix.lower() in suffixes
        )
    if path.is_file():
        return _is_token_file(path)
    if _looks_like_path(spec):
        return False
    return _hub_has_tokens(spec)


def _is_token_file(path: Path) -> bool:
    suffix = path.suffix.lower()
    try:
        if suffix in (".conll", ".iob", ".bio"):
            return True
        if suffix == ".txt":
            return _looks_like_conll(path)
        if suffix in (".parquet", ".pq"):
            return _parquet_has_tokens(path)
        if suffix in (".json", ".jsonl", ".ndjson"):
            return any(_token_record(r) for r in _first_records(path))
    except Exception:  # unreadable or malformed: the reader that takes it says why
        return False
    return False


def _head(path: Path, size: int = SNIFF_BYTES) -> str:
    with open(path, "rb") as f:
        head = f.read(size)
    return text_sample(head, text_encoding(head))


def _looks_like_conll(path: Path) -> bool:
    """Whether a text file's first lines are words with columns, the last a tag."""
    lines = [_fields(x) for x in _head(path).split("\n")]
    lines = [f for f in lines if f and f[0] != "-DOCSTART-"][:SAMPLE_RECORDS]
    return bool(lines) and all(len(f) >= 2 for f in lines) and any(is_tag(f[-1]) for f in lines)


def _first_records(path: Path) -> list[Any]:
    """The first JSON values of a JSON array or JSON Lines file."""
    return first_json_values(path, SAMPLE_RECORDS, 8 * SNIFF_BYTES)


def _token_record(r: Any) -> bool:
    """Whether a record holds a word list, or a text with entities/spans."""
    if not isinstance(r, dict):
        return False
    fields = {str(k).lower(): v for k, v in r.items()}
    words = [fields.get(n) for n in TOKEN_NAMES]
    if any(isinstance(w, list) and all(isinstance(x, str) for x in w) for w in words):
        return True
    return any(isinstance(fields.get(n), str) for n in TEXT_NAMES) and any(
        isinstance(fields.get(n), list) for n in SPAN_NAMES
    )


def _parquet_has_tokens(path: Path) -> bool:
    """Whether a Parquet file's schema holds a list of strings named tokens/words, or a text
    column beside an entities/spans list."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {f.name.lower(): f.type for f in pq.read_schema(path)}

    def is_list(t: Any) -> bool:
        return t is not None and (pa.types.is_list(t) or pa.types.is_large_list(t))

    def is_string(t: Any) -> bool:
        return t is not None and (pa.types.is_string(t) or pa.types.is_large_string(t))

    if any(is_list(t) and is_string(t.value_type) for n, t in types.items() if n in TOKEN_NAMES):
        return True
    return any(is_string(types.get(n)) for n in TEXT_NAMES) and any(
        is_list(types.get(n)) for n in SPAN_NAMES
    )


def _hub_has_tokens(spec: str) -> bool:
    """Whether a Hub dataset's declared features hold a list of strings named tokens/words."""
    import logging

    import datasets  # first: importing it sets the hub's log level

    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # offline, its retries would print a line each
    try:
        name, _, config = spec.partition(":")
        features = datasets.load_dataset_builder(name, config or None).info.features or {}
    except Exception:  # unknown, private or offline: not taken for token data
        return False
    finally:
        hub_log.setLevel(level)
    return any(
        key.lower() in TOKEN_NAMES
        and getattr(getattr(feat, "feature", None), "dtype", None) == "string"
        for key, feat in features.items()
    )
