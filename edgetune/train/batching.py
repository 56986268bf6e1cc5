"""Tokenizing, length-grouped batches padded to their own longest row, and autocast."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data import Split
from ..tasks import task_named


def encode(
    tokenizer: Any, split: Any, config: Any, label_names: Sequence[str] = ()
) -> dict[str, list[list[int]]]:
    """Tokenize for ``config``'s task without padding (batches are padded to their own longest
    row); a per-token task's labels, aligned to sub-words, travel as ``labels``."""
    task = task_named(getattr(config, "task", None))
    max_length = config.max_length or 128
    return task.encode(tokenizer, split, max_length, label_names, config.label_all_subwords)


def make_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, group_by_length: bool
) -> list[np.ndarray]:
    """Shuffled batches; with grouping, rows of similar length share a batch (less padding).

    Grouping sorts within shuffled mega-batches of 50 batches and then shuffles the batch
    order, so each batch is still a random draw of the data, only of similar length.
    """
    idx = rng.permutation(len(lengths))
    if not group_by_length:
        return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    mega = batch_size * 50
    batches = []
    for i in range(0, len(idx), mega):
        chunk = idx[i : i + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def collate(enc: dict[str, list[list[int]]], rows: np.ndarray, pad_id: int) -> dict[str, Any]:
    """The rows as right-padded tensors (the runtime's padder, so every stage pads alike)."""
    import torch

    from ..arrays import pad_batch

    return {k: torch.from_numpy(v) for k, v in pad_batch(enc, rows, pad_id).items()}


def autocast(device: str, precision: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device, dtype=dtype)


def epoch_encoding(
    tokenizer: Any, train: Split, config: Any, epoch: int, plain: dict[str, list[list[int]]]
) -> dict[str, list[list[int]]]:
    """The training split as this epoch sees it: ``plain``, or re-augmented (seeded by epoch)."""
    if config.augment <= 0:
        return plain
    import random

    from ..data.augment import augment_text

    rng = random.Random(config.seed * 1_000_003 + epoch)
    aug = Split(
        [augment_text(x, config.augment, rng) for x in train.texts],
        train.labels,
        None
        if train.pairs is None
        else [augment_text(x, config.augment, rng) for x in train.pairs],
    )
    return encode(tokenizer, aug, config)


def global_batches(
    enc: dict[str, list[list[int]]], global_batch: int, config: Any, epoch: int, dist: Any
) -> list[np.ndarray]:
    """The epoch's batches of world_size x batch_size rows (identical on every rank)."""
    lengths = np.array([len(x) for x in enc["input_ids"]])
    rng = np.random.default_rng(config.seed + epoch)
    batches = make_batches(lengths, global_batch, rng, config.group_by_length)
    if dist.enabled:  # every rank needs at least one row of every batch
        batches = [b for b in batches if len(b) >= dist.world]
    return batches
