"""Streaming inference: start the first provider that answers, relay its deltas, record when the stream ends.

Errors before the first chunk are handled like non-streaming ones (other providers, retries, other variants,
then an HTTP error). After the first chunk the stream is committed to that provider: a failure mid-stream
becomes an error event. The rows are written once the stream ends — completed, failed, or abandoned by a
client that disconnected (then the provider call is cancelled and what arrived so far is recorded).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from lsd.config.model import VariantConfig
from lsd.errors import AllAttemptsFailed, ProviderError, ProviderTimeout
from lsd.immutable import immutable
from lsd.inference.models import Model
from lsd.inference.recording import Attempt, attempt_records, inference_records
from lsd.inference.request import InferenceRequest
from lsd.inference.routing import OpenStream, open_stream, summarise
from lsd.inference.run import Engine, Prepared, settle
from lsd.inference.telemetry import InferenceTelemetry
from lsd.inference.tools import ToolParams
from lsd.ratelimit.limiter import Reservation
from lsd.records import Record
from lsd.types import OutputBlock, ProviderRequest, StreamChunk, Text, Thought, ToolCall, Usage


@immutable
class StreamEvent:
    """One event for the client: content deltas, or (last) usage and finish reason, or an error."""

    content: tuple[OutputBlock, ...] = ()
    usage: Usage | None = None
    finish_reason: str | None = None
    error: str | None = None

    @property
    def trailing(self) -> bool:
        """Usage (and finish reason) with no content: what may wait for the stream's end before it is sent."""
        return self.usage is not None and not self.content and self.error is None


@dataclass
class _Aggregate:
    """The whole answer, put back together from deltas."""

    text: list[str] = field(default_factory=list)
    thought: list[str] = field(default_factory=list)
    tool_calls: dict[str, list[str]] = field(default_factory=dict)  # id -> [name, arguments...]
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    cost: float | None = None
    raw: list[str] = field(default_factory=list)
    raw_request: str | None = None
    request_headers: dict[str, str] | None = None
    api_key_sha256: str | None = None

    def add(self, chunk: StreamChunk) -> None:
        for block in chunk.content:
            if isinstance(block, Text):
                self.text.append(block.text)
            elif isinstance(block, ToolCall):
                parts = self.tool_calls.setdefault(block.id, [block.name])
                if block.name and not parts[0]:
                    parts[0] = block.name
                parts.append(block.arguments)
            elif isinstance(block, Thought) and block.text:
                self.thought.append(block.text)
        if chunk.usage is not None:
            self.usage = self.usage + chunk.usage
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.cost is not None:
            self.cost = chunk.cost
        if chunk.raw:
            self.raw.append(chunk.raw)
        if chunk.raw_request is not None:
            self.raw_request = chunk.raw_request
        if chunk.request_headers is not None:
            self.request_headers = dict(chunk.request_headers)
        if chunk.api_key_sha256 is not None:
            self.api_key_sha256 = chunk.api_key_sha256

    def blocks(self) -> tuple[OutputBlock, ...]:
        out: list[OutputBlock] = []
        if self.thought:
            out.append(Thought("".join(self.thought)))
        if self.text:
            out.append(Text("".join(self.text)))
        out.extend(ToolCall(id, parts[0], "".join(parts[1:])) for id, parts in self.tool_calls.items())
        return tuple(out)


class InferenceStream:
    """An inference whose first chunk has arrived. Iterate `events()` exactly once."""

    def __init__(
        self,
        engine: Engine,
        prepared: Prepared,
        variant: VariantConfig,
        model: Model,
        provider_request: ProviderRequest,
        tools: ToolParams | None,
        opened: OpenStream,
        attempts: list[Attempt],
        reservation: Reservation | None = None,
    ) -> None:
        self.engine = engine
        self.prepared = prepared
        self.variant = variant
        self.model = model
        self.provider_request = provider_request
        self.tools = tools
        self.opened = opened
        self.attempts = attempts
        self.reservation = reservation
        self.inference_id = prepared.inference_id
        self.episode_id = prepared.episode_id
        self.variant_name = variant.name
        self.function_type = prepared.function.type

    async def events(self) -> AsyncIterator[StreamEvent]:
        aggregate = _Aggregate()
        error: ProviderError | None = None
        opened = self.opened
        try:
            chunk = opened.first
            while chunk is not None:
                aggregate.add(chunk)
                if chunk.content:
                    yield StreamEvent(content=chunk.content)
                chunk = await self._next(opened)
        except ProviderError as exc:
            error = exc
        except (asyncio.CancelledError, GeneratorExit):
            error = ProviderError(
                "client disconnected mid-stream",
                provider=opened.provider.name,
                kind="client_disconnected",
                retryable=False,
            )
            raise
        finally:
            # Queued, never awaited: this also runs while the request is being cancelled. The provider's
            # generator is closed by the event loop's async-generator finaliser, which ends its HTTP call.
            settle(self.reservation, aggregate.usage, aggregate.cost)
            attempt = self._attempt(aggregate, error)
            if not self.prepared.request.dryrun:
                self.engine.remember(self.prepared, self.variant.name)
                if self.engine.recorder.enabled:
                    self.engine.recorder.submit(self.records(aggregate, attempt))
            if self.engine.telemetry is not None:  # telemetry: metrics and spans, once per inference
                self._telemetry(self.engine.telemetry, aggregate, attempt)
        if error is not None:
            yield StreamEvent(error=error.message)
        yield StreamEvent(usage=aggregate.usage, finish_reason=aggregate.finish_reason)

    async def _next(self, opened: OpenStream) -> StreamChunk | None:
        remaining = None if opened.total_deadline is None else opened.total_deadline - time.perf_counter()
        try:
            async with asyncio.timeout(remaining):
                return await anext(opened.rest)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise ProviderTimeout(
                "stream exceeded its total time limit", provider=opened.provider.name, kind="timeout"
            ) from None

    def _attempt(self, aggregate: _Aggregate, error: ProviderError | None) -> Attempt:
        opened = self.opened
        elapsed = time.perf_counter() - opened.t0
        return Attempt(
            *opened.names,
            started_ms=opened.started_ms,
            latency_ms=int(elapsed * 1000),
            usage=aggregate.usage,
            cost=aggregate.cost,
            finish_reason=aggregate.finish_reason,
            raw_request=aggregate.raw_request,
            raw_response="\n".join(aggregate.raw) or None,
            request_headers=aggregate.request_headers,
            api_key_sha256=aggregate.api_key_sha256,
            error=error,
            ttft_ms=opened.ttft_ms,
            streamed=True,
            t0=opened.t0,
            elapsed_s=elapsed,
        )

    def _telemetry(self, telemetry: InferenceTelemetry, aggregate: _Aggregate, attempt: Attempt) -> None:
        opened, p = self.opened, self.prepared
        telemetry.finished(
            p,
            [*self.attempts, attempt],
            stream=True,
            usage=aggregate.usage,
            cost=aggregate.cost,
            finish_reason=aggregate.finish_reason,
            error=_error_text(attempt),
            ttft_s=opened.t0 - p.started + opened.ttft_ms / 1000,
            request=self.provider_request,
            output=self.engine.output_of(p, aggregate.blocks(), self.tools) if telemetry.include_content else None,
        )

    def records(self, aggregate: _Aggregate, attempt: Attempt) -> list[Record]:
        opened = self.opened
        content = aggregate.blocks()
        output = self.engine.output_of(self.prepared, content, self.tools)
        row = self.engine.row(
            self.prepared,
            self.variant,
            self.provider_request,
            self.tools,
            output,
            aggregate.usage,
            aggregate.cost,
            aggregate.finish_reason,
            ttft_ms=opened.ttft_ms,
        )
        p = self.prepared
        return inference_records(row) + attempt_records(
            p.inference_id, p.function.type, p.function.name, [*self.attempts, attempt]
        )


async def start_stream(engine: Engine, request: InferenceRequest) -> InferenceStream:
    """Open a stream: like Engine.infer up to the first chunk (raising AllAttemptsFailed if none comes)."""
    p = engine.prepare(request)
    tools = engine.tool_params(p)
    reservation = await engine.admit(p)
    attempts: list[Attempt] = []
    ctx = engine.call_context(request)
    for variant, model, backoff_s, provider_request in engine.plan(p, tools, stream=True):
        if backoff_s:
            await asyncio.sleep(backoff_s)
        try:
            opened = await open_stream(model, variant, provider_request, ctx, attempts)
        except ProviderError:
            continue
        return InferenceStream(engine, p, variant, model, provider_request, tools, opened, attempts, reservation)
    settle(reservation, Usage(0, 0), 0.0)
    if not request.dryrun:
        engine.recorder.submit(attempt_records(p.inference_id, p.function.type, p.function.name, attempts))
    if engine.telemetry is not None:  # telemetry
        engine.telemetry.finished(p, attempts, stream=True, error="all attempts failed")
    raise AllAttemptsFailed(summarise(attempts))


def _error_text(attempt: Attempt) -> str | None:
    return f"{attempt.error.kind}: {attempt.error.message}" if attempt.error is not None else None
