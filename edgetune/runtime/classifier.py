"""The classifier: a verified bundle variant in an ONNX Runtime session, its tokenizer and labels.

Also the pieces training, export and validation share with it: the one session factory
(``session``) and the thread default (the padder and softmax are ``edgetune.arrays``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import length_batches, pad_batch, softmax
from ..errors import BundleError, ConfigError, SelfCheckFailed, first_line
from ..formats import bundle as bundlefmt
from ..tasks import task_named
from . import passes


@dataclass
class Prediction:
    """One text's result: the top label and its probability (and more on request)."""

    label: str
    score: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    scores: dict[str, float] | None = None
    labels: list[str] | None = None  # multi-label: every label over its threshold, likeliest first

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.label, "score": round(self.score, 6)}
        if self.labels is not None:
            d = {"labels": self.labels, **d}
        if len(self.top_k) > 1:
            d["top_k"] = [{"label": lb, "score": round(s, 6)} for lb, s in self.top_k]
        if self.scores is not None:
            d["scores"] = {k: round(v, 6) for k, v in self.scores.items()}
        return d


@dataclass
class SelfCheck:
    """A variant's answers to the bundle's golden texts on this device, against export's.

    It passes when no row moved beyond ``tolerance``, the median row (its largest |logit
    difference|) moved no more than ``typical_tolerance`` (kernel differences move a few rows;
    a fault moves them all), and no row changed its answer that was decided by more than
    ``tolerance`` (``firm_flips``).
    """

    variant: str
    passed: bool
    max_abs_diff: float  # largest |logit - expected logit| over the golden rows
    tolerance: float
    typical_diff: float  # the median row's largest |logit - expected logit|
    typical_tolerance: float
    flips: int  # rows whose top label (or label set) differs from the expected one
    firm_flips: int  # of those, rows whose expected answer had a margin over the tolerance
    rows: int
    time_ms: float
    remembered: bool = False  # a pass recalled from this device's cache, not run this time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"variant {self.variant}: max |logit difference| {self.max_abs_diff:.3g} on "
            f"{self.rows} golden rows (tolerance {self.tolerance:.3g}), median row "
            f"{self.typical_diff:.3g} (tolerance {self.typical_tolerance:.3g}), "
            f"{self.flips} label(s) flipped ({self.firm_flips} beyond the tolerance)"
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
        self.task = task_named(manifest.get("task"))
        self.thresholds = (
            np.asarray([manifest["thresholds"][n] for n in self.labels], np.float32)
            if self.task.multi_label
            else None
        )
        self.max_length = int(manifest["max_length"])
        info = manifest["variants"][variant]
        self.batching: str = golden["variants"][variant]["batching"]
        self.tokenizer = Tokenizer.from_file(str(root / bundlefmt.TOKENIZER))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.session = session(root / info["file"], threads)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.pad_id = _pad_id(root)
        self._content: tuple[Any, Any] | None = None
        self.checked: SelfCheck | None = None  # the self-check it passed on load, if one ran

    @classmethod
    def load(
        cls,
        bundle: str | os.PathLike[str],
        *,
        variant: str | None = None,
        threads: int | None = None,
        self_check: bool | str = True,
        fallback: bool = False,
        public_key: str | os.PathLike[str] | None = None,
    ) -> Classifier:
        """Verify the bundle (hashes; signature with ``public_key``), load ``variant``, self-check it.

        ``self_check``: ``"auto"`` (or True) runs the golden texts unless this device passed
        them before with the same bundle, variant, threads, onnxruntime and CPU (remembered in
        the user's cache, see ``runtime.passes``); ``"always"`` runs them; ``"never"`` (or
        False) skips them. The hashes checked are those of the shared files and of the graph
        loaded, not of the bundle's other variants.

        A variant this ONNX Runtime is too old for is refused before ONNX Runtime sees it
        (``BundleError``); one whose answers to the golden texts diverge from export's is
        refused too (``SelfCheckFailed``). Both errors name a variant of the bundle that loads
        and passes here; with ``fallback`` the first such variant in the bundle's order is
        loaded instead (with a warning).
        """
        root = Path(bundle).expanduser()
        if public_key is not None:
            from ..signing import verify as verify_signature

            verify_signature(root, Path(public_key).expanduser())
        checking = passes.mode(self_check)
        manifest = bundlefmt.read_manifest(root)
        name = bundlefmt.pick_variant(manifest, variant, root)
        bundlefmt.verify(root, name, manifest)  # a tampered or truncated bundle never runs
        golden = bundlefmt.read_golden(root)
        threads = threads or default_threads()
        return _first_working(root, manifest, golden, name, threads, checking, fallback)

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
        texts = [r["text"] for r in rows]
        if self.task.per_token:  # every content token of every text, in order
            got = _stacked(self.token_logits(texts, batch_size=8))
        else:
            got = self.logits(texts, pairs=bundlefmt.golden_pairs(rows), batch_size=8)
        return self.judge(got, (time.perf_counter() - t0) * 1000)

    def judge(self, got: np.ndarray, ms: float = 0.0) -> SelfCheck:
        """The self-check's verdict on ``got``, this variant's answers to the golden rows (per
        token: every text's content tokens, stacked), however they were computed."""
        g = self.golden["variants"][self.variant]
        rows = len(self.golden["rows"])
        if self.task.per_token:
            expected = _stacked([np.asarray(x, np.float32) for x in g["logits"]])
        else:
            expected = np.asarray(g["logits"], dtype=np.float32)
        tol = float(g["tolerance"])
        typical_tol = g.get("typical_tolerance")
        if typical_tol is None:  # a bundle from before the median-row limit: its rule, now
            quantized = self.manifest["variants"][self.variant].get("quantization") is not None
            typical_tol = bundlefmt.typical_tolerance(self.golden["reference"]["logits"], quantized)
        if got.shape != expected.shape or not np.all(np.isfinite(got)):
            inf = float("inf")
            return SelfCheck(
                self.variant, False, inf, tol, inf, float(typical_tol), rows, rows, rows, ms
            )
        moved = np.abs(got - expected).reshape(len(got), -1).max(axis=1)
        diff, typical = float(moved.max()), float(np.median(moved))
        flips, firm = self._flips(got, expected, tol)
        passed = diff <= tol and typical <= float(typical_tol) and firm == 0
        return SelfCheck(
            self.variant, passed, diff, tol, typical, float(typical_tol), flips, firm, rows, ms
        )

    def logits(
        self,
        texts: Sequence[str],
        *,
        pairs: Sequence[str] | None = None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """Raw logits of ``texts`` (with ``pairs`` as second segments), in input order."""
        check_predict_options(batch_size=batch_size)
        if self.task.per_token:
            raise ConfigError(
                f"{self.root} tags tokens ({self.task.name}); use Tagger (or token_logits)"
            )
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if pairs is not None and len(pairs) != len(texts):
            raise ConfigError(f"{len(texts)} texts but {len(pairs)} pairs; give one pair per text")
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        inputs: list[Any] = texts if pairs is None else [(t, str(p)) for t, p in zip(texts, pairs)]
        encs = self.tokenizer.encode_batch(inputs)
        for rows in length_batches([len(e.ids) for e in encs], batch_size):
            out[rows] = self._run([encs[r] for r in rows])
        return out

    def token_logits(
        self, texts: Sequence[str], *, batch_size: int = 32, stride: int | None = None
    ) -> list[np.ndarray]:
        """A token-classification bundle's logits [content tokens, tags] per text (long texts
        in overlapping windows; see ``runtime.tokens``)."""
        return self.tokens_and_logits(texts, batch_size=batch_size, stride=stride)[1]

    def tokens_and_logits(
        self, texts: Sequence[str], *, batch_size: int = 32, stride: int | None = None
    ) -> tuple[list[Any], list[np.ndarray]]:
        """Each text's content tokens (ids, character offsets, word ids) and their logits."""
        from .tokens import content_logits, content_tokens, special_ids, untruncated

        check_predict_options(batch_size=batch_size)
        if self._content is None:  # the tokenizer without truncation, and its special tokens
            tok = untruncated(self.tokenizer)
            self._content = (tok, special_ids(tok))
        tok, specials = self._content
        tokens = content_tokens(tok, [str(t) for t in texts])
        logits = content_logits(
            tokens, self.run_feed, self.pad_id, self.max_length, specials, batch_size, stride
        )
        return tokens, logits

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
        logits = self.logits(texts, pairs=pairs, batch_size=batch_size)
        if self.thresholds is not None:  # multi-label: a sigmoid per label, then the thresholds
            from ..labelsets import sigmoid

            probs = sigmoid(logits)
            return [self._result(p, top_k, all_scores, p >= self.thresholds) for p in probs]
        return [self._result(p, top_k, all_scores) for p in softmax(logits)]

    def _flips(self, got: np.ndarray, expected: np.ndarray, tol: float) -> tuple[int, int]:
        """Rows whose answer differs (the top label, or for multi-label the set of labels), and
        of those the rows whose expected answer was decided by a margin over ``tol``."""
        if self.thresholds is None:
            flipped = got.argmax(-1) != expected.argmax(-1)
            top2 = np.sort(expected, axis=-1)[..., -2:]
            firm = flipped & (top2[..., 1] - top2[..., 0] > tol)
            return int(flipped.sum()), int(firm.sum())
        from ..labelsets import sigmoid, threshold_logits

        a, b = sigmoid(got) >= self.thresholds, sigmoid(expected) >= self.thresholds
        margin = np.abs(expected - threshold_logits(self.thresholds))  # in logits
        return int(np.sum((a != b).any(-1))), int(np.sum(((a != b) & (margin > tol)).any(-1)))

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
        width = feed["input_ids"].shape[1]
        out = []
        for j in range(rows):
            n = int(mask[j].sum()) if mask is not None else width
            lg = self.session.run(None, {k: v[j : j + 1, :n] for k, v in feed.items()})[0]
            if lg.ndim == 3:  # per-token logits: padded back to the feed's width
                lg = np.pad(lg, ((0, 0), (0, width - n), (0, 0)))
            out.append(lg)
        return np.concatenate(out)

    def _result(
        self, p: np.ndarray, top_k: int, all_scores: bool, decided: np.ndarray | None = None
    ) -> Prediction:
        order = np.argsort(-p, kind="stable")
        best = order[: max(top_k, 1)]
        chosen = None if decided is None else [self.labels[int(i)] for i in order if decided[i]]
        return Prediction(
            label=self.labels[int(best[0])] if chosen is None else ";".join(chosen),
            score=float(p[best[0]]),
            top_k=[(self.labels[int(i)], float(p[i])) for i in best],
            scores={lb: float(s) for lb, s in zip(self.labels, p)} if all_scores else None,
            labels=chosen,
        )


def _stacked(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Per-text [tokens, tags] arrays as one [all tokens, tags] array."""
    rows = [r for r in rows if r.size]
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)


def runtime_gap(info: dict[str, Any], name: str) -> str | None:
    """Why this ONNX Runtime cannot load a variant (its manifest's ``requires``), or None."""
    import onnxruntime

    from ..ort_versions import satisfies

    need = (info.get("requires") or {}).get("onnxruntime")
    if not isinstance(need, str) or satisfies(onnxruntime.__version__, need):
        return None
    because = info["requires"].get("because")
    return (
        f"variant {name} needs onnxruntime >= {need}"
        + (f" (for {because})" if because else "")
        + f"; this is onnxruntime {onnxruntime.__version__}"
    )


def _first_working(
    root: Path,
    manifest: dict[str, Any],
    golden: dict[str, Any],
    name: str,
    threads: int,
    checking: str,
    fallback: bool,
) -> Classifier:
    """Variant ``name`` loaded and checked; else the error naming one that works here (with
    ``fallback``: that one). Each other variant's graph is hashed before it is tried."""
    # The requested variant first, then the bundle's others in its order (GPU ones aside).
    others = [v for v in manifest["variants"] if v not in (name, *bundlefmt.GPU_VARIANTS)]
    refused: tuple[str, type[BundleError]] | None = None
    for cand in [name, *others]:
        if cand != name:
            bundlefmt.verify_graph(root, manifest, cand)
        clf, why, error = try_variant(root, manifest, golden, cand, threads, checking)
        if clf is None:
            refused = refused or (why, error)
            continue
        if refused is None:
            return clf
        if fallback:
            import warnings

            warnings.warn(f"{refused[0]}; using variant {cand}", stacklevel=3)
            return clf
        raise refused[1](
            f"{refused[0]}; variant {cand} works here: pass --variant {cand} (or --fallback)"
        )
    assert refused is not None
    raise refused[1](
        f"{refused[0]}, and no other variant of the bundle works here; re-export for this "
        "device (e.g. --quantize none, or --min-runtime for an older ONNX Runtime)"
    )


def try_variant(
    root: Path,
    manifest: dict[str, Any],
    golden: dict[str, Any],
    name: str,
    threads: int,
    checking: str,
) -> tuple[Classifier | None, str, type[BundleError]]:
    """The variant loaded (and self-checked as ``checking``, one of ``passes.MODES``), or why
    it cannot serve on this device."""
    gap = runtime_gap(manifest["variants"][name], name)
    if gap is not None:
        return None, gap, BundleError
    try:
        clf = Classifier(root, manifest, name, threads, golden)
        if checking != "never":
            clf.checked = _checked(clf, checking)
    except BundleError as e:  # onnxruntime cannot load it, or it has no expected answers
        return None, str(e), BundleError
    if clf.checked is not None and not clf.checked.passed:
        why = f"{clf.checked.describe()}: it computes wrong answers on this device"
        why += _saturation_hint(manifest["variants"][name])
        return None, why, SelfCheckFailed
    return clf, "", BundleError


def _saturation_hint(info: dict[str, Any]) -> str:
    """Why an int8 variant with full 8-bit weights may fail on an x86 CPU without VNNI: its
    AVX2 int8 kernels add pairs of products in 16 bits, which such weights can overflow
    (7-bit weights, ``--target avx2``, cannot)."""
    q = info.get("quantization") or {}
    if q.get("reduce_range", True) or not str(q.get("target", "")).startswith("avx"):
        return ""
    from ..hw import cpu_features

    f = cpu_features()
    if f.get("avx2") and not (f.get("avx512_vnni") or f.get("avx_vnni")):
        return (
            " (its 8-bit int8 weights overflow the int8 kernels of an x86 CPU without VNNI; "
            "re-export with --target avx2 for such CPUs)"
        )
    return ""


def _checked(clf: Classifier, checking: str) -> SelfCheck:
    """The self-check: remembered from an earlier pass on this device (``auto``), or run (and
    a pass remembered)."""
    digest = passes.key(clf.root, clf.variant, clf.threads)
    known = passes.recall(digest, clf.variant) if checking == "auto" else None
    if known is not None:
        try:
            return SelfCheck(**{**known, "remembered": True})
        except TypeError:  # a record of another version: run the check again
            pass
    check = clf.self_check()
    passes.remember(digest, check.to_dict())
    return check


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


def _pad_id(root: Path) -> int:
    try:
        cfg = json.loads((root / bundlefmt.MODEL_CONFIG).read_text())
        pad = cfg.get("pad_token_id")
        return int(pad) if pad is not None else 0
    except (OSError, ValueError):
        return 0
