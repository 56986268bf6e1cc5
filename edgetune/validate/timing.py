"""Validate's latency cases (fixed lengths, the data's own rows, a throughput batch) and the
peak memory of each variant in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np

from ..latency import BLOCK
from ..runners import PYTORCH, fixed_length_text
from .config import ValidateConfig


def measure_latency(
    runners: dict[str, Any],
    tok: Any,
    split: Any,
    config: ValidateConfig,
    max_len: int,
) -> dict[str, dict[str, Any]]:
    from ..latency import measure, speedup

    rng = np.random.default_rng(0)
    Case = tuple[list[str], list[str] | None]
    cases: dict[str, tuple[int, list[Case]]] = {}
    for s in config.seq_lengths:
        if s <= max_len:
            cases[f"seq{s}"] = (1, [([fixed_length_text(tok, split.texts, s)], None)])
    n = len(split.texts)

    def rows_of(idx: Any) -> Case:
        texts = [split.texts[r] for r in idx]
        return texts, ([split.pairs[r] for r in idx] if split.pairs else None)

    if config.data_lengths:
        cases["data"] = (1, [rows_of([r]) for r in rng.choice(n, size=min(n, 64), replace=False)])
    perm = rng.permutation(n)
    b = config.batch_size
    batches = [perm[i : i + b] for i in range(0, max(len(perm) - b + 1, 1), b)][:8]
    cases[f"batch{b}"] = (b, [rows_of(r) for r in batches])

    out: dict[str, dict[str, Any]] = {name: {} for name in runners}
    base = PYTORCH if PYTORCH in runners else None
    for case, (bsz, inputs) in cases.items():
        candidates = {name: _cycler(r, inputs, bsz) for name, r in runners.items()}
        rounds = max(config.rounds, -(-len(inputs) // BLOCK))
        timings = measure(
            candidates, rounds=rounds, warmup=config.warmup, block=BLOCK, pause_s=config.pause_s
        )
        for name, t in timings.items():
            entry: dict[str, Any] = {**t.summary(bsz), "batch_size": bsz}
            if case.startswith("seq"):
                entry["seq_len"] = int(case[3:])
            if base is not None and name != base:
                entry["speedup"] = speedup(timings[base], t)
            out[name][case] = entry
    return out


def _cycler(runner: Any, inputs: list[tuple[list[str], list[str] | None]], batch_size: int):
    """A callable classifying the next input each call (same order for every candidate)."""
    state = {"i": 0}

    def call() -> None:
        texts, pairs = inputs[state["i"] % len(inputs)]
        runner.logits(texts, pairs, batch_size)
        state["i"] += 1

    return call


# -- memory -------------------------------------------------------------------------------------

_PROBE = r"""
import resource, sys, numpy as np
kind, path, threads, length = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
feed = {"input_ids": np.ones((1, length), np.int64), "attention_mask": np.ones((1, length), np.int64)}
if kind == "pytorch":
    import torch
    from edgetune.modeling import load_saved
    torch.set_num_threads(threads)
    m = load_saved(path).eval()
    with torch.inference_mode():
        m(**{k: torch.from_numpy(v) for k, v in feed.items()})
else:
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.log_severity_level = 3
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    feed["token_type_ids"] = np.zeros((1, length), np.int64)
    s.run(None, {k: v for k, v in feed.items() if k in names})
try:  # VmHWM belongs to this image; ru_maxrss can carry the forking parent's peak
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    print(int(hwm.split()[1]) / 1024)
except (OSError, IndexError):
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1024))
"""


def peak_memory(runner: Any, length: int) -> float | None:
    """Peak RSS (MB) of a fresh process that loads the variant and runs one max-length row."""
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                _PROBE,
                runner.kind,
                str(runner.path),
                str(runner.threads),
                str(length),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"},
        )
        return round(float(r.stdout.strip().splitlines()[-1]), 1)
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None
