"""Entities from tags and from token logits: spans, entity-level metrics, sub-word aggregation.

The shared layer of token classification: training and validation score tag sequences with
``entity_metrics`` (seqeval's default, conlleval-compatible chunking), and the runtime turns a
text's token logits into entities with ``aggregate`` (transformers' TokenClassificationPipeline
strategies), reading long texts in overlapping ``windows``. numpy and the standard library only:
the torch-free runtime imports it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .arrays import softmax

STRATEGIES = ("none", "simple", "first", "average", "max")
PREFIXES = ("B", "I", "E", "S", "L", "U")

# seqeval's default chunking (conlleval's rules), as (previous tag, tag) pairs.
_ENDS = {("B", "B"), ("B", "S"), ("B", "O"), ("I", "B"), ("I", "S"), ("I", "O")}
_STARTS = {("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"), ("O", "E"), ("O", "I")}

Span = tuple[str, int, int]


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", "")``; prefixes B, I, E, S, L, U.

    Raises ValueError for anything else (a bare type, a suffix scheme, an empty type).
    """
    if tag == "O":
        return "O", ""
    prefix, dash, type_ = tag.partition("-")
    if prefix not in PREFIXES or not dash or not type_:
        raise ValueError(
            f"{tag!r} is not a tag: expected 'O' or one of {', '.join(PREFIXES)} followed by "
            "'-' and an entity type (e.g. 'B-PER')"
        )
    return prefix, type_


def spans(tags: Sequence[str]) -> list[Span]:
    """The entities of one tag sequence as ``(type, start, end)``, ``end`` exclusive, in order.

    Exactly seqeval's default (non-strict, conlleval-compatible) chunking, ported from
    ``seqeval.metrics.sequence_labeling.get_entities``: an I-X after O or after another type
    starts an entity, B-X B-X are two, E-/S- close one. Tags outside that scheme are read as
    seqeval reads them (first character the prefix, the rest after the first '-' the type;
    L-/U- only split on a change of type), without seqeval's warning.
    """
    out: list[Span] = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        if not chunk:
            raise ValueError(f"empty tag at position {i}")
        tag, type_ = chunk[0], chunk[1:].split("-", 1)[-1] or "_"
        changed = prev_type != type_
        if (
            prev_tag in ("E", "S")
            or (prev_tag, tag) in _ENDS
            or (prev_tag not in ("O", ".") and changed)
        ):
            out.append((prev_type, begin, i))
        if tag in ("B", "S") or (prev_tag, tag) in _STARTS or (tag not in ("O", ".") and changed):
            begin = i
        prev_tag, prev_type = tag, type_
    return out


def entity_metrics(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level scores of predicted tag sequences against true ones, as seqeval computes them.

    Returns:
        ``precision``, ``recall``, ``f1``: micro averages over exact span matches (seqeval's
        ``precision_score``/``recall_score``/``f1_score``); ``accuracy``: per token;
        ``per_type``: {type: precision, recall, f1, support} for every type true or predicted
        (seqeval's ``classification_report``); ``macro_f1``: mean F1 over the types with
        support (unlike seqeval's macro average, a type only ever predicted is left out);
        ``n_sentences``, ``n_entities`` (true), ``n_predicted``. A ratio with nothing to
        divide is 0.0 (seqeval: 0.0 with a warning; its accuracy of no tokens raises).
    """
    _check_aligned(true, pred)
    found_true, found_pred = _spans_by_type(true), _spans_by_type(pred)
    per_type: dict[str, dict[str, Any]] = {}
    for type_ in sorted(found_true.keys() | found_pred.keys()):
        t, p = found_true[type_], found_pred[type_]
        per_type[type_] = {**_prf(len(t & p), len(p), len(t)), "support": len(t)}
    n_true = sum(len(s) for s in found_true.values())
    n_pred = sum(len(s) for s in found_pred.values())
    tp = sum(len(found_true[k] & found_pred[k]) for k in per_type)
    n_tokens = sum(len(s) for s in true)
    correct = sum(a == b for ts, ps in zip(true, pred) for a, b in zip(ts, ps))
    supported = [v["f1"] for v in per_type.values() if v["support"] > 0]
    return {
        **_prf(tp, n_pred, n_true),
        "accuracy": correct / n_tokens if n_tokens else 0.0,
        "per_type": per_type,
        "macro_f1": float(np.mean(supported)) if supported else 0.0,
        "n_sentences": len(true),
        "n_entities": n_true,
        "n_predicted": n_pred,
    }


def entity_agreement(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> float:
    """The fraction of sentences whose entity spans are the same in ``a`` and ``b`` (1.0 for none)."""
    _check_aligned(a, b)
    if not a:
        return 1.0
    same = sum(set(spans(x)) == set(spans(y)) for x, y in zip(a, b))
    return same / len(a)


def _spans_by_type(corpus: Sequence[Sequence[str]]) -> defaultdict[str, set[tuple[int, int]]]:
    """Each type's (start, end) spans over the corpus read as one sequence with an "O" after
    every sentence, as seqeval scores a corpus (a well-formed entity ends with its sentence)."""
    out: defaultdict[str, set[tuple[int, int]]] = defaultdict(set)
    for type_, start, end in spans([t for sent in corpus for t in (*sent, "O")]):
        out[type_].add((start, end))
    return out


def _prf(tp: int, n_pred: int, n_true: int) -> dict[str, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    denom = precision + recall
    # seqeval's formula, so the figures match it to the last bit
    f1 = 2 * precision * recall / denom if denom else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _check_aligned(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true tag sequences but {len(pred)} predicted ones")
    for i, (t, p) in enumerate(zip(true, pred)):
        if isinstance(t, str) or isinstance(p, str):
            raise ValueError(f"sentence {i} is a string; give one list of tags per sentence")
        if len(t) != len(p):
            raise ValueError(f"sentence {i} has {len(t)} true tags but {len(p)} predicted ones")


# -- token logits to entities (transformers' TokenClassificationPipeline) --------------------------


def aggregate(
    text: str,
    logits: np.ndarray,
    offsets: Sequence[tuple[int, int]],
    word_ids: Sequence[int | None],
    id2label: Mapping[int, str] | Sequence[str],
    strategy: str = "simple",
    ignore_labels: Sequence[str] = ("O",),
) -> list[dict[str, Any]]:
    """A text's entities from its tokens' logits, as transformers' token-classification pipeline
    groups them with ``aggregation_strategy=strategy``.

    Args:
        logits: [tokens, labels], one row per token of the encoding, special tokens included.
        offsets: each token's (start, end) character offsets into ``text``.
        word_ids: each token's word index; None marks a special token (skipped). A token with
            the previous token's word id is a sub-word.
        id2label: label names by id (a mapping or a list).
        strategy: "none" (every token), "simple" (adjacent tokens of one type, B- starting a new
            one), or "first" / "average" / "max" (one label per word, from its first token, its
            averaged scores, or its most confident token, then grouped as "simple").
        ignore_labels: labels (types for grouped strategies) left out of the result.

    Returns:
        Entities in text order: ``label`` (the type; the raw tag, e.g. "B-PER", for "none"),
        ``score``, ``start``, ``end`` (character offsets), ``text`` (``text[start:end]``, where
        the pipeline returns its ``word`` decoded from the tokens), and for "none" ``index``
        (the token's position).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)} (got {strategy!r})")
    z = np.asarray(logits)
    z = z.astype(np.promote_types(z.dtype, np.float32))  # fp16 logits are scored in fp32
    if z.ndim != 2 or not len(z) == len(offsets) == len(word_ids):
        raise ValueError(
            f"logits {z.shape}, {len(offsets)} offsets and {len(word_ids)} word ids: "
            "give one logits row, offset pair and word id per token"
        )
    scores = softmax(z)
    if strategy in ("none", "simple"):
        items = [
            _token_entity(scores[i], id2label, offsets[i], i)
            for i, w in enumerate(word_ids)
            if w is not None
        ]
    else:
        items = [
            _word_entity(scores, group, offsets, id2label, strategy) for group in _words(word_ids)
        ]
    if strategy != "none":
        items = [_group_entity(group) for group in _groups(items)]
    return [
        {**e, "score": float(e["score"]), "text": text[e["start"] : e["end"]]}
        for e in items
        if e["label"] not in ignore_labels
    ]


def _token_entity(
    scores: np.ndarray, id2label: Any, offset: tuple[int, int], index: int
) -> dict[str, Any]:
    best = int(scores.argmax())
    start, end = offset
    return {
        "label": id2label[best],
        "score": scores[best],
        "start": int(start),
        "end": int(end),
        "index": index,
    }


def _words(word_ids: Sequence[int | None]) -> list[list[int]]:
    """Token positions grouped by word: a token continues the previous token's word when it
    has the same word id (the pipeline's ``is_subword``); special tokens are dropped."""
    out: list[list[int]] = []
    prev: int | None = None
    for i, w in enumerate(word_ids):
        if w is not None:
            if out and w == prev:
                out[-1].append(i)
            else:
                out.append([i])
        prev = w
    return out


def _word_entity(
    scores: np.ndarray,
    tokens: list[int],
    offsets: Sequence[tuple[int, int]],
    id2label: Any,
    strategy: str,
) -> dict[str, Any]:
    """One word's label and score (the pipeline's ``aggregate_word``)."""
    if strategy == "first":
        word_scores = scores[tokens[0]]
    elif strategy == "max":
        # the first of the most confident tokens, as Python's max() picks
        word_scores = scores[tokens[int(scores[tokens].max(-1).argmax())]]
    else:
        word_scores = np.nanmean(scores[tokens], axis=0)
    best = int(word_scores.argmax())
    return {
        "label": id2label[best],
        "score": word_scores[best],
        "start": int(offsets[tokens[0]][0]),
        "end": int(offsets[tokens[-1]][1]),
    }


def _pipeline_tag(label: str) -> tuple[str, str]:
    """The pipeline's ``get_tag``: only B-/I- are prefixes; any other label continues (I)."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _groups(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Adjacent items of one type; a B- item starts a new group (the pipeline's
    ``group_entities``)."""
    out: list[list[dict[str, Any]]] = []
    for item in items:
        bi, tag = _pipeline_tag(item["label"])
        if out and bi != "B" and tag == _pipeline_tag(out[-1][-1]["label"])[1]:
            out[-1].append(item)
        else:
            out.append([item])
    return out


def _group_entity(group: list[dict[str, Any]]) -> dict[str, Any]:
    """The pipeline's ``group_sub_entities``: the first item's type, the mean score."""
    return {
        "label": group[0]["label"].split("-", 1)[-1],
        "score": np.nanmean([g["score"] for g in group]),
        "start": group[0]["start"],
        "end": group[-1]["end"],
    }


# -- long texts: overlapping windows ---------------------------------------------------------------


def windows(n_tokens: int, max_tokens: int, stride: int) -> list[tuple[int, int]]:
    """Overlapping ``(start, end)`` windows over ``n_tokens`` content tokens (specials excluded).

    Each window holds at most ``max_tokens``; consecutive windows share ``stride`` tokens (the
    last may be shorter); together they cover every token. A sequence that fits is one window.
    """
    if max_tokens < 1 or not 0 <= stride < max_tokens or n_tokens < 0:
        raise ValueError(
            f"need n_tokens >= 0, max_tokens >= 1 and 0 <= stride < max_tokens; got "
            f"n_tokens={n_tokens}, max_tokens={max_tokens}, stride={stride}"
        )
    out = [(0, min(n_tokens, max_tokens))]
    while out[-1][1] < n_tokens:
        start = out[-1][1] - stride
        out.append((start, min(start + max_tokens, n_tokens)))
    return out


def merge_windows(
    per_window_logits: Sequence[np.ndarray],
    windows: Sequence[tuple[int, int]],
    n_tokens: int,
) -> np.ndarray:
    """One logits row per content token, taken from the window where it has the most context.

    ``per_window_logits[k]`` holds window ``k``'s content rows (``end - start`` of them, special
    tokens removed). A token's context in a window is its distance to the nearer edge where the
    window cuts the text (the text's own start and end are no cut); the window with the most
    wins, the earlier one on a tie.
    """
    if len(per_window_logits) != len(windows) or not windows:
        raise ValueError(f"{len(per_window_logits)} logits arrays for {len(windows)} windows")
    first = np.asarray(per_window_logits[0])
    out = np.zeros((n_tokens, *first.shape[1:]), dtype=first.dtype)
    best = np.full(n_tokens, -1.0)
    for (start, end), rows in zip(windows, per_window_logits):
        rows = np.asarray(rows)
        if len(rows) != end - start or not 0 <= start <= end <= n_tokens:
            raise ValueError(
                f"window ({start}, {end}) of {n_tokens} tokens got {len(rows)} logits rows"
            )
        pos = np.arange(start, end)
        left = pos - start if start > 0 else np.full(len(pos), np.inf)
        right = end - 1 - pos if end < n_tokens else np.full(len(pos), np.inf)
        context = np.minimum(left, right)
        wins = context > best[start:end]
        out[pos[wins]] = rows[wins]
        best[pos[wins]] = context[wins]
    if (best < 0).any():
        raise ValueError(f"the windows leave token {int(np.argmax(best < 0))} uncovered")
    return out
