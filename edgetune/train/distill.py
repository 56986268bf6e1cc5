"""Knowledge distillation from a teacher (``--teacher``): the student learns the teacher's class
probabilities beside the labels.

The teacher's logits over the training rows are computed once, before training, with the
teacher's own tokenizer (teacher and student may tokenize differently) and kept in the run
(``teacher_logits.npy``), so epochs and ``--resume`` reuse them. The loss is
``(1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher_T || student_T)`` (Hinton et al., 2015).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data import Data
from ..errors import ConfigError, first_line
from ..formats import run as rundir
from ..metrics import classification_metrics
from .config import TrainConfig


def teacher_dir(spec: str) -> tuple[str, str]:
    """Where the teacher's weights are (a run's ``best/``, a directory, a hub id) and its kind."""
    from ..presets import resolve_model

    path = Path(spec).expanduser()
    if rundir.is_run(path):
        return str(path / rundir.BEST), "run"
    if rundir.partial_path(path).exists() and not path.exists():
        raise ConfigError(
            f"--teacher {spec} is unfinished; finish it with `edgetune train --resume --output {spec}`"
        )
    return resolve_model(spec).location, "model"


def run_teacher(
    config: TrainConfig, data: Data, env: dict[str, Any], say: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    """The teacher's logits on every training row (in the data's label order), and where it is
    with its own validation and test figures (recorded beside the student's)."""
    from transformers import AutoTokenizer

    from ..modeling import load_saved, quiet_transformers
    from .evaluate import Evaluator

    assert config.teacher
    where, kind = teacher_dir(config.teacher)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(where)
            model = load_saved(where)  # type: ignore[arg-type]
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"--teacher {config.teacher} cannot be loaded ({first_line(e)}); pass a "
            "run, a fine-tuned model directory or hub id"
        ) from None
    order = label_order(model.config.id2label, data.label_names, config.teacher)
    say(f"teacher {config.teacher}: logits on {len(data.train)} training rows (once)")
    model.to(env["device"])
    ev = Evaluator(model, tokenizer, config, env)
    logits = ev.logits(data.train)[:, order]
    info: dict[str, Any] = {"teacher": config.teacher, "location": where, "kind": kind}
    for name in ("validation", "test"):
        split = getattr(data, name)
        m = classification_metrics(
            split.labels, ev.logits(split)[:, order].argmax(-1), data.label_names
        )
        info[name] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    return logits, info


def label_order(id2label: dict[Any, str], names: list[str], spec: str) -> list[int]:
    """Teacher output column for each of the data's labels; refuse a teacher of other labels."""
    teacher = [str(id2label[k]) for k in sorted(id2label, key=int)]
    if sorted(teacher) != sorted(names):
        raise ConfigError(
            f"--teacher {spec} predicts {', '.join(teacher[:6])}, but the data's labels are "
            f"{', '.join(names[:6])}; fine-tune a teacher on this data first "
            f"(`edgetune train --model MODEL --data ... --output runs/teacher`)"
        )
    return [teacher.index(n) for n in names]


def load_or_compute(
    config: TrainConfig, data: Data, env: dict[str, Any], work: Path, say: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    """The run's cached teacher logits and figures (resume), else the teacher's, run now."""
    path, info = work / rundir.TEACHER_LOGITS, work / rundir.TEACHER
    if path.is_file() and info.is_file():
        logits = np.load(path)
        if logits.shape == (len(data.train), data.num_labels):
            return logits, rundir.read_json(info)
    return run_teacher(config, data, env, say)


def save(logits: np.ndarray, info: dict[str, Any], work: Path) -> None:
    """Keep the logits in the run (atomically), so epochs and --resume reuse them."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=work, prefix=".teacher_logits.", suffix=".npy")
    with os.fdopen(fd, "wb") as f:
        np.save(f, logits.astype(np.float32))
    os.replace(tmp, work / rundir.TEACHER_LOGITS)
    rundir.write_json(work / rundir.TEACHER, info)


def loss(ce: Any, student: Any, teacher: Any, alpha: float, temperature: float) -> Any:
    """(1 - alpha) CE + alpha T^2 KL(teacher_T || student_T); alpha 0 is plain training."""
    if alpha == 0:
        return ce
    import torch.nn.functional as F

    t = temperature
    kd = F.kl_div(
        F.log_softmax(student / t, dim=-1), F.softmax(teacher / t, dim=-1), reduction="batchmean"
    )
    return (1 - alpha) * ce + alpha * t * t * kd
