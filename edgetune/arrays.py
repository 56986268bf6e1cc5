"""The array helpers every stage and the runtime share (numpy only): the one padder and
softmax, and length-bounded batches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def pad_batch(
    columns: Mapping[str, Sequence[Sequence[int]]], rows: Iterable[int], pad_id: int
) -> dict[str, np.ndarray]:
    """The token rows ``rows`` of each column, right-padded to their longest: ``input_ids``
    with ``pad_id``, per-token ``labels`` with -100 (ignored), the others (attention mask,
    token types) with 0. The one padder of training, validation and the runtime."""
    rows = list(rows)
    width = max(len(columns["input_ids"][r]) for r in rows)
    out = {}
    for key, seqs in columns.items():
        fill = pad_id if key == "input_ids" else -100 if key == "labels" else 0
        arr = np.full((len(rows), width), fill, dtype=np.int64)
        for i, r in enumerate(rows):
            arr[i, : len(seqs[r])] = seqs[r]
        out[key] = arr
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis (shifted by the maximum: no overflow)."""
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# A batch closes before its padding would pass this share of its real tokens.
PAD_WASTE = 0.25


def length_batches(
    lengths: Sequence[int], batch_size: int, waste: float = PAD_WASTE
) -> list[np.ndarray]:
    """Row indices in batches of at most ``batch_size``, shortest rows first, each padded to its
    longest row: a batch also closes when adding the next (longer) row would make its padding
    more than ``waste`` of its real tokens. A call of mixed lengths then runs as a few
    batches of like lengths instead of one padded to its longest text (measured on 32 random
    SST-2 rows: 1.56x the rows/s), while sorted data keeps full batches. Only for graphs whose
    answers do not depend on the batch: the split changes nothing else.
    """
    sizes = np.asarray(lengths)
    order = np.argsort(sizes, kind="stable")
    out, start, used = [], 0, 0
    for i, row in enumerate(order):
        n, length = i - start, int(sizes[row])
        if n and (n == batch_size or length * (n + 1) > (1 + waste) * (used + length)):
            out.append(order[start:i])
            start, used = i, 0
        used += length
    if len(order):
        out.append(order[start:])
    return out
