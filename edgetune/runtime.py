"""The edge runtime: load a bundle and classify text with onnxruntime, tokenizers and numpy only.

No torch, no transformers: ``pip install edgetune`` (without the ``train`` extra) is enough.

    from edgetune.runtime import Classifier

    clf = Classifier.load("bundles/sst2")
    clf.predict(["a gorgeous film", "dull and lifeless"])
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError, ConfigError, SelfCheckFailed, first_line
from .formats import bundle as bundlefmt
from .textio import (
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


@dataclass
class SelfCheck:
    """A variant's answers to the bundle's golden texts on this device, against export's."""

    variant: str
    passed: bool
    max_abs_diff: float  # largest |logit - expected logit| over the golden rows
    tolerance: float
    flips: int  # rows whose top label differs from the expected one
    rows: int
    time_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"variant {self.variant}: max |logit difference| {self.max_abs_diff:.3g} on "
            f"{self.rows} golden rows (tolerance {self.tolerance:.3g}), {self.flips} label(s) flipped"
        )


def session(path: Path, threads: int) -> Any:
    """An ORT CPU session with a fixed intra-op thread count (and no inter-op pool)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types differ between releases
        raise BundleError(
            f"onnxruntime {ort.__version__} cannot load {path.name}: {first_line(e)}"
        ) from None


class Classifier:
    """A verified bundle in an ONNX Runtime session, with its tokenizer and labels.

    A row's answer never depends on the other rows of a call: variants whose arithmetic is
    row-independent (fp32, static int8) run padded batches; dynamic int8, which takes its
    activation ranges from the whole input tensor, runs one row per session call.
    """

    def __init__(
        self,
        root: Path,
        manifest: dict[str, Any],
        variant: str,
        threads: int,
        golden: dict[str, Any],
    ) -> None:
        from tokenizers import Tokenizer

        self.root, self.manifest, self.variant, self.golden = root, manifest, variant, golden
        self.threads = threads
        self.labels: list[str] = list(manifest["labels"])
        self.max_length = int(manifest["max_length"])
        info = manifest["variants"][variant]
        self.batching: str = golden["variants"][variant]["batching"]
        self.tokenizer = Tokenizer.from_file(str(root / bundlefmt.TOKENIZER))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.session = session(root / info["file"], threads)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.pad_id = _pad_id(root)

    @classmethod
    def load(
        cls,
        bundle: str | os.PathLike[str],
        *,
        variant: str | None = None,
        threads: int | None = None,
        self_check: bool = True,
        fallback: bool = False,
        public_key: str | os.PathLike[str] | None = None,
    ) -> Classifier:
        """Verify the bundle (hashes; signature with ``public_key``), load ``variant``, self-check it.

        A variant this ONNX Runtime is too old for is refused before ONNX Runtime sees it
        (``BundleError``); one whose answers to the golden texts diverge from export's is
        refused too (``SelfCheckFailed``). Both errors name a variant of the bundle that loads
        and passes here; with ``fallback`` the first such variant in the bundle's order is
        loaded instead (with a warning).
        """
        root = Path(bundle).expanduser()
        if public_key is not None:
            from .signing import verify as verify_signature

            verify_signature(root, Path(public_key).expanduser())
        manifest = bundlefmt.verify(root)  # a tampered or truncated bundle never runs
        name = bundlefmt.pick_variant(manifest, variant, root)
        golden = bundlefmt.read_golden(root)
        threads = threads or default_threads()
        # The requested variant first, then the bundle's others in its order (GPU ones aside).
        others = [v for v in manifest["variants"] if v not in (name, *bundlefmt.GPU_VARIANTS)]
        refused: tuple[str, type[BundleError]] | None = None
        for cand in [name, *others]:
            clf, why, error = _try_variant(root, manifest, golden, cand, threads, self_check)
            if clf is None:
                refused = refused or (why, error)
                continue
            if refused is None:
                return clf
            if fallback:
                import warnings

                warnings.warn(f"{refused[0]}; using variant {cand}", stacklevel=2)
                return clf
            raise refused[1](
                f"{refused[0]}; variant {cand} works here: pass --variant {cand} (or --fallback)"
            )
        assert refused is not None
        raise refused[1](
            f"{refused[0]}, and no other variant of the bundle works here; re-export for this "
            "device (e.g. --quantize none, or --min-runtime for an older ONNX Runtime)"
        )

    def self_check(self) -> SelfCheck:
        """Run the golden texts through this variant and compare with export's answers."""
        g = self.golden["variants"][self.variant]
        if "logits" not in g:
            raise BundleError(
                f"variant {self.variant} has no expected answers in {bundlefmt.GOLDEN} (fp16 is "
                "built for GPUs); skip the check (--no-self-check) or pick another --variant"
            )
        rows = self.golden["rows"]
        t0 = time.perf_counter()
        # Small batches: the one long row is not padded against the short ones (answers are
        # batch-invariant, so export's batches need not be repeated).
        got = self.logits(
            [r["text"] for r in rows], pairs=bundlefmt.golden_pairs(rows), batch_size=8
        )
        ms = (time.perf_counter() - t0) * 1000
        expected = np.asarray(g["logits"], dtype=np.float32)
        if got.shape != expected.shape:
            diff = float("inf")
        else:
            diff = (
                float(np.max(np.abs(got - expected))) if np.all(np.isfinite(got)) else float("inf")
            )
        flips = (
            int(np.sum(got.argmax(-1) != expected.argmax(-1))) if np.isfinite(diff) else len(rows)
        )
        tol = float(g["tolerance"])
        return SelfCheck(self.variant, diff <= tol, diff, tol, flips, len(rows), ms)

    def logits(
        self,
        texts: Sequence[str],
        *,
        pairs: Sequence[str] | None = None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """Raw logits of ``texts`` (with ``pairs`` as second segments), in input order."""
        check_predict_options(batch_size=batch_size)
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if pairs is not None and len(pairs) != len(texts):
            raise ConfigError(f"{len(texts)} texts but {len(pairs)} pairs; give one pair per text")
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        inputs: list[Any] = texts if pairs is None else [(t, str(p)) for t, p in zip(texts, pairs)]
        encs = self.tokenizer.encode_batch(inputs)
        order = np.argsort([len(e.ids) for e in encs], kind="stable")
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            out[rows] = self._run([encs[r] for r in rows])
        return out

    def predict(
        self,
        texts: Sequence[str],
        *,
        pairs: Sequence[str] | None = None,
        batch_size: int = 32,
        top_k: int = 1,
        all_scores: bool = False,
    ) -> list[Prediction]:
        """Classify ``texts``; results come back in input order.

        Texts are batched by length (less padding); longer texts are truncated to the bundle's
        max length. A text's result does not depend on ``batch_size`` or its batch-mates.
        """
        check_predict_options(top_k=top_k)
        probs = softmax(self.logits(texts, pairs=pairs, batch_size=batch_size))
        return [self._result(p, top_k, all_scores) for p in probs]

    def _run(self, encs: list[Any]) -> np.ndarray:
        columns = {
            "input_ids": [e.ids for e in encs],
            "attention_mask": [e.attention_mask for e in encs],
            "token_type_ids": [e.type_ids for e in encs],
        }
        return self.run_feed(pad_batch(columns, range(len(encs)), self.pad_id))

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of right-padded token arrays, honouring the variant's batching."""
        feed = {k: v for k, v in feed.items() if k in self.inputs}
        rows = len(feed["input_ids"])
        if self.batching == "padded" or rows == 1:
            return self.session.run(None, feed)[0]
        mask = feed.get("attention_mask")
        out = []
        for j in range(rows):
            n = int(mask[j].sum()) if mask is not None else feed["input_ids"].shape[1]
            out.append(self.session.run(None, {k: v[j : j + 1, :n] for k, v in feed.items()})[0])
        return np.concatenate(out)

    def _result(self, p: np.ndarray, top_k: int, all_scores: bool) -> Prediction:
        best = np.argsort(-p, kind="stable")[: max(top_k, 1)]
        return Prediction(
            label=self.labels[int(best[0])],
            score=float(p[best[0]]),
            top_k=[(self.labels[int(i)], float(p[i])) for i in best],
            scores={lb: float(s) for lb, s in zip(self.labels, p)} if all_scores else None,
        )


def pad_batch(
    columns: Mapping[str, Sequence[Sequence[int]]], rows: Iterable[int], pad_id: int
) -> dict[str, np.ndarray]:
    """The token rows ``rows`` of each column, right-padded to their longest: ``input_ids``
    with ``pad_id``, the others (attention mask, token types) with 0. The one padder of
    training, validation and the runtime."""
    rows = list(rows)
    width = max(len(columns["input_ids"][r]) for r in rows)
    out = {}
    for key, seqs in columns.items():
        arr = np.full((len(rows), width), pad_id if key == "input_ids" else 0, dtype=np.int64)
        for i, r in enumerate(rows):
            arr[i, : len(seqs[r])] = seqs[r]
        out[key] = arr
    return out


def runtime_gap(info: dict[str, Any], name: str) -> str | None:
    """Why this ONNX Runtime cannot load a variant (its manifest's ``requires``), or None."""
    import onnxruntime

    from .compat import satisfies

    need = (info.get("requires") or {}).get("onnxruntime")
    if not isinstance(need, str) or satisfies(onnxruntime.__version__, need):
        return None
    because = info["requires"].get("because")
    return (
        f"variant {name} needs onnxruntime >= {need}"
        + (f" (for {because})" if because else "")
        + f"; this is onnxruntime {onnxruntime.__version__}"
    )


def _try_variant(
    root: Path,
    manifest: dict[str, Any],
    golden: dict[str, Any],
    name: str,
    threads: int,
    self_check: bool,
) -> tuple[Classifier | None, str, type[BundleError]]:
    """The variant loaded (and self-checked), or why it cannot serve on this device."""
    gap = runtime_gap(manifest["variants"][name], name)
    if gap is not None:
        return None, gap, BundleError
    try:
        clf = Classifier(root, manifest, name, threads, golden)
        check = clf.self_check() if self_check else None
    except BundleError as e:  # onnxruntime cannot load it, or it has no expected answers
        return None, str(e), BundleError
    if check is not None and not check.passed:
        why = f"{check.describe()}: it computes wrong answers on this device"
        return None, why, SelfCheckFailed
    return clf, "", BundleError


def check_predict_options(
    *, top_k: int = 1, batch_size: int = 1, threads: int | None = None
) -> None:
    """Refuse a ``top_k``, ``batch_size`` or ``threads`` below 1 (None threads: the default)."""
    for name, value in (("top_k", top_k), ("batch_size", batch_size), ("threads", threads)):
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def default_threads() -> int:
    """Intra-op threads when not given: the cores, at most 4 (more rarely helps a small model)."""
    return min(os.cpu_count() or 1, 4)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _pad_id(root: Path) -> int:
    try:
        cfg = json.loads((root / bundlefmt.MODEL_CONFIG).read_text())
        pad = cfg.get("pad_token_id")
        return int(pad) if pad is not None else 0
    except (OSError, ValueError):
        return 0


@dataclass
class BundleCheck:
    """``edgetune check``: the bundle's verdict on this device, variant by variant."""

    bundle: str
    signature: str  # "verified with KEY", "signed (not verified: no key given)", "unsigned"
    checks: list[SelfCheck]
    skipped: dict[str, str]  # variant -> why it has no self-check
    environment: dict[str, Any]

    @property
    def passed(self) -> bool:
        """Every variant that can run here answers right (and at least one can)."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "passed": self.passed,
            "signature": self.signature,
            "variants": {c.variant: c.to_dict() for c in self.checks},
            "skipped": self.skipped,
            "environment": self.environment,
        }

    def summary(self) -> str:
        lines = [
            f"bundle     {self.bundle}: hashes verified; {self.signature}",
            f"{'variant':16}{'verdict':>8}{'max |Δlogit|':>14}{'tolerance':>11}{'flips':>7}{'rows':>6}"
            f"{'ms':>8}",
        ]
        for c in self.checks:
            lines.append(
                f"{c.variant:16}{'PASS' if c.passed else 'FAIL':>8}{c.max_abs_diff:>14.3g}"
                f"{c.tolerance:>11.3g}{c.flips:>7}{c.rows:>6}{c.time_ms:>8.0f}"
            )
        for name, why in self.skipped.items():
            lines.append(f"{name:16}{'SKIP':>8}  {why}")
        env = self.environment
        cpu = env["cpu"]
        lines.append(
            f"device     {cpu['name']} ({cpu['machine']}; {', '.join(cpu['features']) or 'no extra features'}); "
            f"onnxruntime {env['onnxruntime']}"
        )
        return "\n".join(lines)


def check_bundle(
    bundle: str | os.PathLike[str],
    *,
    variants: Sequence[str] = (),
    threads: int | None = None,
    public_key: str | os.PathLike[str] | None = None,
) -> BundleCheck:
    """Verify hashes (and the signature with ``public_key``), then self-check each variant."""
    import onnxruntime

    from .hw import cpu_description

    root = Path(bundle).expanduser()
    signed = (root / bundlefmt.SIGNATURE).is_file()
    if public_key is not None:
        from .signing import verify as verify_signature

        verify_signature(root, Path(public_key).expanduser())
        signature = f"signature verified with {public_key}"
    else:
        signature = "signed (signature not verified: pass --verify-key)" if signed else "unsigned"
    manifest = bundlefmt.verify(root)
    golden = bundlefmt.read_golden(root)
    names = [bundlefmt.pick_variant(manifest, v, root) for v in variants] or list(
        manifest["variants"]
    )
    threads = threads or default_threads()
    checks, skipped = [], {}
    for name in names:
        clf, why, _ = _try_variant(root, manifest, golden, name, threads, self_check=False)
        if clf is None:
            skipped[name] = f"cannot load here: {why}"
        elif "logits" not in golden["variants"][name]:
            skipped[name] = "no expected answers recorded (fp16 is built for GPUs)"
        else:
            checks.append(clf.self_check())
    env = {"cpu": cpu_description(), "onnxruntime": onnxruntime.__version__}
    return BundleCheck(str(root), signature, checks, skipped, env)


# -- inputs for `edgetune predict` (streamed, never loaded whole) --------------------------------


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
