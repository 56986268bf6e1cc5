"""Accuracy, agreement, flipped rows and batch invariance of each variant; the gates judging them."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..gates import (
    Gate,
    accuracy_drop_gate,
    agreement_gate,
    batch_invariance_gates,
    f1_drop_gate,
    latency_gate_of,
    speedup_gates,
)
from ..runners import PYTORCH, RuntimeRunner
from .config import ValidateConfig

FLIPPED_SHOWN = 20


# -- batch invariance ---------------------------------------------------------------------------


def batch_invariance(
    runner: RuntimeRunner, split: Any, batched: np.ndarray, batch_size: int
) -> dict[str, Any]:
    """Every row again, one per call: label flips and score differences against the batch."""
    from ..runtime import softmax

    single = runner.logits(split.texts, split.pairs, 1)
    return {
        "batch_size": batch_size,
        "batching": runner.clf.batching,
        "flips": int(np.sum(single.argmax(-1) != batched.argmax(-1))),
        "max_score_diff": float(np.max(np.abs(softmax(single) - softmax(batched)))),
        "max_logit_diff": float(np.max(np.abs(single - batched))),
    }


# -- accuracy -----------------------------------------------------------------------------------


def accuracy_rows(
    logits: dict[str, np.ndarray], split: Any, label_names: list[str], baseline: str | None
) -> dict[str, dict[str, Any]]:
    from ..metrics import classification_metrics

    y = np.asarray(split.labels)
    rows: dict[str, dict[str, Any]] = {}
    base = logits.get(baseline) if baseline else None
    for name, lg in logits.items():
        pred = lg.argmax(-1)
        m = classification_metrics(y, pred, label_names)
        row: dict[str, Any] = {"kind": "pytorch" if name == PYTORCH else "onnx", **m}
        if base is not None:
            diff = np.abs(lg - base)
            row["agreement"] = float(np.mean(pred == base.argmax(-1)))
            row["flipped"] = int(np.sum(pred != base.argmax(-1)))
            row["logit_max_abs_diff"] = float(diff.max())
            row["logit_mean_abs_diff"] = float(diff.mean())
            row["accuracy_delta_points"] = (
                m["accuracy"] - float(np.mean(base.argmax(-1) == y))
            ) * 100
        rows[name] = row
    return rows


def flipped_examples(
    logits: dict[str, np.ndarray], split: Any, label_names: list[str], baseline: str | None
) -> dict[str, list[dict[str, Any]]]:
    if baseline is None:
        return {}
    base = logits[baseline].argmax(-1)
    out = {}
    for name, lg in logits.items():
        if name == baseline:
            continue
        pred = lg.argmax(-1)
        idx = np.flatnonzero(pred != base)[:FLIPPED_SHOWN]
        out[name] = [
            {
                "index": int(i),
                "text": split.texts[i] + (f" || {split.pairs[i]}" if split.pairs else ""),
                "label": label_names[split.labels[i]],
                baseline: label_names[int(base[i])],
                name: label_names[int(pred[i])],
            }
            for i in idx
        ]
    return out


# -- gates --------------------------------------------------------------------------------------


def apply_gates(
    rows: dict[str, dict[str, Any]],
    config: ValidateConfig,
    default: str | None,
    baseline: str | None,
    latency_gate: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The gates the options ask for, as report entries, and the failures' lines."""
    gates: list[Gate] = []
    if config.max_batch_diff is not None:
        gates += batch_invariance_gates(rows, config.max_batch_diff)
    wanted = (
        config.max_accuracy_drop is not None
        or config.max_f1_drop is not None
        or config.min_agreement is not None
        or config.min_speedup
        or latency_gate is not None
    )
    if wanted:
        gates += _default_gates(rows, config, default, baseline, latency_gate)
    return [g.to_dict() for g in gates], [
        f"gate failed: {g.message}" for g in gates if not g.passed
    ]


def _default_gates(
    rows: dict[str, dict[str, Any]],
    config: ValidateConfig,
    default: str | None,
    baseline: str | None,
    latency_gate: dict[str, Any] | None,
) -> list[Gate]:
    """The gates that judge the default variant (what devices are served)."""
    if default is None or default not in rows:
        raise ConfigError(
            f"the gates judge the default variant {default}, which was not measured; "
            "drop --variants or include it"
        )
    row = rows[default]
    accuracy = (
        config.max_accuracy_drop is not None
        or config.max_f1_drop is not None
        or config.min_agreement is not None
    )
    if accuracy and baseline is None:
        raise ConfigError(
            "accuracy gates need a baseline: keep the PyTorch original (--source) "
            "or build the fp32 variant (`edgetune export --variants fp32`)"
        )
    gates: list[Gate] = []
    if config.max_accuracy_drop is not None:
        gates.append(accuracy_drop_gate(row, default, str(baseline), config.max_accuracy_drop))
    if config.max_f1_drop is not None:
        gates.append(f1_drop_gate(row, default, str(baseline), config.max_f1_drop))
    if config.min_agreement is not None:
        gates.append(agreement_gate(row, default, str(baseline), config.min_agreement))
    for seq, ratio in config.min_speedup:
        if PYTORCH not in rows:
            raise ConfigError("--min-speedup compares with PyTorch fp32; drop --no-pytorch")
        gates += speedup_gates(row, default, seq, ratio, config.seq_lengths)
    if latency_gate is not None:
        gates.append(latency_gate_of(row, default, latency_gate, config.threads))
    return gates
