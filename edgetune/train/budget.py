"""``--latency-budget MS[@SEQ]``: the deepest student whose int8 export fits the budget on this
machine, chosen before training by exporting and timing the candidates untrained (latency does
not depend on the weights' values, only on the graph and its shapes)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..latency import parse_budget

__all__ = ["choose_depth", "measure_candidates", "parse_budget"]


def choose_depth(latencies: dict[int, float], budget_ms: float, seq: int) -> int:
    """The deepest candidate whose measured latency (ms) fits the budget."""
    fits = [d for d, ms in latencies.items() if ms <= budget_ms]
    if not fits:
        d = min(latencies)
        raise ConfigError(
            f"--latency-budget {budget_ms:g}ms@{seq} is out of reach: the shallowest student "
            f"({d} layer(s)) takes {latencies[d]:.2f} ms here; raise the budget or choose a "
            "smaller --model"
        )
    return max(fits)


def measure_candidates(
    build: Any, depth: int, seq: int, threads: int, say: Any
) -> dict[int, float]:
    """p50 ms at batch 1 of each student's default int8 export, 1 to ``depth`` layers.

    All candidates are exported first and then timed side by side (interleaved rounds, as
    ``validate`` times variants): measured one after another, a busy moment can make a deeper
    student look faster than a shallower one. ``build(n)`` returns (model, tokenizer).
    """
    import numpy as np

    from ..export import export
    from ..latency import BLOCK, PAUSE_S, ROUNDS, WARMUP, measure
    from ..runtime import Classifier, pad_batch

    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgetune-budget-") as tmp:
        for n in range(depth, 0, -1):
            model, tokenizer = build(n)
            src, dst = Path(tmp) / f"student-{n}", Path(tmp) / f"bundle-{n}"
            model.save_pretrained(src, safe_serialization=True)
            tokenizer.save_pretrained(src)
            export(source=str(src), output=str(dst), validate=False, progress=False)
            clf = Classifier.load(str(dst), threads=threads, self_check=False)
            length = min(seq, clf.max_length)
            # Token identities do not change the time; ids within every vocabulary do.
            words = [(1000 + i % 500) % len(tokenizer) for i in range(length - 2)]
            ids = [[tokenizer.cls_token_id or 0, *words, tokenizer.sep_token_id or 0]]
            columns = {"input_ids": ids, "attention_mask": [[1] * length]}
            columns["token_type_ids"] = [[0] * length]
            runs[str(n)] = functools.partial(clf.run_feed, pad_batch(columns, [0], clf.pad_id))
        say(f"latency budget: timing {depth} candidate students side by side at {seq} tokens")
        # validate's protocol, so the budget means what its gate will measure: blocks of calls,
        # each turn after a pause and an untimed warm call (a candidate runs with warm caches).
        timings = measure(runs, rounds=ROUNDS, warmup=WARMUP, block=BLOCK, pause_s=PAUSE_S)
    out = {int(n): float(np.median(t.times) * 1e3) for n, t in timings.items()}
    for n in sorted(out, reverse=True):
        say(f"latency budget: {n}-layer student {out[n]:.2f} ms")
    return out
