"""Reading users' labelled text: files, folders of splits, or Hugging Face datasets.

- ``read``: a file, a folder of split files or a Hub dataset as DataFrames.
- ``columns``: choosing the text and label columns; refusing a header row that is data.
- ``clean``: stripping, dropping empty, unlabelled and duplicate rows; the label map.
- ``split``: the ``Split`` of texts and label ids; carving validation and test from training.
- ``load``: ``load_data``, ``load_texts`` and ``load_unlabeled``, which run the above in turn.
- ``augment``: word-level augmentation of training texts.
"""

from __future__ import annotations

from ..textio import TEXT_NAMES
from .augment import augment_text
from .columns import KNOWN_NAMES, LABEL_NAMES, PAIR_NAMES
from .load import Data, load_data, load_texts, load_unlabeled
from .read import SPLIT_NAMES, SUFFIXES
from .split import Split

__all__ = [
    "KNOWN_NAMES",
    "LABEL_NAMES",
    "PAIR_NAMES",
    "SPLIT_NAMES",
    "SUFFIXES",
    "TEXT_NAMES",
    "Data",
    "Split",
    "augment_text",
    "load_data",
    "load_texts",
    "load_unlabeled",
]
