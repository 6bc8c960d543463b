"""Closing tracing gives up after SHUTDOWN_TIMEOUT_MS when the collector never answers (a worker's exit waited for
the exporter's own timeouts)."""

from __future__ import annotations

import threading
import time

import pytest

from lsd.telemetry.tracing import Tracing


class HangingPipeline:
    def __init__(self) -> None:
        self.release = threading.Event()

    def open(self) -> None:
        pass

    def force_flush(self, timeout_ms: int = 0) -> bool:
        return True

    def shutdown(self) -> None:
        self.release.wait(30)  # an exporter stuck on a collector that accepted and never answered


async def test_close_returns_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lsd.telemetry.tracing.SHUTDOWN_TIMEOUT_MS", 300)
    pipeline = HangingPipeline()
    tracing = Tracing(pipeline)  # type: ignore[arg-type]
    tracing.open()
    started = time.monotonic()
    await tracing.close()
    assert time.monotonic() - started < 2 and not tracing.is_open
    pipeline.release.set()
