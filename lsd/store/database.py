"""Connecting to PostgreSQL: start-up connection with backoff, the request-path pool, and safe descriptions."""

from __future__ import annotations

import time
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
    """The request-path connection pool. No I/O until `open()`; `close()` releases everything."""

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 20) -> None:
        self.url = url
        self._pool = AsyncConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, kwargs={"autocommit": True}
        )

    @property
    def pool(self) -> AsyncConnectionPool:
        return self._pool

    async def open(self, timeout_s: float = 30.0) -> None:
        await self._pool.open(wait=True, timeout=timeout_s)

    async def close(self) -> None:
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
