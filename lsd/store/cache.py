"""The inference cache table: look up and store provider responses by the hash of the provider request.

A cache call never holds an inference up for long: getting the connection and the statement together take at most
`timeout_s` (min(gateway.database.acquire_timeout_s, CACHE_TIMEOUT_S)), else DatabaseUnavailable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from lsd.store.database import Database
from lsd.store.escaping import escape_text, unescape_optional

CACHE_TIMEOUT_S = 0.5  # the most one cache read or write may add to an inference


@dataclass(frozen=True, slots=True)
class CachedResponse:
    output: list[dict[str, Any]]
    raw_request: str | None
    raw_response: str | None
    input_tokens: int | None
    output_tokens: int | None
    finish_reason: str | None


_GET = (
    "SELECT output, raw_request, raw_response, input_tokens, output_tokens, finish_reason "
    "FROM model_inference_cache WHERE cache_key = %s "
    "AND (%s::integer IS NULL OR created_at >= now() - make_interval(secs => %s::integer))"
)

_PUT = (
    "INSERT INTO model_inference_cache (cache_key, model_name, model_provider_name, output, raw_request, "
    "raw_response, input_tokens, output_tokens, finish_reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (cache_key) DO UPDATE SET output = EXCLUDED.output, raw_request = EXCLUDED.raw_request, "
    "raw_response = EXCLUDED.raw_response, input_tokens = EXCLUDED.input_tokens, "
    "output_tokens = EXCLUDED.output_tokens, finish_reason = EXCLUDED.finish_reason, created_at = now()"
)


def timeout_s(database: Database) -> float:
    """How long one cache call may take in all: the acquire timeout, capped at CACHE_TIMEOUT_S."""
    return min(database.acquire_timeout_s, CACHE_TIMEOUT_S)


async def cache_get(database: Database, key: bytes, max_age_s: int | None) -> CachedResponse | None:
    """The entry for `key`, if there is one no older than `max_age_s` (any age when None). One primary-key read.
    Raises DatabaseUnavailable when PostgreSQL cannot answer within `timeout_s`."""
    limit = timeout_s(database)
    async with database.connection("cache", limit, deadline_s=limit) as conn:
        cur = await conn.execute(_GET, (key, max_age_s, max_age_s), prepare=database.prepare)
        row = await cur.fetchone()
    if row is None:
        return None
    output, raw_request, raw_response, *rest = row  # the text columns as stored (lsd.store.escaping)
    return CachedResponse(output, unescape_optional(raw_request), unescape_optional(raw_response), *rest)


async def cache_put(database: Database, key: bytes, model_name: str, provider_name: str, entry: CachedResponse) -> None:
    """Store (or replace) the entry for `key`. Raises DatabaseUnavailable when PostgreSQL cannot answer within
    `timeout_s`."""
    limit = timeout_s(database)
    async with database.connection("cache", limit, deadline_s=limit) as conn:
        await conn.execute(
            _PUT,
            (
                key,
                model_name,
                provider_name,
                Jsonb(entry.output),
                None if entry.raw_request is None else escape_text(entry.raw_request),
                None if entry.raw_response is None else escape_text(entry.raw_response),
                entry.input_tokens,
                entry.output_tokens,
                entry.finish_reason,
            ),
            prepare=database.prepare,
        )
