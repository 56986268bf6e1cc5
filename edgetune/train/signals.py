"""Signals during training: Ctrl-C and SIGTERM wait for a step to finish; the step hook."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import EdgetuneError


class TrainingInterrupted(EdgetuneError):
    """Ctrl-C (SIGINT) or SIGTERM during training; exit code 128 + the signal's number."""

    exit_code = 130

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


STEP_POINTS = (
    "batch",  # before the forward pass of a batch
    "backward",  # its gradients are computed (and, under DDP, averaged)
    "optimizer",  # the optimizer has changed the weights
    "scheduler",  # the learning-rate schedule has moved on
    "zero_grad",  # gradients are cleared
    "counted",  # the step counter has moved on
    "ema",  # the moving average has taken the new weights
    "boundary",  # the step is recorded: a checkpoint taken now resumes after it
    "epoch",  # an epoch is over (before its evaluation)
    "evaluated",  # an evaluation is recorded (and the best model saved if it improved)
    "end",  # training is over, before the final figures
)


@dataclass
class StepEvent:
    """What a step hook sees: where training is, and the live model and optimizer."""

    point: str
    step: int
    epoch: int
    batch: int
    model: Any
    optimizer: Any


class Signals:
    """SIGINT and SIGTERM raise KeyboardInterrupt, except inside ``atomic()``, which finishes
    first: a step (optimizer, schedule, counters) is either wholly done or not begun."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False
        self.signum = int(signal.SIGINT)
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread receives signals; leave the handlers alone
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        if self.depth:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def atomic(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending:  # not reached when the block raised
            self.pending = False
            raise KeyboardInterrupt


@contextlib.contextmanager
def library_chatter(progress: bool):
    """stdout carries the result: what libraries print there while training (DeepSpeed's
    logger, bound to stdout when it is imported) is status, shown on stderr, dropped if quiet."""
    import io
    import logging

    sink = sys.stderr if progress else io.StringIO()
    ds = logging.getLogger("DeepSpeed")  # handlers exist once deepspeed is imported

    def point(old: tuple[Any, ...], new: Any) -> None:
        for h in ds.handlers:
            if isinstance(h, logging.StreamHandler) and h.stream in old:
                h.setStream(new)

    point((sys.stdout, sys.__stdout__), sink)  # a launcher (accelerate) imported it already
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        point((sink,), sys.stderr)
