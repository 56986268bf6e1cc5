"""What every trainer is built from, and the interface ``train`` drives (both trainers meet it).

``Trainer`` (the loop: full, head, LoRA, QAT, distillation) and ``FewShotTrainer`` (contrastive
pairs, then a fitted head) take one ``TrainerParts`` and are driven through ``RunTrainer``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..data import Data
from .config import TrainConfig
from .signals import Signals, StepEvent


@dataclass
class TrainerParts:
    """The run's settings, data, model and plumbing, as the trainers receive them."""

    config: TrainConfig
    env: dict[str, Any]  # resolved device, precision, parallel settings (recorded in the run)
    data: Data
    tokenizer: Any
    model: Any
    work: Path  # RUN.partial/
    say: Callable[[str], None]
    progress: bool
    dist: Any  # parallel.launch.Dist
    backend: Any  # parallel.base.Backend
    signals: Signals
    on_step: Callable[[StepEvent], None] | None = None


class RunTrainer(Protocol):
    """What ``train`` needs of a trainer: fit, then its state and settings for the summary."""

    config: TrainConfig
    env: dict[str, Any]
    tokenizer: Any
    work: Path
    say: Callable[[str], None]
    dist: Any
    backend: Any
    state: dict[str, Any]

    def fit(self) -> None: ...

    def state_mb(self) -> float: ...
