"""Connecting to PostgreSQL: start-up connection with backoff, the request-path pools, session connections, and safe
descriptions.

Three URLs, from the environment (see docs/deployment.md):
- `LSD_DATABASE_URL`, the primary: every write, API key checks, rate limits, the feedback target checks, the
  inference cache, and every read that must see what was just written (`Database.pool`).
- `LSD_READ_DATABASE_URL` (optional), a replica: the query API, evaluation run reads, statistics reads.
- `LSD_SESSION_DATABASE_URL` (optional, default the primary): connections that hold session state (advisory
  locks of the jobs and migrations, the API-key revocation LISTEN); behind a transaction-mode PgBouncer it must reach
  PostgreSQL directly.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

# JSON columns go through orjson in both directions (3-10x faster than the stdlib).
set_json_dumps(orjson.dumps)
set_json_loads(orjson.loads)


SESSION_CONNECT_TIMEOUT_S = 10
PSYCOPG_PREPARE_THRESHOLD = 5  # psycopg's default: prepare a statement on its 5th execution on one connection


@dataclass(frozen=True, slots=True)
class DatabaseUrls:
    """Where each kind of connection goes; `read` and `session` fall back to `primary`."""

    primary: str
    read: str | None = None
    session: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> DatabaseUrls:
        """From LSD_DATABASE_URL, LSD_READ_DATABASE_URL and LSD_SESSION_DATABASE_URL (empty counts as unset)."""
        env = os.environ if environ is None else environ
        return cls(
            primary=env.get("LSD_DATABASE_URL", "").strip(),
            read=env.get("LSD_READ_DATABASE_URL", "").strip() or None,
            session=env.get("LSD_SESSION_DATABASE_URL", "").strip() or None,
        )

    @classmethod
    def of(cls, url: str | DatabaseUrls) -> DatabaseUrls:
        return url if isinstance(url, DatabaseUrls) else cls(url)

    @property
    def session_url(self) -> str:
        return self.session or self.primary


def prepare_threshold(prepared_statements: bool) -> int | None:
    """psycopg's `prepare_threshold` for `gateway.database.prepared_statements` (None: never prepare)."""
    return PSYCOPG_PREPARE_THRESHOLD if prepared_statements else None


class DatabaseUnreachable(RuntimeError):
    """PostgreSQL did not answer within the connect timeout. The message never contains the password."""


def describe(url: str) -> str:
    """`host:port/dbname` of a URL, without user or password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable database URL>"
    host = info.get("host") or info.get("hostaddr") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def scrub(message: str, url: str) -> str:
    """Remove the URL's password from an error message, should a driver ever echo it."""
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.ProgrammingError:
        return message
    return message.replace(str(password), "***") if password else message


def connect_with_retry(url: str, timeout_s: float, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """Connect, retrying with exponential backoff for up to `timeout_s`; then raise DatabaseUnreachable."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        remaining = deadline - time.monotonic()
        try:
            return psycopg.connect(url, autocommit=autocommit, connect_timeout=max(2, int(min(remaining, 10))))
        except psycopg.OperationalError as exc:
            last = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc), url)
        except psycopg.ProgrammingError as exc:
            raise DatabaseUnreachable(f"invalid LSD_DATABASE_URL: {scrub(str(exc), url)}") from None
        if time.monotonic() + delay > deadline:
            raise DatabaseUnreachable(f"cannot reach PostgreSQL at {describe(url)} after {timeout_s:g}s: {last}")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


@dataclass(frozen=True, slots=True)
class PoolStats:
    size: int
    available: int
    waiting: int
    max_size: int


class Database:
    """The request-path pools (primary, and a replica when `read_url` is given) and session connections.

    No I/O until `open()`; `close()` releases everything. Pooled connections never carry session state (no SET,
    no session advisory lock, no LISTEN), so they may go through a transaction-mode PgBouncer; whatever needs a
    session takes `session()`. With `prepared_statements=False` nothing is ever prepared server-side (PgBouncer
    before 1.21 in transaction mode cannot route prepared statements)."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 20,
        read_url: str | None = None,
        session_url: str | None = None,
        prepared_statements: bool = True,
    ) -> None:
        self.url = url
        self.read_url = read_url
        self.session_url = session_url or url
        self.prepare_threshold = prepare_threshold(prepared_statements)
        # For hot statements that ask to be prepared at once: True, or None (the threshold, here: never).
        self.prepare: bool | None = True if prepared_statements else None
        kwargs = {"autocommit": True, "prepare_threshold": self.prepare_threshold}
        self._pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, open=False, kwargs=kwargs)
        self._read_pool = (
            AsyncConnectionPool(
                read_url, min_size=min_size, max_size=max_size, open=False, kwargs=kwargs, name="lsd-read"
            )
            if read_url
            else None
        )

    @classmethod
    def from_urls(
        cls, urls: DatabaseUrls, *, min_size: int = 2, max_size: int = 20, prepared_statements: bool = True
    ) -> Database:
        return cls(
            urls.primary,
            min_size=min_size,
            max_size=max_size,
            read_url=urls.read,
            session_url=urls.session,
            prepared_statements=prepared_statements,
        )

    @property
    def pool(self) -> AsyncConnectionPool:
        """The primary: writes and every read that must see them."""
        return self._pool

    @property
    def read_pool(self) -> AsyncConnectionPool:
        """The replica when LSD_READ_DATABASE_URL is set, else the primary: reads that tolerate replication lag."""
        return self._read_pool or self._pool

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A dedicated autocommit connection to the session URL, closed on exit: for session advisory locks.

        Raises psycopg.OperationalError when it cannot connect."""
        conn = await psycopg.AsyncConnection.connect(
            self.session_url,
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=SESSION_CONNECT_TIMEOUT_S,
            application_name="lsd-session",
        )
        try:
            yield conn
        finally:
            await conn.close()

    async def open(self, timeout_s: float = 30.0) -> None:
        await self._pool.open(wait=True, timeout=timeout_s)
        if self._read_pool is not None:
            try:
                await self._read_pool.open(wait=True, timeout=timeout_s)
            except BaseException:
                await self._pool.close()
                raise

    async def close(self) -> None:
        if self._read_pool is not None:
            await self._read_pool.close()
        await self._pool.close()

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """True when PostgreSQL answers a trivial query within `timeout_s`."""
        try:
            async with self._pool.connection(timeout=timeout_s) as conn:
                await conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError, OSError):
            return False
        return True

    def stats(self) -> PoolStats:
        s = self._pool.get_stats()
        return PoolStats(
            size=s.get("pool_size", 0),
            available=s.get("pool_available", 0),
            waiting=s.get("requests_waiting", 0),
            max_size=s.get("pool_max", self._pool.max_size),
        )
