"""The inference cache: a provider response stored in PostgreSQL under a hash of the provider request.

A hit costs one primary-key read, is marked `cached` in the rows, and reports zero usage and cost.
Streamed and non-streamed calls are cached apart (`stream` is part of the provider request hashed): a hit is
replayed as a stream to a streamed call (lsd.inference.streaming). The cache never fails an inference: when
PostgreSQL cannot answer (within lsd.store.cache.timeout_s), a read is a miss and a write is skipped, each counted
in `lsd_cache_errors_total`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from lsd.errors import DatabaseUnavailable
from lsd.immutable import immutable
from lsd.inference.recording import block_to_json
from lsd.inference.request import CacheOptions
from lsd.providers.base import CallContext, Provider
from lsd.store.cache import CachedResponse, cache_get, cache_put
from lsd.store.database import Database
from lsd.types import OutputBlock, ProviderRequest, ProviderResponse, Text, Thought, ToolCall, Unknown, Usage


def cache_key(provider: Provider, request: ProviderRequest, ctx: CallContext) -> bytes:
    """SHA-256 of the provider's identity, the normalised request, the extra_body/extra_headers edits that apply
    to it (orjson serialises the dataclasses) and the request's dynamic credentials: a caller with another tenant's
    key (or a wrong one) never gets an answer the provider gave that tenant, as the provider would have refused
    it. (Only the digest is stored.)"""
    identity = {"type": provider.type_name, "model": provider.model_name, "provider": provider.config.key_path}
    if request.params.prompt_cache_key is not None:  # a routing hint (a session id): the same answer for everyone
        request = replace(request, params=replace(request.params, prompt_cache_key=None))
    parts: list[Any] = [identity, request, ctx.extra_body, ctx.extra_headers]
    if ctx.credentials:
        parts.append(dict(ctx.credentials))
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).digest()


def blocks_from_json(blocks: Sequence[dict[str, Any]]) -> tuple[OutputBlock, ...]:
    out: list[OutputBlock] = []
    for b in blocks:
        kind = b.get("type")
        if kind == "text":
            out.append(Text(b["text"]))
        elif kind == "tool_call":
            out.append(ToolCall(b["id"], b["name"], b["arguments"]))
        elif kind == "thought":
            out.append(Thought(b.get("text"), b.get("signature"), provider_type=b.get("provider_type")))
        else:
            out.append(Unknown(b.get("data"), b.get("model_name"), b.get("provider_name")))
    return tuple(out)


@immutable
class Cache:
    """The cache as one request sees it: where it lives and the request's cache_options."""

    database: Database
    options: CacheOptions

    async def get(self, key: bytes) -> ProviderResponse | None:
        """The cached response for `key`, or None: not cached, or PostgreSQL cannot answer (a counted miss)."""
        try:
            entry = await cache_get(self.database, key, self.options.max_age_s)
        except DatabaseUnavailable:
            self._count_error("read")
            return None
        if entry is None:
            return None
        return ProviderResponse(
            content=blocks_from_json(entry.output),
            usage=Usage(0, 0),
            finish_reason=entry.finish_reason,  # type: ignore[arg-type]
            raw_request=entry.raw_request or "",
            raw_response=entry.raw_response or "",
            cost=0.0,
        )

    async def put(self, key: bytes, model_name: str, provider_name: str, response: ProviderResponse) -> None:
        """Store `response` under `key`; skipped (and counted) when PostgreSQL cannot answer."""
        entry = CachedResponse(
            output=[block_to_json(b) for b in response.content],
            raw_request=response.request_text,
            raw_response=response.raw_response,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            finish_reason=response.finish_reason,
        )
        try:
            await cache_put(self.database, key, model_name, provider_name, entry)
        except DatabaseUnavailable:
            self._count_error("write")

    def _count_error(self, operation: str) -> None:
        metrics = self.database.metrics
        if metrics is not None:
            metrics.observe_cache_error(operation)
