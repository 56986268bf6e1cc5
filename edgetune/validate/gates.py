"""Accuracy, agreement, flipped rows and batch invariance of each variant; the gates judging them."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .config import PYTORCH, ValidateConfig
from .runners import RuntimeRunner

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
    gates: list[dict[str, Any]] = []

    def gate(name: str, value: float, threshold: float, ok: bool, text: str, variant: str) -> None:
        gates.append(
            {
                "gate": name,
                "variant": variant,
                "value": value,
                "threshold": threshold,
                "passed": ok,
                "message": text,
            }
        )

    if config.max_batch_diff is not None:
        # Every variant, not only the default: a device may be served any of them.
        for name, r in rows.items():
            inv = r.get("batch_invariance")
            if inv is None:
                continue
            gate(
                "max_batch_diff",
                inv["max_score_diff"],
                config.max_batch_diff,
                inv["flips"] == 0 and inv["max_score_diff"] <= config.max_batch_diff,
                f"batch invariance of {name} (batch {inv['batch_size']} vs 1): {inv['flips']} "
                f"label(s) flipped, max score difference {inv['max_score_diff']:.2g} "
                f"(limit 0 flips, {config.max_batch_diff:g})",
                name,
            )
    wanted = (
        config.max_accuracy_drop is not None
        or config.min_agreement is not None
        or config.min_speedup
        or latency_gate is not None
    )
    if not wanted:
        return gates, [f"gate failed: {g['message']}" for g in gates if not g["passed"]]
    if default not in rows:
        raise ConfigError(
            f"the gates judge the default variant {default}, which was not measured; "
            "drop --variants or include it"
        )
    row = rows[default]

    if config.max_accuracy_drop is not None or config.min_agreement is not None:
        if baseline is None:
            raise ConfigError(
                "accuracy gates need a baseline: keep the PyTorch original (--source) "
                "or build the fp32 variant (`edgetune export --variants fp32`)"
            )
    if config.max_accuracy_drop is not None:
        drop = -row["accuracy_delta_points"]
        gate(
            "max_accuracy_drop",
            drop,
            config.max_accuracy_drop,
            drop <= config.max_accuracy_drop + 1e-9,
            f"accuracy drop of {default} vs {baseline}: {drop:.2f} points "
            f"(limit {config.max_accuracy_drop:g})",
            default,
        )
    if config.min_agreement is not None:
        agree = row["agreement"]
        gate(
            "min_agreement",
            agree,
            config.min_agreement,
            agree >= config.min_agreement - 1e-12,
            f"agreement of {default} with {baseline}: {agree:.4f} (minimum {config.min_agreement:g})",
            default,
        )
    for seq, ratio in config.min_speedup:
        if PYTORCH not in rows:
            raise ConfigError("--min-speedup compares with PyTorch fp32; drop --no-pytorch")
        lengths = [seq] if seq is not None else list(config.seq_lengths)
        lengths = [s for s in lengths if f"seq{s}" in row["latency"]]  # within max length
        if not lengths:
            raise ConfigError("--min-speedup has no measured sequence length to judge")
        for s in lengths:
            sp = row["latency"][f"seq{s}"]["speedup"]
            gate(
                f"min_speedup@{s}",
                sp["ratio"],
                ratio,
                sp["ratio"] >= ratio,
                f"speed-up of {default} vs {PYTORCH} at sequence length {s}: {sp['ratio']:.2f}x "
                f"(95% CI {sp['ci_low']:.2f}-{sp['ci_high']:.2f}; minimum {ratio:g}x)",
                default,
            )
    if latency_gate is not None:
        s, ms = latency_gate["seq"], latency_gate["ms"]
        p50 = row["latency"][f"seq{s}"]["p50_ms"]
        gate(
            f"max_latency@{s}",
            p50,
            ms,
            p50 <= ms,
            f"p50 latency of {default} at batch 1, sequence length {s}: {p50:.2f} ms on "
            f"{config.threads} thread(s) (limit {ms:g} ms, {latency_gate['origin']})",
            default,
        )
    failures = [f"gate failed: {g['message']}" for g in gates if not g["passed"]]
    return gates, failures
