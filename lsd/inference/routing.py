"""The only retry and fallback code: providers in routing order, retries with backoff, other variants (`route`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar
from uuid import UUID

from lsd.config.model import FunctionConfig, TimeoutsConfig, VariantConfig
from lsd.errors import AllAttemptsFailed, AttemptFailure, ProviderError, ProviderTimeout, UnknownVariant
from lsd.inference.experiment import Allocation, sampling_plan
from lsd.inference.models import Model, ModelTable
from lsd.inference.recording import Attempt
from lsd.providers.base import CallContext, Provider
from lsd.types import BodyPatch, HeaderPatch, Message, ProviderRequest, ProviderResponse, StreamChunk, Thought


def order_variants(
    function: FunctionConfig,
    episode_id: UUID,
    pinned: str | None,
    allocation: Allocation | None = None,
    namespace: str | None = None,
    sticky: str | None = None,
) -> list[VariantConfig]:
    """Variants to try, in order: the sampled candidate, other candidates (sampled without replacement), then the
    fallbacks. The first draw hashes the function and episode into the weights' CDF, so an episode keeps its
    variant while the weights stay the same (lsd.inference.experiment.sampling_plan says which weights); `sticky`,
    the variant the episode ran before (lsd.inference.episode_variants), comes first while it is a candidate."""
    if pinned is not None:
        if pinned not in function.variants:
            raise UnknownVariant(pinned)
        return [function.variants[pinned]]
    if len(function.variants) == 1:
        return list(function.variants.values())
    candidates, fallbacks, shuffle = sampling_plan(function, namespace, allocation)
    digest = hashlib.sha256(function.name.encode() + episode_id.bytes).digest()
    draw = int.from_bytes(digest[:4], "big") / 2**32
    ordered: list[VariantConfig] = []
    if sticky is not None and any(v.name == sticky for v, _ in candidates):
        ordered.append(function.variants[sticky])
        candidates = [(v, w) for v, w in candidates if v.name != sticky]
        draw = random.random()
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
    if fallbacks:
        taken = {v.name for v in ordered}
        fallbacks = [v for v in fallbacks if v.name not in taken]
        if shuffle:
            random.shuffle(fallbacks)
    return ordered + fallbacks


def tries(
    function: FunctionConfig,
    episode_id: UUID,
    pinned: str | None,
    models: ModelTable,
    allocation: Allocation | None = None,
    namespace: str | None = None,
    sticky: str | None = None,
) -> Iterator[tuple[VariantConfig, Model, float]]:
    """Each (variant, model, backoff seconds to wait first) to try, in order: every variant's retries back to
    back, then the next variant. The caller waits the backoff, and stops iterating at the first success. (A
    plain generator, not an async one: the common single try costs no async-generator machinery.)"""
    for variant in order_variants(function, episode_id, pinned, allocation, namespace, sticky):
        model = models.get(variant.model)
        for retry in range(variant.retries.num_retries + 1):
            yield variant, model, backoff_s(retry, variant.retries.max_delay_s) if retry else 0.0


_NO_TIMEOUT = contextlib.nullcontext()  # stateless, so shared: no Timeout object per call when none is set

NON_STREAMING = "non_streaming_total_ms"
STREAMING_TTFT = "streaming_ttft_ms"
STREAMING_TOTAL = "streaming_total_ms"
ABANDONED = "abandoned: the request was cancelled (gateway.request_timeout_s or the client went away)"
_TIMEOUT_MESSAGES = {NON_STREAMING: "no response within {} ms", STREAMING_TTFT: "no first token within {} ms"}


class Step(Protocol):
    """One try of a model: which variant it serves ("" for an embedding model), the backoff to wait first, and
    the variant's timeouts (the fallback for the model's and the provider's)."""

    @property
    def variant_name(self) -> str: ...
    @property
    def model(self) -> Model: ...
    @property
    def backoff_s(self) -> float: ...
    @property
    def timeouts(self) -> TimeoutsConfig | None: ...
    @property
    def extra_body(self) -> tuple[BodyPatch, ...]: ...  # the variant's own edits (config)
    @property
    def extra_headers(self) -> tuple[HeaderPatch, ...]: ...


S = TypeVar("S", bound=Step)
T = TypeVar("T")


@dataclass(slots=True)
class ModelStep:
    """A try of a model outside any variant (embedding models)."""

    model: Model
    backoff_s: float
    variant_name: str = ""
    timeouts: TimeoutsConfig | None = None
    extra_body: tuple[BodyPatch, ...] = ()
    extra_headers: tuple[HeaderPatch, ...] = ()


@dataclass(slots=True)
class Routed(Generic[S, T]):
    """The call that succeeded: its step, provider, attempt names and start, and what the call returned."""

    step: S
    provider: Provider
    names: tuple[str, str, str, str]
    started_ms: int
    t0: float
    value: T


def for_call(ctx: CallContext, step: Step, model: Model, provider: Provider) -> CallContext:
    """The context with this provider call's extra_body/extra_headers edits, in the order they apply (a later edit
    of the same place wins): the provider's (config), its variant's (config), then the request's entries whose
    filters match the call."""
    config = provider.config
    if not (
        ctx.extra_body
        or ctx.extra_headers
        or config.extra_body
        or config.extra_headers
        or step.extra_body
        or step.extra_headers
    ):
        return ctx
    variant = step.variant_name

    def applies(p: BodyPatch | HeaderPatch) -> bool:
        return (
            (p.variant_name is None or p.variant_name == variant)
            and (p.model_name is None or p.model_name == model.name)
            and (p.provider_name is None or p.provider_name == provider.name)
        )

    return replace(
        ctx,
        extra_body=(*config.extra_body, *step.extra_body, *(p for p in ctx.extra_body if applies(p))),
        extra_headers=(*config.extra_headers, *step.extra_headers, *(p for p in ctx.extra_headers if applies(p))),
    )


def model_steps(model: Model) -> Iterator[ModelStep]:
    """An embedding model's tries: its own `retries` (backoff as for variants)."""
    retries = model.retries
    for retry in range(retries.num_retries + 1):
        yield ModelStep(model, backoff_s(retry, retries.max_delay_s) if retry else 0.0)


async def route(
    steps: Iterable[S],
    timeout_kind: str,
    call: Callable[[S, Provider, CallContext], Awaitable[T]],
    ctx: CallContext,
    attempts: list[Attempt],
    before: Callable[[S], Awaitable[bool]] | None = None,
) -> Routed[S, T]:
    """The one fallback loop: for each step (after its backoff), each of its model's providers in routing order,
    `call` under the provider's timeout of `timeout_kind`, until one succeeds. Every failed call is appended to
    `attempts` (the caller appends the successful one, which only it can describe); so is a call abandoned because
    the request was cancelled (kind `timeout`), before the cancellation goes on. `before`, when given, is awaited
    for each step ahead of its calls and outside their timeouts (a best_of_n_sampling variant runs its candidates
    there, lsd.inference.variant_types.runs); False skips the step.

    Raises AllAttemptsFailed when every call failed. InvalidRequest (a caller mistake) propagates at once."""
    streamed = timeout_kind == STREAMING_TTFT  # the failed attempts of a stream are recorded as streamed
    skipped: dict[str, None] = {}  # variants `before` skipped (their candidates' failures are in attempts)
    for step in steps:
        if before is not None and not await before(step):
            skipped[step.variant_name] = None
            continue
        if step.backoff_s:
            await asyncio.sleep(step.backoff_s)
        model = step.model
        for provider in model.providers:
            names = (step.variant_name, model.name, provider.name, provider.type_name)
            started = int(time.time() * 1000)
            t0 = time.perf_counter()
            timeout_ms = timeout_of(model, provider, step.timeouts, timeout_kind)
            try:
                async with asyncio.timeout(timeout_ms / 1000) if timeout_ms else _NO_TIMEOUT:
                    value = await call(for_provider(step, provider), provider, for_call(ctx, step, model, provider))
            except TimeoutError:
                error: ProviderError = ProviderTimeout(
                    _TIMEOUT_MESSAGES[timeout_kind].format(timeout_ms), provider=provider.name, kind="timeout"
                )
            except ProviderError as exc:
                error = exc
            except asyncio.CancelledError:
                # The request was cancelled during the call (gateway.request_timeout_s, or the client went away):
                # the call is abandoned. Recorded as a timeout for the caller's finishing step; cancellation goes on.
                abandoned = ProviderTimeout(ABANDONED, provider=provider.name, kind="timeout")
                attempts.append(Attempt.failed(names, started, t0, abandoned, streamed=streamed))
                raise
            else:
                return Routed(step, provider, names, started, t0, value)
            attempts.append(Attempt.failed(names, started, t0, error, streamed=streamed))
    raise AllAttemptsFailed(summarise(attempts), skipped=tuple(skipped))


# Provider types that take each other's thought signatures: Claude's are valid on Anthropic's API, Vertex and Bedrock
# (Anthropic's docs), Gemini's on AI Studio and Vertex.
_SIGNATURE_FAMILIES: dict[str, frozenset[str]] = {
    **dict.fromkeys(claude := ("anthropic", "gcp_vertex_anthropic", "aws_bedrock"), frozenset(claude)),
    **dict.fromkeys(gemini := ("google_ai_studio_gemini", "gcp_vertex_gemini"), frozenset(gemini)),
}


def for_provider(step: S, provider: Provider) -> S:
    """`step` as `provider` is sent it: thoughts another vendor's provider type wrote (their `provider_type`) are left
    out, as their signatures are that vendor's (Anthropic refuses a signature it did not issue, Gemini checks its
    own); a thought of the same family (_SIGNATURE_FAMILIES) or of no known type goes. Plain loops over the assistant
    turns only: this runs for every provider call, on conversations of hundreds of messages."""
    request: ProviderRequest | None = getattr(step, "request", None)
    if request is None:
        return step
    own = _SIGNATURE_FAMILIES.get(provider.type_name) or frozenset((provider.type_name,))
    for m in request.messages:
        if m.role == "assistant":
            for b in m.content:
                if type(b) is Thought and b.provider_type is not None and b.provider_type not in own:
                    messages = tuple(
                        Message(kept.role, tuple(c for c in kept.content if not _foreign(c, own)))
                        for kept in request.messages
                    )
                    return replace(step, request=replace(request, messages=messages))  # type: ignore[type-var]
    return step


def _foreign(block: object, own: frozenset[str]) -> bool:
    return type(block) is Thought and block.provider_type is not None and block.provider_type not in own


def tagged(response: ProviderResponse, provider_type: str) -> ProviderResponse:
    """A provider's answer with its thoughts marked as written by `provider_type` (Thought.provider_type)."""
    for block in response.content:  # a plain loop, not any(): this runs for every answer
        if type(block) is Thought:
            break
    else:
        return response
    content = tuple(
        replace(b, provider_type=provider_type) if type(b) is Thought and b.provider_type is None else b
        for b in response.content
    )
    return replace(response, content=content)


def timeout_of(model: Model, provider: Provider, variant: TimeoutsConfig | None, kind: str) -> int | None:
    """The provider's own timeout wins over the model's, which wins over the variant's."""
    for timeouts in (provider.config.timeouts, model.timeouts, variant):
        if timeouts is not None:
            value: int | None = getattr(timeouts, kind)
            if value:
                return value
    return None


def elapsed_ms(t0: float) -> int:
    return int((time.perf_counter() - t0) * 1000)


async def close_stream(iterator: AsyncIterator[StreamChunk]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


def backoff_s(attempt: int, max_delay_s: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, 0.1 * 2^attempt)]."""
    return random.uniform(0, min(max_delay_s, 0.1 * 2**attempt))


def summarise(attempts: Sequence[Attempt]) -> list[AttemptFailure]:
    return [_failure(a, a.error) for a in attempts if a.error is not None]


def _failure(a: Attempt, error: ProviderError) -> AttemptFailure:
    return AttemptFailure(
        a.variant_name,
        a.model_name,
        a.provider_name,
        error.kind,
        error.message,
        error.retryable,
        error.status,
        error.retry_after_s,
        error.provider_message,
        a.provider_type,
        a.raw_request.decode(errors="replace") if isinstance(a.raw_request, bytes) else a.raw_request,
        a.raw_response,
    )
