"""Latency measurement that holds up on noisy machines: warm-up, interleaving, paired ratios.

Every candidate is timed in turn within each round (A B C C B A ...), so a slow spell on the
machine hits all of them alike; speed-ups are medians of per-call ratios paired within a round,
with a bootstrap confidence interval. Needs only numpy; the callables bring their own runtime.

Thread pools spin after they finish (ORT's workers, PyTorch's OpenMP threads) and steal cores
from whoever runs next for tens of milliseconds: measured here, PyTorch ran 2x slower right
after an ORT call. ``pause_s`` idles between candidates so each is timed on quiet cores, and
one untimed call after the pause re-warms caches; ``block`` calls are then timed in a row.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*ms\s*(?:@\s*(\d+))?\s*$", re.IGNORECASE)


def parse_budget(spec: str, option: str = "--latency-budget") -> tuple[float, int]:
    """``"3ms@128"`` → (3.0, 128): milliseconds per text at batch 1, and the sequence length
    (128 tokens when not given)."""
    m = _BUDGET.match(spec)
    if not m or float(m.group(1)) <= 0 or (m.group(2) and int(m.group(2)) < 2):
        raise ConfigError(
            f"{option} {spec!r}: give milliseconds and a sequence length, e.g. 3ms@128"
        )
    return float(m.group(1)), int(m.group(2) or 128)


# The timing protocol's defaults, shared by validate, bench and the latency budget.
SEQ_LENGTHS = (16, 32, 128)  # timed by default: short, typical and long texts
ROUNDS = 20  # interleaved rounds per case
WARMUP = 3  # untimed rounds first
PAUSE_S = 0.05  # idle before each candidate's turn, so spinning thread pools settle
BLOCK = 3  # timed calls per candidate per round


def lengths_within(
    lengths: tuple[int, ...], max_len: int, default: tuple[int, ...] = SEQ_LENGTHS
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The sequence lengths to time (up to the model's max length) and those left out.

    Lengths a user chose beyond the max are refused; the default lengths beyond it (128 on a
    64-token model) are left out, and the caller reports them.
    """
    beyond = tuple(s for s in lengths if s > max_len)
    if beyond and tuple(lengths) != tuple(default):
        raise ConfigError(
            f"--seq-lengths {','.join(map(str, beyond))} exceed the model's max length "
            f"{max_len}; time lengths up to {max_len}"
        )
    return tuple(s for s in lengths if s <= max_len), beyond


def skipped_note(skipped: list[int] | None, max_len: int | None) -> list[str]:
    """The line that says which default lengths were not timed, and why."""
    if not skipped:
        return []
    return [
        f"note       sequence length(s) {', '.join(map(str, skipped))} not timed: beyond the "
        f"model's max length {max_len}"
    ]


@dataclass
class Timing:
    """Per-call wall times of one candidate, in seconds."""

    times: np.ndarray

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.times, q))

    def summary(self, batch_size: int = 1) -> dict[str, float]:
        p50 = self.percentile(50)
        return {
            "p50_ms": p50 * 1e3,
            "p90_ms": self.percentile(90) * 1e3,
            "p99_ms": self.percentile(99) * 1e3,
            "mean_ms": float(self.times.mean() * 1e3),
            "throughput_per_s": batch_size / p50 if p50 > 0 else float("inf"),
            "n": int(len(self.times)),
        }


def measure(
    candidates: dict[str, Callable[[], Any]],
    *,
    rounds: int = 50,
    warmup: int = 5,
    min_time_s: float = 0.0,
    block: int = 1,
    pause_s: float = 0.0,
) -> dict[str, Timing]:
    """Time each candidate ``block`` times per round, interleaved; after ``warmup`` untimed rounds.

    ``min_time_s`` keeps adding rounds until every candidate has run that long in total.
    With ``pause_s`` > 0, each candidate's turn starts with a pause and one untimed call.
    """
    names = list(candidates)
    for _ in range(warmup):
        for n in names:
            candidates[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    done = 0
    while done < rounds or min(sum(t) for t in times.values()) < min_time_s:
        # Alternate the order each round so no candidate always runs first after the other.
        order = names if done % 2 == 0 else names[::-1]
        for n in order:
            fn = candidates[n]
            if pause_s > 0:
                time.sleep(pause_s)
                fn()
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                times[n].append(time.perf_counter() - t0)
        done += 1
        if done >= 100 * max(rounds, 1):
            break
    return {n: Timing(np.asarray(t)) for n, t in times.items()}


def speedup(
    baseline: Timing,
    candidate: Timing,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Median of per-round ratios baseline/candidate, with a bootstrap confidence interval."""
    n = min(len(baseline.times), len(candidate.times))
    ratios = baseline.times[:n] / candidate.times[:n]
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(ratios, size=(resamples, n), replace=True), axis=1)
    lo, hi = np.percentile(boots, [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100])
    return {"ratio": float(np.median(ratios)), "ci_low": float(lo), "ci_high": float(hi)}
