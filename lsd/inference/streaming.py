"""Streaming inference: the engine's path with chunks. Start the first provider that answers, relay its deltas,
finish when the stream ends.

Errors before the first chunk are handled by the same fallback loop as a plain inference (other providers,
retries, other variants, then an HTTP error): the call `route` makes opens the stream and waits for its first
chunk under the TTFT timeout. After the first chunk the stream is committed to that provider: a failure
mid-stream becomes an error event, and a provider's error event that does not end its stream (a StreamChunk
with `error`) becomes an error event the stream goes on after, as in TensorZero. With the cache on, the call
answers from the cache when it can (the cached answer replayed as chunks, usage 0/0) and a complete streamed
answer is written to it at the end. The inference finishes (lsd.inference.finish) once the stream ends: a
completed or broken stream before its last event (so `async_writes = false` holds as for a plain inference); a
stream abandoned by a client that disconnected at once, without waiting (the provider call is cancelled and
what arrived so far is recorded). A stream that ends early (broken at the provider, or abandoned by its client) is
still priced from what it used: the usage the provider reported so far, and for a count it never reported an estimate
(`estimated_usage`: the rendered prompt's and the streamed answer's characters / 4, tagged `lsd::usage_estimated`),
priced by the provider's `cost` table.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

from lsd import ids
from lsd.errors import CLIENT_GONE, AllAttemptsFailed, LsdError, ProviderError, ProviderTimeout
from lsd.immutable import immutable
from lsd.inference.cache import Cache, cache_key
from lsd.inference.finish import Done
from lsd.inference.raw_entries import RawEntry, raw_responses, raw_usage, with_row_ids
from lsd.inference.recording import Attempt, inference_records, output_to_json
from lsd.inference.request import InferenceRequest
from lsd.inference.routing import (
    ABANDONED,
    STREAMING_TOTAL,
    STREAMING_TTFT,
    Routed,
    close_stream,
    elapsed_ms,
    route,
    timeout_of,
)
from lsd.inference.run import ChatStep, Engine, Prepared
from lsd.inference.stream_answer import Aggregate, estimated_usage
from lsd.inference.tools import ToolParams
from lsd.inference.variant_types.runs import VariantRuns, has_other_types
from lsd.providers.base import CallContext, Provider
from lsd.providers.cost import Pricing
from lsd.providers.http import HttpProvider
from lsd.ratelimit.limiter import Reservation
from lsd.records import Record
from lsd.types import (
    OutputBlock,
    ProviderResponse,
    StreamChunk,
    Thought,
    Usage,
)

# Variant types whose provider call streams; the others' answers are replayed as chunks once complete.
STREAMED_TYPES = ("chat_completion", "dicl")
# The tag an inference gets when a stream that ended early had its usage (partly) estimated: the estimated counts.
USAGE_ESTIMATED_TAG = "lsd::usage_estimated"
# A stream its provider cut (not one its client left): the inference has a row, with a partial answer; the tag names
# the error's kind, and a session counts the inference as failed (lsd.store.statistics).
STREAM_ERROR_TAG = "lsd::stream_error"


@immutable
class Opened:
    """What the call `route` makes for a stream returns: the first chunk (None: the stream ended empty), the rest,
    and the cache key with whether the chunks are the cache's replay. `answered`: for a variant that does not stream
    (best_of_n_sampling, mixture_of_n, chain_of_thought), its provider's whole answer, the chunks replaying the
    variant's answer."""

    first: StreamChunk | None
    rest: AsyncIterator[StreamChunk]
    cache_key: bytes | None = None
    cached: bool = False
    answered: ProviderResponse | None = None


@immutable
class StreamEvent:
    """One event for the client: content deltas, or (last) the inference's usage, cost and finish reason, or an
    error (the stream goes on after it unless it was the provider's last word)."""

    content: tuple[OutputBlock, ...] = ()
    usage: Usage | None = None
    finish_reason: str | None = None
    cost: float | None = None
    error: LsdError | None = None
    raw_chunk: str | None = None  # include_raw_response: the provider's chunk these deltas came from
    raw_usage: tuple[RawEntry, ...] | None = None  # include_raw_usage (the last event)
    raw_response: tuple[RawEntry, ...] | None = None  # include_raw_response: earlier model inferences (last event)

    @property
    def trailing(self) -> bool:
        """Usage (and finish reason) with no content: what may wait for the stream's end before it is sent."""
        return self.usage is not None and not self.content and self.error is None


class InferenceStream:
    """An inference whose first chunk has arrived. Iterate `events()` exactly once."""

    def __init__(
        self,
        engine: Engine,
        prepared: Prepared,
        routed: Routed[ChatStep, Opened],
        tools: ToolParams | None,
        attempts: list[Attempt],
        reservation: Reservation | None = None,
        cache: Cache | None = None,
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.prepared = prepared
        self.step = routed.step
        self.provider = routed.provider
        self.routed = routed
        self.tools = tools
        self.attempts = attempts
        self.reservation = reservation
        self.ttft_ms = elapsed_ms(routed.t0)
        total_ms = timeout_of(self.step.model, self.provider, self.step.variant.timeouts, STREAMING_TOTAL)
        self.total_deadline = routed.t0 + total_ms / 1000 if total_ms else None
        self.inference_id = prepared.inference_id
        self.episode_id = prepared.episode_id
        self.variant_name = self.step.variant.name
        self.model_name = self.step.model.name
        self.function_type = prepared.function.type
        self.cached = routed.value.cached
        self.raw_chunks = prepared.request.include_raw_response
        self.raw_entries: tuple[tuple[RawEntry, ...] | None, tuple[RawEntry, ...] | None] = (None, None)

    def _client_content(self, chunk: StreamChunk) -> tuple[OutputBlock, ...]:
        """A chunk's deltas as the client sees them: a JSON function streams no thought deltas."""
        if self.function_type == "json":
            return tuple(b for b in chunk.content if not isinstance(b, Thought))
        return chunk.content

    async def events(self) -> AsyncIterator[StreamEvent]:
        aggregate = Aggregate()
        error: ProviderError | None = None
        opened = self.routed.value
        rest = opened.rest
        untimed = self.total_deadline is None  # no limit: no timer, and no coroutine, per chunk
        thoughts = self.function_type != "json"  # a JSON function streams no thought deltas
        # The next chunk: the provider generator's own awaitable when the stream has no time limit (no wrapper
        # object per chunk), else under the limit's timer. Either raises StopAsyncIteration at the end.
        following = rest.__anext__ if untimed else functools.partial(self._next, rest)
        raw_chunks = self.raw_chunks
        in_band: ProviderError | None = None  # the provider's last error event that did not end its stream
        try:
            chunk = opened.first
            while chunk is not None:
                aggregate.add(chunk)
                if chunk.error is not None:
                    aggregate.errors += 1
                    in_band = ProviderError(chunk.error, provider=self.provider.name, retryable=False)
                    in_band.provider_type = self.provider.type_name
                    yield StreamEvent(error=in_band)
                elif content := chunk.content if thoughts else self._client_content(chunk):
                    yield StreamEvent(content, raw_chunk=chunk.raw) if raw_chunks else StreamEvent(content)
                try:
                    chunk = await following()
                except StopAsyncIteration:
                    chunk = None
        except ProviderError as exc:
            error = exc
        except BaseException as exc:
            # The client went away (the request cancelled, this generator closed), or a bug: finish with what
            # arrived, without waiting (this runs while the request is being cancelled), and let it go on. The
            # provider's generator is closed by the event loop's async-generator finaliser, ending its HTTP call.
            gone = isinstance(exc, asyncio.CancelledError | GeneratorExit)
            message = "client disconnected mid-stream" if gone else f"stream failed: {exc!r}"
            ended = ProviderError(
                message,
                provider=self.provider.name,
                kind=CLIENT_GONE if gone else "internal",
                retryable=False,
            )
            if gone and in_band is not None:
                # The client left after the provider's error event (the Anthropic and Gemini routes end their
                # stream on one): the provider cut the answer, and the inference counts as failed.
                ended = in_band
            self.engine.finisher.finish_now(self._done(aggregate, ended))
            raise
        # The stream ended, complete or broken at the provider: finish before the last event, so that with
        # async_writes = false its rows are committed before the client reads the end of the stream. Finishing
        # (the rows, the metrics) is the longest the loop stays in one stream: the other streams' tokens that
        # arrived meanwhile go out before it and after it, not behind it.
        done = self._done(aggregate, error, in_band)
        try:
            await let_reads_through()
        except asyncio.CancelledError:  # the client went away just now: the answer is whole, record it so
            self.engine.finisher.finish_now(done)
            raise
        try:
            await self.engine.finisher.finish(done)
        except LsdError as exc:  # the rows could not be committed: the content is out, say so in the stream
            yield StreamEvent(error=exc)
        await let_reads_through()
        if error is None and aggregate.errors == 0:
            await self._cache_put(aggregate)
        if error is not None:
            error.provider_type = self.provider.type_name
            yield StreamEvent(error=error)
        raw_usage_entries, raw_response_entries = self.raw_entries
        yield StreamEvent(
            usage=aggregate.usage, finish_reason=aggregate.finish_reason, cost=aggregate.cost,
            raw_usage=raw_usage_entries, raw_response=raw_response_entries,
        )  # fmt: skip

    async def _cache_put(self, aggregate: Aggregate) -> None:
        """Write a complete streamed answer to the cache (when the request writes it and it did not come from it)."""
        key = self.routed.value.cache_key
        if self.cache is None or key is None or self.cached or not self.cache.options.write:
            return
        response = ProviderResponse(
            content=aggregate.blocks(self.provider.type_name),
            usage=aggregate.usage,
            finish_reason=aggregate.finish_reason,  # type: ignore[arg-type]
            raw_request=aggregate.raw_request or "",
            raw_response="\n".join(aggregate.raw),
        )
        await self.cache.put(key, self.model_name, self.provider.name, response)

    async def _next(self, rest: AsyncIterator[StreamChunk]) -> StreamChunk:
        """The next chunk within the stream's total time limit; StopAsyncIteration at the end."""
        deadline = self.total_deadline
        assert deadline is not None  # only a stream with a limit reads its chunks here
        try:
            async with asyncio.timeout(deadline - time.perf_counter()):
                return await anext(rest)
        except TimeoutError:
            raise ProviderTimeout(
                "stream exceeded its total time limit", provider=self.provider.name, kind="timeout"
            ) from None

    def _attempt(self, aggregate: Aggregate, error: ProviderError | None) -> Attempt:
        routed = self.routed
        answered = routed.value.answered
        if answered is not None and error is None:  # a replayed answer: the call was the evaluator's or fuser's
            return Attempt.succeeded(routed.names, routed.started_ms, routed.t0, answered)
        elapsed = time.perf_counter() - routed.t0
        return Attempt(
            *routed.names,
            started_ms=routed.started_ms,
            latency_ms=int(elapsed * 1000),
            usage=aggregate.usage,
            cost=aggregate.cost,
            finish_reason=aggregate.finish_reason,
            raw_request=aggregate.raw_request,
            raw_response="\n".join(aggregate.raw) or None,
            request_headers=aggregate.request_headers,
            api_key_sha256=aggregate.api_key_sha256,
            error=error,
            ttft_ms=self.ttft_ms,
            cached=self.cached,
            streamed=True,
            t0=routed.t0,
            elapsed_s=elapsed,
        )

    def _done(self, aggregate: Aggregate, error: ProviderError | None, in_band: ProviderError | None = None) -> Done:
        """The rows of the stream as it ended: `error` the error that ended it, `in_band` the provider's last error
        event it read on after (the inference is marked `lsd::stream_error` for either: its client saw an error)."""
        p, step, engine = self.prepared, self.step, self.engine
        if error is not None and not aggregate.estimated:  # ended early: priced from what it used
            reported = error.reported_usage if isinstance(error.reported_usage, Usage) else aggregate.counted
            if aggregate.usage == Usage() and reported is not None:
                # The input the provider counted before the stream broke, or before the client went away (its
                # output count then is a start value, such as Anthropic's 1 in message_start: the answer's
                # characters estimate it better).
                aggregate.usage = replace(reported, output_tokens=None)
            aggregate.usage, aggregate.estimated = estimated_usage(
                aggregate.usage, step.request, aggregate.answer_chars()
            )
            if aggregate.cost is None:
                aggregate.cost = early_cost(self.provider, aggregate.usage)
        marks = {USAGE_ESTIMATED_TAG: ",".join(aggregate.estimated)} if aggregate.estimated else {}
        if error is not None and error.kind != CLIENT_GONE:
            marks[STREAM_ERROR_TAG] = error.kind
        elif in_band is not None:
            marks[STREAM_ERROR_TAG] = in_band.kind
        if marks:
            p = replace(p, request=replace(p.request, tags={**p.request.tags, **marks}))
        attempt = self._attempt(aggregate, error)

        def output() -> object:
            return output_to_json(*engine.output(p, aggregate.blocks(self.provider.type_name), self.tools))

        def rows() -> list[Record]:
            row = engine.row(
                p, step.variant, step.request, self.tools, output(), aggregate.usage, aggregate.cost,
                aggregate.finish_reason, ttft_ms=self.ttft_ms, cached=self.cached,
            )  # fmt: skip
            return inference_records(row)

        attempts = [*self.attempts, attempt]
        request = p.request
        if request.include_raw_usage or request.include_raw_response:
            with_row_ids(attempts)  # the last event names the rows
            self.raw_entries = (
                raw_usage(attempts) if request.include_raw_usage else None,
                raw_responses(attempts[:-1]) if request.include_raw_response else None,  # the stream's: raw_chunk
            )
        return p.done(
            attempts,
            self.reservation,
            usage=aggregate.usage,
            cost=aggregate.cost,
            finish_reason=aggregate.finish_reason,
            error=f"{error.kind}: {error.message}" if error is not None else None,
            stream=True,
            ttft_s=self.routed.t0 - p.started + self.ttft_ms / 1000,
            rows=rows,
            target=engine.target(p, step.variant.name),
            request=step.request,
            output=output,
        )


async def let_reads_through() -> None:
    """Two passes of the event loop, so that the reads that arrived while this task ran (other streams' tokens)
    are relayed before it goes on. One is not enough on uvloop: the task resumes ahead of the tasks that the
    loop's poll for I/O wakes in the same pass."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def early_cost(provider: Provider, usage: Usage) -> float | None:
    """The cost of a stream that ended before its provider priced it: its `cost` table applied to `usage` (None
    without one: the list form of `cost` reads the provider's last events, which never came)."""
    if isinstance(provider, HttpProvider) and isinstance(provider.pricing, Pricing):
        return provider.pricing.price(usage)
    return None


def _opener(
    cache: Cache | None, runs: VariantRuns | None = None
) -> Callable[[ChatStep, Provider, CallContext], Awaitable[Opened]]:
    """The call `route` makes for a stream: answer from the cache when it holds this request (replayed as chunks),
    else start the provider's stream and wait for its first chunk. A dicl variant's request is the one `runs`
    prepared (with its examples); a best_of_n_sampling, mixture_of_n or chain_of_thought variant does not stream:
    its call is a plain one and its whole answer is replayed as chunks (as TensorZero does for best-of-n)."""

    async def open_stream(step: ChatStep, provider: Provider, ctx: CallContext) -> Opened:
        if runs is not None:
            step = replace(step, request=runs.request(step))
            if step.variant.type not in STREAMED_TYPES:
                response = await provider.infer(replace(step.request, stream=False), ctx)
                answer = runs.answer(step.variant, response, recorded=False)
                return Opened(*_replay(answer), answered=response)
        key = cache_key(provider, step.request, ctx) if cache is not None else None
        if cache is not None and key is not None and cache.options.read:
            hit = await cache.get(key)
            if hit is not None:
                return Opened(*_replay(hit), cache_key=key, cached=True)
        first, rest = await _open(step, provider, ctx)
        return Opened(first, rest, cache_key=key)

    return open_stream


def _replay(hit: ProviderResponse) -> tuple[StreamChunk, AsyncIterator[StreamChunk]]:
    """A cached answer as a stream: its blocks as deltas, then the last chunk (usage 0/0, cost 0)."""
    chunks = [StreamChunk(content=(block,)) for block in hit.content]
    chunks.append(StreamChunk(usage=hit.usage, finish_reason=hit.finish_reason, cost=hit.cost))

    async def rest() -> AsyncIterator[StreamChunk]:
        for chunk in chunks[1:]:
            yield chunk

    return chunks[0], rest()


async def _open(
    step: ChatStep, provider: Provider, ctx: CallContext
) -> tuple[StreamChunk | None, AsyncIterator[StreamChunk]]:
    """Start the provider's stream and wait for its first chunk (None: it ended empty). An error event before any
    content fails the attempt, so that routing falls back as for any error before the first chunk. The other
    streams' tokens that arrived while this request was parsed and routed go out before its call is sent."""
    await let_reads_through()
    iterator = aiter(provider.stream(step.request, ctx))
    try:
        first: StreamChunk | None = await anext(iterator)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await close_stream(iterator)
        raise
    if first is not None and first.error is not None:
        await close_stream(iterator)
        raise ProviderError(first.error, provider=provider.name, kind="server_error", raw_response=first.raw or None)
    return first, iterator


async def start_stream(engine: Engine, request: InferenceRequest) -> InferenceStream:
    """Open a stream: like Engine.infer up to the first chunk (raising AllAttemptsFailed if none comes). The request
    was read and parsed in the same pass of the loop: the other streams' tokens go first."""
    await let_reads_through()
    p = await engine.begin(request)
    tools = engine.tool_params(p)
    reservation = await engine.admit(p)
    attempts: list[Attempt] = []
    cache = Cache(engine.database, request.cache) if engine.database and request.cache.enabled != "off" else None
    ctx = engine.call_context(request)
    runs = VariantRuns(engine, p, tools, attempts, ctx) if has_other_types(p.function) else None
    try:
        routed = await route(
            engine.plan(p, tools, stream=True), STREAMING_TTFT, _opener(cache, runs), ctx, attempts,
            runs.before if runs else None,
        )  # fmt: skip
    except AllAttemptsFailed as exc:
        exc.inference = (ids.text(p.inference_id), p.function.name)
        engine.finisher.finish_now(p.done(attempts, reservation, stream=True, error="all attempts failed"))
        raise
    except asyncio.CancelledError:  # cut before the first chunk: route recorded the abandoned call
        engine.finisher.finish_now(p.done(attempts, reservation, stream=True, error=ABANDONED))
        raise
    if runs is not None:  # the rows record what was sent (a dicl variant's examples included)
        routed.step = replace(routed.step, request=runs.request(routed.step))
    return InferenceStream(engine, p, routed, tools, attempts, reservation, cache)
