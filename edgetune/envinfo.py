"""What a result was produced on: one capture for runs, bundles, reports and benchmarks."""

from __future__ import annotations

import importlib
import importlib.util
import platform
import sys
from typing import Any

from . import __version__
from .hw import cpu_description


def environment(*packages: str) -> dict[str, Any]:
    """edgetune's and Python's versions, the CPU, and the versions of ``packages`` that are
    installed (imported, so the figure is the one in use: torch says ``2.13.0+cpu``)."""
    env: dict[str, Any] = {
        "edgetune": __version__,
        "python": platform.python_version(),
        "cpu": cpu_description(),
    }
    for name in packages:
        if name in sys.modules or importlib.util.find_spec(name) is not None:
            module = importlib.import_module(name)
            env[name] = getattr(module, "__version__", None) or dist_version(name)
    return env


def dist_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
