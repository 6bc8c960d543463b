"""OTLP trace export: a TracerProvider owned by the runtime (never the process-global one), batched export.

Spans are built after the fact from timings the engine measures anyway (`record_span` with explicit start and
end), so a request pays for tracing only when it is enabled, and then only once per inference. Export runs on
the BatchSpanProcessor's thread: a slow or dead collector fills (then overflows) its queue and never blocks or
fails a request. The exporter's endpoint, headers, timeout and protocol follow the standard OTEL_EXPORTER_OTLP_*
variables unless `[gateway.export.otlp.traces]` sets them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
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


class Tracing:
    """The trace pipeline. No I/O in the constructor; `open()` builds it, `close()` flushes and stops it."""

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
        self._provider: TracerProvider | None = None
        self.tracer: Tracer | None = None

    def open(self) -> None:
        headers = merged_headers(self.extra_headers)
        exporter = self._exporter
        if exporter is None:
            if self.protocol == "grpc":
                exporter = GrpcSpanExporter(endpoint=self.endpoint, headers=headers)
            else:
                exporter = HttpSpanExporter(endpoint=self.endpoint, headers=headers)
        # Resource.create adds OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over these defaults.
        resource = Resource.create({"service.name": "lsd", "service.version": __version__})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        self._provider = provider
        self.tracer = provider.get_tracer("lsd", __version__)

    async def close(self) -> None:
        """Export what is queued (bounded by SHUTDOWN_TIMEOUT_MS), off the event loop."""
        provider, self._provider, self.tracer = self._provider, None, None
        if provider is not None:
            await asyncio.to_thread(provider.force_flush, SHUTDOWN_TIMEOUT_MS)
            await asyncio.to_thread(provider.shutdown)

    def force_flush(self, timeout_ms: int = SHUTDOWN_TIMEOUT_MS) -> bool:
        return self._provider.force_flush(timeout_ms) if self._provider is not None else True


class Clock:
    """Turns perf_counter() stamps into the epoch nanoseconds spans carry (one wall-clock read per use)."""

    __slots__ = ("_offset_ns",)

    def __init__(self) -> None:
        self._offset_ns = time.time_ns() - int(time.perf_counter() * 1e9)

    def ns(self, perf: float) -> int:
        return self._offset_ns + int(perf * 1e9)


def record_span(
    tracer: Tracer,
    name: str,
    parent: Context | None,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, Any],
    *,
    error: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Context:
    """A finished span with the given timing; returns the context its children take as parent."""
    span: Span = tracer.start_span(name, context=parent, kind=kind, attributes=attributes, start_time=start_ns)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=end_ns)
    return trace.set_span_in_context(span, parent)


def incoming_context(traceparent: str | None, tracestate: str | None) -> Context:
    """The caller's trace (W3C `traceparent`/`tracestate`), or an empty context for a new trace."""
    carrier = {"traceparent": traceparent} if traceparent else {}
    if traceparent and tracestate:
        carrier["tracestate"] = tracestate
    return _PROPAGATOR.extract(carrier)


def current_context() -> Context:
    return otel_context.get_current()


def attach(ctx: Context) -> object:
    return otel_context.attach(ctx)


def detach(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]
