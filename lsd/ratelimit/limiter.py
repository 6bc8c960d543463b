"""Token buckets shared by every replica through PostgreSQL, spent locally from small leases.

`acquire` admits or refuses one request against every bucket that applies to it, all or none. With
`rate_limiting.lease = 0` each admission is one atomic database call (exact). With a lease, a replica takes
up to `lease * capacity` extra units from a bucket in that call and admits later requests from them without
touching the database; unspent units go back after `lease_ttl_ms` (`flush`, a job). Token and cost limits
reserve an estimate, and `Reservation.settle` corrects it by the real usage; corrections are applied with the
bucket's next database call (or the next flush), so settling never waits. See docs/rate-limiting.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from lsd.config.ratelimit import Limit, RateLimitingConfig, RuleConfig
from lsd.errors import DatabaseUnavailable, InvalidRequest, RateLimited
from lsd.ratelimit.rules import LimitRequest, applicable
from lsd.store.database import Database
from lsd.store.ratelimit import BucketChange, take

BucketId = tuple[str, str]  # (rule_key, scope_key): one row of rate_limit_buckets


@dataclass
class _Local:
    """What this replica holds for one bucket: `balance`, a lease spendable until `expires`, and `pending`,
    corrections from settled requests waiting to be given back (negative: a debt), never spent locally, so a
    replica never holds more than one lease of spendable units."""

    limit: Limit
    balance: float
    expires: float
    pending: float = 0.0


@dataclass(frozen=True, slots=True)
class _Need:
    bucket: BucketId
    rule: RuleConfig
    limit: Limit
    amount: float


_WHY = {
    "tokens": "its prompt's estimated tokens plus max_tokens (the request's, else its variants', else "
    "[rate_limiting] default_max_tokens): lower max_tokens, or shorten the prompt",
    "cost": "the rule's default_cost",
    "model_inferences": "one model inference",
}


class Reservation:
    """What one admitted request took; `settle` once with the real usage (None: keep the estimate)."""

    def __init__(self, limiter: RateLimiter, needs: Sequence[_Need]) -> None:
        self._limiter = limiter
        self._needs = needs
        self._settled = False

    def settle(self, *, tokens: float | None, cost: float | None) -> None:
        if self._settled:
            return
        self._settled = True
        for need in self._needs:
            used = tokens if need.limit.resource == "tokens" else cost if need.limit.resource == "cost" else None
            if used is not None and used != need.amount:
                self._limiter.correct(need.bucket, need.limit, need.amount - used)


class RateLimiter:
    """One per process. `refusals` counts refused requests by rule name; `round_trips` counts database calls."""

    def __init__(
        self, config: RateLimitingConfig, database: Database, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config
        self.database = database
        self._clock = clock
        self.refusals: Counter[str] = Counter()
        self.admitted = 0
        self.round_trips = 0
        self.local_admissions = 0
        self.failed_open = 0  # requests admitted without limits because PostgreSQL was unreachable
        self._local: dict[BucketId, _Local] = {}
        self._locks: dict[BucketId, asyncio.Lock] = {}
        self._ttl_s = config.lease_ttl_ms / 1000
        self.needs_tokens = any(limit.resource == "tokens" for rule in config.rules for limit in rule.limits)

    @property
    def active(self) -> bool:
        return self.config.enabled and bool(self.config.rules)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else time.monotonic()

    def _db_time(self) -> datetime | None:
        return datetime.fromtimestamp(self._clock(), UTC) if self._clock is not None else None

    async def acquire(self, request: LimitRequest) -> Reservation | None:
        """Admit the request or raise RateLimited (429) naming the rule; None when no rule applies."""
        if not self.active:
            return None
        applied = applicable(self.config.rules, request)
        if not applied:
            return None
        needs = [
            _Need((limit.bucket_key, key), rule, limit, self._amount(limit, rule, request))
            for rule, key in applied
            for limit in rule.limits
        ]
        for n in needs:
            if n.amount > n.limit.capacity:  # waiting would never help: not a 429 whose Retry-After never comes
                self.refusals[n.rule.name] += 1
                scope = f" for {n.bucket[1]}" if n.bucket[1] else ""
                raise InvalidRequest(
                    f"rate limit {n.rule.name} ({n.limit.name}{scope}) holds at most {n.limit.capacity:g} and this "
                    f"request needs {math.ceil(n.amount)} ({_WHY.get(n.limit.resource, n.limit.resource)}): it can "
                    "never be admitted"
                )
        lease = self.config.lease
        if lease > 0 and any(lease * n.limit.capacity > n.amount for n in needs):
            if self._spend_locally(needs):
                return Reservation(self, needs)
            async with contextlib.AsyncExitStack() as stack:
                # One database call per bucket at a time: a replica holds at most one lease of each bucket.
                for bucket in sorted({n.bucket for n in needs}):
                    await stack.enter_async_context(self._locks.setdefault(bucket, asyncio.Lock()))
                if self._spend_locally(needs):
                    return Reservation(self, needs)
                return await self._take_or_fail_open(needs)
        return await self._take_or_fail_open(needs)

    async def _take_or_fail_open(self, needs: Sequence[_Need]) -> Reservation | None:
        try:
            await self._take(needs)
        except DatabaseUnavailable:
            if not self.config.fail_open:
                raise
            self.failed_open += 1  # admitted unlimited; nothing was taken, so nothing is settled
            return None
        return Reservation(self, needs)

    def _amount(self, limit: Limit, rule: RuleConfig, request: LimitRequest) -> float:
        if limit.resource == "model_inferences":
            return 1.0
        if limit.resource == "cost":
            return self.config.default_cost
        if request.tokens is None:
            raise InvalidRequest(
                f"params.chat_completion.max_tokens: required by the token limit of {rule.name} (or set "
                "[rate_limiting] default_max_tokens)",
                field="params.chat_completion.max_tokens",
            )
        return request.tokens

    def _spend_locally(self, needs: Sequence[_Need]) -> bool:
        now = self._now()
        held = [self._local.get(n.bucket) for n in needs]
        if not all(
            h is not None and h.expires > now and h.balance >= n.amount for h, n in zip(held, needs, strict=True)
        ):
            return False
        for h, n in zip(held, needs, strict=True):
            assert h is not None
            h.balance -= n.amount
        self.admitted += 1
        self.local_admissions += 1
        return True

    async def _take(self, needs: Sequence[_Need]) -> None:
        """One atomic call: give back what is held locally, take what the request needs (plus a lease)."""
        changes = []
        returned: list[_Local | None] = []
        for n in needs:
            held = self._local.pop(n.bucket, None)
            returned.append(held)
            lease = self.config.lease * n.limit.capacity
            changes.append(
                BucketChange(
                    n.limit.bucket_key,
                    n.bucket[1],
                    n.limit.capacity,
                    n.limit.refill_per_s,
                    give_back=held.balance + held.pending if held else 0.0,
                    need=n.amount,
                    want=max(n.amount, lease),
                )
            )
        self.round_trips += 1
        try:
            result = await take(self.database, changes, self._db_time())
        except BaseException:
            for n, held in zip(needs, returned, strict=True):  # nothing was given back: keep holding it
                if held is not None:
                    self._local.setdefault(n.bucket, held)
            raise
        if not result.ok:
            self._refuse(needs, changes, result.balances)
        self.admitted += 1
        expires = self._now() + self._ttl_s
        for n, got in zip(needs, result.taken, strict=True):
            if got > n.amount:
                self._local[n.bucket] = _Local(n.limit, got - n.amount, expires)

    def _refuse(self, needs: Sequence[_Need], changes: Sequence[BucketChange], balances: Sequence[float]) -> None:
        waits = [
            ((c.need - b) / n.limit.refill_per_s, n)
            for n, c, b in zip(needs, changes, balances, strict=True)
            if b < c.need
        ]
        wait, worst = max(waits, key=lambda w: w[0])
        name = worst.rule.name
        self.refusals[name] += 1
        scope = f" for {worst.bucket[1]}" if worst.bucket[1] else ""
        raise RateLimited(
            f"rate limit exceeded: {name} ({worst.limit.name}{scope}); retry after {math.ceil(wait)} s",
            rule=name,
            retry_after_s=max(1, math.ceil(wait)),
        )

    def correct(self, bucket: BucketId, limit: Limit, delta: float) -> None:
        """Give `delta` units back to a bucket (negative: take more); applied with its next database call."""
        held = self._local.get(bucket)
        if held is None:
            self._local[bucket] = _Local(limit, 0.0, 0.0, delta)
        else:
            held.pending += delta

    async def flush(self, *, everything: bool = False) -> int:
        """Give back expired leases and pending corrections (all of them when `everything`); returns how many
        buckets were touched. Run periodically by a job and once at shutdown."""
        now = self._now()
        due = [(b, h) for b, h in self._local.items() if everything or h.expires <= now or h.pending]
        for bucket, _ in due:
            del self._local[bucket]
        for bucket in [b for b, lock in self._locks.items() if not lock.locked() and b not in self._local]:
            del self._locks[bucket]
        changes = [
            BucketChange(
                h.limit.bucket_key, b[1], h.limit.capacity, h.limit.refill_per_s, h.balance + h.pending, 0.0, 0.0
            )
            for b, h in due
            if h.balance + h.pending != 0
        ]
        if changes:
            self.round_trips += 1
            await take(self.database, changes, self._db_time())
        return len(changes)
