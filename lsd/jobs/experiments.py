"""The `experiments` job: adaptive experiments' allocations, computed by one replica and read by every replica.

Each run (every `update_period_s`, the shortest of the config's adaptive experiments):
1. folds new rows into the statistics (lsd.store.statistics; skipped when another process is refreshing),
2. under the experiments lock, recomputes each allocation that is due from `variant_metric_statistics` and stores
   it (lsd.inference.experiment.allocate; one replica does this per update, the others find the lock taken),
3. reads every stored allocation into this process's cache, which routing samples from.
A replica that cannot read them keeps the allocations it read last; before its first read it explores uniformly.
"""

from __future__ import annotations

import logging
from datetime import datetime

from lsd.config.model import Config, ExperimentationConfig
from lsd.inference.experiment import Allocation, Allocations, ArmStats, allocate, fingerprint, from_row, to_row
from lsd.jobs.runner import Job
from lsd.store.database import Database
from lsd.store.experiments import AllocationRow, ExperimentKey, MetricTotals, load_allocations, update_allocations
from lsd.store.statistics import RefreshConflict, refresh_statistics

log = logging.getLogger("lsd.jobs")


def adaptive_experiments(config: Config) -> dict[str, ExperimentationConfig]:
    """The functions with an adaptive experiment, by name."""
    return {
        name: f.experimentation
        for name, f in config.functions.items()
        if f.experimentation is not None and f.experimentation.type == "adaptive"
    }


def experiment_jobs(config: Config, database: Database, allocations: Allocations) -> list[Job]:
    """One `experiments` job when the config has an adaptive experiment, every shortest `update_period_s`."""
    experiments = adaptive_experiments(config)
    if not experiments:
        return []
    period = min(e.update_period_s for e in experiments.values())
    return [Job("experiments", float(period), lambda: update_experiments(config, database, allocations))]


async def update_experiments(config: Config, database: Database, allocations: Allocations) -> list[Allocation] | None:
    """One run of the job (see the module docstring): the allocations this replica computed (None: another
    replica held the lock). Raises DatabaseUnavailable and psycopg errors, after which the cache keeps its last
    allocations."""
    experiments = adaptive_experiments(config)
    try:
        await refresh_statistics(database)
    except RefreshConflict as exc:  # another refresh committed first: its rows are in, go on with them
        log.info("experiments: %s", exc)
    keys = [
        ExperimentKey(name, e.metric or "", tuple(e.candidate_variants), float(e.update_period_s), fingerprint(e))
        for name, e in experiments.items()
    ]
    written = await update_allocations(database, keys, lambda *a: _compute(config, *a))
    stored = await load_allocations(database)
    allocations.replace_all([from_row(row) for row in stored], experiments)
    return None if written is None else [from_row(row) for row in written]


def _compute(
    config: Config,
    key: ExperimentKey,
    totals: dict[str, MetricTotals],
    previous: AllocationRow | None,
    now: datetime,
) -> AllocationRow:
    experiment = config.functions[key.function_name].experimentation
    assert experiment is not None and experiment.metric is not None
    metric = config.metrics[experiment.metric]
    stats = {name: ArmStats(t.count, t.total, t.squares) for name, t in totals.items()}
    before = from_row(previous) if previous is not None else None
    return to_row(allocate(key.function_name, experiment, metric, stats, before, now))
