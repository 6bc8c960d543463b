"""Numbered plain-SQL migrations from sql/migrations, applied in order under an advisory lock."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

log = logging.getLogger("lsd.migrate")

# pg_advisory_lock key shared by every LSD process: 'LSD' + 'mig'.
MIGRATION_LOCK_KEY = 0x4C5344_6D6967
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """Migrations cannot be applied, or the applied ones do not match the files."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationState:
    applied: tuple[int, ...]
    pending: tuple[int, ...]
    edited: tuple[int, ...]  # applied, but the file changed since
    # applied by a newer LSD: this build has no file for them (a rollback, or an old replica in a rolling deploy)
    unknown: tuple[int, ...] = ()


def migrations_dir() -> Path:
    """$LSD_MIGRATIONS_DIR, else sql/migrations of the source tree this package lives in."""
    if os.environ.get("LSD_MIGRATIONS_DIR"):
        return Path(os.environ["LSD_MIGRATIONS_DIR"])
    return Path(__file__).resolve().parents[2] / "sql" / "migrations"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    folder = directory or migrations_dir()
    if not folder.is_dir():
        raise MigrationError(f"migrations folder {folder} not found (set LSD_MIGRATIONS_DIR)")
    migrations = []
    for path in sorted(folder.iterdir()):
        match = _NAME.match(path.name)
        if match:
            migrations.append(Migration(int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
    return migrations


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


def _applied(conn: psycopg.Connection) -> dict[int, str]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    return dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())


def state(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> MigrationState:
    files = migrations if migrations is not None else load_migrations()
    applied = _applied(conn)
    return MigrationState(
        applied=tuple(sorted(applied)),
        pending=tuple(m.version for m in files if m.version not in applied),
        edited=tuple(m.version for m in files if m.version in applied and applied[m.version] != m.checksum),
        unknown=tuple(sorted(set(applied) - {m.version for m in files})),
    )


def apply(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied.

    `conn` must be in autocommit mode. Concurrent callers serialise on an advisory lock: the first applies,
    the others wait and then find nothing to do. An applied migration whose file changed is refused.
    """
    files = migrations if migrations is not None else load_migrations()
    _take_migration_lock(conn)
    try:
        conn.execute(_CREATE_TABLE)
        current = state(conn, files)
        warn_unknown(current)
        if current.edited:
            raise MigrationError(
                "already-applied migration(s) changed on disk: "
                + ", ".join(m.name for m in files if m.version in current.edited)
                + " (never edit an applied migration; add a new one)"
            )
        done = []
        for migration in files:
            if migration.version not in current.pending:
                continue
            _apply_one(conn, migration)
            done.append(migration.name)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


# A migration asks for each table lock for at most LOCK_TIMEOUT, then lets go and tries again after LOCK_RETRY_S: an
# ALTER TABLE queued behind a long reader would otherwise block every later read and write of that table for as
# long as the reader runs (the convoy migration 16 describes for partitions). Past LOCK_GIVE_UP_S it fails.
LOCK_TIMEOUT = "2s"
LOCK_RETRY_S = 1.0
LOCK_GIVE_UP_S = 600.0
WAIT_LOG_S = 10.0  # how often a wait says so

_HOLDERS = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '?'), a.state, coalesce(a.client_addr::text, 'local'),
       date_trunc('second', now() - a.xact_start)
FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE l.granted AND l.pid <> pg_backend_pid() AND {where}
"""
_LOCK_HOLDER = _HOLDERS.format(
    where="l.locktype = 'advisory' AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1"
)


def _describe(rows: list[tuple[object, ...]]) -> str:
    return "; ".join(f"pid {r[0]} ({r[1]}, {r[2]}, from {r[3]}, in a transaction for {r[4]})" for r in rows) or "?"


def _take_migration_lock(conn: psycopg.Connection) -> None:
    """The migration lock, saying who holds it while it waits (another `lsd migrate`, a starting replica, or the
    orphaned backend of a migration whose process was killed: PostgreSQL ends it when its wait ends)."""
    said = 0.0
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()
        if row is not None and row[0]:
            return
        if time.monotonic() - said >= WAIT_LOG_S:
            holders = conn.execute(_LOCK_HOLDER, (MIGRATION_LOCK_KEY >> 32, MIGRATION_LOCK_KEY & 0xFFFFFFFF))
            log.warning("waiting for the migration lock, held by %s", _describe(holders.fetchall()))
            said = time.monotonic()
        time.sleep(0.25)


def _apply_one(conn: psycopg.Connection, migration: Migration) -> None:
    """One migration in its own transaction, each lock it needs asked for under LOCK_TIMEOUT (retried)."""
    started = time.monotonic()
    while True:
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            return
        except psycopg.errors.LockNotAvailable as exc:
            if time.monotonic() - started > LOCK_GIVE_UP_S:
                raise MigrationError(
                    f"{migration.name}: a table it changes stayed locked for {LOCK_GIVE_UP_S:.0f} s ({exc}); "
                    "end the session holding it and run lsd migrate again"
                ) from exc
            log.warning("%s waits for a table lock (%s); retrying in %.0f s", migration.name, exc, LOCK_RETRY_S)
            time.sleep(LOCK_RETRY_S)


def warn_unknown(current: MigrationState) -> None:
    if current.unknown:
        log.warning("%s", unknown_message(current))


def unknown_message(current: MigrationState) -> str:
    return (
        f"the database has migration(s) {list(current.unknown)} that this build of LSD does not know: a newer LSD "
        "migrated it. This build runs on it (a rolling deploy, a rollback), but what those migrations added is "
        "unknown to it: see docs/upgrading.md"
    )


def check(conn: psycopg.Connection) -> MigrationState:
    """For disable_automatic_migrations: raise unless every migration is applied and unchanged."""
    current = state(conn)
    warn_unknown(current)
    if current.edited:
        raise MigrationError(f"applied migrations changed on disk: {list(current.edited)}")
    if current.pending:
        raise MigrationError(
            f"database is missing migration(s) {list(current.pending)}; run `lsd migrate` "
            "(automatic migrations are disabled by gateway.database.disable_automatic_migrations)"
        )
    return current
