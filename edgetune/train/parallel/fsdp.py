"""PyTorch FSDP2 (``fully_shard``): weights, gradients and optimizer state sharded by rank."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .base import Backend
from .launch import Dist, FSDPOptions


class FSDPBackend(Backend):
    name = "fsdp"
    saves_anywhere = False

    def __init__(self, dist: Dist, device: str, options: FSDPOptions) -> None:
        super().__init__(dist, device)
        self.options = options
        self.shell: Any = None  # on rank 0, an empty copy that receives the gathered weights
        self.model: Any = None

    def shard(self, model: Any) -> None:
        """Each transformer layer, then the whole model, sharded across ranks."""
        import torch
        from torch.distributed.fsdp import fully_shard

        self.model = model
        if self.dist.main:  # the model's structure without its memory (meta tensors)
            self.shell = copy.deepcopy(model).to("meta")
        kw: dict[str, Any] = {"reshard_after_forward": self.options.reshard_after_forward}
        base = getattr(model, "get_base_model", lambda: model)()
        layer_types = set(getattr(base, "_no_split_modules", None) or [])
        layers = [m for m in model.modules() if type(m).__name__ in layer_types]
        if not layers:  # models that do not name their blocks: the encoder's layer list
            layers = [
                block
                for m in model.modules()
                if isinstance(m, torch.nn.ModuleList) and len(m) > 1
                for block in m
            ]
        for m in layers:
            fully_shard(m, **kw)
        fully_shard(model, **kw)

    def full_state(self, model: Any) -> dict[str, Any]:
        """The model's full state dict on rank 0, gathered from every rank's shard."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=opts)

    def model_to_save(self, model: Any) -> Any:
        state = self.full_state(model)  # every rank takes part in the gather
        if not self.dist.main:
            return None
        self.shell.load_state_dict(state, assign=True)  # holds the gathered tensors
        return self.shell

    def release(self) -> None:
        if self.shell is not None:
            self.shell.to("meta")  # let the gathered copy go

    def checkpoint_state(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        weights = self.full_state(model)
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return weights, get_optimizer_state_dict(model, optimizer, options=opts)

    def load_checkpoint(self, folder: Path, model: Any, optimizer: Any, extra: dict) -> None:
        # Every rank reads the full tensors (the run directory is shared) and keeps its shard.
        from safetensors.torch import load_file
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        full = StateDictOptions(full_state_dict=True)
        weights: dict[str, Any] = load_file(str(folder / "model.safetensors"), device=self.device)
        set_model_state_dict(model, weights, options=full)
        set_optimizer_state_dict(model, optimizer, extra["optimizer"], options=full)

    def like_params(self, tensors: list[Any], params: list[Any]) -> list[Any]:
        from torch.distributed.tensor import distribute_tensor

        return [distribute_tensor(t, p.device_mesh, p.placements) for t, p in zip(tensors, params)]
