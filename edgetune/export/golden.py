"""Golden inputs: chosen and answered at export, re-run on every device (the self-check).

``golden.json`` (hashed like every bundle file) holds a few dozen real texts from the data (the
most narrowly decided, the longest, the rarest tokens, seeded others) plus edge cases (one word,
longer than the max length, non-ASCII, pairs when the task has them), the PyTorch original's
logits, and for each variant its file, batching, expected logits and the limits a device must
meet. The runtime side lives in ``runtime.Classifier.self_check``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..formats import bundle as bundlefmt

DATA_ROWS = 24
POOL_ROWS = 256  # held-out rows the narrow, long and rare ones are drawn from
BOUNDARY_ROWS = 6
LONGEST_ROWS = 3
RARE_ROWS = 3
# Used only when export has no data at all (a bare model directory and no --data).
_FALLBACK = (
    "The package arrived two days late and the box was damaged.",
    "Great value for the price, I would buy it again.",
    "The meeting has been moved to Thursday afternoon.",
    "I could not get the app to open after the update.",
    "Service was quick and the staff were friendly.",
    "It is fine, nothing special.",
    "Please send the invoice to the accounts team.",
    "Absolutely the worst experience I have had in years.",
)
# Ops that take activation ranges from the whole input tensor (every row and its padding).
DYNAMIC_OPS = {"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM"}


def batching(graph: Path) -> str:
    """``row`` when the graph quantizes activations dynamically, else ``padded``."""
    import onnx

    from ..ort_versions import nodes

    ops = {n.op_type for n in nodes(onnx.load(str(graph), load_external_data=False).graph)}
    return "row" if ops & DYNAMIC_OPS else "padded"


def tolerance(variant: np.ndarray, reference: np.ndarray) -> float:
    """The largest |logit difference| a device may show on any golden row.

    Twice the variant's own distance from the PyTorch original (the error quantization is
    allowed to make), and never below 1e-3 of the logits' scale (float order differences
    between CPUs). Garbage arithmetic lands far outside both; subtler faults are the median
    row's limit (``bundle.typical_tolerance``).
    """
    own = float(np.max(np.abs(variant - reference))) if len(reference) else 0.0
    return max(2.0 * own, 1e-3 * bundlefmt.logit_scale(reference))


def rows(
    texts: list[str],
    pairs: list[str] | None,
    tok: Any,
    max_length: int,
    answer: Callable[[list[str], list[str] | None], Any] | None = None,
    cuts: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Data rows that discriminate, plus edge cases; ``tok`` counts tokens (a transformers
    tokenizer).

    From a seeded pool of the texts: the rows the model decides most narrowly (``answer`` gives
    the PyTorch original's logits on the pool; ``cuts`` as in ``margins``), the longest, the
    ones with the rarest tokens (a fault in one kernel or one embedding row moves them first),
    then seeded rows to fill.
    """
    rng = random.Random(0)
    idx = list(range(len(texts)))
    rng.shuffle(idx)
    idx = idx[:POOL_ROWS]
    if not idx:
        texts, pairs, idx = list(_FALLBACK), None, list(range(len(_FALLBACK)))
    pair = (lambda i: pairs[i]) if pairs else (lambda i: None)
    chosen = _discriminating(idx, texts, pairs, tok, answer, cuts)
    out = [{"kind": kind, "text": texts[i], "pair": pair(i)} for i, kind in chosen]
    data = [i for i, _ in chosen]
    first = data[0]
    shortest = min(data, key=lambda i: len(texts[i]))
    long_text = ""
    for i in data * (max_length + 1):  # until truncation is exercised
        if len(tok(long_text, verbose=False)["input_ids"]) > max_length + 8:
            break
        long_text += " " + texts[i]
    out += [
        {"kind": "one word", "text": (texts[shortest].split() or ["ok"])[0], "pair": pair(first)},
        {"kind": "beyond max length", "text": long_text.strip(), "pair": pair(first)},
        {
            "kind": "non-ASCII",
            "text": "Ünïcödé — naïve café 👍 " + texts[first],
            "pair": pair(first),
        },
        {"kind": "repeated word", "text": "very " * 12, "pair": pair(first)},
    ]
    return out


def _discriminating(
    pool: list[int],
    texts: list[str],
    pairs: list[str] | None,
    tok: Any,
    answer: Callable[[list[str], list[str] | None], Any] | None,
    cuts: np.ndarray | None,
) -> list[tuple[int, str]]:
    """(text index, kind) for DATA_ROWS rows of ``pool``: narrowest, longest, rarest, then seeded."""
    ids = [tok(texts[i], verbose=False)["input_ids"] for i in pool]
    counts = Counter(t for row in ids for t in set(row))
    picks: list[tuple[int, str]] = []

    def take(order: list[int], n: int, kind: str) -> None:
        taken = {i for i, _ in picks}
        for k in [k for k in order if pool[k] not in taken][:n]:
            picks.append((pool[k], kind))

    if answer is not None and len(pool) > DATA_ROWS:
        pool_pairs = [pairs[i] for i in pool] if pairs else None
        narrow = margins(answer([texts[i] for i in pool], pool_pairs), cuts)
        take(sorted(range(len(pool)), key=lambda k: (narrow[k], k)), BOUNDARY_ROWS, "near boundary")
    take(sorted(range(len(pool)), key=lambda k: (-len(ids[k]), k)), LONGEST_ROWS, "longest")
    singles = [sum(counts[t] == 1 for t in set(row)) for row in ids]
    take(sorted(range(len(pool)), key=lambda k: (-singles[k], k)), RARE_ROWS, "rare tokens")
    take(list(range(len(pool))), DATA_ROWS - len(picks), "data")
    return picks


def margins(reference: Any, cuts: np.ndarray | None = None) -> np.ndarray:
    """Per row, how narrowly it is decided: top logit minus the runner-up.

    A per-token answer (one [tokens, tags] array per row) counts its narrowest token; with
    ``cuts`` (multi-label: each label's threshold as a logit) the label nearest its cut.
    """
    if isinstance(reference, list):
        return np.array([float(margins(r).min()) if len(r) else np.inf for r in reference])
    ref = np.asarray(reference, np.float32)
    if cuts is not None:
        return np.abs(ref - cuts).min(axis=-1)
    top = np.sort(ref, axis=-1)
    return top[..., -1] - top[..., -2]


def build(
    bundle_dir: Path,
    manifest: dict[str, Any],
    golden_rows: list[dict[str, Any]],
    reference: Any,
    reference_name: str,
    threads: int,
) -> dict[str, Any]:
    """golden.json's content: each CPU variant answers the rows through the runtime itself.

    ``reference`` is [rows, labels], or for a per-token task one [tokens, tags] array per row
    (every content token of the whole text: long texts in the runtime's windows).
    """
    from ..runtime import Classifier

    texts = [r["text"] for r in golden_rows]
    pairs = bundlefmt.golden_pairs(golden_rows)
    per_token = isinstance(reference, list)
    golden: dict[str, Any] = {
        "format": bundlefmt.GOLDEN_FORMAT,
        "version": 1,
        "task": manifest.get("task"),
        "thresholds": manifest.get("thresholds"),  # multi-label: the decision rule, vouched for
        "labels": manifest["labels"],
        "max_length": manifest["max_length"],
        "rows": golden_rows,
        "reference": {"name": reference_name, "logits": _as_list(reference)},
        "variants": {},
    }
    flat_ref = _flat(reference)
    for name, v in manifest["variants"].items():
        path = bundle_dir / v["file"]
        entry: dict[str, Any] = {
            "file": v["file"],
            "sha256": bundlefmt.sha256(path),
            "batching": batching(path),
            "requires": v.get("requires"),
        }
        if name not in bundlefmt.GPU_VARIANTS:
            golden["variants"][name] = entry
            clf = Classifier(bundle_dir, manifest, name, threads, golden)
            got = clf.token_logits(texts) if per_token else clf.logits(texts, pairs=pairs)
            entry["logits"] = _as_list(got)
            flat = _flat(got)
            entry["reference_max_abs_diff"] = float(np.max(np.abs(flat - flat_ref)))
            entry["tolerance"] = tolerance(flat, flat_ref)
            quantized = v.get("quantization") is not None
            entry["typical_tolerance"] = bundlefmt.typical_tolerance(flat_ref, quantized)
        golden["variants"][name] = entry
    return golden


def _as_list(logits: Any) -> list[Any]:
    return [np.asarray(x).tolist() for x in logits] if isinstance(logits, list) else logits.tolist()


def _flat(logits: Any) -> np.ndarray:
    """Per-token logits of every row as one [tokens, tags] array (a [rows, labels] as is)."""
    if not isinstance(logits, list):
        return np.asarray(logits, np.float32)
    rows = [np.asarray(x, np.float32) for x in logits if np.asarray(x).size]
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
