"""API keys in PostgreSQL: create, list, disable, look up, and the LISTEN connection that hears revocations."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from lsd.store.database import Database

CHANNEL = "lsd_api_keys"  # sql/migrations/0004_auth.sql notifies it with the public id of a changed key
HEARTBEAT_S = 1.0  # how often the listener proves its connection is alive while no notice arrives
REREAD_BATCH = 10_000  # cached keys read again per statement when the listener (re)connects


@dataclass(frozen=True, slots=True)
class StoredKey:
    public_id: str
    secret_sha256: bytes
    description: str | None
    organization: str | None
    workspace: str | None
    created_at: datetime
    disabled_at: datetime | None
    console_role: str | None = None  # 'read-only' | 'admin' | None: may not sign in to the console


_COLUMNS = "public_id, secret_sha256, description, organization, workspace, created_at, disabled_at, console_role"
_INSERT = (
    "INSERT INTO api_keys (public_id, secret_sha256, description, organization, workspace, console_role) "
    f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}"
)
_LIST = f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, public_id"
_REREAD = f"SELECT {_COLUMNS} FROM api_keys WHERE public_id = ANY(%s)"
# A key already disabled is not updated again (no change, so no notice to every replica); either way its row.
_DISABLE = (
    f"WITH changed AS (UPDATE api_keys SET disabled_at = now() WHERE public_id = %(id)s AND disabled_at IS NULL "
    f"RETURNING {_COLUMNS}) SELECT {_COLUMNS} FROM changed UNION ALL SELECT {_COLUMNS} FROM api_keys "
    f"WHERE public_id = %(id)s AND NOT EXISTS (SELECT 1 FROM changed)"
)


class NotMigrated(RuntimeError):
    """The api_keys table is missing: `lsd migrate` has not run."""


def check_table(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT to_regclass('api_keys') IS NOT NULL").fetchone()
    if not row or not row[0]:
        raise NotMigrated("the database is not migrated: run `lsd migrate` first")


def _key(row: tuple[Any, ...]) -> StoredKey:
    return StoredKey(row[0], bytes(row[1]), row[2], row[3], row[4], row[5], row[6], row[7])


def insert_key(
    conn: psycopg.Connection[Any],
    public_id: str,
    secret_sha256: bytes,
    *,
    description: str | None,
    organization: str | None,
    workspace: str | None,
    console_role: str | None = None,
) -> StoredKey:
    row = conn.execute(
        _INSERT, (public_id, secret_sha256, description, organization, workspace, console_role)
    ).fetchone()
    assert row is not None
    return _key(row)


def list_keys(conn: psycopg.Connection[Any]) -> list[StoredKey]:
    return [_key(r) for r in conn.execute(_LIST)]


def disable_key(conn: psycopg.Connection[Any], public_id: str) -> StoredKey | None:
    """Disable a key (its trigger tells every replica); None when there is no such key. Idempotent."""
    row = conn.execute(_DISABLE, {"id": public_id}).fetchone()
    return _key(row) if row else None


# -- the same three from the console (lsd.api.console), on the request-path pool ----------------------------


class NoWritePrivilege(RuntimeError):
    """The daemon's database role may not write api_keys (the lsd_daemon role of sql/roles.sql)."""


async def insert_key_async(
    database: Database,
    public_id: str,
    secret_sha256: bytes,
    *,
    description: str | None,
    console_role: str | None,
) -> StoredKey:
    """Raises NoWritePrivilege where the daemon's role may not write keys (sql/roles.sql)."""
    try:
        async with database.connection("auth") as conn:
            cur = await conn.execute(_INSERT, (public_id, secret_sha256, description, None, None, console_role))
            row = await cur.fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise NoWritePrivilege(str(exc)) from None
    assert row is not None
    return _key(row)


async def list_keys_async(database: Database, limit: int) -> list[StoredKey]:
    async with database.connection("auth") as conn:
        cur = await conn.execute(f"{_LIST} LIMIT %s", (limit,))
        return [_key(r) for r in await cur.fetchall()]


async def disable_key_async(database: Database, public_id: str) -> StoredKey | None:
    """As disable_key; raises NoWritePrivilege where the daemon's role may not write keys."""
    try:
        async with database.connection("auth") as conn:
            cur = await conn.execute(_DISABLE, {"id": public_id})
            row = await cur.fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise NoWritePrivilege(str(exc)) from None
    return _key(row) if row else None


async def find_key(database: Database, public_id: str) -> StoredKey | None:
    """One primary-key read. Raises DatabaseUnavailable when PostgreSQL cannot be reached."""
    async with database.connection("auth") as conn:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE public_id = %s", (public_id,), prepare=database.prepare
        )
        row = await cur.fetchone()
    return _key(row) if row else None


async def listen_for_revocations(
    url: str,
    cached: Callable[[], Collection[str]],
    on_listening: Callable[[dict[str, StoredKey | None]], None],
    on_revoked: Callable[[str], None],
    on_lost: Callable[[], None],
) -> None:
    """Hold a dedicated connection that LISTENs on the key channel; returns or raises only when it is lost.

    Once LISTEN is in place, the keys named by `cached()` are read again and `on_listening(current)` gets each of
    them (None for an id no longer in the table): a change committed before that read is in it and one committed
    after LISTEN arrives as a notice, so a cache rebuilt from `current` has missed nothing while nobody listened.
    `on_revoked(public_id)` runs for each notice, `on_lost` when the connection ends for any reason. A `SELECT 1`
    every HEARTBEAT_S finds a dead connection that would otherwise wait silently forever.
    """
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            ids = list(cached())
            current: dict[str, StoredKey | None] = dict.fromkeys(ids)
            for start in range(0, len(ids), REREAD_BATCH):
                cur = await conn.execute(_REREAD, (ids[start : start + REREAD_BATCH],))
                current.update((key.public_id, key) for key in map(_key, await cur.fetchall()))
            on_listening(current)
            while True:
                async for notice in conn.notifies(timeout=HEARTBEAT_S):
                    on_revoked(notice.payload)
                await conn.execute("SELECT 1")
    finally:
        on_lost()
