"""edgetune.labelsets against its references: scikit-learn's multi-label metrics and torch's
binary cross-entropy; threshold tuning on probabilities whose best threshold is known."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

from edgetune.labelsets import (
    DEFAULT_GRID,
    bce,
    decisions,
    label_agreement,
    multilabel_metrics,
    set_agreement,
    sigmoid,
    top_labels,
    tune_thresholds,
)

# -- metrics against scikit-learn -----------------------------------------------------------------

CRAFTED = {
    "perfect": ([[1, 0, 1], [0, 1, 0]], [[1, 0, 1], [0, 1, 0]]),
    "empty true sets": ([[0, 0, 0], [0, 0, 0], [1, 0, 0]], [[1, 0, 0], [0, 1, 0], [1, 0, 0]]),
    "empty predicted sets": ([[1, 1, 0], [0, 1, 1]], [[0, 0, 0], [0, 0, 0]]),
    "everything empty": ([[0, 0], [0, 0]], [[0, 0], [0, 0]]),
    "a label never predicted": (
        [[1, 1, 0], [1, 0, 1], [0, 1, 1]],
        [[1, 0, 0], [1, 0, 1], [0, 0, 1]],
    ),
    "a label without support": ([[1, 0, 0], [0, 0, 1]], [[1, 1, 0], [0, 1, 1]]),
    "a label neither true nor predicted": ([[1, 0, 1], [1, 0, 0]], [[1, 0, 0], [0, 0, 1]]),
    "all wrong": ([[1, 0], [0, 1]], [[0, 1], [1, 0]]),
    "one row": ([[1, 0, 1, 1]], [[1, 1, 0, 1]]),
    "every label on every row": ([[1, 1], [1, 1]], [[1, 0], [1, 1]]),
}


def _sklearn(t: np.ndarray, p: np.ndarray) -> dict[str, float]:
    out = {
        f"{avg}_{name}": fn(t, p, average=avg, zero_division=0)
        for avg in ("micro", "macro")
        for name, fn in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score))
    }
    out["subset_accuracy"] = accuracy_score(t, p)
    out["hamming_loss"] = hamming_loss(t, p)
    return out


def _check_against_sklearn(t: np.ndarray, p: np.ndarray) -> None:
    names = [f"l{j}" for j in range(t.shape[1])]
    ours = multilabel_metrics(t, p, names)
    for key, expected in _sklearn(t, p).items():
        assert ours[key] == pytest.approx(expected, rel=0, abs=1e-12), key
    assert ours["accuracy"] == ours["subset_accuracy"]
    assert ours["n"] == len(t)
    assert ours["no_label_rows"] == int((t.sum(axis=1) == 0).sum())
    prec, rec, f1, support = precision_recall_fscore_support(t, p, average=None, zero_division=0)
    for j, name in enumerate(names):
        row = ours["per_label"][name]
        assert row["precision"] == pytest.approx(prec[j], rel=0, abs=1e-12)
        assert row["recall"] == pytest.approx(rec[j], rel=0, abs=1e-12)
        assert row["f1"] == pytest.approx(f1[j], rel=0, abs=1e-12)
        assert row["support"] == support[j]


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_cases_equal_sklearn(case):
    t, p = (np.array(x) for x in CRAFTED[case])
    _check_against_sklearn(t, p)


def test_random_cases_equal_sklearn():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n, k = int(rng.integers(1, 40)), int(rng.integers(2, 9))
        t = (rng.random((n, k)) < rng.random(k)).astype(np.int64)
        p = (rng.random((n, k)) < rng.random(k)).astype(np.int64)
        # columns with no support and columns never predicted, now and then
        t[:, rng.random(k) < 0.15] = 0
        p[:, rng.random(k) < 0.15] = 0
        _check_against_sklearn(t, p)


def test_macro_averages_over_every_label_as_sklearn_does():
    # label c has no support and is never predicted: it counts as 0 in the macro averages
    t = np.array([[1, 1, 0], [1, 0, 0]])
    m = multilabel_metrics(t, t, ["a", "b", "c"])
    assert m["micro_f1"] == 1.0
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_metrics_take_bools_and_report_the_shape_of_the_split():
    t = np.array([[True, False], [False, False], [False, False]])
    m = multilabel_metrics(t, ~t, ["a", "b"])
    assert m["n"] == 3 and m["no_label_rows"] == 2
    assert m["subset_accuracy"] == 0.0 and m["hamming_loss"] == 1.0


def test_an_empty_split_scores_zero():
    m = multilabel_metrics(np.zeros((0, 2)), np.zeros((0, 2)), ["a", "b"])
    assert m["n"] == 0 and m["micro_f1"] == 0.0 and m["subset_accuracy"] == 0.0
    assert m["hamming_loss"] == 0.0 and m["per_label"]["a"]["support"] == 0


@pytest.mark.parametrize(
    ("t", "p", "names", "message"),
    [
        ([[1, 0]], [[1, 0, 0]], ["a", "b"], "shape"),
        ([[1, 0]], [[1, 0]], ["a"], "label names"),
        ([[1, 2]], [[1, 0]], ["a", "b"], "only 0 and 1"),
        ([1, 0], [1, 0], ["a", "b"], "matrix"),
    ],
)
def test_metrics_refuse_bad_input(t, p, names, message):
    with pytest.raises(ValueError, match=message):
        multilabel_metrics(np.array(t), np.array(p), names)


# -- sigmoid, decisions, bce ----------------------------------------------------------------------


def test_sigmoid_is_stable_and_keeps_float32():
    z = np.array([-1000, -50, -1, 0, 1, 50, 1000], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(z)
    assert s.dtype == np.float32
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    moderate = z[1:-1].astype(np.float64)
    np.testing.assert_allclose(s[1:-1], 1 / (1 + np.exp(-moderate)), rtol=1e-6)
    assert sigmoid(np.array([0, 2])).dtype == np.float64
    assert np.all(np.diff(sigmoid(np.linspace(-40, 40, 1001))) >= 0)


def test_decisions_per_label_and_global():
    probs = np.array([[0.2, 0.6, 0.5], [0.9, 0.1, 0.49]], dtype=np.float32)
    assert decisions(probs, 0.5).tolist() == [[False, True, True], [True, False, False]]
    per_label = decisions(probs, np.array([0.1, 0.7, 0.4]))
    assert per_label.dtype == bool
    assert per_label.tolist() == [[True, False, True], [True, False, True]]


def test_decisions_compare_in_float64():
    # float32(0.35) lies below 0.35: it must not pass a 0.35 threshold, per label or global
    probs = np.array([[0.35, 0.35]], dtype=np.float32)
    assert not decisions(probs, 0.35).any()
    assert not decisions(probs, np.array([0.35, 0.35])).any()
    assert decisions(np.array([[0.35, 0.35]]), 0.35).all()


def test_decisions_refuse_thresholds_of_the_wrong_shape():
    with pytest.raises(ValueError, match="one threshold per label"):
        decisions(np.zeros((2, 3)), np.array([0.5, 0.5]))


def test_bce_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=8, size=(64, 5))
    logits[0, :2] = [-1000, 1000]
    for targets in ((rng.random((64, 5)) < 0.4).astype(np.float64), rng.random((64, 5))):
        expected = torch.nn.functional.binary_cross_entropy_with_logits(
            torch.tensor(logits), torch.tensor(targets)
        ).item()
        assert bce(logits, targets) == pytest.approx(expected, abs=1e-6)
    f32 = logits.astype(np.float32)
    assert bce(f32, targets) == pytest.approx(bce(logits, targets), abs=1e-5)


def test_bce_is_stable_and_refuses_mismatches():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert bce(np.array([[1000.0, -1000.0]]), np.array([[1, 0]])) == 0.0
        assert bce(np.array([[-1000.0]]), np.array([[1]])) == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="shape"):
        bce(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="empty"):
        bce(np.zeros((0, 2)), np.zeros((0, 2)))


# -- threshold tuning -----------------------------------------------------------------------------


def test_the_default_grid():
    assert DEFAULT_GRID.tolist() == [round(0.05 * i, 2) for i in range(1, 20)]


def test_tuning_finds_the_known_threshold():
    rng = np.random.default_rng(1)
    pos = rng.uniform(0.3, 0.4, size=30)
    neg = rng.uniform(0.0, 0.2, size=70)
    probs = np.concatenate([pos, neg])[:, None].astype(np.float32)
    targets = np.concatenate([np.ones(30), np.zeros(70)])[:, None]
    (threshold,) = tune_thresholds(probs, targets)
    assert 0.2 <= threshold <= 0.3
    # 0.25 separates them; every perfect candidate ties, and the one closest to 0.5 wins
    assert threshold == 0.3
    m = multilabel_metrics(targets, decisions(probs, np.array([threshold])), ["a"])
    assert m["micro_f1"] == 1.0


def test_each_label_gets_its_own_threshold():
    # label a: positives at 0.7-0.8, negatives at 0.56-0.58 (0.6, 0.65 and 0.7 separate them);
    # label b: positives at 0.12-0.14, negatives at 0.01-0.02 (0.05 and 0.1 separate them)
    probs = np.array([[0.75, 0.13], [0.8, 0.01], [0.58, 0.12], [0.56, 0.02], [0.7, 0.14]])
    targets = np.array([[1, 1], [1, 0], [0, 1], [0, 0], [1, 1]])
    assert tune_thresholds(probs, targets).tolist() == [0.6, 0.1]


def test_ties_go_to_the_threshold_closest_to_one_half():
    # every candidate from 0.3 to 0.9 separates the classes perfectly: 0.5 itself wins
    probs = np.array([[0.95], [0.92], [0.25], [0.1]])
    targets = np.array([[1], [1], [0], [0]])
    assert tune_thresholds(probs, targets).tolist() == [0.5]
    # perfect from 0.05 to 0.3 only: the highest of them, 0.3, is closest to 0.5
    low = np.array([[0.33], [0.31], [0.02], [0.01]])
    assert tune_thresholds(low, targets).tolist() == [0.3]


def test_equally_close_ties_go_to_the_lower_threshold():
    probs = np.array([[0.6], [0.4]])
    targets = np.array([[1], [0]])
    # a grid of 0.45 and 0.55: both separate the rows perfectly and are 0.05 away from 0.5
    assert tune_thresholds(probs, targets, grid=np.array([0.55, 0.45])).tolist() == [0.45]


def test_a_label_without_positives_keeps_one_half():
    probs = np.array([[0.9, 0.7], [0.2, 0.8], [0.6, 0.1]])
    targets = np.array([[1, 0], [0, 0], [1, 0]])
    assert tune_thresholds(probs, targets)[1] == 0.5
    assert tune_thresholds(probs, targets, grid=np.array([0.2, 0.3]))[1] == 0.5


def test_positives_below_every_candidate_leave_one_half():
    probs = np.array([[0.01], [0.02], [0.03]])
    targets = np.array([[1], [0], [0]])
    # F1 is 0 at every candidate: all tie, and 0.5 is the closest to 0.5
    assert tune_thresholds(probs, targets).tolist() == [0.5]


def test_tuning_is_deterministic_and_never_worse_than_one_half():
    rng = np.random.default_rng(7)
    targets = (rng.random((200, 6)) < 0.3).astype(np.int64)
    probs = np.clip(0.35 * targets + rng.random((200, 6)) * 0.6, 0, 1).astype(np.float32)
    first = tune_thresholds(probs, targets)
    assert first.dtype == np.float64 and first.shape == (6,)
    assert np.array_equal(first, tune_thresholds(probs, targets))
    order = rng.permutation(200)
    assert np.array_equal(first, tune_thresholds(probs[order], targets[order]))
    assert set(first.tolist()) <= set(DEFAULT_GRID.tolist())
    names = [str(j) for j in range(6)]
    tuned = multilabel_metrics(targets, decisions(probs, first), names)["per_label"]
    half = multilabel_metrics(targets, decisions(probs, 0.5), names)["per_label"]
    assert all(tuned[n]["f1"] >= half[n]["f1"] for n in names)


@pytest.mark.parametrize("grid", [np.array([]), np.array([0.5, 1.5]), np.array([[0.5]])])
def test_tuning_refuses_a_bad_grid(grid):
    with pytest.raises(ValueError, match="grid"):
        tune_thresholds(np.full((2, 1), 0.5), np.array([[1], [0]]), grid=grid)


def test_tuning_refuses_misaligned_targets():
    with pytest.raises(ValueError, match="shape"):
        tune_thresholds(np.full((2, 2), 0.5), np.array([[1], [0]]))


# -- agreement and predictions --------------------------------------------------------------------


def test_agreements():
    a = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 0]])
    b = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [1, 1, 1]])
    assert label_agreement(a, b) == pytest.approx(9 / 12)
    assert set_agreement(a, b) == pytest.approx(2 / 4)
    assert label_agreement(a, a.astype(bool)) == set_agreement(a, a) == 1.0
    assert label_agreement(np.zeros((0, 3)), np.zeros((0, 3))) == 1.0
    assert set_agreement(np.zeros((0, 3)), np.zeros((0, 3))) == 1.0
    with pytest.raises(ValueError, match="shape"):
        set_agreement(a, b[:2])


def test_top_labels():
    names = ["sports", "politics", "tech", "health"]
    probs = np.array([0.4, 0.9, 0.4, 0.7], dtype=np.float32)
    decided, top = top_labels(probs, probs >= 0.4, names, top_k=3)
    assert decided == ["politics", "health", "sports", "tech"]  # equal 0.4s keep label order
    assert [n for n, _ in top] == ["politics", "health", "sports"]
    assert top[0][1] == pytest.approx(0.9) and isinstance(top[0][1], float)
    assert top_labels(probs, np.zeros(4, dtype=bool), names, top_k=0) == ([], [])
    with pytest.raises(ValueError, match="top_k"):
        top_labels(probs, probs > 0.5, names, top_k=-1)
    with pytest.raises(ValueError, match="label names"):
        top_labels(probs, probs > 0.5, names[:3], top_k=1)


def test_the_module_imports_without_torch():
    code = "import sys, edgetune.labelsets; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
