"""Start-up and operator queries: config snapshots, partition upkeep, and the facts `lsd doctor` reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from lsd.store import migrate
from lsd.store.database import Database

# pg_try_advisory_lock key for cluster-wide partition upkeep: 'LSD' + 'part'.
PARTITION_LOCK_KEY = 0x4C5344_70617274


def save_config_snapshot(conn: psycopg.Connection[Any], config_hash: str, text: str, version: str) -> None:
    conn.execute(
        "INSERT INTO config_snapshots (hash, config, lsd_version) VALUES (%s, %s, %s) "
        "ON CONFLICT (hash) DO UPDATE SET last_used_at = now()",
        (config_hash, text, version),
    )


_ENSURE = "SELECT lsd_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1, %s)"


def ensure_partitions(conn: psycopg.Connection[Any], ahead_days: int) -> int:
    """Create the daily partitions for yesterday .. today + ahead_days; return how many were new."""
    row = conn.execute(_ENSURE, (ahead_days + 1,)).fetchone()
    return int(row[0]) if row else 0


async def partition_upkeep(database: Database, ahead_days: int) -> int | None:
    """As ensure_partitions, once per cluster at a time: None when another process holds the upkeep lock (a
    session lock: on a session connection)."""
    async with database.session() as conn:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (PARTITION_LOCK_KEY,))
        locked = await cur.fetchone()
        if not locked or not locked[0]:
            return None
        try:
            cur = await conn.execute(_ENSURE, (ahead_days + 1,))
            row = await cur.fetchone()
            return int(row[0]) if row else 0
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (PARTITION_LOCK_KEY,))


@dataclass(frozen=True, slots=True)
class DoctorReport:
    server_version: str
    migrations: migrate.MigrationState
    partition_days: dict[str, list[str]]
    missing_today: list[str]
    missing_ahead: list[str]

    @property
    def problems(self) -> list[str]:
        problems = []
        if self.migrations.pending:
            problems.append(f"pending migrations: {list(self.migrations.pending)} (run `lsd migrate`)")
        if self.migrations.edited:
            problems.append(f"applied migrations changed on disk: {list(self.migrations.edited)}")
        if self.missing_today:
            problems.append(f"no partition for today: {', '.join(self.missing_today)}")
        if self.missing_ahead:
            problems.append(f"no partition for tomorrow: {', '.join(self.missing_ahead)}")
        return problems


def doctor(conn: psycopg.Connection[Any]) -> DoctorReport:
    version_row = conn.execute("SHOW server_version").fetchone()
    state = migrate.state(conn)
    days: dict[str, list[str]] = {}
    missing_today: list[str] = []
    missing_ahead: list[str] = []
    if state.applied:
        rows = conn.execute(
            "SELECT t.table_name, p.day::text, "
            "p.day = (now() AT TIME ZONE 'UTC')::date, p.day = (now() AT TIME ZONE 'UTC')::date + 1 "
            "FROM lsd_partitioned_tables t LEFT JOIN lsd_partitions p USING (table_name) "
            "ORDER BY 1, 2"
        ).fetchall()
        today: set[str] = set()
        tomorrow: set[str] = set()
        for table, day, is_today, is_tomorrow in rows:
            days.setdefault(table, [])
            if day:
                days[table].append(day)
            if is_today:
                today.add(table)
            if is_tomorrow:
                tomorrow.add(table)
        missing_today = sorted(set(days) - today)
        missing_ahead = sorted(set(days) - tomorrow)
    return DoctorReport(
        server_version=str(version_row[0]) if version_row else "?",
        migrations=state,
        partition_days=days,
        missing_today=missing_today,
        missing_ahead=missing_ahead,
    )
