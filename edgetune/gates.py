"""Gates: each measurement judged against a threshold, one small function per gate.

validate applies them to the variants it measured (``validate.gates.apply_gates``); each
verdict is a ``Gate``, written into reports as a dict and failed with its message.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import ConfigError
from .runners import PYTORCH


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


def lead_figure(row: dict[str, Any]) -> str:
    """The name of a validation row's leading figure: entity F1 per token, macro F1 over label
    sets (both stored as ``f1``), else accuracy."""
    if "f1" not in row:
        return "accuracy"
    return "entity F1" if "per_type" in row else "macro F1"


def f1_drop_gate(row: dict[str, Any], default: str, baseline: str, limit: float) -> Gate:
    """The F1 a task leads with: entity F1 per token, macro F1 over label sets."""
    drop = -row["f1_delta_points"]
    what = lead_figure(row)
    return Gate(
        "max_f1_drop",
        default,
        drop,
        limit,
        drop <= limit + 1e-9,
        f"{what} drop of {default} vs {baseline}: {drop:.2f} points (limit {limit:g})",
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
