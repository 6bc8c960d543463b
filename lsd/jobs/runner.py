"""The job runner: owns every periodic background job of the process (start, stop, failure reporting)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger("lsd.jobs")


@dataclass(frozen=True, slots=True)
class Job:
    """`run` is called every `interval_s` (first right away); a job that must run once per cluster takes a
    PostgreSQL advisory lock inside `run` and returns None when another process holds it."""

    name: str
    interval_s: float
    run: Callable[[], Awaitable[object]]


REPEAT_LOG_S = 60.0
MAX_RETRY_DELAY_S = 5.0


def retry_delay(interval_s: float, failing: int) -> float:
    """The wait before the next run: the job's interval, doubled with each failure in a row up to 5 s (or the
    interval, when that is longer), so a job that runs often does not hammer a database that is down."""
    if not failing:
        return interval_s
    backoff: float = interval_s * 2.0 ** min(failing - 1, 32)
    return min(backoff, max(interval_s, MAX_RETRY_DELAY_S))


@dataclass
class JobStats:
    runs: int = 0
    failures: int = 0
    last_duration_s: float = 0.0
    last_error: str | None = None


@dataclass
class JobRunner:
    jobs: Sequence[Job]
    stats: dict[str, JobStats] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def open(self) -> None:
        for job in self.jobs:
            self.stats[job.name] = JobStats()
            self._tasks.append(asyncio.create_task(self._loop(job), name=f"lsd-job-{job.name}"))

    async def _loop(self, job: Job) -> None:
        stats = self.stats[job.name]
        failing = 0  # failures in a row
        logged_at = 0.0
        while True:
            started = time.perf_counter()
            try:
                await job.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # a driver turned our cancellation into its own error: stop anyway
                failing += 1
                stats.failures += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"
                # One line when a streak starts, then one a minute: an outage must not flood the log.
                if failing == 1 or time.monotonic() - logged_at >= REPEAT_LOG_S:
                    streak = f" ({failing} times in a row)" if failing > 1 else ""
                    log.warning("job %s failed%s: %s", job.name, streak, stats.last_error)
                    logged_at = time.monotonic()
            else:
                if failing:
                    log.info("job %s runs again after %d failures", job.name, failing)
                failing = 0
                stats.runs += 1
                stats.last_error = None
            stats.last_duration_s = time.perf_counter() - started
            await asyncio.sleep(retry_delay(job.interval_s, failing))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
