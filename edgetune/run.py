"""The run directory: the one module that knows its file names.

A finished run ``RUN/`` holds::

    best/                 HF-format model (config with id2label/label2id, safetensors, tokenizer)
    config.json           the resolved training configuration (reproduces the run)
    metrics.json          per-evaluation history, final validation/test metrics, data report
    training_curve.png    loss and validation metric over training

While training, everything is written to ``RUN.partial/`` (plus ``checkpoint/`` for ``--resume``)
and renamed to ``RUN`` only when complete, so a finished run is never half-written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .errors import RunError
from .fsutil import read_json, replace_dir, write_json

__all__ = ["read_json", "replace_dir", "write_json"]  # re-exported for the stages

FORMAT = "edgetune-run"
FORMAT_VERSION = 1
BEST = "best"
CONFIG = "config.json"
METRICS = "metrics.json"
CURVE = "training_curve.png"
CHECKPOINT = "checkpoint"
STATE = "trainer_state.json"


def data_spec(run_config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Where a run's data is and the ``load_data`` arguments that reproduce its splits."""
    c = run_config["config"]
    spec = run_config.get("data_location") or c["data"]
    return spec, {
        "text_columns": tuple(c.get("text_columns") or ()),
        "label_column": c.get("label_column"),
        "val_size": c.get("val_size", 0.1),
        "test_size": c.get("test_size", 0.1),
        "seed": c.get("seed", 42),
    }


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def is_run(path: Path) -> bool:
    return (path / METRICS).is_file() and (path / BEST / "config.json").is_file()


def open_run(path: str | Path) -> Path:
    """Check that ``path`` is a finished run and return it."""
    p = Path(path)
    if is_run(p):
        return p
    if partial_path(p).exists():
        raise RunError(
            f"run {p} is unfinished; continue it with `edgetune train --resume --output {p}`"
        )
    raise RunError(f"{p} is not an edgetune run (no {METRICS} and {BEST}/); pass a run directory")


def check_output(output: Path, *, overwrite: bool, resume: bool) -> Path:
    """Refuse outputs we must not touch; return the working directory (not yet created)."""
    work = partial_path(output)
    if resume:
        if not (work / CHECKPOINT / STATE).is_file():
            where = "has finished" if is_run(output) else "has no checkpoint to resume"
            raise RunError(f"cannot resume: {output} {where}; start a new run without --resume")
        return work
    if output.exists() and not output.is_dir():
        raise RunError(f"output {output} is a file; choose a directory path for --output")
    if output.exists() and not overwrite:
        what = "holds a run" if is_run(output) else "exists"
        raise RunError(
            f"output {output} already {what}; pass --overwrite to replace it or choose another --output"
        )
    if work.exists() and not overwrite:
        raise RunError(
            f"an unfinished run exists at {work}; pass --resume to continue it or --overwrite to start over"
        )
    return work


def create_work(work: Path) -> None:
    """Create a fresh working directory (an unfinished one is only replaced after check_output)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)


def finalize(work: Path, output: Path) -> None:
    """Turn the working directory into the finished run."""
    ckpt = work / CHECKPOINT
    if ckpt.exists():
        shutil.rmtree(ckpt)
    replace_dir(work, output)
