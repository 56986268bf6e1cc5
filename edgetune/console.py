"""Status output: lines on stderr that do not break progress bars (stdout carries results)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def sayer(progress: bool) -> Callable[[str], None]:
    """A ``say(msg)`` that writes status lines on stderr (silent when not ``progress``)."""

    def say(msg: str) -> None:
        if progress:
            from tqdm.auto import tqdm

            tqdm.write(msg, file=sys.stderr)

    return say


def progress_bar(
    iterable: Any = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str,
    enabled: bool = True,
    initial: int = 0,
) -> Any:
    """A tqdm bar on stderr that clears when done; logs (CI, files) get an update every 30 s
    instead of a redraw per step."""
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.1 if sys.stderr.isatty() else 30.0,
    )
