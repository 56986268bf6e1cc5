"""The interface every parallel backend implements, and the one-process backend.

The training loop calls only these methods; what differs between one process, DDP, FSDP2 and
DeepSpeed (wrapping, backward, the optimizer step, gathering full weights, checkpoint shards)
lives in one small class per backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .launch import Dist


def local(tensors: list[Any]) -> list[Any]:
    """Each tensor's local storage: a sharded (FSDP) parameter's own shard, else the tensor."""
    return [t.to_local() if hasattr(t, "to_local") else t.detach() for t in tensors]


def own_copies(model: Any) -> dict[str, Any]:
    """The model's state dict with every tensor in its own storage (safetensors needs that)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class Backend:
    """One process (the default for every method)."""

    name = "none"
    # A checkpoint can be written by rank 0 at any step (sharded state needs every rank there).
    saves_anywhere = True

    def __init__(self, dist: Dist, device: str) -> None:
        self.dist, self.device = dist, device

    def shard(self, model: Any) -> None:
        """Split the model across ranks before its optimizer is made (FSDP only)."""

    def wrap(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        """The module the loop calls forward on, and the optimizer it steps."""
        return model, optimizer

    def accumulation_boundary(self, last: bool) -> None:
        """Tell the backend whether this micro-batch ends an accumulation (DeepSpeed)."""

    def backward(self, loss: Any, scaler: Any) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def step(self, model: Any, optimizer: Any, scaler: Any) -> None:
        """Clip the gradients at 1.0, step the optimizer and clear the gradients."""
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        if scaler is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
        else:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def launch(self) -> dict[str, Any]:
        """How the run was launched: a checkpoint resumes only under the same."""
        return {"parallel": self.name, "world": self.dist.world}

    def model_to_save(self, model: Any) -> Any:
        """The module whose ``save_pretrained`` writes the full model, on rank 0 (else None)."""
        return model if self.dist.main else None

    def release(self) -> None:
        """Free what ``model_to_save`` gathered."""

    def state_dict_to_save(self, model: Any) -> dict[str, Any] | None:
        """Tensors ``save_pretrained`` should write instead of the module's own (or None)."""
        return None

    def checkpoint_state(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        """Full weights (None: the module's own) and optimizer state for a checkpoint; every
        rank calls it (a sharded backend gathers)."""
        return None, optimizer.state_dict()

    def save_shards(self, folder: Path) -> None:
        """Write what each rank holds alone (every rank calls it)."""

    def load_checkpoint(self, folder: Path, model: Any, optimizer: Any, extra: dict) -> None:
        """Weights and optimizer state from a checkpoint written by this backend."""
        from safetensors.torch import load_model

        load_model(model, str(folder / "model.safetensors"), device=self.device)
        optimizer.load_state_dict(extra["optimizer"])

    def like_params(self, tensors: list[Any], params: list[Any]) -> list[Any]:
        """Full tensors (e.g. the moving average from a checkpoint) laid out as ``params``."""
        return tensors

    def state_tensors(self, model: Any, optimizer: Any) -> list[Any]:
        """The weights and optimizer state this rank holds (for its memory figure)."""
        import torch

        tensors = list(model.parameters())
        for st in optimizer.state.values():
            tensors += [v for v in st.values() if torch.is_tensor(v) and v.ndim > 0]
        return local(tensors)
