"""OTLP trace export: a span pipeline owned by the runtime (never the process-global provider), batched export.

Spans are recorded after the fact from timings the engine measures anyway: `Tracing.record_span` builds the
SDK's finished-span object (ReadableSpan) directly and hands it to the BatchSpanProcessor, which costs ~3 µs
a span where the SDK's start_span/end path costs ~16. A gateway with tracing off builds nothing at all. Export
runs on the BatchSpanProcessor's thread: a slow or dead collector fills (then overflows) its queue and never
blocks or fails a request. Every request is traced unless the caller's `traceparent` says it is not sampled.
The exporter's endpoint, headers, timeout and protocol follow the standard OTEL_EXPORTER_OTLP_* variables
unless `[gateway.export.otlp.traces]` sets them.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.re import parse_env_headers

from lsd import __version__

DEFAULT_PROTOCOL = "http/protobuf"
SHUTDOWN_TIMEOUT_MS = 5000
_PROPAGATOR = TraceContextTextMapPropagator()


def resolve_protocol(configured: str | None) -> str:
    """The config's protocol, else OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL."""
    return (
        configured
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or DEFAULT_PROTOCOL
    )


def merged_headers(extra: Mapping[str, str]) -> dict[str, str] | None:
    """The OTEL_EXPORTER_OTLP_(TRACES_)HEADERS headers with the config's extra_headers on top; None when the
    config adds none (then the exporter reads the variables itself)."""
    if not extra:
        return None
    env = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or os.environ.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    return {**parse_env_headers(env, liberal=True), **extra}


_OK = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class Tracing:
    """The span pipeline. No I/O in the constructor; `open()` builds it, `close()` flushes and stops it."""

    def __init__(
        self,
        *,
        protocol: str | None = None,
        endpoint: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        include_content: bool = False,
        exporter: SpanExporter | None = None,
    ) -> None:
        self.protocol = resolve_protocol(protocol)
        if self.protocol not in ("http/protobuf", "grpc"):
            raise ValueError(f"unsupported OTLP protocol {self.protocol!r} (expected http/protobuf or grpc)")
        self.endpoint = endpoint
        self.extra_headers = dict(extra_headers or {})
        self.include_content = include_content
        self._exporter = exporter
        self._processor: BatchSpanProcessor | None = None
        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES apply; the service is "lsd" unless they name it.
        resource = Resource.create({"service.version": __version__})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "lsd"}))
        self._resource = resource
        self._scope = InstrumentationScope("lsd", __version__)

    @property
    def is_open(self) -> bool:
        return self._processor is not None

    def open(self) -> None:
        headers = merged_headers(self.extra_headers)
        exporter = self._exporter
        if exporter is None:
            if self.protocol == "grpc":
                exporter = GrpcSpanExporter(endpoint=self.endpoint, headers=headers)
            else:
                exporter = HttpSpanExporter(endpoint=self.endpoint, headers=headers)
        self._processor = BatchSpanProcessor(exporter)  # OTEL_BSP_* variables tune it

    async def close(self) -> None:
        """Export what is queued (bounded by SHUTDOWN_TIMEOUT_MS), off the event loop."""
        processor, self._processor = self._processor, None
        if processor is not None:
            await asyncio.to_thread(processor.force_flush, SHUTDOWN_TIMEOUT_MS)
            await asyncio.to_thread(processor.shutdown)

    def force_flush(self, timeout_ms: int = SHUTDOWN_TIMEOUT_MS) -> bool:
        return self._processor.force_flush(timeout_ms) if self._processor is not None else True

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
    ) -> SpanContext | None:
        """Queue a finished span for export; returns its context (the parent of its children), or None when
        tracing is closed or the parent is not sampled."""
        processor = self._processor
        if processor is None or (parent is not None and not parent.trace_flags.sampled):
            return None
        trace_id = parent.trace_id if parent is not None else random.getrandbits(128)
        span_context = SpanContext(trace_id, random.getrandbits(64), False, _SAMPLED)
        processor.on_end(
            ReadableSpan(
                name=name,
                context=span_context,
                parent=parent,
                resource=self._resource,
                attributes=attributes,
                kind=kind,
                status=_OK if error is None else Status(StatusCode.ERROR, error),
                start_time=start_ns,
                end_time=end_ns,
                instrumentation_scope=self._scope,
            )
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
