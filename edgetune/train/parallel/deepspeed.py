"""DeepSpeed ZeRO stages 0-2 around edgetune's model and AdamW (optimizer state, and at stage 2
gradients, sharded by rank)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from .base import Backend, local, own_copies
from .launch import DeepSpeedOptions, Dist


class DeepSpeedBackend(Backend):
    name = "deepspeed"
    saves_anywhere = False

    def __init__(
        self,
        dist: Dist,
        device: str,
        options: DeepSpeedOptions,
        micro_batch: int,
        grad_accum: int,
        verbose: bool,
    ) -> None:
        super().__init__(dist, device)
        self.options, self.micro_batch, self.grad_accum = options, micro_batch, grad_accum
        self.verbose = verbose
        self.engine: Any = None

    def wrap(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        try:
            import deepspeed
        except ImportError:
            raise ConfigError(
                "the accelerate config asks for DeepSpeed, which is not installed; "
                "pip install deepspeed (or use an FSDP or DDP config)"
            ) from None
        from deepspeed.utils import logger as ds_logger

        # Its engine logs each save and load at INFO; --quiet keeps its errors only.
        ds_logger.setLevel(logging.WARNING if self.verbose else logging.ERROR)
        # ZeRO repoints the optimizer's groups to its fp32 partitions; the loop keeps stepping
        # the schedule and reading the state of edgetune's own AdamW object.
        self.engine, *_ = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            config=self.options.engine_config(self.micro_batch, self.grad_accum),
        )
        return self.engine, optimizer

    def accumulation_boundary(self, last: bool) -> None:
        # edgetune's accumulation boundaries, not DeepSpeed's own count
        self.engine.set_gradient_accumulation_boundary(last)

    def backward(self, loss: Any, scaler: Any) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)

    def step(self, model: Any, optimizer: Any, scaler: Any) -> None:
        self.engine.step()  # clips (gradient_clipping 1.0), steps and zeroes

    def state_dict_to_save(self, model: Any) -> dict[str, Any] | None:
        return own_copies(model)  # the weights are views of one flat buffer

    def checkpoint_state(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        # The optimizer state is in the shards (save_shards); weights share a buffer.
        return own_copies(model), {}

    def save_shards(self, folder: Path) -> None:
        # ZeRO shards the optimizer state: every rank writes its part with DeepSpeed.
        self.dist.barrier()
        self.engine.save_checkpoint(str(folder / "deepspeed"), tag="last", save_latest=False)
        self.dist.barrier()

    def load_checkpoint(self, folder: Path, model: Any, optimizer: Any, extra: dict) -> None:
        self.engine.load_checkpoint(
            str(folder / "deepspeed"), tag="last", load_lr_scheduler_states=False
        )

    def state_tensors(self, model: Any, optimizer: Any) -> list[Any]:
        # ZeRO's fp32 master copy of this rank's partition, besides the optimizer state.
        masters = [p for g in optimizer.param_groups for p in g["params"]]
        return super().state_tensors(model, optimizer) + local(masters)
