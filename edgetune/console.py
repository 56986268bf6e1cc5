"""Status output: lines on stderr that do not break progress bars (stdout carries results)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def sayer(progress: bool) -> Callable[[str], None]:
    """A ``say(msg)`` that writes status lines on stderr (silent when not ``progress``)."""

    def say(msg: str) -> None:
        if progress:
            from tqdm.auto import tqdm

            tqdm.write(msg, file=sys.stderr)

    return say
