"""The training checkpoint in ``RUN.partial/checkpoint/``: weights, optimizer, schedule, scaler,
moving average, QAT teacher and ranges, every rank's random state and the loop's counters.

It is taken at a step boundary (the loop's atomic step makes every signal land on one), so
``--resume`` continues bit for bit where the run stopped.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..formats import run as rundir

if TYPE_CHECKING:
    from .loop import Trainer


def save(t: Trainer) -> None:
    """Write the checkpoint (every rank calls this; rank 0 writes, a sharded backend gathers)."""
    import torch
    from safetensors.torch import save_file, save_model

    weights, opt_state = t.backend.checkpoint_state(t.model, t.optimizer)
    ema = t.ema.full() if t.ema is not None else None
    # Each rank draws its own dropout masks: every rank's random state is saved.
    rngs = t.dist.gather([t.boundary[0]])
    tmp = t.work / (rundir.CHECKPOINT + ".tmp")
    if t.dist.main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    t.backend.save_shards(tmp)
    if not t.dist.main:
        return
    # Interrupted mid-accumulation: roll back to the last optimizer step, whose batch index,
    # random state and loss sums are what resuming needs.
    rng, loss_sum, loss_n, samples = t.boundary
    if weights is not None:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "model.safetensors"))
    else:
        save_model(t.model, str(tmp / "model.safetensors"))
    if ema is not None:
        save_file({str(i): x.contiguous() for i, x in enumerate(ema)}, str(tmp / "ema.safetensors"))
    teacher = t.qat.teacher if t.qat is not None else None
    if teacher is not None:
        save_model(teacher, str(tmp / "teacher.safetensors"))
    torch.save(
        {
            "optimizer": opt_state,
            "scheduler": t.scheduler.state_dict(),
            "scaler": t.scaler.state_dict() if t.scaler else None,
            "torch_rng": rng,
            "torch_rng_per_rank": rngs,
        },
        tmp / "optimizer.pt",
    )
    state = {**t.state, "samples": samples, "loss_sum": loss_sum, "loss_n": loss_n}
    state["launch"] = {"parallel": t.backend.name, "world": t.dist.world}
    if t.qat is not None:
        state["qat_ranges"] = t.qat.scheme.ranges
    rundir.write_json(tmp / rundir.STATE, state)
    rundir.replace_dir(tmp, t.work / rundir.CHECKPOINT)


def load(t: Trainer) -> None:
    """Continue from the checkpoint in the run's working directory."""
    import torch
    from safetensors.torch import load_file, load_model

    ck = t.work / rundir.CHECKPOINT
    state = rundir.read_json(ck / rundir.STATE)
    # Batches, their shards and the optimizer's layout all depend on how it was launched.
    launch = state.pop("launch", None)
    now = {"parallel": t.backend.name, "world": t.dist.world}
    if launch is not None and launch != now:
        raise ConfigError(
            f"the checkpoint was written by {launch['world']} process(es) "
            f"({launch['parallel']}); resume with the same launcher and process count "
            f"(now: {now['world']}, {now['parallel']})"
        )
    extra = torch.load(ck / "optimizer.pt", map_location=t.device, weights_only=True)
    t.backend.load_checkpoint(ck, t.model, t.optimizer, extra)
    if t.ema is not None:
        saved = load_file(str(ck / "ema.safetensors"), device=t.device)
        full = [saved[str(i)] for i in range(len(t.ema.average))]
        t.ema.average = t.backend.like_params(full, t.ema.params)
    t.scheduler.load_state_dict(extra["scheduler"])
    if t.scaler is not None and extra.get("scaler"):
        t.scaler.load_state_dict(extra["scaler"])
    rngs = extra.get("torch_rng_per_rank") or [extra["torch_rng"]]
    torch.set_rng_state(rngs[t.dist.rank if len(rngs) > 1 else 0].cpu())
    ranges = state.pop("qat_ranges", None)
    if t.qat is not None and ranges is not None:
        t.qat.scheme.ranges = ranges
    t.loss_sum = state.pop("loss_sum", 0.0)
    t.loss_n = state.pop("loss_n", 0)
    t.state.update(state)
    t.last_eval_step = state["history"][-1]["step"] if state.get("history") else -1
    if t.qat is not None:
        t.qat.switch(t.state["step"], t.model, t.ema)
        if t.qat.teacher is not None and (ck / "teacher.safetensors").exists():
            load_model(t.qat.teacher, str(ck / "teacher.safetensors"), device=t.device)
    t.mark_boundary()
    t.state["samples"] = 0
    t.state["train_s"] = 0.0


def save_best(t: Trainer) -> None:
    """The model as it stands (the caller swaps in the moving average) into ``best/``."""
    import contextlib

    model = t.backend.model_to_save(t.model)  # every rank takes part (FSDP gathers)
    if model is None:
        return
    tmp = t.work / (rundir.BEST + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    with t.qat.suspended() if t.qat is not None else contextlib.nullcontext():
        if t.config.strategy == "lora":
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(
            tmp, safe_serialization=True, state_dict=t.backend.state_dict_to_save(model)
        )
    t.tokenizer.save_pretrained(tmp)
    if t.qat is not None:
        from ..quant import write_scheme

        write_scheme(tmp, t.qat.scheme)
    rundir.replace_dir(tmp, t.work / rundir.BEST)
    t.backend.release()
