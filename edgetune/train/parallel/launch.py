"""Multi-process training under ``torchrun`` or ``accelerate launch``: PyTorch's DDP or FSDP2.

The launcher sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous address; each
process then joins the group (gloo on CPU, NCCL on CUDA). Every rank trains its shard of each
batch and evaluates its share of each split (logits are gathered, so every rank sees the
metrics of the whole split); rank 0 alone owns the run directory and the progress output.
Sharding is PyTorch's ``fully_shard``, chosen with ``--fsdp`` or an accelerate FSDP config; an
accelerate DeepSpeed config runs DeepSpeed's ZeRO engine (stages 0-2).
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
    owned: bool = False  # this process group was started by setup() (and ends with teardown)

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

    def gather(self, items: list[Any]) -> list[Any]:
        """Every rank's ``items``, concatenated in rank order, on every rank."""
        if not self.enabled:
            return list(items)
        import torch.distributed as td

        boxes: list[Any] = [None] * self.world
        td.all_gather_object(boxes, items)
        return [x for box in boxes for x in box]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as td

            td.barrier()


@dataclass(frozen=True)
class FSDPOptions:
    """What an accelerate FSDP config (or ``--fsdp``) asks of PyTorch's ``fully_shard``."""

    reshard_after_forward: bool = True  # FULL_SHARD (ZeRO-3); False: SHARD_GRAD_OP (ZeRO-2)
    activation_checkpointing: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "reshard_after_forward": self.reshard_after_forward,
            "activation_checkpointing": self.activation_checkpointing,
        }


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


# accelerate writes FSDP2's boolean or FSDP1's strategy names (or their 1-based numbers).
_RESHARD = {
    "true": True,
    "1": True,
    "full_shard": True,
    "hybrid_shard": True,
    "4": True,
    "false": False,
    "shard_grad_op": False,
    "2": False,
    "no_reshard": False,
    "hybrid_shard_zero2": False,
    "5": False,
}


def fsdp_options(requested: bool) -> FSDPOptions | None:
    """FSDP settings from ``--fsdp`` or the accelerate config's ``FSDP_*`` variables (else None)."""
    if not (requested or _env_flag("ACCELERATE_USE_FSDP")):
        return None
    from ...errors import ConfigError

    # accelerate exports both, each at its default unless the config set it: take the one set.
    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "").strip()
    strategy = os.environ.get("FSDP_SHARDING_STRATEGY", "").strip()
    if reshard and reshard.lower() != "true":
        raw = reshard
    else:
        raw = strategy or reshard or "true"
    key = raw.lower()
    if key in ("no_shard", "3"):
        return None  # nothing sharded: that is DDP
    if key not in _RESHARD:
        raise ConfigError(
            f"FSDP sharding {raw!r} is not known; use FULL_SHARD or SHARD_GRAD_OP "
            "(fsdp_reshard_after_forward true or false)"
        )
    if _env_flag("FSDP_OFFLOAD_PARAMS"):
        raise ConfigError(
            "fsdp_offload_params is not supported (a compact model's shards fit on the "
            "device); set it to false"
        )
    return FSDPOptions(
        reshard_after_forward=_RESHARD[key],
        activation_checkpointing=_env_flag("FSDP_ACTIVATION_CHECKPOINTING"),
    )


@dataclass(frozen=True)
class DeepSpeedOptions:
    """The ZeRO settings of an accelerate DeepSpeed config (its env or its JSON file)."""

    zero: dict[str, Any]

    @property
    def stage(self) -> int:
        return int(self.zero.get("stage", 2))  # accelerate's default

    def engine_config(self, micro_batch: int, grad_accum: int) -> dict[str, Any]:
        """DeepSpeed's config: ZeRO from the user; batch, accumulation and clipping from edgetune."""
        return {
            "train_micro_batch_size_per_gpu": micro_batch,
            "gradient_accumulation_steps": grad_accum,
            "gradient_clipping": 1.0,
            "zero_optimization": {**self.zero, "stage": self.stage},
            "zero_allow_untested_optimizer": True,  # edgetune's AdamW, as in every other mode
            "steps_per_print": 2**31 - 1,
        }


def deepspeed_options() -> DeepSpeedOptions | None:
    """ZeRO settings when accelerate launched with a DeepSpeed config (else None)."""
    if not _env_flag("ACCELERATE_USE_DEEPSPEED"):
        return None
    import json

    from ...errors import ConfigError

    zero: dict[str, Any] = {}
    path = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "").strip()
    if path and path.lower() != "none":
        try:
            zero = dict(json.loads(open(path).read()).get("zero_optimization") or {})
        except (OSError, ValueError, AttributeError) as e:
            raise ConfigError(f"DeepSpeed config {path}: {e}; give a readable JSON file") from None
        zero = {k: v for k, v in zero.items() if v != "auto"}  # accelerate's "auto": defaults
    if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "").strip().isdigit():
        zero["stage"] = int(os.environ["ACCELERATE_DEEPSPEED_ZERO_STAGE"])
    for key, var in (
        ("offload_optimizer", "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"),
        ("offload_param", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"),
    ):
        device = os.environ.get(var, "").strip().lower()
        if device and device != "none":
            zero[key] = {"device": device}
        if str((zero.get(key) or {}).get("device", "none")).lower() != "none":
            raise ConfigError(
                f"DeepSpeed {key} is not supported (edgetune keeps its own AdamW on the device); "
                f"set {key}_device to none"
            )
    opts = DeepSpeedOptions(zero)
    if opts.stage not in (0, 1, 2):
        raise ConfigError(
            f"DeepSpeed ZeRO stage {opts.stage} is not supported; use stage 1 or 2 (optimizer "
            "state and gradients sharded), or an accelerate FSDP config to shard the weights too"
        )
    return opts


def launched_world() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup(device: str) -> Dist:
    """Join the process group the launcher prepared (a no-op in a single process)."""
    world = launched_world()
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as td

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        gpus = torch.cuda.device_count()
        if local >= gpus:
            from ...errors import ConfigError

            raise ConfigError(
                f"this process is local rank {local} but the machine has {gpus} GPU(s): "
                f"launch at most {gpus} per node (torchrun --nproc_per_node {gpus}), "
                "or train on CPU with --device cpu"
            )
        torch.cuda.set_device(local)
    owned = not td.is_initialized()  # a caller's own group is joined and left running
    if owned:
        td.init_process_group("nccl" if device == "cuda" else "gloo")
    return Dist(td.get_rank(), td.get_world_size(), local, owned)


def teardown(d: Dist) -> None:
    """Leave the group while the interpreter is whole: a DDP model left in a reference cycle
    holds the Gloo group, whose worker threads abort the process if freed at exit."""
    if d.enabled and d.owned:
        import gc

        import torch.distributed as td

        gc.collect()
        if td.is_initialized():
            td.destroy_process_group()
        gc.collect()
