"""The run directory: the one module that knows its file names.

A finished run ``RUN/`` holds::

    best/                 HF-format model (config with id2label/label2id, safetensors, tokenizer)
    config.json           the resolved training configuration (reproduces the run)
    metrics.json          per-evaluation history, final validation/test metrics, data report
    training_curve.png    loss and validation metric over training
    teacher_logits.npy    with --teacher: its logits on the training rows (computed once)
    teacher.json          with --teacher: where it is, its validation and test figures

While training, everything is written to ``RUN.partial/`` (plus ``checkpoint/`` for ``--resume``)
and renamed to ``RUN`` only when complete, so a finished run is never half-written.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..fsutil import check_writable, existing, read_json, replace_dir, write_json

__all__ = ["read_json", "replace_dir", "write_json"]  # re-exported for the stages

FORMAT = "edgetune-run"
FORMAT_VERSION = 1
BEST = "best"
CONFIG = "config.json"
METRICS = "metrics.json"
CURVE = "training_curve.png"
CHECKPOINT = "checkpoint"
STATE = "trainer_state.json"
TEACHER_LOGITS = "teacher_logits.npy"  # --teacher: its logits over the training rows, once
TEACHER = "teacher.json"  # --teacher: where it is, its validation and test figures
UNLABELED = "unlabeled.jsonl"  # --unlabeled / --distill-augment: texts the teacher labels
THRESHOLDS = "thresholds.json"  # in best/, multi-label: each label's decision threshold


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
        "header": c.get("header"),
    }


def fingerprint(spec: str) -> str | None:
    """SHA-256 over a local data file, or over a folder's files (names and bytes); None for a
    hub dataset. Recorded at the start of a run so ``--resume`` can tell the data changed."""
    path = Path(spec).expanduser()
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def is_run(path: Path) -> bool:
    return (path / METRICS).is_file() and (path / BEST / "config.json").is_file()


def written_by_us(path: Path) -> bool:
    """A run (finished or not) that edgetune wrote: its config.json names the run format."""
    try:
        return read_json(path / CONFIG).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def has_checkpoint(work: Path) -> bool:
    return (work / CHECKPOINT / STATE).is_file()


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


def check_output(
    output: Path, *, overwrite: bool, resume: bool, sources: tuple[tuple[str, str], ...] = ()
) -> Path:
    """Refuse outputs we must not touch; return the working directory (not yet created).

    ``--overwrite`` replaces only what edgetune wrote (a run, an unfinished run, an empty
    folder), never a folder of other files and never one holding a ``source`` the run reads
    (``sources``: option and path of every input).
    """
    work = partial_path(output)
    check_writable(output, "--output")
    if resume:
        if has_checkpoint(work):
            return work
        if work.exists():
            raise RunError(
                f"cannot resume: {work} stopped before its first checkpoint (one is written at "
                "each epoch end and on Ctrl-C); start over with --overwrite"
            )
        if is_run(output):
            raise RunError(f"cannot resume: {output} has finished; nothing is left to train")
        raise RunError(
            f"cannot resume: no unfinished run at {output} has a checkpoint to resume; "
            "start a new run without --resume"
        )
    if output.exists() and not output.is_dir():
        raise RunError(f"output {output} is a file; choose a directory path for --output")
    for option, src in sources:
        p = existing(src)
        if p is None:
            continue
        for d in (output, work):  # --overwrite empties both
            if p.resolve() == d.resolve() or d.resolve() in p.resolve().parents:
                raise RunError(
                    f"--output {output} holds {option} {src}, which this run reads; choose "
                    "another --output"
                )
    for d in (output, work):
        if d.is_dir() and any(d.iterdir()) and not written_by_us(d):
            raise RunError(
                f"{d} exists and is not an edgetune run; edgetune replaces only its own runs, "
                "so choose another --output"
            )
    if output.exists() and not overwrite and any(output.iterdir()):
        raise RunError(
            f"output {output} already holds a run; pass --overwrite to replace it or choose "
            "another --output"
        )
    if work.exists() and not overwrite:
        if has_checkpoint(work):
            raise RunError(
                f"an unfinished run exists at {work}; pass --resume to continue it or "
                "--overwrite to start over"
            )
        raise RunError(
            f"an unfinished run that stopped before its first checkpoint is at {work}; "
            "pass --overwrite to start over"
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


def write_thresholds(model_dir: Path, thresholds: dict[str, float], rule: str) -> None:
    """A multi-label model's decision rule beside its weights (export carries it on)."""
    write_json(model_dir / THRESHOLDS, {"rule": rule, "thresholds": thresholds})


def read_thresholds(model_dir: Path) -> dict[str, Any] | None:
    """``{"rule", "thresholds": {label: probability}}``, or None for a model without one."""
    path = Path(model_dir) / THRESHOLDS
    return read_json(path) if path.is_file() else None
