"""Multi-process training under ``torchrun`` or ``accelerate launch``: PyTorch's DDP, our glue only.

The launcher sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous address; each
process then joins the group (gloo on CPU, NCCL on CUDA). Rank 0 owns the run directory,
the progress output and every evaluation; the other ranks train their shard of each batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's value of ``obj`` on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as td

        box = [obj]
        td.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as td

            td.barrier()


def launched_world() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup(device: str) -> Dist:
    """Join the process group the launcher prepared (a no-op in a single process)."""
    for var, what in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(var, "").lower() in ("1", "true", "yes"):
            from .errors import ConfigError

            raise ConfigError(
                f"the accelerate config asks for {what}, but edgetune trains with DDP (a compact "
                "model fits on every device); use an accelerate config with distributed_type "
                "MULTI_GPU or MULTI_CPU, or torchrun"
            )
    world = launched_world()
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as td

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
    if not td.is_initialized():
        td.init_process_group("nccl" if device == "cuda" else "gloo")
    return Dist(td.get_rank(), td.get_world_size(), local)


def teardown(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as td

        if td.is_initialized():
            td.destroy_process_group()
