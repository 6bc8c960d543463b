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
                stats.failures += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("job %s failed: %s", job.name, stats.last_error)
            else:
                stats.runs += 1
                stats.last_error = None
            stats.last_duration_s = time.perf_counter() - started
            await asyncio.sleep(job.interval_s)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
