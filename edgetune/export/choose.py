"""``--max-int8-drop``: the default variant chosen by measurement, not by habit.

Every int8 kind (dynamic, static, portable) and fp32 are built as candidates; each runs the
validation split through the runtime's own code (its tokenizer, length-sorted batches of 32,
its batching mode), interleaved; the default is the fastest int8 candidate whose accuracy is
within the limit of fp32's, else fp32 itself, and the manifest records every candidate's
figures and why. Measured on validation, never on test: the test split stays held out for
``validate``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..metrics import paired_drop

INT8 = ("int8-dynamic", "int8-static", "int8-portable")
CANDIDATES = ("fp32", *INT8)
BATCH = 32
TIMED_ROWS = 256  # rows per timing round (the first of the length-sorted split's mix)
ROUNDS = 3


def check_task(task: Any) -> None:
    if task.per_token or task.multi_label:
        raise ConfigError(
            f"--max-int8-drop measures accuracy, which a {task.name} bundle does not lead with; "
            "drop it and gate the F1 with `edgetune validate --max-f1-drop`"
        )


def choose(
    root: Path,
    graphs: dict[str, str],
    manifest: dict[str, Any],
    split: Any,
    limit: float,
    threads: int,
    qat: bool = False,
) -> dict[str, Any]:
    """The default among ``graphs`` (variant -> file in ``root``) and the record of why.

    ``manifest`` is the bundle's (labels, task, max length); ``split`` the labelled
    validation rows (label ids in the model's order).
    """
    from ..runtime.classifier import Classifier
    from .golden import batching

    labels = np.asarray(split.labels)
    clfs = {}
    for name, file in graphs.items():
        golden = {"variants": {name: {"batching": batching(root / file)}}}
        info = {**manifest, "variants": {name: {"file": file}}}
        clfs[name] = Classifier(root, info, name, threads, golden)
    preds = {
        name: clf.logits(split.texts, pairs=split.pairs, batch_size=BATCH).argmax(-1)
        for name, clf in clfs.items()
    }
    figures: dict[str, dict[str, Any]] = {
        name: {
            "accuracy": float(np.mean(p == labels)),
            "batching": clfs[name].batching,
            "agreement": float(np.mean(p == preds["fp32"])),
        }
        | paired_drop(labels, preds["fp32"], p)
        for name, p in preds.items()
    }
    timed = split.texts[:TIMED_ROWS]
    pairs = split.pairs[:TIMED_ROWS] if split.pairs is not None else None
    rates: dict[str, list[float]] = {n: [] for n in clfs}
    for _ in range(ROUNDS):  # interleaved: each round times every candidate once
        for name, clf in clfs.items():
            t = time.perf_counter()
            clf.logits(timed, pairs=pairs, batch_size=BATCH)
            rates[name].append(len(timed) / (time.perf_counter() - t))
    for name, f in figures.items():
        f["rows_per_s"] = statistics.median(rates[name])
    chosen, why = pick(figures, limit, len(labels), qat)
    return {
        "rule": f"fastest int8 variant within {limit:g} accuracy points of fp32, else fp32",
        "split": "validation",
        "rows": len(labels),
        "batch_size": BATCH,
        "threads": threads,
        "candidates": figures,
        "chosen": chosen,
        "why": why,
    }


def pick(
    figures: dict[str, dict[str, Any]], limit: float, rows: int, qat: bool = False
) -> tuple[str, str]:
    """The rule: the fastest int8 candidate within ``limit`` points of fp32, else fp32; and
    why, in one line."""
    within = [n for n in INT8 if n in figures and figures[n]["drop_points"] <= limit + 1e-9]
    if within:
        chosen = max(within, key=lambda n: figures[n]["rows_per_s"])
        f = figures[chosen]
        return chosen, (
            f"{chosen}: the fastest int8 variant within {limit:g} points of fp32 on {rows} "
            f"validation rows ({0.0 - f['drop_points']:+.2f} +- {f.get('ci95_points', 0):.2f} "
            f"points, {f['rows_per_s']:.0f} rows/s at batch {BATCH})"
        )
    best = min((n for n in INT8 if n in figures), key=lambda n: figures[n]["drop_points"])
    return "fp32", (
        f"fp32: no int8 variant is within {limit:g} points of fp32 on {rows} validation rows "
        f"(the closest, {best}, loses {figures[best]['drop_points']:.2f} +- "
        f"{figures[best].get('ci95_points', 0):.2f}); "
        + ("" if qat else "train with --qat for an int8 model that keeps its accuracy, or ")
        + "raise --max-int8-drop"
    )
