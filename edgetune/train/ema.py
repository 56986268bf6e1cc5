"""Exponential moving average of the trainable weights (Polyak averaging): evaluated and saved
instead of the raw weights, it smooths the step-to-step noise of SGD."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .parallel.base import local


class EMA:
    def __init__(self, params: list[Any], decay: float) -> None:
        self.params, self.decay = params, decay
        self.average = [p.detach().clone() for p in params]

    def update(self, step: int) -> None:
        import torch

        decay = min(self.decay, (1 + step) / (10 + step))  # warm-up: early weights fade fast
        with torch.no_grad():
            torch._foreach_lerp_(local(self.average), local(self.params), 1 - decay)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The average loaded into the model for the block (evaluation, saving)."""
        import torch

        params = local(self.params)
        with torch.no_grad():
            raw = [p.clone() for p in params]
            torch._foreach_copy_(params, local(self.average))
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(params, raw)

    def full(self) -> list[Any]:
        """Whole tensors (a sharded average gathered), for a checkpoint."""
        return [t.full_tensor().cpu() if hasattr(t, "full_tensor") else t for t in self.average]
