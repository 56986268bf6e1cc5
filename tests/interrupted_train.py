"""``edgetune train`` whose N-th optimizer step raises KeyboardInterrupt (as Ctrl-C would).

Run by the distributed tests under a launcher: ``torchrun ... tests/interrupted_train.py N ARGS``.
"""

import sys

from edgetune.cli import main
from edgetune.train import _Trainer

_stop_at = int(sys.argv[1])
_real_step = _Trainer._step
_calls = {"n": 0}


def _step(self):  # type: ignore[no-untyped-def]
    _calls["n"] += 1
    if _calls["n"] == _stop_at:
        raise KeyboardInterrupt
    _real_step(self)


_Trainer._step = _step  # type: ignore[method-assign]
main(sys.argv[2:])
