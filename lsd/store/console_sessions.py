"""Console sign-in sessions: a random token's SHA-256, the key it was made for, its CSRF token and expiry.

The role is joined from api_keys on every lookup, so a disabled key (or one whose console role is taken away)
has no session from its next request on, on every replica (docs/console.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lsd.store.database import Database

_CREATE = """
INSERT INTO console_sessions (token_sha256, public_id, csrf_token, expires_at)
VALUES (%s, %s, %s, now() + make_interval(secs => %s))
"""
# Expired rows of other sessions go with each sign-in: the table holds only live sessions (and is small).
_SWEEP = "DELETE FROM console_sessions WHERE expires_at < now()"
_FIND = """
SELECT s.public_id, k.console_role, s.csrf_token, s.expires_at
FROM console_sessions s JOIN api_keys k ON k.public_id = s.public_id
WHERE s.token_sha256 = %s AND s.expires_at > now() AND k.disabled_at IS NULL AND k.console_role IS NOT NULL
"""
_DELETE = "DELETE FROM console_sessions WHERE token_sha256 = %s"


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    public_id: str
    role: str  # read-only | admin
    csrf_token: str
    expires_at: datetime


async def create_session(database: Database, token_sha256: bytes, public_id: str, csrf_token: str, ttl_s: int) -> None:
    async with database.connection("auth") as conn, conn.transaction():
        await conn.execute(_SWEEP)
        await conn.execute(_CREATE, (token_sha256, public_id, csrf_token, ttl_s))


async def find_session(database: Database, token_sha256: bytes) -> ConsoleSession | None:
    """The live session of a token whose key is still enabled and has a console role; else None."""
    async with database.connection("auth") as conn:
        cur = await conn.execute(_FIND, (token_sha256,), prepare=database.prepare)
        row = await cur.fetchone()
    return ConsoleSession(row[0], row[1], row[2], row[3]) if row else None


async def end_session(database: Database, token_sha256: bytes) -> None:
    async with database.connection("auth") as conn:
        await conn.execute(_DELETE, (token_sha256,))
