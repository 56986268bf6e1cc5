from __future__ import annotations

import numpy as np
import pytest

from edgetune.latency import Timing, measure, speedup


def test_measure_interleaves_and_orders_candidates():
    calls = []
    t = measure(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=4, warmup=1
    )
    assert calls[:2] == ["a", "b"]  # warm-up
    assert calls[2:] == ["a", "b", "b", "a", "a", "b", "b", "a"]  # alternating order per round
    assert len(t["a"].times) == len(t["b"].times) == 4


def test_speedup_detects_a_slower_candidate_with_a_tight_interval():
    rng = np.random.default_rng(0)
    # A shared machine slowdown (same factor for both in a round) must cancel out in the ratio.
    load = 1 + rng.exponential(0.5, size=200)
    slow = Timing(0.004 * load * rng.normal(1, 0.02, 200))
    fast = Timing(0.001 * load * rng.normal(1, 0.02, 200))
    s = speedup(slow, fast)
    assert 3.9 < s["ratio"] < 4.1
    assert s["ci_low"] <= s["ratio"] <= s["ci_high"] and s["ci_high"] - s["ci_low"] < 0.1
    # Two candidates of one speed, each with its own noise: no difference is claimed.
    a = Timing(0.001 * load * rng.normal(1, 0.02, 200))
    b = Timing(0.001 * load * rng.normal(1, 0.02, 200))
    s = speedup(a, b)
    assert s["ci_low"] <= 1.0 <= s["ci_high"] and 0.99 < s["ratio"] < 1.01


def test_measure_times_each_candidate_alone(monkeypatch):
    """On a clock that only the candidates move, each one's times are exactly its own cost."""
    import edgetune.latency as latency

    clock = {"t": 0.0}
    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock["t"])

    def costs(seconds):
        def f():
            clock["t"] += seconds

        return f

    t = measure({"slow": costs(0.003), "fast": costs(0.0005)}, rounds=20, warmup=2)
    assert np.allclose(t["slow"].times, 0.003) and np.allclose(t["fast"].times, 0.0005)
    assert speedup(t["slow"], t["fast"])["ratio"] == pytest.approx(6.0)


def test_timing_summary_percentiles():
    t = Timing(np.array([0.001] * 95 + [0.002] * 4 + [0.010]))
    s = t.summary(batch_size=4)
    assert s["p50_ms"] == pytest.approx(1.0) and s["p90_ms"] == pytest.approx(1.0)
    assert 2.0 <= s["p99_ms"] <= 10.0
    assert s["throughput_per_s"] == pytest.approx(4000.0) and s["n"] == 100


def test_blocks_and_pauses_keep_rounds_paired():
    calls = []
    t = measure(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        rounds=2,
        warmup=0,
        block=2,
        pause_s=0.001,
    )
    # Each turn: one untimed re-warm call after the pause, then `block` timed calls.
    assert calls == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    assert len(t["a"].times) == len(t["b"].times) == 4
