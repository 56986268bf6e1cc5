"""Word-level augmentation for robustness: random deletion, swap and character noise."""

from __future__ import annotations

import random

_KEYBOARD = "abcdefghijklmnopqrstuvwxyz"


def augment_text(text: str, prob: float, rng: random.Random) -> str:
    """Apply one of deletion / swap / noise, each word touched with probability ``prob``."""
    words = text.split()
    if prob <= 0 or len(words) < 2:
        return text
    op = rng.randrange(3)
    if op == 0:  # deletion; never delete everything
        kept = [w for w in words if rng.random() >= prob]
        words = kept or [rng.choice(words)]
    elif op == 1:  # swap neighbours
        for i in range(len(words) - 1):
            if rng.random() < prob:
                words[i], words[i + 1] = words[i + 1], words[i]
    else:  # character noise: replace, drop or insert one letter
        for i, w in enumerate(words):
            if len(w) > 1 and rng.random() < prob:
                j = rng.randrange(len(w))
                kind = rng.randrange(3)
                c = rng.choice(_KEYBOARD)
                if kind == 0:
                    w = w[:j] + c + w[j + 1 :]
                elif kind == 1:
                    w = w[:j] + w[j + 1 :]
                else:
                    w = w[:j] + c + w[j:]
                words[i] = w
    return " ".join(words)
