"""Texts in, logits out, for the PyTorch original and the bundle's variants; latency and memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime import pad_batch
from .config import PYTORCH, ValidateConfig

BLOCK = 3  # timed calls per candidate per round


# -- runners: texts in, logits out ---------------------------------------------------------------


class TorchRunner:
    """The PyTorch original with its transformers tokenizer (length-sorted padded batches)."""

    kind = "pytorch"

    def __init__(self, path: Path, threads: int, max_length: int = 512) -> None:
        import torch
        from transformers import AutoTokenizer

        from ..modeling import load_saved

        torch.set_num_threads(threads)
        self.path, self.threads, self.max_length = path, threads, max_length
        self.model = load_saved(path).eval()
        self.names = set(_forward_args(self.model))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.pad_id = self.tokenizer.pad_token_id or 0

    def prepare(self, feed: dict[str, np.ndarray]) -> Any:
        import torch

        return {k: torch.from_numpy(v) for k, v in feed.items() if k in self.names}

    def run(self, prepared: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(**prepared).logits.float().numpy()

    def logits(self, texts: list[str], pairs: list[str] | None, batch_size: int) -> np.ndarray:
        enc = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length)
        enc = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        lengths = [len(x) for x in enc["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(texts), self.model.config.num_labels), dtype=np.float32)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            out[rows] = self.run(self.prepare(pad_batch(enc, rows, self.pad_id)))
        return out


def _forward_args(model: Any) -> list[str]:
    import inspect

    return list(inspect.signature(model.forward).parameters)


class RuntimeRunner:
    """A bundle variant served by ``edgetune.runtime.Classifier``, the code devices run."""

    kind = "onnx"

    def __init__(self, clf: Any) -> None:
        self.clf = clf
        self.path = clf.root / clf.manifest["variants"][clf.variant]["file"]
        self.threads = clf.threads

    def prepare(self, feed: dict[str, np.ndarray]) -> Any:
        return feed

    def run(self, prepared: Any) -> np.ndarray:
        return self.clf.run_feed(prepared)

    def logits(self, texts: list[str], pairs: list[str] | None, batch_size: int) -> np.ndarray:
        return self.clf.logits(texts, pairs=pairs, batch_size=batch_size)


# -- latency ------------------------------------------------------------------------------------


def fixed_length_text(tok: Any, texts: list[str], length: int) -> str:
    """A text of real words that tokenizes to exactly ``length`` tokens (specials included)."""
    joined, i = "", 0
    while i < len(texts) and len(tok(joined, verbose=False)["input_ids"]) <= length:
        joined += " " + texts[i]
        i += 1
    while len(tok(joined, verbose=False)["input_ids"]) <= length:
        joined += " " + (joined or "word")  # very short data: repeat what there is
    joined = joined.strip()
    # ``joined`` runs past ``length``, which may be the model's limit: it is cut below, so the
    # tokenizer's "longer than the specified maximum" warning does not apply.
    enc = tok(joined, return_offsets_mapping=True, add_special_tokens=False, verbose=False)
    specials = len(tok("")["input_ids"])
    offsets = enc["offset_mapping"]
    # Cut after a token, then step back until the count fits (word pieces can merge).
    for n in range(length - specials, 0, -1):
        text = joined[: offsets[n - 1][1]]
        if len(tok(text)["input_ids"]) == length:
            return text
    return joined


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
