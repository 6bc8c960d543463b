"""Numbered plain-SQL migrations from sql/migrations, applied in order under an advisory lock."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

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
    )


def apply(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied.

    `conn` must be in autocommit mode. Concurrent callers serialise on an advisory lock: the first applies,
    the others wait and then find nothing to do. An applied migration whose file changed is refused.
    """
    files = migrations if migrations is not None else load_migrations()
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(_CREATE_TABLE)
        current = state(conn, files)
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
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            done.append(migration.name)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def check(conn: psycopg.Connection) -> MigrationState:
    """For disable_automatic_migrations: raise unless every migration is applied and unchanged."""
    current = state(conn)
    if current.edited:
        raise MigrationError(f"applied migrations changed on disk: {list(current.edited)}")
    if current.pending:
        raise MigrationError(
            f"database is missing migration(s) {list(current.pending)}; run `lsd migrate` "
            "(automatic migrations are disabled by gateway.database.disable_automatic_migrations)"
        )
    return current
