"""Multi-label classification with numpy: sigmoids, thresholds, label-set metrics, agreement.

The shared layer of multi-label classification (any number of labels per text, one sigmoid per
label): training and validation score 0/1 decision matrices with ``multilabel_metrics``
(scikit-learn's figures), pick per-label thresholds on validation probabilities with
``tune_thresholds``, and the runtime turns a text's logits into labels with ``sigmoid``,
``decisions`` and ``top_labels``. numpy and the standard library only: the torch-free runtime
imports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import per_label_report

# The default candidates of ``tune_thresholds``: 0.05, 0.10, ..., 0.95 (rounded, so 0.3 is 0.3).
DEFAULT_GRID = np.round(np.arange(1, 20) * 0.05, 2)
DEFAULT_GRID.setflags(write=False)
# A label without positives in the tuning split, and the tie-break's centre.
NEUTRAL = 0.5


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function elementwise, without overflow at any magnitude (±1000 -> 1, 0).

    A floating input keeps its dtype (float32 in, float32 out); anything else becomes float64.
    """
    z = np.asarray(z)
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float64)
    # exp of a non-positive number never overflows; both branches are exact rearrangements
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def threshold_logits(thresholds: Any) -> np.ndarray:
    """Probability thresholds as the logits where the sigmoid crosses them."""
    t = np.clip(np.asarray(thresholds, np.float64), 1e-7, 1 - 1e-7)
    return np.log(t / (1 - t))


def decisions(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """The ``[n, k]`` bool matrix ``probs >= thresholds``: one threshold per label (``[k]``) or one
    for all.

    The comparison is made in float64 whatever the dtype of ``probs``, so a threshold stored as a
    decimal (0.35) decides float32 and float64 probabilities alike.
    """
    p = _matrix(probs, "probs")
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim > 1 or (t.ndim == 1 and t.shape != (p.shape[1],)):
        raise ValueError(
            f"thresholds have shape {t.shape} for {p.shape[1]} labels: pass one threshold per "
            "label or a single number"
        )
    return p.astype(np.float64, copy=False) >= t


def multilabel_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str]
) -> dict[str, Any]:
    """Micro and macro precision/recall/F1, subset accuracy, Hamming loss and a per-label report
    of ``[n, k]`` 0/1 decisions against ``[n, k]`` 0/1 targets.

    Equal to scikit-learn's ``precision_score``/``recall_score``/``f1_score`` with
    ``average="micro"``/``"macro"`` and ``zero_division=0``, ``accuracy_score`` (subset accuracy)
    and ``hamming_loss`` on the same indicator matrices (for k >= 2; scikit-learn reads a single
    column as a binary target instead). As in scikit-learn, the macro averages run over ALL k
    labels: a label without support scores recall 0 and F1 0, and precision 0 unless predicted.
    (``classification_metrics`` of single-label tasks averages over the classes present instead.)

    Returns:
        ``micro_*``/``macro_*`` (precision, recall, f1), ``subset_accuracy`` (rows whose whole
        label set is right), ``accuracy`` (the same figure, for code that reads "accuracy"),
        ``hamming_loss`` (the fraction of wrong (row, label) decisions), ``n`` (rows),
        ``per_label``: {name: precision, recall, f1, support}, ``no_label_rows`` (rows whose true
        set is empty). An empty split scores 0 throughout.
    """
    t = _indicator(y_true, "y_true")
    p = _indicator(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    if t.shape[1] != len(label_names):
        raise ValueError(f"{t.shape[1]} label columns but {len(label_names)} label names")
    n = t.shape[0]
    tp = (t & p).sum(axis=0)
    pred_n = p.sum(axis=0)
    true_n = t.sum(axis=0)
    precision = _divide(tp, pred_n)
    recall = _divide(tp, true_n)
    f1 = _f1(tp, pred_n, true_n)
    micro = (int(tp.sum()), int(pred_n.sum()), int(true_n.sum()))
    subset = float((t == p).all(axis=1).mean()) if n else 0.0
    cells = t.size
    return {
        "micro_precision": float(_divide(micro[0], micro[1])),
        "micro_recall": float(_divide(micro[0], micro[2])),
        "micro_f1": float(_f1(*micro)),
        "macro_precision": float(precision.mean()) if len(label_names) else 0.0,
        "macro_recall": float(recall.mean()) if len(label_names) else 0.0,
        "macro_f1": float(f1.mean()) if len(label_names) else 0.0,
        "subset_accuracy": subset,
        "accuracy": subset,
        "hamming_loss": float(np.count_nonzero(t != p)) / cells if cells else 0.0,
        "n": int(n),
        "per_label": per_label_report(label_names, precision, recall, f1, true_n),
        "no_label_rows": int((~t.any(axis=1)).sum()),
    }


def tune_thresholds(
    probs: np.ndarray, targets: np.ndarray, grid: np.ndarray | None = None
) -> np.ndarray:
    """One threshold per label: the candidate that maximises that label's F1 on ``probs``.

    Args:
        probs: ``[n, k]`` probabilities (a validation split's, not the training split's).
        targets: ``[n, k]`` 0/1 true labels.
        grid: the candidate thresholds in [0, 1]; by default 0.05, 0.10, ..., 0.95.

    Returns:
        ``[k]`` float64 thresholds for ``decisions``. Among candidates of equal F1 the one closest
        to 0.5 wins, and of two equally close the lower; a label without positives in ``targets``
        keeps 0.5. Deterministic: no randomness, and exact integer ratios decide the ties.
    """
    p = _matrix(probs, "probs")
    t = _indicator(targets, "targets")
    if p.shape != t.shape:
        raise ValueError(f"probs have shape {p.shape} but targets have shape {t.shape}")
    g = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or not g.size or not np.all((g >= 0) & (g <= 1)):
        raise ValueError(
            f"the threshold grid must be a non-empty list of numbers in [0, 1], got {g}"
        )
    # rounded so that 0.45 and 0.55 are equally close to 0.5, whatever their binary expansions
    distance = np.round(np.abs(g - NEUTRAL), 9)
    out = np.full(p.shape[1], NEUTRAL)
    for j in range(p.shape[1]):
        pos = t[:, j]
        if not pos.any():
            continue
        chosen = p[:, j, None].astype(np.float64) >= g  # [n, candidates], as ``decisions``
        f1 = _f1((chosen & pos[:, None]).sum(axis=0), chosen.sum(axis=0), int(pos.sum()))
        # lexsort orders by its last key first: the best F1, the nearest to 0.5, the lowest
        best = np.lexsort((g, distance, -f1))[0]
        out[j] = g[best]
    return out


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of (row, label) decisions equal in ``a`` and ``b`` (1.0 for none)."""
    x, y = _aligned(a, b)
    return float((x == y).mean()) if x.size else 1.0


def set_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of rows whose whole decided label set is equal in ``a`` and ``b`` (1.0 for
    none)."""
    x, y = _aligned(a, b)
    return float((x == y).all(axis=1).mean()) if len(x) else 1.0


def top_labels(
    probs_row: np.ndarray, decided_row: np.ndarray, names: list[str], top_k: int
) -> tuple[list[str], list[tuple[str, float]]]:
    """One text's decided labels, most probable first, and its ``top_k`` ``(name, probability)``
    pairs whether decided or not (ties keep the label order; ``top_k=0`` gives none)."""
    p = np.asarray(probs_row, dtype=np.float64)
    d = np.asarray(decided_row, dtype=bool)
    if p.shape != (len(names),) or d.shape != p.shape:
        raise ValueError(
            f"{len(names)} label names but probabilities of shape {p.shape} and decisions of "
            f"shape {d.shape}: pass one row of each"
        )
    if top_k < 0:
        raise ValueError(f"top_k must be 0 or more, got {top_k}")
    order = np.argsort(-p, kind="stable")
    decided = [names[int(i)] for i in order if d[i]]
    return decided, [(names[int(i)], float(p[i])) for i in order[:top_k]]


def bce(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy of (possibly soft) 0..1 ``targets`` under ``logits``, as torch's
    ``binary_cross_entropy_with_logits`` computes it, without overflow (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if z.shape != y.shape:
        raise ValueError(f"logits have shape {z.shape} but targets have shape {y.shape}")
    if not z.size:
        raise ValueError("no logits: the loss of an empty batch is undefined")
    # log(1 + exp(z)) - z*y rearranged so that exp never sees a positive argument
    return float((np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).mean())


def _matrix(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a [rows, labels] matrix, got shape {arr.shape}")
    return arr


def _indicator(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` as a bool ``[n, k]`` matrix, refusing anything but 0/1 (or bool) values."""
    arr = _matrix(a, name)
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1, got {np.unique(arr)[:10]}")
    return arr.astype(bool, copy=False)


def _aligned(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = _indicator(a, "a")
    y = _indicator(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a has shape {x.shape} but b has shape {y.shape}")
    return x, y


def _divide(num: Any, den: Any) -> np.ndarray:
    """``num / den`` in float64, 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _f1(tp: Any, pred_n: Any, true_n: Any) -> np.ndarray:
    # scikit-learn's form, 2 tp / (true + predicted), so the figures match it to the last bit
    return _divide(2 * np.asarray(tp, dtype=np.float64), np.add(pred_n, true_n))
