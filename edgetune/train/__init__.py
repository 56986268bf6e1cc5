"""``edgetune train``: fine-tune a compact transformer for text classification.

config.py     TrainConfig (options, validated) and TrainResult (metrics.json)
api.py        train(): checks, data and model, the run directory, final figures
parts.py      TrainerParts (what a trainer is built from) and RunTrainer (what train drives)
loop.py       Trainer: epochs, atomic steps, evaluation; state_dict() for the checkpoint
counters.py   the loop's counters: steps, loss sums, history, best, early stop, boundary
batching.py   tokenizing, length-grouped batches, autocast
evaluate.py   Evaluator: batched inference and metrics over a split
checkpoint.py the checkpoint's files (TrainingState out, Saved in; resume is exact), best/
ema.py        the moving average of the weights
qat.py        fake quantization and QATControl (start, teacher, loss)
trainable.py  the trainable part per --strategy, the optimizer and schedule, --layers
signals.py    SIGINT/SIGTERM handling, the step hook
parallel/     launch (process group), one backend per way of spreading the model
"""

import sys
from types import ModuleType
from typing import Any

from .api import load_result, train
from .batching import make_batches
from .config import TrainConfig, TrainResult, parse_qat_start
from .signals import STEP_POINTS, StepEvent, TrainingInterrupted

__all__ = [
    "STEP_POINTS",
    "StepEvent",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "load_result",
    "make_batches",
    "parse_qat_start",
    "train",
]


class _CallableModule(ModuleType):
    """``edgetune.train(...)`` trains: the package is what the attribute ``edgetune.train``
    holds once any of its modules is imported, so the package itself forwards the call."""

    def __call__(self, *args: Any, **kwargs: Any) -> TrainResult:
        # Looked up at call time: a caller may replace ``edgetune.train.train`` (tests wrap it).
        return self.train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
