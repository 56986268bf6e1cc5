"""Self-checks passed on this device, remembered so that a second start skips the golden run.

A pass is kept per bundle content (the SHA-256 of its manifest, which holds every file's hash,
verified before the pass is read), variant, intra-op threads, onnxruntime version, Python
platform and CPU (name and instruction-set features): a changed file, runtime, thread count
or processor runs the check again. Only passes are kept; a failure is never remembered. Each
pass is a small JSON file in the user's cache (``$EDGETUNE_CACHE``, else
``$XDG_CACHE_HOME/edgetune``, else ``~/.cache/edgetune``), written atomically; a cache that
cannot be written only means the check runs on every start.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

from ..formats import bundle as bundlefmt

MODES = bundlefmt.SELF_CHECK_MODES


def mode(self_check: bool | str) -> str:
    """``Classifier.load``'s ``self_check``: True is ``auto`` (a remembered pass counts),
    False is ``never``; or one of ``MODES``."""
    if self_check is True:
        return "auto"
    if self_check is False:
        return "never"
    if self_check not in MODES:
        from ..errors import ConfigError

        raise ConfigError(f"self_check must be one of {', '.join(MODES)}, got {self_check!r}")
    return str(self_check)


def cache_dir() -> Path:
    if os.environ.get("EDGETUNE_CACHE"):
        return Path(os.environ["EDGETUNE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "edgetune"


def key(root: Path, variant: str, threads: int) -> str | None:
    """What a pass depends on, as one digest (None: the manifest cannot be read to make one).

    The self-check covers tokenization and edgetune's own pre- and post-processing too, so
    their versions are part of it.
    """
    import numpy
    import onnxruntime
    import tokenizers

    from .. import __version__
    from ..hw import cpu_description

    try:
        manifest = bundlefmt.sha256(root / bundlefmt.MANIFEST)
    except OSError:
        return None
    cpu = cpu_description()
    parts = {
        "manifest": manifest,
        "variant": variant,
        "threads": threads,
        "onnxruntime": onnxruntime.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": numpy.__version__,
        "edgetune": __version__,
        "platform": platform.platform(),
        "cpu": [cpu["name"], cpu["machine"], cpu["features"]],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _path(digest: str) -> Path:
    return cache_dir() / "self-checks" / f"{digest}.json"


def recall(digest: str | None, variant: str) -> dict[str, Any] | None:
    """The remembered pass of ``variant`` (``SelfCheck.to_dict()``), or None."""
    if digest is None:
        return None
    try:
        record = json.loads(_path(digest).read_text())
    except (OSError, ValueError):
        return None
    try:
        honest = record["passed"] is True and record["variant"] == variant
        honest = honest and float(record["max_abs_diff"]) <= float(record["tolerance"])
        honest = honest and float(record["typical_diff"]) <= float(record["typical_tolerance"])
        honest = honest and int(record["firm_flips"]) == 0
    except (KeyError, TypeError, ValueError):
        return None
    return record if honest else None


def remember(digest: str | None, check: dict[str, Any]) -> None:
    """Keep a pass; a cache that cannot be written is skipped silently."""
    if digest is None or check.get("passed") is not True:
        return
    path = _path(digest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(check))
        os.replace(tmp, path)
    except OSError:
        pass
