"""The only retry and fallback code: providers in routing order, variant retries with backoff, other variants."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from uuid import UUID

from lsd.config.model import FunctionConfig, VariantConfig
from lsd.errors import AttemptFailure, NotFound, ProviderError, ProviderTimeout
from lsd.inference.cache import Cache, cache_key
from lsd.inference.models import Model, ModelTable
from lsd.inference.recording import Attempt
from lsd.providers.base import CallContext, Provider
from lsd.types import BodyPatch, HeaderPatch, ProviderRequest, ProviderResponse, StreamChunk


def order_variants(function: FunctionConfig, episode_id: UUID, pinned: str | None) -> list[VariantConfig]:
    """Variants to try, in order: the sampled candidate (sticky per episode), other candidates, fallbacks."""
    if pinned is not None:
        if pinned not in function.variants:
            raise NotFound(f"unknown variant {pinned!r} of function {function.name!r}", field="variant_name")
        return [function.variants[pinned]]
    variants = list(function.variants.values())
    if len(variants) == 1:
        return variants
    if all(v.weight is None for v in variants):
        candidates = [(v, 1.0) for v in variants]
        fallbacks: list[VariantConfig] = []
    else:
        candidates = [(v, v.weight) for v in variants if v.weight]
        fallbacks = [v for v in variants if v.weight is None]
    digest = hashlib.sha256(function.name.encode() + episode_id.bytes).digest()
    draw = int.from_bytes(digest[:4], "big") / 2**32
    ordered: list[VariantConfig] = []
    while candidates:
        total = sum(w for _, w in candidates)
        point, pick = draw * total, len(candidates) - 1
        for i, (_, weight) in enumerate(candidates):
            point -= weight
            if point < 0:
                pick = i
                break
        ordered.append(candidates.pop(pick)[0])
        draw = random.random()
    return ordered + fallbacks


def tries(
    function: FunctionConfig, episode_id: UUID, pinned: str | None, models: ModelTable
) -> Iterator[tuple[VariantConfig, Model, float]]:
    """Each (variant, model, backoff seconds to wait first) to try, in order: every variant's retries back to
    back, then the next variant. The caller waits the backoff, and stops iterating at the first success. (A
    plain generator, not an async one: the common single try costs no async-generator machinery.)"""
    for variant in order_variants(function, episode_id, pinned):
        model = models.get(variant.model)
        for retry in range(variant.retries.num_retries + 1):
            yield variant, model, backoff_s(retry, variant.retries.max_delay_s) if retry else 0.0


_NO_TIMEOUT = contextlib.nullcontext()  # stateless, so shared: no Timeout object per call when none is set


def _names(variant: str, model: Model, provider: Provider) -> tuple[str, str, str, str]:
    return (variant, model.name, provider.name, provider.type_name)


def for_call(ctx: CallContext, variant: str, model: Model, provider: Provider) -> CallContext:
    """The context narrowed to the extra_body/extra_headers entries that apply to this provider call."""
    if not ctx.extra_body and not ctx.extra_headers:
        return ctx

    def applies(p: BodyPatch | HeaderPatch) -> bool:
        return (
            (p.variant_name is None or p.variant_name == variant)
            and (p.model_name is None or p.model_name == model.name)
            and (p.provider_name is None or p.provider_name == provider.name)
        )

    return replace(
        ctx,
        extra_body=tuple(p for p in ctx.extra_body if applies(p)),
        extra_headers=tuple(p for p in ctx.extra_headers if applies(p)),
    )


def _timeout_ms(model: Model, provider: Provider, variant: VariantConfig, kind: str) -> int | None:
    """The provider's own timeout wins over the model's, which wins over the variant's."""
    for timeouts in (provider.config.timeouts, model.timeouts, variant.timeouts):
        value: int | None = getattr(timeouts, kind)
        if value:
            return value
    return None


async def call_model(
    model: Model,
    variant: VariantConfig,
    request: ProviderRequest,
    ctx: CallContext,
    attempts: list[Attempt],
    cache: Cache | None = None,
) -> ProviderResponse:
    """Try each provider of `model` in routing order; append every attempt to `attempts`.

    Raises the last ProviderError when all fail. InvalidRequest (a caller mistake) propagates at once.
    """
    last: ProviderError | None = None
    for provider in model.providers:
        names = _names(variant.name, model, provider)
        started = int(time.time() * 1000)
        t0 = time.perf_counter()
        call_ctx = for_call(ctx, variant.name, model, provider)
        key = cache_key(provider, request, call_ctx) if cache is not None else None
        if cache is not None and key is not None and cache.options.read:
            hit = await cache.get(key)
            if hit is not None:
                attempts.append(Attempt.succeeded(names, started, t0, hit, cached=True))
                return hit
        timeout_ms = _timeout_ms(model, provider, variant, "non_streaming_total_ms")
        try:
            async with asyncio.timeout(timeout_ms / 1000) if timeout_ms else _NO_TIMEOUT:
                response = await provider.infer(request, call_ctx)
        except TimeoutError:
            error: ProviderError = ProviderTimeout(
                f"no response within {timeout_ms} ms", provider=provider.name, kind="timeout"
            )
        except ProviderError as exc:
            error = exc
        else:
            attempts.append(Attempt.succeeded(names, started, t0, response))
            if cache is not None and key is not None and cache.options.write:
                await cache.put(key, model.name, provider.name, response)
            return response
        attempts.append(Attempt.failed(names, started, t0, error))
        last = error
    raise last or ProviderError(f"model {model.name!r} has no providers", retryable=False)


@dataclass
class OpenStream:
    """A provider stream whose first chunk has arrived (so errors before it were handled as attempts)."""

    provider: Provider
    names: tuple[str, str, str, str]
    started_ms: int
    t0: float
    first: StreamChunk | None
    rest: AsyncIterator[StreamChunk]
    ttft_ms: int
    total_deadline: float | None


async def open_stream(
    model: Model, variant: VariantConfig, request: ProviderRequest, ctx: CallContext, attempts: list[Attempt]
) -> OpenStream:
    """Start streaming from the first provider that yields a first chunk within its TTFT timeout."""
    last: ProviderError | None = None
    for provider in model.providers:
        names = _names(variant.name, model, provider)
        started = int(time.time() * 1000)
        t0 = time.perf_counter()
        ttft_ms = _timeout_ms(model, provider, variant, "streaming_ttft_ms")
        total_ms = _timeout_ms(model, provider, variant, "streaming_total_ms")
        iterator = aiter(provider.stream(request, for_call(ctx, variant.name, model, provider)))
        try:
            async with asyncio.timeout(ttft_ms / 1000 if ttft_ms else None):
                first: StreamChunk | None = await anext(iterator)
        except StopAsyncIteration:
            first = None
        except TimeoutError:
            error: ProviderError = ProviderTimeout(
                f"no first token within {ttft_ms} ms", provider=provider.name, kind="timeout"
            )
        except ProviderError as exc:
            error = exc
        else:
            deadline = t0 + total_ms / 1000 if total_ms else None
            return OpenStream(provider, names, started, t0, first, iterator, _elapsed_ms(t0), deadline)
        await _close(iterator)
        attempts.append(Attempt.failed(names, started, t0, error))
        last = error
    raise last or ProviderError(f"model {model.name!r} has no providers", retryable=False)


async def _close(iterator: AsyncIterator[StreamChunk]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


def _elapsed_ms(t0: float) -> int:
    return int((time.perf_counter() - t0) * 1000)


def backoff_s(attempt: int, max_delay_s: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, 0.1 * 2^attempt)]."""
    return random.uniform(0, min(max_delay_s, 0.1 * 2**attempt))


def summarise(attempts: Sequence[Attempt]) -> list[AttemptFailure]:
    return [
        AttemptFailure(a.variant_name, a.model_name, a.provider_name, a.error.kind, a.error.message)
        for a in attempts
        if a.error is not None
    ]
