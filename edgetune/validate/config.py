"""What ``validate`` measures and which gates it applies: the stage's configuration."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError
from ..latency import PAUSE_S, ROUNDS, SEQ_LENGTHS, WARMUP


@dataclass
class ValidateConfig:
    """What ``validate`` measures and which gates it applies; validated on construction.

    ``min_speedup`` holds ``(seq_len, ratio)`` pairs; ``seq_len`` None applies the ratio to every
    measured fixed sequence length.
    """

    bundle: str
    data: str | None = None
    split: str = "test"
    text_columns: tuple[str, ...] = ()
    label_column: str | None = None
    header: bool | None = None  # CSV/TSV --data: the first row names the columns
    source: str | None = None
    pytorch: bool = True
    variants: tuple[str, ...] = ()
    seq_lengths: tuple[int, ...] = SEQ_LENGTHS
    data_lengths: bool = True
    batch_size: int = 32
    threads: int = 0  # 0: all cores
    rounds: int = ROUNDS
    warmup: int = WARMUP
    pause_s: float = PAUSE_S
    max_samples: int | None = None
    memory: bool = True
    max_accuracy_drop: float | None = None
    max_f1_drop: float | None = None  # token classification: entity F1 points the default may lose
    min_agreement: float | None = None
    min_speedup: tuple[tuple[int | None, float], ...] = ()
    max_batch_diff: float | None = 1e-5
    max_latency: str | None = None  # "3ms@128": the default variant's p50 at batch 1
    budget: bool = True  # gate on the training's --latency-budget when no max_latency is given
    report_dir: str | None = None

    def __post_init__(self) -> None:
        self.text_columns = tuple(self.text_columns)
        self.variants = tuple(self.variants)
        self.seq_lengths = tuple(sorted({int(s) for s in self.seq_lengths}))
        self.min_speedup = tuple(
            (None if s is None else int(s), float(r)) for s, r in self.min_speedup
        )
        if not self.threads:
            self.threads = os.cpu_count() or 1
        checks = [
            (
                self.split in ("train", "validation", "test"),
                "--split must be train, validation or test",
            ),
            (all(s >= 2 for s in self.seq_lengths), "--seq-lengths must be at least 2 tokens each"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.threads >= 1, "--threads must be at least 1"),
            (self.rounds >= 3, "--rounds must be at least 3"),
            (self.warmup >= 0, "--warmup must be 0 or more"),
            (self.pause_s >= 0, "--pause must be 0 or more seconds"),
            (self.max_samples is None or self.max_samples >= 1, "--max-samples must be at least 1"),
            (
                self.max_accuracy_drop is None or self.max_accuracy_drop >= 0,
                "--max-accuracy-drop is in points and must be 0 or more",
            ),
            (
                self.max_f1_drop is None or self.max_f1_drop >= 0,
                "--max-f1-drop is in points and must be 0 or more",
            ),
            (
                self.min_agreement is None or 0 <= self.min_agreement <= 1,
                "--min-agreement is a fraction between 0 and 1, e.g. 0.99",
            ),
            (
                all(r > 0 for _, r in self.min_speedup),
                "--min-speedup must be positive, e.g. 3 or 128:3",
            ),
            (
                self.max_batch_diff is None or self.max_batch_diff >= 0,
                "--max-batch-diff is a probability difference, 0 or more (e.g. 1e-5)",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if self.max_latency is not None:
            from ..latency import parse_budget

            parse_budget(self.max_latency, "--max-latency")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("text_columns", "variants", "seq_lengths"):
            d[k] = list(d[k])
        d["min_speedup"] = [list(p) for p in self.min_speedup]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidateConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def parse_speedup(spec: str) -> tuple[int | None, float]:
    """``"3"`` (every sequence length) or ``"128:3"`` (one length) → ``(seq_len, ratio)``."""
    try:
        if ":" in spec:
            s, r = spec.split(":", 1)
            return int(s), float(r.rstrip("x"))
        return None, float(spec.rstrip("x"))
    except ValueError:
        raise ConfigError(
            f"--min-speedup {spec!r} is not a ratio; write 3 (every length) or 128:3"
        ) from None
