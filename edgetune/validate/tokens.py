"""Validation of a token-classification bundle, read per word of the labelled data.

Every candidate answers the sentences as devices would (the runtime's tokenizer and windows;
PyTorch through the same windows); each word's tag is read at the first token that starts
inside it. Figures: entity-level P/R/F1 (exact spans) and per type, token accuracy, entity-
and token-level agreement with the baseline, logit distance, sentences whose entities differ,
and batch invariance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..entities import entity_agreement, entity_metrics, spans
from ..runners import PYTORCH
from ..runtime.tokens import TextTokens, content_tokens, untruncated

FLIPPED_SHOWN = 20


def data_tokens(tokenizer: Any, split: Any) -> list[TextTokens]:
    """The content tokens of each sentence's text (its words joined by spaces)."""
    return content_tokens(untruncated(tokenizer), split.texts)


def word_starts(tokens: TextTokens, words: list[str]) -> list[int | None]:
    """For each word of the sentence, its first token (None: the word yields none)."""
    out: list[int | None] = []
    t, pos = 0, 0
    for w in words:
        start, end = pos, pos + len(w)
        while t < len(tokens.offsets) and tokens.offsets[t][0] < start:
            t += 1
        inside = t < len(tokens.offsets) and tokens.offsets[t][0] < end
        out.append(t if inside else None)
        pos = end + 1
    return out


def tags_of(
    logits: list[np.ndarray], tokens: list[TextTokens], split: Any, label_names: list[str]
) -> list[list[str]]:
    """Each sentence's tag per word (a word without tokens is "O")."""
    out = []
    for lg, tok, words in zip(logits, tokens, split.tokens):
        ids = lg.argmax(-1) if lg.size else np.zeros(0, np.int64)
        out.append(
            ["O" if s is None else label_names[int(ids[s])] for s in word_starts(tok, words)]
        )
    return out


def token_rows(
    logits: dict[str, list[np.ndarray]],
    tokens: list[TextTokens],
    split: Any,
    label_names: list[str],
    baseline: str | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[list[str]]]]:
    """Each candidate's figures (and its agreement with the baseline), and its word tags."""
    true = [[label_names[t] for t in tags] for tags in split.tags]
    tags = {name: tags_of(lg, tokens, split, label_names) for name, lg in logits.items()}
    rows: dict[str, dict[str, Any]] = {}
    base = tags.get(baseline) if baseline else None
    for name, pred in tags.items():
        m = entity_metrics(true, pred)
        row: dict[str, Any] = {"kind": "pytorch" if name == PYTORCH else "onnx", **m}
        if base is not None and baseline is not None:
            b = entity_metrics(true, base)
            flat, flat_base = _stacked(logits[name]), _stacked(logits[baseline])
            words = [(p, q) for ps, qs in zip(pred, base) for p, q in zip(ps, qs)]
            diff = np.abs(flat - flat_base) if flat.size else np.zeros(1)
            row |= {
                "agreement": entity_agreement(pred, base),
                "token_agreement": float(np.mean([p == q for p, q in words])) if words else 1.0,
                "flipped": int(sum(spans(p) != spans(q) for p, q in zip(pred, base))),
                "logit_max_abs_diff": float(diff.max()),
                "logit_mean_abs_diff": float(diff.mean()),
                "accuracy_delta_points": (m["accuracy"] - b["accuracy"]) * 100,
                "f1_delta_points": (m["f1"] - b["f1"]) * 100,
            }
        rows[name] = row
    return rows, tags


def flipped_sentences(
    tags: dict[str, list[list[str]]], split: Any, label_names: list[str], baseline: str | None
) -> dict[str, list[dict[str, Any]]]:
    """Up to 20 sentences per candidate whose entities differ from the baseline's."""
    if baseline is None:
        return {}
    true = [[label_names[t] for t in s] for s in split.tags]
    out = {}
    for name, pred in tags.items():
        if name == baseline:
            continue
        idx = [i for i, (p, q) in enumerate(zip(pred, tags[baseline])) if spans(p) != spans(q)]
        out[name] = [
            {
                "index": i,
                "text": split.texts[i],
                "label": _entities(split.tokens[i], true[i]),
                baseline: _entities(split.tokens[i], tags[baseline][i]),
                name: _entities(split.tokens[i], pred[i]),
            }
            for i in idx[:FLIPPED_SHOWN]
        ]
    return out


def token_batch_invariance(
    runner: Any, split: Any, batched: list[np.ndarray], batch_size: int
) -> dict[str, Any]:
    """Every sentence again, one per call: tokens whose tag flips, score differences."""
    from ..runtime import softmax

    single, many = _stacked(runner.logits(split.texts, None, 1)), _stacked(batched)
    if not single.size:
        single = many = np.zeros((1, 1), np.float32)
    return {
        "batch_size": batch_size,
        "batching": runner.clf.batching,
        "flips": int(np.sum(single.argmax(-1) != many.argmax(-1))),
        "max_score_diff": float(np.max(np.abs(softmax(single) - softmax(many)))),
        "max_logit_diff": float(np.max(np.abs(single - many))),
    }


def _entities(words: list[str], tags: list[str]) -> str:
    return "; ".join(f"{kind}: {' '.join(words[s:e])}" for kind, s, e in spans(tags)) or "-"


def _stacked(rows: list[np.ndarray]) -> np.ndarray:
    rows = [np.asarray(r, np.float32) for r in rows if np.asarray(r).size]
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
