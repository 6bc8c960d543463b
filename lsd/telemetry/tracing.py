"""Tracing on the request path: W3C trace context in, finished spans out to a span pipeline (OpenTelemetry's API).

Spans are recorded after the fact from timings the engine measures anyway: `Tracing.record_span` hands a finished
span to its `SpanPipeline`. A gateway with tracing off builds nothing at all, and does not even load the SDK or the
exporters: those live in lsd.telemetry.otlp, which `lsd.runtime.build_tracing` imports only when
`[gateway.export.otlp.traces] enabled = true` (this module needs only the light OpenTelemetry API). Every request is
traced unless the caller's `traceparent` says it is not sampled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

SHUTDOWN_TIMEOUT_MS = 5000
log = logging.getLogger("lsd.tracing")
_PROPAGATOR = TraceContextTextMapPropagator()
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class SpanPipeline(Protocol):
    """Where finished spans go (lsd.telemetry.otlp.OtlpPipeline). `open()` may start a thread; `force_flush` and
    `shutdown` block (Tracing runs them off the event loop); `export` must not block."""

    def open(self) -> None: ...

    def export(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, Any],
        error: str | None,
        kind: SpanKind,
    ) -> None: ...

    def force_flush(self, timeout_ms: int) -> bool: ...

    def shutdown(self) -> None: ...


class Tracing:
    """The span pipeline as the request path sees it. No I/O in the constructor; `open()` starts the pipeline,
    `close()` flushes and stops it."""

    def __init__(self, pipeline: SpanPipeline, *, include_content: bool = False) -> None:
        self.pipeline = pipeline
        self.include_content = include_content
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        self.pipeline.open()
        self._open = True

    async def close(self) -> None:
        """Export what is queued and shut the exporter down, off the event loop, giving up after
        SHUTDOWN_TIMEOUT_MS in all: a collector that accepts a connection and never answers held a worker's exit for
        the exporter's own timeouts (10 s and more). The work goes on in a daemon thread, which exit ends."""
        if not self._open:
            return
        self._open = False
        done = threading.Event()

        def finish() -> None:
            try:
                self.pipeline.force_flush(SHUTDOWN_TIMEOUT_MS)
                self.pipeline.shutdown()
            finally:
                done.set()

        threading.Thread(target=finish, name="lsd-trace-shutdown", daemon=True).start()
        if not await asyncio.to_thread(done.wait, SHUTDOWN_TIMEOUT_MS / 1000):
            log.warning(
                "tracing: spans not exported within %d ms at shutdown (the collector did not answer)",
                SHUTDOWN_TIMEOUT_MS,
            )

    def force_flush(self, timeout_ms: int = SHUTDOWN_TIMEOUT_MS) -> bool:
        return self.pipeline.force_flush(timeout_ms) if self._open else True

    def parent(self, ctx: Context | None = None) -> SpanContext | None:
        """The caller's span context (from `traceparent`, attached by the API's TraceContext middleware), or None
        for a new trace. `record_span` records nothing under a caller's span that is not sampled."""
        span_context = trace.get_current_span(ctx).get_span_context()
        return span_context if span_context.is_valid else None

    def record_span(
        self,
        name: str,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, Any],
        *,
        error: str | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        client: bool = False,
    ) -> SpanContext | None:
        """Queue a finished span for export; returns its context (the parent of its children), or None when
        tracing is closed or the parent is not sampled."""
        if not self._open or (parent is not None and not parent.trace_flags.sampled):
            return None
        trace_id = parent.trace_id if parent is not None else random.getrandbits(128)
        span_context = SpanContext(trace_id, random.getrandbits(64), False, _SAMPLED)
        # `client`: a call out of the process (a provider's API), which the GenAI conventions make a CLIENT span.
        self.pipeline.export(
            name, span_context, parent, start_ns, end_ns, attributes, error, SpanKind.CLIENT if client else kind
        )
        return span_context


class Clock:
    """Turns perf_counter() stamps into the epoch nanoseconds spans carry (one wall-clock read per use)."""

    __slots__ = ("_offset_ns",)

    def __init__(self) -> None:
        self._offset_ns = time.time_ns() - int(time.perf_counter() * 1e9)

    def ns(self, perf: float) -> int:
        return self._offset_ns + int(perf * 1e9)


def incoming_context(traceparent: str | None, tracestate: str | None) -> Context:
    """The caller's trace (W3C `traceparent`/`tracestate`), or an empty context for a new trace."""
    carrier = {"traceparent": traceparent} if traceparent else {}
    if traceparent and tracestate:
        carrier["tracestate"] = tracestate
    return _PROPAGATOR.extract(carrier)


def attach(ctx: Context) -> object:
    return otel_context.attach(ctx)


def detach(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]
