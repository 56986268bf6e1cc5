"""``edgetune train`` that gets SIGINT (as from Ctrl-C) before optimizer step N + 1.

Run by the distributed tests under a launcher: ``torchrun ... tests/interrupted_train.py N ARGS``.
Every rank signals itself at the same point, as a terminal's Ctrl-C reaches every process.
"""

import functools
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from step_hooks import interrupt_at  # noqa: E402

from edgetune.cli import main  # noqa: E402

# The package edgetune.train (callable); the CLI reads `train` from it, so patch it there.
_train = importlib.import_module("edgetune.train")
_train.train = functools.partial(_train.train, on_step=interrupt_at("batch", int(sys.argv[1]) - 1))
main(sys.argv[2:])
