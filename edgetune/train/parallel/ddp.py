"""PyTorch DDP: every rank holds the whole model; gradients are averaged in backward."""

from __future__ import annotations

from typing import Any

from .base import Backend


class DDPBackend(Backend):
    name = "ddp"

    def wrap(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.dist.local_rank] if self.device == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids), optimizer
