"""Classification metrics computed with numpy: accuracy, macro P/R/F1, per class, confusion."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(y_true: Any, y_pred: Any, label_names: list[str]) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, a per-class report and the confusion matrix.

    The confusion matrix has true labels as rows and predicted labels as columns.
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    k = len(label_names)
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    pred_n = cm.sum(axis=0).astype(float)
    true_n = cm.sum(axis=1).astype(float)
    precision = np.divide(tp, pred_n, out=np.zeros(k), where=pred_n > 0)
    recall = np.divide(tp, true_n, out=np.zeros(k), where=true_n > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    present = true_n > 0  # macro averages over classes present in the split
    per_class = per_label_report(label_names, precision, recall, f1, true_n)
    return {
        "accuracy": float(tp.sum() / max(len(t), 1)),
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "n": int(len(t)),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def per_label_report(
    label_names: list[str], precision: Any, recall: Any, f1: Any, support: Any
) -> dict[str, dict[str, Any]]:
    """{name: precision, recall, f1, support}: the per-class (per-label) part of a report."""
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(label_names)
    }


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of integer ``labels`` under ``logits`` (one row each)."""
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def paired_drop(truth: Any, ref: Any, pred: Any) -> dict[str, Any]:
    """Accuracy points ``pred`` loses against ``ref`` on the same rows, with a 95% interval
    from the rows only one of them gets right: drop = (lost - won) / n, standard error
    sqrt(lost + won - (lost - won)^2 / n) / n. On a few hundred rows 0.2 points is one row."""
    truth, ref, pred = np.asarray(truth), np.asarray(ref), np.asarray(pred)
    n = max(len(truth), 1)
    lost = int(np.sum((ref == truth) & (pred != truth)))
    won = int(np.sum((ref != truth) & (pred == truth)))
    se = float(np.sqrt(max(lost + won - (lost - won) ** 2 / n, 0.0))) / n
    return {
        "drop_points": round((lost - won) / n * 100, 4),
        "ci95_points": round(1.96 * se * 100, 4),
        "rows_lost": lost,
        "rows_won": won,
    }
