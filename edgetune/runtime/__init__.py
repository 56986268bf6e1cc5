"""The edge runtime: load a bundle and classify text with onnxruntime, tokenizers and numpy only.

No torch, no transformers: ``pip install edgetune`` (without the ``train`` extra) is enough.

    from edgetune.runtime import Classifier

    clf = Classifier.load("bundles/sst2")
    clf.predict(["a gorgeous film", "dull and lifeless"])

classifier.py  Classifier, Prediction, SelfCheck; the session factory (the padder and softmax
               are edgetune.arrays, re-exported here)
check.py       check_bundle (``edgetune check``): every variant's self-check on this device
inputs.py      predict's inputs (lines, CSV, TSV, JSONL) as Items, and predict_items
tagger.py      Tagger, Entity, Tagged: a token-classification bundle's entities, redaction
tokens.py      per-token logits of whole texts (overlapping windows beyond the max length)
passes.py      self-check passes remembered on this device (``--self-check auto``)

Importing it loads the bundle format and the layers below it, never a stage (``edgetune.train``,
``export``, ``validate``, ``data``): ``tests/test_layout.py`` holds the list.
"""

from ..arrays import pad_batch, softmax
from .check import BundleCheck, check_bundle
from .classifier import (
    Classifier,
    Prediction,
    SelfCheck,
    check_predict_options,
    default_threads,
    runtime_gap,
    session,
)
from .inputs import Item, iter_inputs, iter_lines, iter_table, predict_items, text_item
from .tagger import AGGREGATIONS, Entity, Tagged, Tagger

__all__ = [
    "AGGREGATIONS",
    "BundleCheck",
    "Entity",
    "Tagged",
    "Tagger",
    "Classifier",
    "Item",
    "Prediction",
    "SelfCheck",
    "check_bundle",
    "check_predict_options",
    "default_threads",
    "iter_inputs",
    "iter_lines",
    "iter_table",
    "pad_batch",
    "predict_items",
    "runtime_gap",
    "session",
    "softmax",
    "text_item",
]
