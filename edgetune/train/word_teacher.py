"""Distillation for token classification, aligned on words.

Teacher and student tokenize differently, so their sub-words do not line up; words do. The
teacher's logits are read at each word's first sub-word (its own tokenizer), kept as one
[words, tags] array over the training sentences (``teacher_logits.npy``), and handed to the
student at the sub-words that carry each word's label (the first, or every one with
``--label-all-subwords``). The loss over those positions is the usual
``(1 - alpha) * CE + alpha * T^2 * KL(teacher_T || student_T)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tasks import IGNORE, first_subwords


def word_logits(
    ev: Any, tokenizer: Any, split: Any, order: list[int], bar: str | None = None
) -> np.ndarray:
    """The teacher's logits [all words of ``split``, tags] in the data's tag order; a word
    past the teacher's max length gets zeros (no preference: the student keeps its label).
    ``bar`` names a progress bar (None: none, as under --quiet)."""
    per_row = ev.logits(split, bar)
    max_length = ev.config.max_length or 128
    enc = tokenizer(split.tokens, is_split_into_words=True, truncation=True, max_length=max_length)
    k = len(order)
    out = []
    for i, words in enumerate(split.tokens):
        rows = np.zeros((len(words), k), np.float32)
        starts = first_subwords(enc.word_ids(i))
        rows[: len(starts)] = per_row[i][starts][:, order]
        out.append(rows)
    return np.concatenate(out) if out else np.zeros((0, k), np.float32)


def figures(logits: np.ndarray, split: Any, label_names: list[str]) -> dict[str, float]:
    """The teacher's entity F1 and token accuracy on a split, from its word logits."""
    from ..entities import entity_metrics

    true, pred, at = [], [], 0
    for tags in split.tags:
        ids = logits[at : at + len(tags)].argmax(-1)
        at += len(tags)
        true.append([label_names[t] for t in tags])
        pred.append([label_names[int(t)] for t in ids])
    m = entity_metrics(true, pred)
    return {"f1": m["f1"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


class TokenTeacher:
    """The teacher's word logits laid out on the student's sub-words: ``teacher[rows]`` is a
    [rows, width, tags] tensor matching the student's padded batch of those rows."""

    def __init__(self, logits: np.ndarray, split: Any, tokenizer: Any, config: Any, device: Any):
        max_length = config.max_length or 128
        enc = tokenizer(
            split.tokens, is_split_into_words=True, truncation=True, max_length=max_length
        )
        self.rows: list[np.ndarray] = []
        self.device = device
        at = 0
        for i, words in enumerate(split.tokens):
            mine = np.asarray(logits[at : at + len(words)], np.float32)
            at += len(words)
            ids = enc.word_ids(i)
            row = np.zeros((len(ids), mine.shape[1]), np.float32)
            for p, w in enumerate(ids):
                if w is not None:
                    row[p] = mine[w]
            self.rows.append(row)

    def __getitem__(self, rows: Any) -> Any:
        import torch

        width = max(len(self.rows[r]) for r in rows)
        out = np.zeros((len(rows), width, self.rows[0].shape[1]), np.float32)
        for j, r in enumerate(rows):
            out[j, : len(self.rows[r])] = self.rows[r]
        return torch.from_numpy(out).to(self.device)


def loss(
    loss_fn: Any, student: Any, labels: Any, teacher: Any, alpha: float, temperature: float
) -> Any:
    """Over the labelled sub-words only (special tokens, padding and unlabelled sub-words
    carry ``IGNORE``): cross-entropy with the tags and KL to the teacher's word logits."""
    import torch.nn.functional as F

    k = student.shape[-1]
    s, y, t = student.reshape(-1, k), labels.reshape(-1), teacher.reshape(-1, k)
    keep = y != IGNORE
    s, y, t = s[keep], y[keep], t[keep]
    ce = loss_fn(s, y)
    if alpha == 0:
        return ce
    T = temperature
    kd = F.kl_div(F.log_softmax(s / T, dim=-1), F.softmax(t / T, dim=-1), reduction="batchmean")
    return (1 - alpha) * ce + alpha * T * T * kd
