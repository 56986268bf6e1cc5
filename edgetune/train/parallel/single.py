"""One process: the backend interface's own defaults (see ``base.Backend``)."""

from __future__ import annotations

from .base import Backend


class SingleBackend(Backend):
    name = "none"
