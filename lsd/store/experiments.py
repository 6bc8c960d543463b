"""Adaptive experiments' rows: the stored allocations (`experiment_allocations`) and the per-variant metric
statistics they are computed from (`variant_metric_statistics`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from lsd.ids import timestamp_of, uuid7_floor
from lsd.store.database import Database
from lsd.store.keys import NotMigrated

# pg_try_advisory_xact_lock key for the cluster-wide experiments update: 'LSD' + 'exp'.
EXPERIMENTS_LOCK_KEY = 0x4C5344_657870
EPISODE_LOOKUP_S = 1.0  # an inference waits at most this long for its episode's variant, then samples
EPISODE_ID_SLACK_S = 60.0  # an episode id made this long after its first inference's id is still found

Json = Any


@dataclass(frozen=True, slots=True)
class AllocationRow:
    function_name: str
    weights: dict[str, float]
    phase: str
    evidence: dict[str, Json]
    stopped: bool
    winner: str | None
    stopped_at: datetime | None
    fingerprint: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MetricTotals:
    """A variant's feedback for one metric, as the statistics refresh folded it in."""

    count: int
    total: float
    squares: float


@dataclass(frozen=True, slots=True)
class ExperimentKey:
    """What the update reads for one adaptive experiment, and how old its stored allocation may get."""

    function_name: str
    metric_name: str
    variants: tuple[str, ...]
    period_s: float
    fingerprint: str  # a stored allocation with another one was computed for another config: due at once


# (stats by variant, the stored allocation or None, now) -> the row to store
Compute = Callable[[ExperimentKey, dict[str, MetricTotals], AllocationRow | None, datetime], AllocationRow]

_COLUMNS = "function_name, weights, phase, evidence, stopped, winner, stopped_at, fingerprint, updated_at"
_SELECT = f"SELECT {_COLUMNS} FROM experiment_allocations"
_UPSERT = (
    f"INSERT INTO experiment_allocations ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (function_name) DO UPDATE SET weights = EXCLUDED.weights, phase = EXCLUDED.phase, "
    "evidence = EXCLUDED.evidence, stopped = EXCLUDED.stopped, winner = EXCLUDED.winner, "
    "stopped_at = EXCLUDED.stopped_at, fingerprint = EXCLUDED.fingerprint, updated_at = EXCLUDED.updated_at"
)
_TOTALS = (
    "SELECT variant_name, feedback_count, value_sum::float8, value_sum_squares::float8 "
    "FROM variant_metric_statistics WHERE function_name = %s AND metric_name = %s AND variant_name = ANY(%s)"
)


async def update_allocations(
    database: Database, experiments: Sequence[ExperimentKey], compute: Compute
) -> list[AllocationRow] | None:
    """Recompute and store the allocations that are due (none stored, one stored for another config, or one stored
    about `period_s` ago or more), in one transaction under a transaction-scoped advisory lock: None when another
    replica is updating now. Raises DatabaseUnavailable and psycopg errors (the job runner reports them)."""
    async with database.connection("experiments") as conn, conn.transaction():
        cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s), now()", (EXPERIMENTS_LOCK_KEY,))
        row = await cur.fetchone()
        if not row or not row[0]:
            return None
        now: datetime = row[1]
        stored = {r.function_name: r for r in await _select(conn)}
        written = []
        for key in experiments:
            previous = stored.get(key.function_name)
            if (
                previous is not None
                and previous.fingerprint == key.fingerprint
                and now - previous.updated_at < _due(key.period_s)
            ):
                continue
            cur = await conn.execute(_TOTALS, (key.function_name, key.metric_name, list(key.variants)))
            totals = {name: MetricTotals(int(n), float(s), float(q)) for name, n, s, q in await cur.fetchall()}
            new = compute(key, totals, previous, now)
            await conn.execute(
                _UPSERT,
                (
                    new.function_name,
                    Jsonb(new.weights),
                    new.phase,
                    Jsonb(new.evidence),
                    new.stopped,
                    new.winner,
                    new.stopped_at,
                    new.fingerprint,
                    new.updated_at,
                ),
            )
            written.append(new)
        return written


async def load_allocations(database: Database) -> list[AllocationRow]:
    """Every stored allocation (each replica reads them every period). Raises DatabaseUnavailable."""
    async with database.connection("experiments") as conn:
        return await _select(conn)


# The variant of an episode's first inference of a function. `id >= %s` (a bound just before the episode id's own
# time: an episode's inferences are not older than its id) keeps the partitions before the episode out.
_EPISODE_VARIANT = (
    "SELECT variant_name FROM {table} WHERE episode_id = %s AND function_name = %s AND id >= %s ORDER BY id LIMIT 1"
)


async def episode_variant(
    database: Database, table: Literal["chat_inferences", "json_inferences"], function_name: str, episode_id: UUID
) -> str | None:
    """The variant that served the episode's first stored inference of the function, or None. Waits at most
    EPISODE_LOOKUP_S; raises DatabaseUnavailable (the caller samples as if there were none)."""
    bound = uuid7_floor(timestamp_of(episode_id) - timedelta(seconds=EPISODE_ID_SLACK_S))
    async with database.connection("experiments", deadline_s=EPISODE_LOOKUP_S) as conn:
        cur = await conn.execute(
            _EPISODE_VARIANT.format(table=table), (episode_id, function_name, bound), prepare=database.prepare
        )
        row = await cur.fetchone()
    return str(row[0]) if row else None


def load_allocation_sync(conn: psycopg.Connection[Any], function_name: str) -> AllocationRow | None:
    """One function's stored allocation (for `lsd experiments show`). Raises NotMigrated without the table."""
    row = conn.execute("SELECT to_regclass('experiment_allocations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        raise NotMigrated("the database has no experiment_allocations table: run `lsd migrate` first")
    with conn.cursor(row_factory=class_row(AllocationRow)) as cur:
        cur.execute(f"{_SELECT} WHERE function_name = %s", (function_name,))
        return cur.fetchone()


async def _select(conn: psycopg.AsyncConnection[Any]) -> list[AllocationRow]:
    async with conn.cursor(row_factory=class_row(AllocationRow)) as cur:
        await cur.execute(f"{_SELECT} ORDER BY function_name")
        return await cur.fetchall()


def _due(period_s: float) -> timedelta:
    """An allocation is recomputed when it is this old: a tenth short of its period, so a job that runs every
    period is never one whole period late because of timing jitter."""
    return timedelta(seconds=period_s * 0.9)
