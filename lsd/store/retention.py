"""Retention: drop the daily partitions whose whole day is older than `retention_days`, once per cluster."""

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

# Detaching takes an ACCESS EXCLUSIVE lock on the parent table. Wait at most this long for it, so a long query
# delays retention (it retries at the next run) instead of every insert queueing behind the detach.
LOCK_TIMEOUT = "5s"


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
# no longer arrive), and minute histograms (the hourly ones are kept).
_CUTOFF = "(((now() AT TIME ZONE 'UTC')::date - %(days)s::integer)::timestamp AT TIME ZONE 'UTC')"
_PRUNE = (
    f"DELETE FROM statistics_feedback_by_target WHERE target_id < lsd_uuid7_floor({_CUTOFF})",
    f"DELETE FROM model_latency_histogram_minute WHERE bucket_start < {_CUTOFF}",
)


def _drop_statements(part: DroppedPartition) -> tuple[sql.Composed, sql.Composed]:
    return (
        sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
            sql.Identifier(part.table_name), sql.Identifier(part.partition_name)
        ),
        sql.SQL("DROP TABLE {}").format(sql.Identifier(part.partition_name)),
    )


def _check(days: int) -> None:
    if days < 1:
        raise ValueError(f"retention_days must be at least 1, got {days}")


def apply_retention_sync(conn: psycopg.Connection[Any], days: int) -> list[DroppedPartition]:
    """Drop expired partitions on an autocommit connection, without the advisory lock; return what was dropped.

    Today's and future partitions are never expired (`days` >= 1). A partition whose lock is not granted within
    LOCK_TIMEOUT is skipped and logged.
    """
    _check(days)
    expired = [DroppedPartition(*row) for row in conn.execute(_EXPIRED, (days,)).fetchall()]
    dropped = []
    for part in expired:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
                for statement in _drop_statements(part):
                    conn.execute(statement)
        except psycopg.errors.LockNotAvailable:
            log.warning("retention skipped %s: its table is busy; retrying at the next run", part.partition_name)
            continue
        dropped.append(part)
    for prune in _PRUNE:
        conn.execute(prune, {"days": days})
    return dropped


async def apply_retention(database: Database, days: int) -> list[DroppedPartition] | None:
    """As apply_retention_sync, once per cluster at a time: None when another process holds the retention lock."""
    _check(days)
    async with database.session() as conn:  # the lock is a session lock: never on a pooled connection
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (RETENTION_LOCK_KEY,))
        locked = await cur.fetchone()
        if not locked or not locked[0]:
            return None
        try:
            cur = await conn.execute(_EXPIRED, (days,))
            expired = [DroppedPartition(*row) for row in await cur.fetchall()]
            dropped = []
            for part in expired:
                try:
                    async with conn.transaction():
                        await conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
                        for statement in _drop_statements(part):
                            await conn.execute(statement)
                except psycopg.errors.LockNotAvailable:
                    log.warning(
                        "retention skipped %s: its table is busy; retrying at the next run", part.partition_name
                    )
                    continue
                dropped.append(part)
            for prune in _PRUNE:
                await conn.execute(prune, {"days": days})
            if dropped:
                log.info("retention dropped %d partition(s) older than %d days", len(dropped), days)
            return dropped
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK_KEY,))
