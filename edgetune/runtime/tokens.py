"""Per-token logits of whole texts: a text longer than the model's window is covered by
overlapping windows, so no word is left untagged.

One function serves the runtime, export's golden answers and validation's PyTorch side: they
differ only in what runs a padded feed (``run``), so all three see the same windows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..arrays import pad_batch
from ..entities import merge_windows, windows

Run = Callable[[dict[str, np.ndarray]], np.ndarray]  # padded feed -> logits [rows, tokens, tags]


@dataclass
class TextTokens:
    """A text's content tokens (no special tokens): ids, character offsets, word ids."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]


def untruncated(tokenizer: Any) -> Any:
    """A copy of a ``tokenizers.Tokenizer`` that neither truncates nor pads."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def special_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single text ([CLS] / [SEP],
    <s> / </s>), read from its own post-processor."""
    e = tokenizer.encode("x")
    content = [i for i, special in enumerate(e.special_tokens_mask) if not special]
    first, last = content[0], content[-1]
    return list(e.ids[:first]), list(e.ids[last + 1 :])


def content_tokens(tokenizer: Any, texts: Sequence[str]) -> list[TextTokens]:
    """Each text's content tokens, untruncated (``tokenizer`` from ``untruncated``)."""
    out = []
    for e in tokenizer.encode_batch(list(texts), add_special_tokens=False):
        out.append(TextTokens(list(e.ids), [tuple(o) for o in e.offsets], list(e.word_ids)))
    return out


def content_logits(
    tokens: Sequence[TextTokens],
    run: Run,
    pad_id: int,
    max_length: int,
    specials: tuple[list[int], list[int]],
    batch_size: int = 32,
    stride: int | None = None,
) -> list[np.ndarray]:
    """Logits [content tokens, tags] per text. A text over ``max_length`` (specials
    included) runs as windows overlapping by ``stride`` tokens (default a quarter of a
    window); each token takes the window where it sits farthest from an edge."""
    head, tail = specials
    width = max_length - len(head) - len(tail)
    stride = width // 4 if stride is None else stride
    plans = [windows(len(t.ids), width, stride) if t.ids else [] for t in tokens]
    jobs = [(i, w) for i, plan in enumerate(plans) for w in plan]
    ids = [head + tokens[i].ids[s:e] + tail for i, (s, e) in jobs]
    order = np.argsort([len(x) for x in ids], kind="stable")
    per_job: list[Any] = [None] * len(jobs)
    for b in range(0, len(order), batch_size):
        rows = order[b : b + batch_size]
        columns = {
            "input_ids": [ids[r] for r in rows],
            "attention_mask": [[1] * len(ids[r]) for r in rows],
            "token_type_ids": [[0] * len(ids[r]) for r in rows],
        }
        lg = run(pad_batch(columns, range(len(rows)), pad_id))
        for j, r in enumerate(rows):
            s, e = jobs[r][1]
            per_job[r] = lg[j, len(head) : len(head) + e - s]
    out, k = [], 0
    for i, plan in enumerate(plans):
        if not plan:
            out.append(np.zeros((0, 0), np.float32))
            continue
        mine = per_job[k : k + len(plan)]
        k += len(plan)
        out.append(np.asarray(merge_windows(mine, plan, len(tokens[i].ids)), np.float32))
    return out
