"""The array helpers every stage and the runtime share (numpy only): the one padder and
softmax."""

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
