"""Connecting to PostgreSQL: start-up connection with backoff, the request-path pools, session connections, and safe
descriptions.

Three URLs, from the environment (see docs/deployment.md):
- `LSD_DATABASE_URL`, the primary: every write, API key checks, rate limits, the feedback target checks, the
  inference cache, and every read that must see what was just written (`Database.connection`).
- `LSD_READ_DATABASE_URL` (optional), a replica: the query API, evaluation run reads, statistics reads
  (`Database.reading`).
- `LSD_SESSION_DATABASE_URL` (optional, default the primary): connections that hold session state (advisory
  locks of the jobs and migrations, the API-key revocation LISTEN); behind a transaction-mode PgBouncer it must reach
  PostgreSQL directly.

The request path reaches the pools through one door, `Database.connection(purpose)` (primary) and
`Database.reading(purpose)` (replica): each waits at most `gateway.database.acquire_timeout_s` for a connection
and turns every sign that PostgreSQL cannot answer (see `unavailable`) into DatabaseUnavailable (503), counted by
purpose in `lsd_database_unavailable_total`. Callers choose their policy by catching it (docs/durability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from lsd.errors import DatabaseUnavailable
from lsd.store import escaping
from lsd.telemetry.metrics import Metrics

# JSON columns go through orjson in both directions (3-10x faster than the stdlib), U+0000 escaped (lsd.store.escaping).
set_json_dumps(escaping.dumps)
set_json_loads(escaping.loads)


log = logging.getLogger("lsd.store")

SESSION_CONNECT_TIMEOUT_S = 10
ACQUIRE_TIMEOUT_S = 2.0  # gateway.database.acquire_timeout_s's default
# After a pool could not give a connection, callers are told "unavailable" at once for this long instead of each
# waiting acquire_timeout_s (during an outage a known API key was answered after 2 s of auth wait plus 2 s of rate
# limiter wait, every request); then one caller probes (waits as before) while the others still fail fast.
FAST_FAIL_S = 1.0
# SQLSTATE classes of a server that cannot serve now: connection exception, insufficient resources (too many
# connections, disk full), operator intervention (shutdown, starting up, statement timeout), system error.
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})
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


# libpq's words for an option value it cannot use ('invalid integer value "x" for connection option "port"',
# 'invalid sslmode value: "x"', 'invalid port number'), and the server's for a bad `options` setting ('invalid value
# for parameter "TimeZone"'): the URL is wrong, and retrying only delays saying so.
_MISCONFIGURED = re.compile(r"\binvalid (?:[\w ]* value\b|port number|value for parameter)")


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
            if _MISCONFIGURED.search(last):  # waiting will not fix it
                raise DatabaseUnreachable(f"invalid LSD_DATABASE_URL: {last}") from None
        except psycopg.ProgrammingError as exc:
            raise DatabaseUnreachable(f"invalid LSD_DATABASE_URL: {scrub(str(exc), url)}") from None
        if time.monotonic() + delay > deadline:
            raise DatabaseUnreachable(f"cannot reach PostgreSQL at {describe(url)} after {timeout_s:g}s: {last}")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says PostgreSQL cannot answer now (rather than that it refused this statement): the pool
    timed out, was closed or had too many waiting; a connection failed or was lost (no SQLSTATE); an
    operational SQLSTATE class listed above; a timeout; a socket error."""
    if isinstance(exc, psycopg.OperationalError):
        return exc.sqlstate is None or exc.sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES
    return isinstance(exc, TimeoutError | OSError)


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
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
        metrics: Metrics | None = None,
    ) -> None:
        self.url = url
        self.read_url = read_url
        self.session_url = session_url or url
        self.prepare_threshold = prepare_threshold(prepared_statements)
        # For hot statements that ask to be prepared at once: True, or None (the threshold, here: never).
        self.prepare: bool | None = True if prepared_statements else None
        self.acquire_timeout_s = acquire_timeout_s
        self.metrics = metrics
        kwargs = {"autocommit": True, "prepare_threshold": self.prepare_threshold}
        self._pool = AsyncConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, kwargs={**kwargs, **_named(url, "lsd")}
        )
        self._read_pool = (
            AsyncConnectionPool(
                read_url,
                min_size=min_size,
                max_size=max_size,
                open=False,
                kwargs={**kwargs, **_named(read_url, "lsd-read")},
                name="lsd-read",
            )
            if read_url
            else None
        )
        # Per pool (by id): until when callers fail fast; 0.0 while the pool gives connections.
        self._down_until: dict[int, float] = {}
        self._lent: dict[int, int] = {}  # per pool: connections the door's callers hold now

    @classmethod
    def from_urls(
        cls,
        urls: DatabaseUrls,
        *,
        min_size: int = 2,
        max_size: int = 20,
        prepared_statements: bool = True,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
        metrics: Metrics | None = None,
    ) -> Database:
        return cls(
            urls.primary,
            min_size=min_size,
            max_size=max_size,
            read_url=urls.read,
            session_url=urls.session,
            prepared_statements=prepared_statements,
            acquire_timeout_s=acquire_timeout_s,
            metrics=metrics,
        )

    def connection(
        self, purpose: str, timeout_s: float | None = None, *, deadline_s: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """A primary connection for the block: writes, and every read that must see them.

        `purpose` ("query", "cache", "feedback", "auth", "ratelimit", "batch", "evaluations") names the caller in
        logs and in `lsd_database_unavailable_total`. Waits at most `timeout_s` (default `acquire_timeout_s`)
        for a connection; `deadline_s` also bounds the whole block (for callers that must never wait long, the
        cache). Raises DatabaseUnavailable when PostgreSQL cannot answer (see `unavailable`), whether getting
        the connection or in the block; other errors of the block propagate unchanged."""
        return self._connect(self._pool, self.url, purpose, timeout_s, deadline_s)

    def reading(
        self, purpose: str, timeout_s: float | None = None, *, deadline_s: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """As `connection`, from the replica when LSD_READ_DATABASE_URL is set: reads that tolerate replication
        lag (the query API, evaluation run reads)."""
        if self._read_pool is not None and self.read_url:
            return self._connect(self._read_pool, self.read_url, purpose, timeout_s, deadline_s)
        return self._connect(self._pool, self.url, purpose, timeout_s, deadline_s)

    @contextlib.asynccontextmanager
    async def _connect(
        self, pool: AsyncConnectionPool, url: str, purpose: str, timeout_s: float | None, deadline_s: float | None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        timeout = self.acquire_timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        down_until = self._down_until.get(id(pool), 0.0)
        if down_until:
            if started < down_until:  # the pool failed moments ago: no wait, the caller's fallback at once
                if self.metrics is not None:
                    self.metrics.observe_database_unavailable(purpose)
                raise DatabaseUnavailable(f"the database is unavailable ({purpose}); try again later")
            # This caller probes; the others keep failing fast until it knows.
            self._down_until[id(pool)] = started + (deadline_s or timeout) + FAST_FAIL_S
        acquired = False
        try:
            # asyncio.timeout cancels this task, which runs both this generator and the caller's block.
            async with asyncio.timeout(deadline_s), pool.connection(timeout=timeout) as conn:
                acquired = True
                self._lent[id(pool)] = self._lent.get(id(pool), 0) + 1
                if down_until:
                    self._down_until[id(pool)] = 0.0
                try:
                    yield conn
                finally:
                    self._lent[id(pool)] -= 1
        except (psycopg.OperationalError, TimeoutError, OSError) as exc:
            if not unavailable(exc):
                raise
            if not acquired and self._lent.get(id(pool), 0) < pool.max_size:
                # No connection to be had, and not because every one is in use (a busy pool is not a down database,
                # and a slow or cancelled statement on a good connection is neither): tell the next callers at once.
                self._down_until[id(pool)] = time.monotonic() + FAST_FAIL_S
            if self.metrics is not None:
                self.metrics.observe_database_unavailable(purpose)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reason = scrub(first, url) if first else f"no answer within {deadline_s or timeout:g}s"
            log.warning(
                "PostgreSQL unavailable for %s after %.2fs (%s): %s",
                purpose,
                time.monotonic() - started,
                type(exc).__name__,
                reason,
            )
            raise DatabaseUnavailable(f"the database is unavailable ({purpose}); try again later") from exc

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
        except (psycopg.Error, TimeoutError, OSError):  # /health: any failure is "postgres": "error"
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


def _named(url: str, name: str) -> dict[str, str]:
    """`application_name` for a pool's connections (what pg_stat_activity shows), unless the URL or PGAPPNAME sets
    one."""
    try:
        given = conninfo_to_dict(url).get("application_name") or os.environ.get("PGAPPNAME")
    except psycopg.ProgrammingError:
        given = None
    return {} if given else {"application_name": name}
