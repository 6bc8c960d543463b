"""The statistics refresh and retention jobs, as `[gateway.observability]` asks for them."""

from __future__ import annotations

from lsd.config.model import ObservabilityConfig
from lsd.jobs.runner import Job
from lsd.store.database import Database
from lsd.store.retention import apply_retention
from lsd.store.statistics import refresh_statistics
from lsd.telemetry.metrics import Metrics

RETENTION_INTERVAL_S = 3600.0


def maintenance_jobs(
    observability: ObservabilityConfig, database: Database, metrics: Metrics | None = None
) -> list[Job]:
    """`statistics` every `statistics_refresh_interval_s` (0: never), and `retention` hourly when
    `retention_days` is set. Each takes its own advisory lock, so every replica may run them."""
    interval = observability.statistics_refresh_interval_s
    retention_days = observability.retention_days
    jobs = []
    if interval > 0:
        jobs.append(Job("statistics", interval, lambda: _refresh(database, metrics)))
    if retention_days is not None:
        days = retention_days
        jobs.append(Job("retention", RETENTION_INTERVAL_S, lambda: apply_retention(database, days)))
    return jobs


async def _refresh(database: Database, metrics: Metrics | None) -> None:
    try:
        result = await refresh_statistics(database)
    except Exception:
        if metrics is not None:  # telemetry: a failing refresh (the job runner logs it) is counted, not only absent
            metrics.count_statistics_refresh_failure()
        raise
    if result is not None and metrics is not None:  # telemetry: None means another process ran it
        metrics.observe_statistics_refresh(result.duration_s)
