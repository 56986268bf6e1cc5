"""The task seam: what differs between one label per text, a set of labels per text and one
tag per word.

A ``Task`` is the one object the data reader, the trainer, the evaluator, the exporter, the
validator, the runtime and ``predict`` consult, instead of ``if task == ...`` spread over the
stages. ``text-classification`` is one label per text (or sentence pair); ``multi-label`` is
any number of labels per text (a sigmoid each, decided by thresholds);
``token-classification`` is one IOB2 tag per word (named entities, personal data).

Importable without torch or transformers (the runtime reads a bundle's task through it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

TEXT = "text-classification"
TOKENS = "token-classification"
MULTI = "multi-label"
TASKS = (TEXT, TOKENS, MULTI)
IGNORE = -100  # a position no loss or metric reads (special tokens, later sub-words, padding)


@dataclass(frozen=True)
class Task:
    """What one task means at every stage (the text task's behaviour; subclasses differ)."""

    name: str
    architecture: str  # the transformers class suffix, e.g. ForSequenceClassification
    metrics: tuple[str, ...]  # what --metric may choose (the first is the default)
    headline: tuple[str, str]  # the figure reports lead with: (metric key, printed name)

    @property
    def optimum_task(self) -> str:
        return self.name

    @property
    def per_token(self) -> bool:
        return False

    @property
    def multi_label(self) -> bool:
        return False

    def auto_class(self) -> Any:
        """transformers' Auto class for this task's models."""
        import transformers

        return getattr(transformers, f"AutoModel{self.architecture}")

    def fits(self, architectures: Sequence[str]) -> bool:
        return any(a.endswith(self.architecture) for a in architectures)

    def encode(
        self,
        tokenizer: Any,
        split: Any,
        max_length: int,
        label_names: Sequence[str] = (),
        all_subwords: bool = False,
    ) -> dict[str, list[list[int]]]:
        """Tokenized rows, unpadded (batches are padded to their own longest row)."""
        enc = tokenizer(split.texts, split.pairs, truncation=True, max_length=max_length)
        return {k: enc[k] for k in tokenizer.model_input_names if k in enc}

    def row_labels(self, split: Any, num_labels: int) -> Any:
        """The labels a batch takes by row index (None: they travel in the encoding)."""
        import torch

        return torch.tensor(split.labels)

    def split_metrics(
        self,
        logits: Any,
        split: Any,
        label_names: list[str],
        tokenizer: Any = None,
        max_length: int = 128,
    ) -> dict[str, Any]:
        """The split's figures from its logits (one row per text), with the mean loss."""
        from .metrics import classification_metrics, cross_entropy

        labels = np.asarray(split.labels)
        m = classification_metrics(labels, logits.argmax(-1), label_names)
        m["loss"] = cross_entropy(logits, labels)
        return m


@dataclass(frozen=True)
class TokenTask(Task):
    """One IOB2 tag per word: labels on each word's first sub-word, entity-level figures."""

    @property
    def per_token(self) -> bool:
        return True

    def encode(
        self,
        tokenizer: Any,
        split: Any,
        max_length: int,
        label_names: Sequence[str] = (),
        all_subwords: bool = False,
    ) -> dict[str, list[list[int]]]:
        enc = tokenizer(
            split.tokens, is_split_into_words=True, truncation=True, max_length=max_length
        )
        out = {k: enc[k] for k in tokenizer.model_input_names if k in enc}
        out["labels"] = [
            align_labels(enc.word_ids(i), tags, label_names, all_subwords)
            for i, tags in enumerate(split.tags)
        ]
        return out

    def row_labels(self, split: Any, num_labels: int) -> Any:
        return None

    def split_metrics(
        self,
        logits: Any,
        split: Any,
        label_names: list[str],
        tokenizer: Any = None,
        max_length: int = 128,
    ) -> dict[str, Any]:
        """Entity-level P/R/F1 (exact spans), per type, token accuracy; the loss over each
        word's first sub-word. ``logits`` holds one [tokens, tags] array per sentence."""
        from .entities import entity_metrics
        from .metrics import cross_entropy

        enc = tokenizer(
            split.tokens, is_split_into_words=True, truncation=True, max_length=max_length
        )
        outside = label_names.index("O") if "O" in label_names else 0
        true, pred, rows, gold = [], [], [], []
        for i, tags in enumerate(split.tags):
            starts = first_subwords(enc.word_ids(i))
            ids = word_tags(logits[i], starts, len(tags), outside)
            true.append([label_names[t] for t in tags])
            pred.append([label_names[t] for t in ids])
            rows.append(logits[i][starts])
            gold += list(tags[: len(starts)])
        m = entity_metrics(true, pred)
        stacked = np.concatenate(rows) if rows else np.zeros((0, len(label_names)), np.float32)
        m["loss"] = cross_entropy(stacked, np.asarray(gold, dtype=np.int64)) if gold else 0.0
        return m


@dataclass(frozen=True)
class MultiLabelTask(Task):
    """Any number of labels per text: a sigmoid per label, decided by thresholds."""

    @property
    def optimum_task(self) -> str:
        return TEXT  # the same graph; config.json's problem_type tells loaders to use sigmoids

    @property
    def multi_label(self) -> bool:
        return True

    def row_labels(self, split: Any, num_labels: int) -> Any:
        import torch

        return torch.from_numpy(split.targets(num_labels))  # [rows, labels] 0/1 floats

    def split_metrics(
        self,
        logits: Any,
        split: Any,
        label_names: list[str],
        tokenizer: Any = None,
        max_length: int = 128,
    ) -> dict[str, Any]:
        """Micro and macro F1/P/R, subset accuracy, Hamming loss and per label, every label
        decided at 0.5 (thresholds are tuned once training is done); the loss is BCE."""
        from .labelsets import bce, decisions, multilabel_metrics, sigmoid

        targets = split.targets(len(label_names))
        m = multilabel_metrics(targets, decisions(sigmoid(logits), 0.5), label_names)
        m["loss"] = bce(logits, targets)
        return m


TEXT_TASK = Task(
    TEXT, "ForSequenceClassification", ("accuracy", "macro_f1", "loss"), ("accuracy", "accuracy")
)
TOKEN_TASK = TokenTask(
    TOKENS, "ForTokenClassification", ("f1", "accuracy", "macro_f1", "loss"), ("f1", "entity F1")
)
MULTI_TASK = MultiLabelTask(
    MULTI,
    "ForSequenceClassification",
    ("micro_f1", "macro_f1", "loss"),
    ("micro_f1", "micro F1"),
)
_BY_NAME: dict[str, Task] = {t.name: t for t in (TEXT_TASK, TOKEN_TASK, MULTI_TASK)}


def task_named(name: str | None) -> Task:
    """The task called ``name``: None (bundles and runs written before tasks) and ``auto``
    (a config not yet resolved against its data, e.g. built by a library caller) are text."""
    if name is None or name == "auto":
        return TEXT_TASK
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"--task must be one of {', '.join(TASKS)} (got {name!r})") from None


# -- token classification: words to sub-word rows and back ---------------------------------------


def align_labels(
    word_ids: Sequence[int | None],
    tags: Sequence[int],
    label_names: Sequence[str],
    all_subwords: bool,
) -> list[int]:
    """One label per sub-word token: the word's tag on its first sub-word; later sub-words get
    ``IGNORE`` (or, with ``all_subwords``, the word's tag with B- turned into I-); special
    tokens ``IGNORE``."""
    inside = _b_to_i(label_names)
    out, prev = [], None
    for w in word_ids:
        if w is None:
            out.append(IGNORE)
        elif w != prev:
            out.append(int(tags[w]))
        else:
            out.append(inside[int(tags[w])] if all_subwords else IGNORE)
        prev = w
    return out


def _b_to_i(label_names: Sequence[str]) -> list[int]:
    index = {n: i for i, n in enumerate(label_names)}
    return [
        index.get("I-" + n[2:], i) if n.startswith("B-") else i for i, n in enumerate(label_names)
    ]


def first_subwords(word_ids: Sequence[int | None]) -> list[int]:
    """The position of each word's first sub-word token, in word order."""
    out, prev = [], None
    for pos, w in enumerate(word_ids):
        if w is not None and w != prev:
            out.append(pos)
        prev = w
    return out


def word_tags(
    logits: np.ndarray, starts: Sequence[int], n_words: int, outside: int = 0
) -> list[int]:
    """Tag ids per word read at each word's first sub-word; words cut off by truncation are
    ``outside`` ("O"): a missed entity counts against the model."""
    pred = logits[list(starts)].argmax(-1).tolist() if len(starts) else []
    return pred + [outside] * (n_words - len(pred))
