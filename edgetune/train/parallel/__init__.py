"""Training in one process or many: the launcher's process group (``launch``) and one backend
per way of spreading the model (``single`` in ``base``, ``ddp``, ``fsdp``, ``deepspeed``)."""

from __future__ import annotations

from typing import Any

from .base import Backend
from .launch import DeepSpeedOptions, Dist, FSDPOptions


def backend_for(
    dist: Dist,
    device: str,
    fsdp: FSDPOptions | None,
    zero: DeepSpeedOptions | None,
    config: Any,
    verbose: bool,
) -> Backend:
    """The backend a launch asks for: DeepSpeed, FSDP, DDP (several processes) or one process."""
    if zero is not None:
        from .deepspeed import DeepSpeedBackend

        return DeepSpeedBackend(dist, device, zero, config.batch_size, config.grad_accum, verbose)
    if fsdp is not None:
        from .fsdp import FSDPBackend

        return FSDPBackend(dist, device, fsdp)
    if dist.enabled:
        from .ddp import DDPBackend

        return DDPBackend(dist, device)
    from .single import SingleBackend

    return SingleBackend(dist, device)
