"""Rate-limit buckets in PostgreSQL: one atomic call takes from (or gives back to) several buckets at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from lsd.store.database import Database

_TAKE = "SELECT ok, taken, balances FROM lsd_rate_limit_take(%s, %s, %s, %s, %s, %s, %s, %s)"
# A bucket that has refilled to its capacity is what lsd_rate_limit_take makes of a missing one (a full bucket): it
# can go. Only those untouched for an hour, so that the busy ones are not deleted and made again all the time. A
# take that updates a row meanwhile makes PostgreSQL check the condition again on the new row.
_PRUNE = """
DELETE FROM rate_limit_buckets
WHERE updated_at < now() - make_interval(secs => %s)
  AND balance + refill_per_s * extract(epoch FROM now() - updated_at) >= capacity
"""
PRUNE_IDLE_S = 3600.0


@dataclass(frozen=True, slots=True)
class BucketChange:
    """What one call asks of one bucket (see lsd_rate_limit_take in sql/migrations/0004_auth.sql)."""

    rule_key: str
    scope_key: str
    capacity: float
    refill_per_s: float
    give_back: float  # added first; negative is a forced debit
    need: float  # the call fails unless every bucket holds this much
    want: float  # taken when available (>= need): the lease


@dataclass(frozen=True, slots=True)
class TakeResult:
    ok: bool
    taken: tuple[float, ...]
    balances: tuple[float, ...]  # after the call, in the order asked


async def take(database: Database, changes: Sequence[BucketChange], at: datetime | None = None) -> TakeResult:
    """All buckets or none, in one statement; `at` None uses the database's clock (shared by every replica).
    Raises DatabaseUnavailable when PostgreSQL cannot be reached (within gateway.database.acquire_timeout_s)."""
    async with database.connection("ratelimit") as conn:
        cur = await conn.execute(
            _TAKE,
            (
                [c.rule_key for c in changes],
                [c.scope_key for c in changes],
                [c.capacity for c in changes],
                [c.refill_per_s for c in changes],
                [c.give_back for c in changes],
                [c.need for c in changes],
                [c.want for c in changes],
                at,
            ),
            prepare=database.prepare,
        )
        row = await cur.fetchone()
    assert row is not None
    return TakeResult(bool(row[0]), tuple(row[1]), tuple(row[2]))


async def prune(database: Database, idle_s: float = PRUNE_IDLE_S) -> int:
    """Delete the buckets that are full again and untouched for `idle_s` (every user tag value or API key a rule
    met, and every rule edit, leaves one); the rows deleted."""
    async with database.connection("ratelimit") as conn:
        cur = await conn.execute(_PRUNE, (idle_s,))
        return cur.rowcount
