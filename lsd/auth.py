"""API keys: the `sk-lsd-<public_id>-<secret>` format, and verification with an in-process cache.

A key is checked by hashing its secret (SHA-256) and comparing the digest with the stored one in constant
time. Verified keys (and unknown or disabled ones) are cached for `gateway.auth.cache.ttl_ms`, but the cache is
trusted only while the revocation listener holds its LISTEN connection: a disabled key is dropped from every
replica's cache as soon as PostgreSQL delivers the notice, and without the listener every check asks the
database. Secrets are never logged, stored or kept: the cache holds digests.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from lsd.config.auth import AuthConfig
from lsd.errors import DatabaseUnavailable, Unauthorized
from lsd.store.database import Database
from lsd.store.keys import StoredKey, find_key, listen_for_revocations

PREFIX = "sk-lsd-"
_KEY = re.compile(r"^sk-lsd-([a-z0-9]{12})-([A-Za-z0-9]{48})$")
_PUBLIC_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
MAX_CACHED = 100_000  # entries; past it the cache starts afresh (bounds memory under a flood of unknown keys)
# One message for every refusal: it must not reveal whether the key was missing, unknown or disabled.
_KEY_IN_TEXT = re.compile(r"sk-lsd-[A-Za-z0-9-]*")


def redact_keys(text: str) -> str:
    """`text` with anything that looks like an LSD key replaced (a client that put its key in a URL)."""
    return _KEY_IN_TEXT.sub("sk-lsd-[REDACTED]", text) if PREFIX in text else text


REFUSED = (
    "missing or invalid API key: send Authorization: Bearer sk-lsd-... (or x-api-key: sk-lsd-..., "
    "x-goog-api-key: sk-lsd-...)"
)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly made key: `token` is shown to its owner once; only `public_id` and `secret_sha256` are kept."""

    public_id: str
    token: str
    secret_sha256: bytes


def new_key() -> NewKey:
    public_id = "".join(secrets.choice(_PUBLIC_ALPHABET) for _ in range(12))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(48))
    return NewKey(public_id, f"{PREFIX}{public_id}-{secret}", hashlib.sha256(secret.encode()).digest())


def parse_key(token: str) -> tuple[str, bytes] | None:
    """(public id, SHA-256 of the secret) of a well-formed key, else None."""
    match = _KEY.match(token)
    if match is None:
        return None
    return match.group(1), hashlib.sha256(match.group(2).encode()).digest()


def bearer_token(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


@dataclass(frozen=True, slots=True)
class _Entry:
    key: StoredKey | None  # None: no such key
    expires: float


class AuthService:
    """Verifies keys for one process. `failures` counts refusals by reason (for metrics; never shown to callers)."""

    def __init__(self, config: AuthConfig, database: Database, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.database = database
        self.clock = clock
        self.listening = False  # the cache is trusted only while the revocation listener is connected
        self.failures: Counter[str] = Counter()  # missing, malformed, unknown, disabled, wrong_secret
        self.cache_hits = 0
        self.cache_misses = 0
        self.stale_hits = 0  # checks answered from an expired entry while PostgreSQL was unreachable
        self._cache: dict[str, _Entry] = {}
        self._ttl_s = config.cache_ttl_ms / 1000
        # Revocation notices handled, and listener (re)connections and losses, so far: a read that saw the count move
        # is not cached (it may predate a change whose notice came, or went unheard, meanwhile).
        self._notices = 0

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    async def verify(self, authorization: str | None) -> StoredKey:
        """The key behind an `Authorization` header value; raises Unauthorized (401) with one message for all."""
        token = bearer_token(authorization)
        if token is None:
            return self._refuse("missing")
        parsed = parse_key(token)
        if parsed is None:
            return self._refuse("malformed")
        public_id, digest = parsed
        entry = self._cache.get(public_id)
        if entry is not None and self.listening and entry.expires > self.clock():
            self.cache_hits += 1
            key = entry.key
        else:
            self.cache_misses += 1
            notices = self._notices
            try:
                key = await find_key(self.database, public_id)
            except DatabaseUnavailable:
                if entry is None:
                    raise
                # PostgreSQL is down, so no key can be disabled meanwhile: the last verdict stands.
                self.stale_hits += 1
                key = entry.key
            else:
                # A notice that came while the row was read may be this key's, and the read may predate the change
                # it announces: the verdict then serves this request only, and the next check reads the row again.
                if self.config.cache_enabled and self._ttl_s > 0 and notices == self._notices:
                    if len(self._cache) >= MAX_CACHED:
                        self._cache.clear()
                    self._cache[public_id] = _Entry(key, self.clock() + self._ttl_s)
        if key is None:
            return self._refuse("unknown")
        if not hmac.compare_digest(key.secret_sha256, digest):
            return self._refuse("wrong_secret")
        if key.disabled_at is not None:
            return self._refuse("disabled")
        return key

    def _refuse(self, reason: str) -> StoredKey:
        self.failures[reason] += 1
        raise Unauthorized(REFUSED)

    # -- revocation ---------------------------------------------------------------------------------------------

    def forget(self, public_id: str) -> None:
        """A notice: the key's row changed. An active verdict is dropped (during an outage that key then gets 503,
        never a pass it may no longer deserve); a refusal (disabled, unknown) stays as the outage fallback, expired
        so that the next check reads the row again. A read of any key in flight meanwhile will not be cached."""
        self._notices += 1
        entry = self._cache.get(public_id)
        if entry is None:
            return
        if entry.key is None or entry.key.disabled_at is not None:
            self._cache[public_id] = _Entry(entry.key, 0.0)
        else:
            del self._cache[public_id]

    def _listening(self, current: dict[str, StoredKey | None]) -> None:
        """LISTEN is in place and `current` holds the ids cached when it began, read again after it. Notices sent
        while nobody listened are lost, so the cache becomes exactly that: entries added while the read ran are
        dropped (their own read may predate LISTEN). Clearing it instead would leave the keys just seen with no
        verdict to fall back on if PostgreSQL went away right after the listener (re)connected."""
        expires = self.clock() + self._ttl_s
        self._cache = {public_id: _Entry(key, expires) for public_id, key in current.items()}
        self._notices += 1  # a check whose read began before LISTEN may have missed a change: not cached
        self.listening = True

    def _cached_ids(self) -> list[str]:
        return list(self._cache)

    def _lost(self) -> None:
        self._notices += 1  # notices may be lost from now on: a read in flight is not cached
        self.listening = False

    async def listen(self) -> None:
        """The revocation listener (a job: run again by the job runner whenever its connection is lost)."""
        await listen_for_revocations(
            self.database.session_url, self._cached_ids, self._listening, self.forget, self._lost
        )
