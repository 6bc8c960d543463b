"""Retention: drop the daily partitions whose whole day is older than `retention_days`, once per cluster.

Each expired partition is detached with `DETACH PARTITION ... CONCURRENTLY` (PostgreSQL >= 14), which never takes
a lock that inserts wait for: it marks the partition as being detached, commits, waits for the transactions
that may still read it, then finishes. Only then is the detached table dropped, one partition at a time. A detach
that was interrupted (a lock timeout, a crash) leaves the partition "detach pending"; the next run finishes it
with `DETACH PARTITION ... FINALIZE` before anything else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from lsd.store.database import Database

log = logging.getLogger("lsd.retention")

# pg_try_advisory_lock key for cluster-wide retention: 'LSD' + 'rete'.
RETENTION_LOCK_KEY = 0x4C5344_72657465

# A concurrent detach takes SHARE UPDATE EXCLUSIVE on the parent (inserts and reads go on) and then waits for the
# transactions that were using the table. Wait at most this long, so a very long query delays retention (it retries
# at the next run) rather than holding the retention job.
LOCK_TIMEOUT = "60s"


@dataclass(frozen=True, slots=True)
class DroppedPartition:
    table_name: str
    partition_name: str
    day: date


# A day D covers [D, D + 1); it is wholly older than N days when D + 1 <= now - N days, i.e. D < today - N.
_EXPIRED = (
    "SELECT table_name, partition_name, day FROM lsd_partitions "
    "WHERE day < (now() AT TIME ZONE 'UTC')::date - %s::integer ORDER BY day, table_name"
)
# Bookkeeping that only served rows now gone: feedback per target older than the cutoff (its inference can
# no longer arrive), minute histograms (the hourly ones are kept), and the latest metric values of gone targets.
_CUTOFF = "(((now() AT TIME ZONE 'UTC')::date - %(days)s::integer)::timestamp AT TIME ZONE 'UTC')"
_PRUNE = (
    f"DELETE FROM statistics_feedback_by_target WHERE target_id < lsd_uuid7_floor({_CUTOFF})",
    f"DELETE FROM model_latency_histogram_minute WHERE bucket_start < {_CUTOFF}",
    f"DELETE FROM model_ttft_histogram_minute WHERE bucket_start < {_CUTOFF}",
    # The latest value of a metric goes with its feedback row (dropped with the feedback's own partition) or, for
    # an inference-level target, with the inference. Not by an episode's id: an episode that began before the
    # cutoff has inferences, and feedback, kept after it (an episode-level filter would lose them).
    *(
        f"DELETE FROM {table} WHERE feedback_id < lsd_uuid7_floor({_CUTOFF}) "
        f"OR (target_level = 'inference' AND target_id < lsd_uuid7_floor({_CUTOFF}))"
        for table in ("boolean_metric_latest", "float_metric_latest")
    ),
)


# Partitions a previous run started to detach but did not finish.
_PENDING = """
SELECT parent.relname::text, child.relname::text, to_date(substring(child.relname FROM '_p(\\d{8})$'), 'YYYYMMDD')
FROM pg_inherits
JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
JOIN pg_class child ON child.oid = pg_inherits.inhrelid
JOIN lsd_partitioned_tables lpt ON lpt.table_name = parent.relname
WHERE pg_inherits.inhdetachpending
"""


def _detach(table_name: str, partition_name: str, how: str) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(
        sql.Identifier(table_name), sql.Identifier(partition_name), sql.SQL(how)
    )


def _drop(partition_name: str) -> sql.Composed:
    return sql.SQL("DROP TABLE {}").format(sql.Identifier(partition_name))


def _how(part: DroppedPartition, pending: list[DroppedPartition]) -> str:
    return "FINALIZE" if part in pending else "CONCURRENTLY"


def _lock_timeout() -> sql.Composed:
    return sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT))


def _check(days: int) -> None:
    if days < 1:
        raise ValueError(f"retention_days must be at least 1, got {days}")


def apply_retention_sync(conn: psycopg.Connection[Any], days: int) -> list[DroppedPartition]:
    """Drop expired partitions on an autocommit connection, without the advisory lock; return what was dropped.

    Today's and future partitions are never expired (`days` >= 1). A partition whose detach does not finish within
    LOCK_TIMEOUT is skipped and logged (a pending detach is finished at the next run). Sets the session's
    lock_timeout and resets it before returning.
    """
    _check(days)
    conn.execute(_lock_timeout())
    try:
        pending = [DroppedPartition(*row) for row in conn.execute(_PENDING).fetchall()]
        expired = [DroppedPartition(*row) for row in conn.execute(_EXPIRED, (days,)).fetchall()]
        dropped = []
        for part in [*pending, *(p for p in expired if p not in pending)]:
            try:
                conn.execute(_detach(part.table_name, part.partition_name, _how(part, pending)))
            except psycopg.errors.LockNotAvailable:
                log.warning("retention skipped %s: its table is busy; retrying at the next run", part.partition_name)
                continue
            conn.execute(_drop(part.partition_name))
            dropped.append(part)
        for prune in _PRUNE:
            conn.execute(prune, {"days": days})
        return dropped
    finally:
        conn.execute("RESET lock_timeout")


async def apply_retention(database: Database, days: int) -> list[DroppedPartition] | None:
    """As apply_retention_sync, once per cluster at a time: None when another process holds the retention lock."""
    _check(days)
    async with database.session() as conn:  # the lock is a session lock: never on a pooled connection
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (RETENTION_LOCK_KEY,))
        locked = await cur.fetchone()
        if not locked or not locked[0]:
            return None
        try:
            await conn.execute(_lock_timeout())
            cur = await conn.execute(_PENDING)
            pending = [DroppedPartition(*row) for row in await cur.fetchall()]
            cur = await conn.execute(_EXPIRED, (days,))
            expired = [DroppedPartition(*row) for row in await cur.fetchall()]
            dropped = []
            for part in [*pending, *(p for p in expired if p not in pending)]:
                try:
                    await conn.execute(_detach(part.table_name, part.partition_name, _how(part, pending)))
                except psycopg.errors.LockNotAvailable:
                    log.warning(
                        "retention skipped %s: its table is busy; retrying at the next run", part.partition_name
                    )
                    continue
                await conn.execute(_drop(part.partition_name))
                dropped.append(part)
            for prune in _PRUNE:
                await conn.execute(prune, {"days": days})
            if dropped:
                log.info("retention dropped %d partition(s) older than %d days", len(dropped), days)
            return dropped
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK_KEY,))
