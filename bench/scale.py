"""`make bench` part `scale`: six months of history (issue #22). The loader is bench.history's `load`."""

from __future__ import annotations

from bench.history import LoadStats, load

__all__ = ["LoadStats", "load"]
