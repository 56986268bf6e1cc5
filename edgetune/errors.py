"""Domain errors raised by the library; only the CLI turns them into messages and exit codes."""

from __future__ import annotations


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name if empty), for one-line errors."""
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


class EdgetuneError(Exception):
    """Base class: a problem with the user's input that they can fix (exit code 2)."""

    exit_code = 2


class ConfigError(EdgetuneError):
    """An option value is invalid or options contradict each other."""


class DataError(EdgetuneError):
    """The data cannot be read or is unusable (missing columns, one class, empty...)."""


class ModelError(EdgetuneError):
    """The model cannot be found, loaded or used for sequence classification."""


class RunError(EdgetuneError):
    """A run directory is missing, unfinished, or would be overwritten."""


class BundleError(EdgetuneError):
    """A bundle is missing, malformed, tampered with, or would be overwritten."""


class TrainingDiverged(EdgetuneError):
    """The loss became NaN or infinite: the settings or a model diverge (nothing is saved)."""


class LockedError(EdgetuneError):
    """Another process is writing the same run or bundle."""


class SelfCheckFailed(BundleError):
    """A variant's answers on this device diverge from those recorded at export (exit code 1)."""

    exit_code = 1


class GateFailed(Exception):
    """A CI gate did not hold (exit code 1)."""

    exit_code = 1
