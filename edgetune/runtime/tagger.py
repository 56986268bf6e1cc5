"""Token classification on the device: the entities of each text, with character offsets into
the original string, grouped the way transformers' token-classification pipeline groups them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..entities import aggregate
from ..errors import ConfigError
from .classifier import Classifier

AGGREGATIONS = ("none", "simple", "first", "average", "max")


@dataclass
class Entity:
    """One tagged span: its type, the text it covers and where, and the model's confidence."""

    label: str
    score: float
    start: int
    end: int
    text: str
    index: int | None = None  # aggregation "none": the token's position among the text's tokens

    def to_dict(self) -> dict[str, Any]:
        d = {
            "label": self.label,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 6),
        }
        return d if self.index is None else {**d, "index": self.index}


@dataclass
class Tagged:
    """One text's result: its entities, and the text with them replaced when redacting."""

    entities: list[Entity]
    redacted: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"entities": [e.to_dict() for e in self.entities]}
        if self.redacted is not None:
            d["redacted"] = self.redacted
        return d


class Tagger:
    """A verified token-classification bundle: texts in, entities out.

    from edgetune.runtime import Tagger

    tagger = Tagger.load("bundles/ner")
    tagger.tag(["Ada Lovelace lived in London."])  # [[Entity(label='PER', ...), ...]]
    """

    def __init__(self, clf: Classifier) -> None:
        if not clf.task.per_token:
            raise ConfigError(
                f"{clf.root} classifies whole texts ({clf.task.name}); use Classifier, or "
                "`edgetune predict` without --aggregation"
            )
        self.clf = clf
        self.labels = clf.labels

    @classmethod
    def load(cls, bundle: str | os.PathLike[str], **options: Any) -> Tagger:
        """Verify, load and self-check the bundle as ``Classifier.load`` does (same options)."""
        return cls(Classifier.load(bundle, **options))

    def token_logits(
        self, texts: Sequence[str], *, batch_size: int = 32, stride: int | None = None
    ) -> list[np.ndarray]:
        """Logits [content tokens, tags] of each text (no special tokens; long texts in
        overlapping windows)."""
        return self.clf.token_logits(texts, batch_size=batch_size, stride=stride)

    def tag(
        self,
        texts: Sequence[str],
        *,
        aggregation: str = "first",
        batch_size: int = 32,
        stride: int | None = None,
    ) -> list[list[Entity]]:
        """The entities of each text, in input order and text order.

        ``aggregation`` groups sub-word tokens as transformers' pipeline does: ``none`` (one
        entry per token, the raw tag as label), ``simple`` (adjacent tokens of one type),
        ``first`` / ``average`` / ``max`` (word-level: the first sub-word's tag, the mean of
        the sub-words' scores, the most confident sub-word). ``first`` is the default: edgetune
        trains each word's tag on its first sub-word (unless ``--label-all-subwords``).
        """
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"--aggregation must be one of {', '.join(AGGREGATIONS)}")
        texts = [str(t) for t in texts]
        tokens, logits = self.clf.tokens_and_logits(texts, batch_size=batch_size, stride=stride)
        id2label = dict(enumerate(self.labels))
        out: list[list[Entity]] = []
        for text, tok, lg in zip(texts, tokens, logits):
            if not tok.ids:
                out.append([])
                continue
            found = aggregate(text, lg, tok.offsets, tok.word_ids, id2label, aggregation)
            out.append(
                [
                    Entity(
                        e["label"],
                        float(e["score"]),
                        e["start"],
                        e["end"],
                        e["text"],
                        e.get("index"),
                    )
                    for e in found
                ]
            )
        return out

    def predict(
        self, texts: Sequence[str], *, redact: bool = False, **options: Any
    ) -> list[Tagged]:
        """``tag`` (same options) as results; with ``redact`` each also carries its text with
        the entities replaced by ``[LABEL]``."""
        tagged = self.tag(texts, **options)
        return [
            Tagged(ents, redacted(str(text), ents) if redact else None)
            for text, ents in zip(texts, tagged)
        ]

    def redact(self, texts: Sequence[str], **options: Any) -> list[str]:
        """Each text with its entities replaced by ``[LABEL]`` (personal-data redaction)."""
        return [redacted(str(t), ents) for t, ents in zip(texts, self.tag(texts, **options))]


def redacted(text: str, entities: Sequence[Entity]) -> str:
    """``text`` with each entity's span replaced by ``[TYPE]``."""
    parts, at = [], 0
    for e in sorted(entities, key=lambda e: e.start):
        if e.start < at:
            continue  # overlapping entries (aggregation "none") are covered already
        parts += [text[at : e.start], f"[{_type(e.label)}]"]
        at = e.end
    return "".join(parts) + text[at:]


def _type(label: str) -> str:
    return label[2:] if label[:2] in ("B-", "I-", "E-", "S-") else label
