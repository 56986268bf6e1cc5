"""Validation of a multi-label bundle: every candidate's label sets, decided by the bundle's
thresholds, against the data and against the baseline.

Figures: micro and macro F1/P/R, exact-set accuracy, Hamming loss and per label; agreement
(rows whose whole set equals the baseline's) and label agreement (single decisions equal);
logit distance; the rows whose sets differ; batch invariance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..labelsets import decisions, label_agreement, multilabel_metrics, set_agreement, sigmoid
from ..runners import PYTORCH

FLIPPED_SHOWN = 20


def label_set_rows(
    logits: dict[str, np.ndarray],
    split: Any,
    label_names: list[str],
    baseline: str | None,
    thresholds: np.ndarray,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Each candidate's figures (and its agreement with the baseline), and its decisions."""
    targets = split.targets(len(label_names))
    decided = {n: decisions(sigmoid(lg), thresholds) for n, lg in logits.items()}
    rows: dict[str, dict[str, Any]] = {}
    for name, d in decided.items():
        m = multilabel_metrics(targets, d, label_names)
        row: dict[str, Any] = {"kind": "pytorch" if name == PYTORCH else "onnx", **m}
        row["f1"] = m["macro_f1"]  # what --max-f1-drop gates: rare labels count as much
        if baseline is not None:
            base = decided[baseline]
            b = multilabel_metrics(targets, base, label_names)
            diff = np.abs(logits[name] - logits[baseline])
            row |= {
                "agreement": set_agreement(d, base),
                "label_agreement": label_agreement(d, base),
                "flipped": int((d != base).any(-1).sum()),
                "logit_max_abs_diff": float(diff.max()) if diff.size else 0.0,
                "logit_mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
                "accuracy_delta_points": (m["subset_accuracy"] - b["subset_accuracy"]) * 100,
                "f1_delta_points": (m["macro_f1"] - b["macro_f1"]) * 100,
                "micro_f1_delta_points": (m["micro_f1"] - b["micro_f1"]) * 100,
            }
        rows[name] = row
    return rows, decided


def flipped_sets(
    decided: dict[str, np.ndarray], split: Any, label_names: list[str], baseline: str | None
) -> dict[str, list[dict[str, Any]]]:
    """Up to 20 rows per candidate whose label set differs from the baseline's."""
    if baseline is None:
        return {}

    def names(row: np.ndarray) -> str:
        return ";".join(label_names[i] for i in np.flatnonzero(row)) or "-"

    out = {}
    for name, d in decided.items():
        if name == baseline:
            continue
        idx = np.flatnonzero((d != decided[baseline]).any(-1))[:FLIPPED_SHOWN]
        out[name] = [
            {
                "index": int(i),
                "text": split.texts[i],
                "label": ";".join(label_names[j] for j in split.labels[i]) or "-",
                baseline: names(decided[baseline][i]),
                name: names(d[i]),
            }
            for i in idx
        ]
    return out


def set_batch_invariance(
    runner: Any, split: Any, batched: np.ndarray, batch_size: int, thresholds: np.ndarray
) -> dict[str, Any]:
    """Every row again, one per call: rows whose label set changes, probability differences."""
    single = runner.logits(split.texts, split.pairs, 1)
    a, b = sigmoid(single), sigmoid(batched)
    return {
        "batch_size": batch_size,
        "batching": runner.clf.batching,
        "flips": int(((a >= thresholds) != (b >= thresholds)).any(-1).sum()),
        "max_score_diff": float(np.max(np.abs(a - b))) if a.size else 0.0,
        "max_logit_diff": float(np.max(np.abs(single - batched))) if a.size else 0.0,
    }
