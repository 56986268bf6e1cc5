"""Evaluation: batched, length-sorted inference over a split, every rank its share."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tasks import task_named
from .batching import autocast, collate
from .config import TrainConfig
from .parallel.launch import Dist


class Evaluator:
    """Batched, length-sorted inference returning logits in input order."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: TrainConfig,
        env: dict[str, Any],
        precision: str | None = None,
        dist: Any = None,
    ) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.dist = dist or Dist()
        self.device = env["device"]
        self.precision = precision or env["precision"]
        self.task = task_named(config.task)
        self._cache: dict[int, dict[str, list[list[int]]]] = {}

    def logits(self, split: Any, bar: str | None = None, remember: bool = True) -> Any:
        """Logits in input order: an array of one row per text, or for a per-token task a list
        of one [tokens, tags] array per sentence; ``bar`` names a progress bar (long passes,
        e.g. a teacher's). ``remember=False`` for a split seen once (its encoding is not kept)."""
        import torch

        key = id(split)
        enc = self._cache.get(key)
        if enc is None:
            enc = self.task.encode(self.tokenizer, split, self.config.max_length or 128)
            enc = {k: v for k, v in enc.items() if k != "labels"}
            if remember:
                self._cache[key] = enc
        lengths = np.array([len(x) for x in enc["input_ids"]])
        order = np.argsort(-lengths, kind="stable")
        bs = max(64, self.config.batch_size * 2)
        rank, world = self.dist.rank, self.dist.world
        out: Any = np.zeros((len(split), self.model.config.num_labels), dtype=np.float32)
        if self.task.per_token:
            out = [None] * len(split)
        mine: list[tuple[np.ndarray, np.ndarray]] = []
        was_training = self.model.training
        self.model.eval()
        # Sharded models gather weights inside forward, so every rank runs every step
        # (an empty share forwards one row and drops it); inference mode cannot wrap that.
        grad_off = torch.no_grad() if self.dist.enabled else torch.inference_mode()
        starts = range(0, len(order), bs * world)
        if bar is not None:
            from ..console import progress_bar

            starts = progress_bar(starts, desc=bar, unit="batch")
        with grad_off, autocast(self.device, self.precision):
            for i in starts:
                chunk = order[i : i + bs * world]
                rows = chunk[rank::world]
                run = rows if len(rows) else chunk[:1]
                batch = {
                    k: v.to(self.device)
                    for k, v in collate(enc, run, self.tokenizer.pad_token_id).items()
                }
                lg = self.model(**batch).logits.float().cpu().numpy()
                mine.append((rows, lg[: len(rows)]))
        self.model.train(was_training)
        for rows, lg in self.dist.gather(mine):
            if self.task.per_token:  # each sentence's own tokens, padding dropped
                for j, r in enumerate(rows):
                    out[r] = lg[j, : len(enc["input_ids"][r])]
            else:
                out[rows] = lg
        return out

    def metrics(self, split: Any, label_names: list[str]) -> dict[str, Any]:
        lg = self.logits(split)
        max_length = self.config.max_length or 128
        return self.task.split_metrics(lg, split, label_names, self.tokenizer, max_length)


def merged_loss(loss_sum: float, loss_n: int, device: str) -> tuple[float, int]:
    """The training loss sum and row count over every rank."""
    import torch
    import torch.distributed as td

    t = torch.tensor([loss_sum, float(loss_n)], dtype=torch.float64, device=device)
    td.all_reduce(t)
    return float(t[0]), int(t[1])
