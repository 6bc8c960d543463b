"""The only retry and fallback code: providers in routing order, variant retries with backoff, other variants."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from lsd.config.model import FunctionConfig, VariantConfig
from lsd.errors import AttemptFailure, InvalidRequest, NotFound, ProviderError, ProviderTimeout
from lsd.inference.models import Model
from lsd.providers.base import CallContext, Provider
from lsd.types import ProviderRequest, ProviderResponse


@dataclass(frozen=True, slots=True)
class Attempt:
    """One provider call, successful or not, with what the rows need."""

    variant_name: str
    model_name: str
    provider: Provider
    started_ms: int
    latency_ms: int
    response: ProviderResponse | None
    error: ProviderError | None


def order_variants(function: FunctionConfig, episode_id: UUID, pinned: str | None) -> list[VariantConfig]:
    """Variants to try, in order: the sampled candidate (sticky per episode), other candidates, fallbacks."""
    if pinned is not None:
        if pinned not in function.variants:
            raise NotFound(f"unknown variant {pinned!r} of function {function.name!r}", field="variant_name")
        return [function.variants[pinned]]
    variants = list(function.variants.values())
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


async def call_model(
    model: Model, variant_name: str, request: ProviderRequest, ctx: CallContext, attempts: list[Attempt]
) -> tuple[Provider, ProviderResponse]:
    """Try each provider of `model` in routing order; append every attempt to `attempts`."""
    last: ProviderError | None = None
    for provider in model.providers:
        timeout_ms = provider.config.timeouts.non_streaming_total_ms or model.timeouts.non_streaming_total_ms
        started = time.time()
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_ms / 1000 if timeout_ms else None):
                response = await provider.infer(request, ctx)
        except TimeoutError:
            error: ProviderError = ProviderTimeout(
                f"no response within {timeout_ms} ms", provider=provider.name, kind="timeout"
            )
        except ProviderError as exc:
            error = exc
        else:
            attempts.append(
                Attempt(
                    variant_name,
                    model.name,
                    provider,
                    int(started * 1000),
                    int((time.perf_counter() - t0) * 1000),
                    response,
                    None,
                )
            )
            return provider, response
        attempts.append(
            Attempt(
                variant_name,
                model.name,
                provider,
                int(started * 1000),
                int((time.perf_counter() - t0) * 1000),
                None,
                error,
            )
        )
        last = error
    raise last or ProviderError(f"model {model.name!r} has no providers", retryable=False)


def backoff_s(attempt: int, max_delay_s: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, 0.1 * 2^attempt)]."""
    return random.uniform(0, min(max_delay_s, 0.1 * 2**attempt))


def summarise(attempts: Sequence[Attempt]) -> list[AttemptFailure]:
    return [
        AttemptFailure(a.variant_name, a.model_name, a.provider.name, a.error.kind, a.error.message)
        for a in attempts
        if a.error is not None
    ]


def is_client_error(error: ProviderError) -> bool:
    return isinstance(error, InvalidRequest) or (
        error.status is not None and 400 <= error.status < 500 and error.status not in (408, 429)
    )
