"""The jobs auth and rate limiting need: the key-revocation listener, the return of expired leases and the pruning
of idle buckets."""

from __future__ import annotations

from lsd.auth import AuthService
from lsd.jobs.runner import Job
from lsd.ratelimit.limiter import RateLimiter
from lsd.store.database import Database
from lsd.store.ratelimit import prune

LISTENER_RETRY_S = 0.2  # a lost LISTEN connection is reopened this soon (meanwhile every check asks PostgreSQL)
PRUNE_INTERVAL_S = 3600.0


def access_jobs(auth: AuthService, limiter: RateLimiter) -> list[Job]:
    jobs = []
    if auth.enabled:
        jobs.append(Job("auth-revocations", LISTENER_RETRY_S, auth.listen))
    if limiter.active:
        # Leases are returned within half a lease TTL of expiring; corrections with lease = 0 as often.
        jobs.append(Job("rate-limit-leases", limiter.config.lease_ttl_ms / 2000, limiter.flush))
        database = limiter.database
        jobs.append(Job("rate-limit-prune", PRUNE_INTERVAL_S, lambda: _prune(database)))
    return jobs


async def _prune(database: Database) -> None:
    await prune(database)
