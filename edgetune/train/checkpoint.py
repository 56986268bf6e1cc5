"""The training checkpoint in ``RUN.partial/checkpoint/``: weights, optimizer, schedule, scaler,
moving average, QAT teacher and ranges, every rank's random state and the loop's counters.

It is taken at a step boundary (the loop's atomic step makes every signal land on one), so
``--resume`` continues bit for bit where the run stopped.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError
from ..formats import rundir

_OPTIMIZER = "optimizer.pt"
_WEIGHTS = "model.safetensors"
_EMA = "ema.safetensors"
_TEACHER = "teacher.safetensors"


@dataclass
class TrainingState:
    """A trainer's resumable state, as ``Trainer.state_dict()`` gives it for saving."""

    counters: dict[str, Any]  # the loop's counters and records (state.json)
    torch_state: dict[str, Any]  # optimizer, schedule, scaler, random states (optimizer.pt)
    weights: Any  # full weights: a dict of tensors, or the module itself
    ema: list[Any] | None  # the moving average, whole
    teacher: Any  # the QAT teacher module, if any
    write_shards: Callable[[Path], None]  # what each rank writes alone (sharded backends)
    main: bool  # whether this rank writes the files


class Saved:
    """A checkpoint on disk, as ``Trainer.load_state_dict()`` reads it back."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counters: dict[str, Any] = rundir.read_json(folder / rundir.STATE)

    def torch_state(self, device: Any) -> dict[str, Any]:
        import torch

        return torch.load(self.folder / _OPTIMIZER, map_location=device, weights_only=True)

    def ema(self, device: Any, n: int) -> list[Any]:
        from safetensors.torch import load_file

        saved = load_file(str(self.folder / _EMA), device=device)
        return [saved[str(i)] for i in range(n)]

    def load_teacher(self, module: Any, device: Any) -> None:
        from safetensors.torch import load_model

        if (self.folder / _TEACHER).exists():
            load_model(module, str(self.folder / _TEACHER), device=device)


class Checkpointable(Protocol):
    """What the checkpoint needs of a trainer: its folder and its state."""

    work: Path

    def state_dict(self) -> TrainingState: ...

    def load_state_dict(self, saved: Saved) -> None: ...


def save(t: Checkpointable) -> None:
    """Write the checkpoint (every rank calls this; rank 0 writes, a sharded backend gathers)."""
    import torch
    from safetensors.torch import save_file, save_model

    state = t.state_dict()
    tmp = t.work / (rundir.CHECKPOINT + ".tmp")
    if state.main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    state.write_shards(tmp)
    if not state.main:
        return
    if isinstance(state.weights, dict):
        weights = {k: v.contiguous() for k, v in state.weights.items()}
        save_file(weights, str(tmp / _WEIGHTS))
    else:
        save_model(state.weights, str(tmp / _WEIGHTS))
    if state.ema is not None:
        save_file({str(i): x.contiguous() for i, x in enumerate(state.ema)}, str(tmp / _EMA))
    if state.teacher is not None:
        save_model(state.teacher, str(tmp / _TEACHER))
    torch.save(state.torch_state, tmp / _OPTIMIZER)
    rundir.write_json(tmp / rundir.STATE, state.counters)
    rundir.replace_dir(tmp, t.work / rundir.CHECKPOINT)


def load(t: Checkpointable) -> None:
    """Continue from the checkpoint in the run's working directory."""
    t.load_state_dict(Saved(t.work / rundir.CHECKPOINT))


def check_launch(saved: dict[str, Any] | None, now: dict[str, Any]) -> None:
    """Batches, their shards and the optimizer's layout all depend on how a run was launched."""
    if saved is not None and saved != now:
        raise ConfigError(
            f"the checkpoint was written by {saved['world']} process(es) "
            f"({saved['parallel']}); resume with the same launcher and process count "
            f"(now: {now['world']}, {now['parallel']})"
        )


def save_best(
    work: Path, model: Any, tokenizer: Any, backend: Any, qat: Any, merge_lora: bool
) -> None:
    """The model as it stands (the caller swaps in the moving average) into ``best/``; QAT
    ranges and the int8 scheme go with it, a LoRA adapter is merged in."""
    import contextlib

    whole = backend.model_to_save(model)  # every rank takes part (FSDP gathers)
    if whole is None:
        return
    tmp = work / (rundir.BEST + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    with qat.suspended() if qat is not None else contextlib.nullcontext():
        if merge_lora:
            import copy

            whole = copy.deepcopy(whole).merge_and_unload()
        whole.save_pretrained(
            tmp, safe_serialization=True, state_dict=backend.state_dict_to_save(whole)
        )
    tokenizer.save_pretrained(tmp)
    if qat is not None:
        from ..quant import write_scheme

        write_scheme(tmp, qat.scheme)
    rundir.replace_dir(tmp, work / rundir.BEST)
    backend.release()
