"""The edge runtime: load a bundle and classify text with onnxruntime, tokenizers and numpy only.

No torch, no transformers: ``pip install edgetune`` (without the ``train`` extra) is enough.

    from edgetune.runtime import Classifier

    clf = Classifier.load("bundles/sst2")
    clf.predict(["a gorgeous film", "dull and lifeless"])
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import bundle as bundlefmt
from .errors import BundleError, ConfigError


@dataclass
class Prediction:
    """One text's result: the top label and its probability (and more on request)."""

    label: str
    score: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    scores: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.label, "score": round(self.score, 6)}
        if len(self.top_k) > 1:
            d["top_k"] = [{"label": lb, "score": round(s, 6)} for lb, s in self.top_k]
        if self.scores is not None:
            d["scores"] = {k: round(v, 6) for k, v in self.scores.items()}
        return d


class Classifier:
    """A verified bundle in an ONNX Runtime session, with its tokenizer and labels."""

    def __init__(self, root: Path, manifest: dict[str, Any], variant: str, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.root, self.manifest, self.variant = root, manifest, variant
        self.labels: list[str] = list(manifest.get("labels") or [])
        self.max_length = int(manifest.get("max_length") or 128)
        info = manifest["variants"][variant]
        self.tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(root / info["file"]), so, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.pad_id = _pad_id(root)
        if not self.labels:
            n = self.session.get_outputs()[0].shape[-1]
            self.labels = [f"LABEL_{i}" for i in range(n if isinstance(n, int) else 2)]

    @classmethod
    def load(
        cls,
        bundle: str | os.PathLike[str],
        *,
        variant: str | None = None,
        threads: int | None = None,
    ) -> Classifier:
        """Verify the bundle's SHA-256 manifest, then load ``variant`` (default: the bundle's)."""
        root = Path(bundle).expanduser()
        manifest = bundlefmt.verify(root)  # a tampered or truncated bundle never runs
        name = bundlefmt.pick_variant(manifest, variant, root)
        if not (root / "tokenizer.json").is_file():
            raise BundleError(f"bundle {root} has no tokenizer.json; re-export it")
        return cls(root, manifest, name, threads or min(os.cpu_count() or 1, 4))

    def predict(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        top_k: int = 1,
        all_scores: bool = False,
    ) -> list[Prediction]:
        """Classify ``texts``; results come back in input order.

        Texts are batched by length (less padding); longer texts are truncated to the bundle's
        max length.
        """
        if batch_size < 1 or top_k < 1:
            raise ConfigError("batch_size and top_k must be at least 1")
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if not texts:
            return []
        encs = self.tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encs], kind="stable")
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            probs[rows] = _softmax(self._run([encs[r] for r in rows]))
        return [self._result(p, top_k, all_scores) for p in probs]

    def _run(self, encs: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encs)
        ids = np.full((len(encs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        types = np.zeros((len(encs), width), dtype=np.int64)
        for j, e in enumerate(encs):
            n = len(e.ids)
            ids[j, :n] = e.ids
            mask[j, :n] = 1
            types[j, :n] = e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]

    def _result(self, p: np.ndarray, top_k: int, all_scores: bool) -> Prediction:
        best = np.argsort(-p, kind="stable")[: max(top_k, 1)]
        return Prediction(
            label=self.labels[int(best[0])],
            score=float(p[best[0]]),
            top_k=[(self.labels[int(i)], float(p[i])) for i in best],
            scores={lb: float(s) for lb, s in zip(self.labels, p)} if all_scores else None,
        )


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _pad_id(root: Path) -> int:
    try:
        cfg = json.loads((root / "config.json").read_text())
        pad = cfg.get("pad_token_id")
        return int(pad) if pad is not None else 0
    except (OSError, ValueError):
        return 0


# -- inputs for `edgetune predict` (streamed, never loaded whole) --------------------------------

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "body")


@dataclass
class Item:
    """One input line: its text, or why it cannot be classified."""

    index: int
    text: str | None
    warning: str | None = None
    error: str | None = None


def _decode(raw: bytes) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), "invalid UTF-8 bytes replaced by U+FFFD"


def text_item(index: int, text: str, warning: str | None = None) -> Item:
    """An input text, or an ``empty text`` error when it holds nothing to classify."""
    if not text.strip():
        return Item(index, None, warning, "empty text")
    return Item(index, text, warning)


def iter_lines(stream: Any) -> Iterator[Item]:
    """Plain text, one text per line (a binary stream; bad UTF-8 is replaced, not fatal)."""
    for i, raw in enumerate(stream):
        text, warning = _decode(raw.rstrip(b"\r\n"))
        yield text_item(i, text, warning)


def iter_table(path: Path, text_column: str | None) -> Iterator[Item]:
    """CSV / TSV rows or JSONL objects, reading the text column."""
    import csv
    import io

    suffix = path.suffix.lower()
    with open(path, "rb") as raw:
        if suffix == ".jsonl":
            for i, line in enumerate(raw):
                text, warning = _decode(line)
                try:
                    obj = json.loads(text) if text.strip() else {}
                except json.JSONDecodeError as e:
                    yield Item(i, None, warning, f"not valid JSON ({e.msg})")
                    continue
                col = text_column or next((c for c in TEXT_COLUMNS if c in obj), None)
                value = obj.get(col) if col and isinstance(obj, dict) else None
                if value is None:
                    yield Item(i, None, warning, f"no {col or 'text'} field; pass --text-column")
                    continue
                yield text_item(i, str(value), warning)
            return
        f = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
        cols = reader.fieldnames or []
        col = text_column or next((c for c in cols if c.lower() in TEXT_COLUMNS), None)
        if col is None and len(cols) == 1:
            col = cols[0]
        if col is None or col not in cols:
            raise ConfigError(
                f"{path} has no text column {col or '(text, sentence, review, content)'}; "
                f"columns: {', '.join(cols)}; pass --text-column"
            )
        csv.field_size_limit(1 << 30)  # a megabyte-long text is a text, not an error
        for i, row in enumerate(reader):
            value = row.get(col)
            text = value or ""
            warning = "invalid UTF-8 bytes replaced by U+FFFD" if "\ufffd" in text else None
            yield text_item(i, text, warning)


def iter_inputs(path: str | None, text_column: str | None = None) -> Iterator[Item]:
    """Items from a file (plain lines, .csv, .tsv, .jsonl) or, for None or ``-``, stdin."""
    import sys

    if path is None or path == "-":
        yield from iter_lines(sys.stdin.buffer)
        return
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"--input {path} does not exist; pass a text, CSV, TSV or JSONL file")
    if p.suffix.lower() in (".csv", ".tsv", ".jsonl"):
        yield from iter_table(p, text_column)
    else:
        with open(p, "rb") as f:
            yield from iter_lines(f)


def predict_items(
    clf: Classifier, items: Iterable[Item], *, chunk: int = 256, **kwargs: Any
) -> Iterator[tuple[Item, Prediction | None]]:
    """(item, prediction) in input order; items with an error get None."""
    buf: list[Item] = []

    def flush() -> Iterator[tuple[Item, Prediction | None]]:
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
