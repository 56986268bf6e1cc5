"""Accuracy, agreement, flipped rows and batch invariance of each variant; the gates judging them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
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


@dataclass
class Gate:
    """One verdict: what was measured for which variant, against what threshold."""

    gate: str
    variant: str
    value: float
    threshold: float
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_invariance_gates(rows: dict[str, dict[str, Any]], limit: float) -> list[Gate]:
    """Every variant, not only the default: a device may be served any of them."""
    out = []
    for name, r in rows.items():
        inv = r.get("batch_invariance")
        if inv is None:
            continue
        out.append(
            Gate(
                "max_batch_diff",
                name,
                inv["max_score_diff"],
                limit,
                inv["flips"] == 0 and inv["max_score_diff"] <= limit,
                f"batch invariance of {name} (batch {inv['batch_size']} vs 1): {inv['flips']} "
                f"label(s) flipped, max score difference {inv['max_score_diff']:.2g} "
                f"(limit 0 flips, {limit:g})",
            )
        )
    return out


def accuracy_drop_gate(row: dict[str, Any], default: str, baseline: str, limit: float) -> Gate:
    drop = -row["accuracy_delta_points"]
    return Gate(
        "max_accuracy_drop",
        default,
        drop,
        limit,
        drop <= limit + 1e-9,
        f"accuracy drop of {default} vs {baseline}: {drop:.2f} points (limit {limit:g})",
    )


def agreement_gate(row: dict[str, Any], default: str, baseline: str, minimum: float) -> Gate:
    agree = row["agreement"]
    return Gate(
        "min_agreement",
        default,
        agree,
        minimum,
        agree >= minimum - 1e-12,
        f"agreement of {default} with {baseline}: {agree:.4f} (minimum {minimum:g})",
    )


def speedup_gates(
    row: dict[str, Any], default: str, seq: int | None, ratio: float, measured: tuple[int, ...]
) -> list[Gate]:
    """At one length, or every measured one (``seq`` None) within the model's max length."""
    lengths = [seq] if seq is not None else list(measured)
    lengths = [s for s in lengths if f"seq{s}" in row["latency"]]
    if not lengths:
        raise ConfigError("--min-speedup has no measured sequence length to judge")
    out = []
    for s in lengths:
        sp = row["latency"][f"seq{s}"]["speedup"]
        out.append(
            Gate(
                f"min_speedup@{s}",
                default,
                sp["ratio"],
                ratio,
                sp["ratio"] >= ratio,
                f"speed-up of {default} vs {PYTORCH} at sequence length {s}: {sp['ratio']:.2f}x "
                f"(95% CI {sp['ci_low']:.2f}-{sp['ci_high']:.2f}; minimum {ratio:g}x)",
            )
        )
    return out


def latency_gate_of(row: dict[str, Any], default: str, limit: dict[str, Any], threads: int) -> Gate:
    s, ms = limit["seq"], limit["ms"]
    p50 = row["latency"][f"seq{s}"]["p50_ms"]
    return Gate(
        f"max_latency@{s}",
        default,
        p50,
        ms,
        p50 <= ms,
        f"p50 latency of {default} at batch 1, sequence length {s}: {p50:.2f} ms on "
        f"{threads} thread(s) (limit {ms:g} ms, {limit['origin']})",
    )


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
    accuracy = config.max_accuracy_drop is not None or config.min_agreement is not None
    if accuracy and baseline is None:
        raise ConfigError(
            "accuracy gates need a baseline: keep the PyTorch original (--source) "
            "or build the fp32 variant (`edgetune export --variants fp32`)"
        )
    gates: list[Gate] = []
    if config.max_accuracy_drop is not None:
        gates.append(accuracy_drop_gate(row, default, str(baseline), config.max_accuracy_drop))
    if config.min_agreement is not None:
        gates.append(agreement_gate(row, default, str(baseline), config.min_agreement))
    for seq, ratio in config.min_speedup:
        if PYTORCH not in rows:
            raise ConfigError("--min-speedup compares with PyTorch fp32; drop --no-pytorch")
        gates += speedup_gates(row, default, seq, ratio, config.seq_lengths)
    if latency_gate is not None:
        gates.append(latency_gate_of(row, default, latency_gate, config.threads))
    return gates
