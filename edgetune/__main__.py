"""``python -m edgetune``: the same as the ``edgetune`` command."""

from .cli import main

main()
