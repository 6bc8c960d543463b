"""The job runner: a failing job is retried with a growing delay and logged once per streak (then once a minute)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lsd.jobs.runner import Job, JobRunner, retry_delay


def test_retry_delay_doubles_up_to_five_seconds_or_the_interval() -> None:
    assert [retry_delay(0.2, n) for n in range(7)] == [0.2, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    assert retry_delay(60.0, 3) == 60.0  # a slow job keeps its own interval
    assert retry_delay(0.2, 10_000) == 5.0


async def test_a_failing_job_logs_once_per_streak_and_when_it_recovers(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lsd.jobs.runner.MAX_RETRY_DELAY_S", 0.01)
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 5:
            raise ConnectionRefusedError("down")

    runner = JobRunner([Job("flaky", 0.001, flaky)])
    with caplog.at_level(logging.INFO, logger="lsd.jobs"):
        await runner.open()
        for _ in range(200):
            if calls > 6:
                break
            await asyncio.sleep(0.01)
        await runner.close()
    lines = [r.getMessage() for r in caplog.records if "flaky" in r.getMessage()]
    assert lines[0] == "job flaky failed: ConnectionRefusedError: down"
    assert lines[1] == "job flaky runs again after 5 failures"
    assert runner.stats["flaky"].failures == 5 and runner.stats["flaky"].last_error is None
