"""Knowledge distillation from a teacher (``--teacher``): the student learns the teacher's class
probabilities beside the labels.

The teacher's logits over the training rows are computed once, before training, with the
teacher's own tokenizer (teacher and student may tokenize differently) and kept in the run
(``teacher_logits.npy``), so epochs and ``--resume`` reuse them. The loss is
``(1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher_T || student_T)`` (Hinton et al., 2015).

Texts without labels (``--unlabeled``, ``--distill-augment``) join the training rows with the
label ``IGNORE``: the teacher labels them and the student learns them from its term alone
(weight 1). They are kept in the run (``unlabeled.jsonl``) beside the logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data import Data, Split
from ..errors import ConfigError, ModelError, first_line
from ..formats import rundir
from .config import TrainConfig


def teacher_dir(spec: str) -> tuple[str, str]:
    """Where the teacher's weights are (a run's ``best/``, a directory, a hub id) and its kind."""
    from ..presets import resolve_model

    path = Path(spec).expanduser()
    if rundir.is_run(path):
        return str(path / rundir.BEST), "run"
    unfinished = rundir.written_by_us(path) or (
        not path.exists() and rundir.written_by_us(rundir.partial_path(path))
    )
    if unfinished:
        final = path.with_name(path.name.removesuffix(".partial"))
        raise ConfigError(
            f"--teacher {spec} is a run still training (or stopped before it finished); finish "
            f"it with `edgetune train --resume --output {final}`, then pass --teacher {final}"
        )
    try:
        return resolve_model(spec).location, "model"
    except ModelError:
        raise ConfigError(_nothing_at(spec)) from None


def _nothing_at(spec: str) -> str:
    return (
        f"--teacher: no run, model folder or hub id at {spec}; pass a finished run "
        "(`edgetune train ... --output DIR`), a fine-tuned model folder, or a hub id"
    )


def run_teacher(
    config: TrainConfig, data: Data, env: dict[str, Any], say: Any, progress: bool = False
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
    except Exception as e:  # OSError, ValueError, SafetensorError, transformers' own
        if not Path(config.teacher).expanduser().exists():  # a hub id the hub does not serve
            raise ConfigError(_nothing_at(config.teacher)) from None
        raise ConfigError(
            f"--teacher {config.teacher} cannot be loaded ({first_line(e)}); its files may be "
            "truncated or not a model: pass a finished run, a fine-tuned model folder or hub id"
        ) from None
    order = label_order(model.config.id2label, data.label_names, config.teacher)
    model.to(env["device"])
    ev = Evaluator(model, tokenizer, config, env)
    info: dict[str, Any] = {"teacher": config.teacher, "location": where, "kind": kind}
    if ev.task.per_token:
        from . import word_teacher

        say(f"teacher {config.teacher}: logits on the words of {len(data.train)} sentences")
        for name in ("validation", "test"):
            split = getattr(data, name)
            held_out = word_teacher.word_logits(ev, tokenizer, split, order)
            info[name] = word_teacher.figures(held_out, split, data.label_names)
        bar = "teacher" if progress else None
        return word_teacher.word_logits(ev, tokenizer, data.train, order, bar), info
    cache = _LogitCache(Path(where), config, env)
    # Labelled rows and texts without labels apart: runs with other extra texts share the first.
    n = sum(1 for y in data.train.labels if y != IGNORE)
    parts = [data.train.subset(np.arange(n)), data.train.subset(np.arange(n, len(data.train)))]
    say(
        f"teacher {config.teacher}: logits on {len(data.train)} training rows (once; a "
        "stopped pass continues from its cached chunks)"
    )
    bar = "teacher" if progress else None
    logits = np.concatenate([cache.logits(ev, p, bar) for p in parts if len(p)])[:, order]
    for name in ("validation", "test"):
        split = getattr(data, name)
        m = ev.task.split_metrics(cache.logits(ev, split)[:, order], split, data.label_names)
        info[name] = {ev.task.headline[0]: m[ev.task.headline[0]], "macro_f1": m["macro_f1"]}
    return logits, info


CHUNK_ROWS = 1024  # a stopped teacher pass loses at most this many rows of work


class _LogitCache:
    """A teacher's logits kept in edgetune's cache (``teacher-logits/``), keyed by the teacher's
    files, the texts and how they are run, so students of one teacher on one data set (other
    depths, other seeds) run it once. A long pass is kept in chunks of ``CHUNK_ROWS`` rows as it
    goes, so a pass stopped midway (Ctrl-C, a killed job, another day) continues where it was."""

    def __init__(self, teacher: Path, config: TrainConfig, env: dict[str, Any]) -> None:
        import hashlib

        from ..presets import cache_dir

        h = hashlib.sha256(str(rundir.fingerprint(str(teacher))).encode())
        h.update(repr((config.max_length, env["precision"], env["device"])).encode())
        self.base, self.dir = h.hexdigest(), cache_dir() / "teacher-logits"

    def logits(self, ev: Any, split: Split, bar: str | None = None) -> np.ndarray:
        import hashlib
        import json
        import shutil

        from ..console import progress_bar

        key = hashlib.sha256(
            (self.base + json.dumps([split.texts, split.pairs])).encode()
        ).hexdigest()
        path, parts = self.dir / f"{key}.npy", self.dir / f"{key}.parts"
        whole = _cached(path, len(split))
        if whole is not None:
            return whole
        if not len(split):
            return ev.logits(split)
        spans = [(s, min(s + CHUNK_ROWS, len(split))) for s in range(0, len(split), CHUNK_ROWS)]
        kept = {s: _cached(parts / f"{s}.npy", e - s) for s, e in spans}
        done = {s: a for s, a in kept.items() if a is not None}
        with progress_bar(
            total=len(split),
            initial=sum(len(a) for a in done.values()),
            desc=bar or "",
            unit="row",
            enabled=bar is not None,
        ) as progress:
            for s, e in spans:
                if s not in done:
                    done[s] = ev.logits(split.subset(np.arange(s, e)), remember=False)
                    _keep(done[s], parts / f"{s}.npy")
                    progress.update(e - s)
        out = np.concatenate([done[s] for s, _ in spans])
        if _keep(out, path):
            shutil.rmtree(parts, ignore_errors=True)
        return out


def _cached(path: Path, rows: int) -> np.ndarray | None:
    """The array kept at ``path`` if it is whole and has ``rows`` rows."""
    if not path.is_file():
        return None
    try:
        cached = np.load(path)
    except (OSError, ValueError):
        return None  # unreadable: computed again and replaced
    return cached if cached.shape[0] == rows else None


def _keep(array: np.ndarray, path: Path) -> bool:
    """Save to the cache; a read-only or full cache only costs a later run this work."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_npy(array, path)
    except OSError:
        return False
    return True


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


def on_device(logits: np.ndarray, train: Any, tokenizer: Any, config: Any, device: Any) -> Any:
    """The teacher's logits as the loop indexes them by row: a tensor, or for a per-token task
    its word logits laid out on the student's sub-words (``word_teacher.TokenTeacher``)."""
    import torch

    if getattr(train, "tokens", None) is not None:
        from .word_teacher import TokenTeacher

        return TokenTeacher(logits, train, tokenizer, config, device)
    return torch.from_numpy(np.asarray(logits, np.float32)).to(device)


def load_or_compute(
    config: TrainConfig, data: Data, env: dict[str, Any], work: Path, say: Any, progress: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    """The run's cached teacher logits and figures (resume), else the teacher's, run now."""
    path, info = work / rundir.TEACHER_LOGITS, work / rundir.TEACHER
    if path.is_file() and info.is_file():
        logits = np.load(path)
        rows = len(data.train)
        words = getattr(data.train, "tokens", None)
        if words is not None:  # per token: one row per word
            rows = sum(len(w) for w in words)
        if logits.shape == (rows, data.num_labels):
            return logits, rundir.read_json(info)
    logits, figures = run_teacher(config, data, env, say, progress)
    bad = int((~np.isfinite(logits)).any(axis=1).sum())
    if bad:
        # A student trained on them would learn NaN: refused before its first step.
        raise ConfigError(
            f"--teacher {config.teacher} gives non-finite logits on {bad} of {len(logits)} "
            "training rows (its weights hold NaN or inf, or it overflows at this --precision); "
            "pass a teacher whose own evaluation is sound, or try --precision fp32"
        )
    return logits, figures


def save(logits: np.ndarray, info: dict[str, Any], work: Path) -> None:
    """Keep the logits in the run (atomically), so epochs and --resume reuse them."""
    _save_npy(logits.astype(np.float32), work / rundir.TEACHER_LOGITS)
    rundir.write_json(work / rundir.TEACHER, info)


def _save_npy(array: np.ndarray, path: Path) -> None:
    """``np.save`` to a temporary file beside ``path``, then renamed: never a torn file."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


IGNORE = -100  # the label of a row without one (PyTorch's cross-entropy ignore_index)


def _rows(split: Split) -> list[tuple[str, ...]]:
    return (
        list(zip(split.texts, split.pairs))
        if split.pairs is not None
        else [(t,) for t in split.texts]
    )


def _split(rows: list[tuple[str, ...]], pairs: bool) -> Split:
    return Split(
        [r[0] for r in rows], [IGNORE] * len(rows), [r[1] for r in rows] if pairs else None
    )


def unlabeled_rows(config: TrainConfig, data: Data, work: Path, say: Any) -> Split | None:
    """The texts the teacher labels for the student: the run's own (resume), else those of
    ``--unlabeled`` and ``--distill-augment``, less rows already in the labelled data."""
    import json
    import random

    pairs = data.train.pairs is not None
    path = work / rundir.UNLABELED
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        return _split([tuple(json.loads(line)) for line in lines], pairs)
    if not (config.unlabeled or config.distill_augment):
        return None
    from ..data import load_unlabeled
    from ..errors import DataError

    found: list[tuple[str, ...]] = []
    report: dict[str, Any] = {}
    if config.unlabeled:
        try:  # the labelled data's column names, else the file's own known ones
            extra = load_unlabeled(
                config.unlabeled, data.text_columns, pairs=pairs, header=config.header
            )
        except DataError:
            extra = load_unlabeled(config.unlabeled, pairs=pairs, header=config.header)
        found += _rows(extra)
        report["file"] = {"source": config.unlabeled, "rows": len(extra)}
    if config.distill_augment:
        rng = random.Random(config.seed)
        prob = config.augment or 0.1
        copies = [
            _changed(row, prob, rng)
            for _ in range(config.distill_augment)
            for row in _rows(data.train)
        ]
        found += copies
        report["augmented"] = {
            "copies": config.distill_augment,
            "probability": prob,
            "rows": len(copies),
        }
    seen = {row for split in (data.train, data.validation, data.test) for row in _rows(split)}
    kept = []
    for row in found:
        if row not in seen:
            seen.add(row)
            kept.append(row)
    dropped = len(found) - len(kept)
    report.update(rows=len(kept), dropped_in_labelled_data_or_repeated=dropped)
    data.report["unlabeled"] = report
    say(
        f"unlabeled: {len(kept)} texts for the teacher to label ({dropped} dropped: already "
        "in the labelled data, or repeated)"
    )
    if not kept:
        raise ConfigError(
            "every unlabeled text is already in the labelled data; pass other texts with "
            "--unlabeled"
        )
    return _split(kept, pairs)


def _changed(row: tuple[str, ...], prob: float, rng: Any) -> tuple[str, ...]:
    """An augmented copy of ``row`` that differs from it where a few draws allow (a copy equal
    to its original teaches nothing new; short texts are often left unchanged)."""
    from ..data import augment_text

    copy = row
    for _ in range(8):
        copy = tuple(augment_text(x, prob, rng) for x in row)
        if copy != row:
            break
    return copy


def with_unlabeled(data: Data, extra: Split | None) -> Data:
    """``data`` whose training split also holds ``extra`` (labelled ``IGNORE``)."""
    if extra is None:
        return data
    from dataclasses import replace

    t = data.train
    train = Split(
        t.texts + extra.texts,
        list(t.labels) + list(extra.labels),
        None if t.pairs is None else t.pairs + (extra.pairs or []),
    )
    return replace(data, train=train)


def save_unlabeled(extra: Split, work: Path) -> None:
    import json

    from ..fsutil import write_text

    text = "".join(json.dumps(list(r)) + "\n" for r in _rows(extra))  # ASCII: any locale
    write_text(work / rundir.UNLABELED, text)


def loss(
    loss_fn: Any, student: Any, labels: Any, teacher: Any, alpha: float, temperature: float
) -> Any:
    """(1 - alpha) CE + alpha T^2 KL(teacher_T || student_T) over labelled rows; rows labelled
    ``IGNORE`` learn T^2 KL alone; each row weighs the same. alpha 0, or no teacher, is plain
    training."""
    import torch
    import torch.nn.functional as F

    if teacher is None:
        return loss_fn(student, labels)
    if student.ndim == 3:  # per token: aligned on words (``word_teacher``)
        from .word_teacher import loss as word_loss

        return word_loss(loss_fn, student, labels, teacher, alpha, temperature)
    if labels.is_floating_point():  # multi-label: each label's sigmoid is its own soft target
        ce = loss_fn(student, labels)
        if alpha == 0:
            return ce
        t = temperature
        soft = F.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t))
        return (1 - alpha) * ce + alpha * t * t * soft
    labelled = labels != IGNORE
    if bool(labelled.all()):
        ce = loss_fn(student, labels)
        if alpha == 0:
            return ce
        t = temperature
        kd = F.kl_div(
            F.log_softmax(student / t, dim=-1),
            F.softmax(teacher / t, dim=-1),
            reduction="batchmean",
        )
        return (1 - alpha) * ce + alpha * t * t * kd
    t = temperature
    kd_rows = (
        F.kl_div(
            F.log_softmax(student / t, dim=-1), F.softmax(teacher / t, dim=-1), reduction="none"
        ).sum(-1)
        * t
        * t
    )
    n, n_lab = len(labels), int(labelled.sum())
    out = kd_rows[~labelled].mean() * ((n - n_lab) / n)
    if n_lab:
        ce = loss_fn(student[labelled], labels[labelled])
        lab = ce if alpha == 0 else (1 - alpha) * ce + alpha * kd_rows[labelled].mean()
        out = out + lab * (n_lab / n)
    return out
