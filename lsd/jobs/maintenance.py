"""The statistics refresh and retention jobs, as `[gateway.observability]` asks for them."""

from __future__ import annotations

from lsd.config.model import ObservabilityConfig
from lsd.jobs.runner import Job
from lsd.store.database import Database
from lsd.store.retention import apply_retention
from lsd.store.statistics import refresh_statistics

RETENTION_INTERVAL_S = 3600.0


def maintenance_jobs(observability: ObservabilityConfig, database: Database) -> list[Job]:
    """`statistics` every `statistics_refresh_interval_s` (0: never), and `retention` hourly when
    `retention_days` is set. Each takes its own advisory lock, so every replica may run them."""
    interval = observability.statistics_refresh_interval_s
    retention_days = observability.retention_days
    jobs = []
    if interval > 0:
        jobs.append(Job("statistics", interval, lambda: refresh_statistics(database)))
    if retention_days is not None:
        days = retention_days
        jobs.append(Job("retention", RETENTION_INTERVAL_S, lambda: apply_retention(database, days)))
    return jobs
