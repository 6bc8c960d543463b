"""W3C trace context: an incoming `traceparent` becomes the parent of the spans this request records.

Installed only when OTLP trace export is on, so a gateway without tracing pays nothing for it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from lsd.telemetry.tracing import attach, detach, incoming_context


class TraceContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traceparent = tracestate = None
        for key, value in scope.get("headers", ()):
            if key == b"traceparent":
                traceparent = value.decode("latin-1")
            elif key == b"tracestate":
                tracestate = value.decode("latin-1")
        if traceparent is None:
            await self.app(scope, receive, send)
            return
        token = attach(incoming_context(traceparent, tracestate))
        try:
            await self.app(scope, receive, send)
        finally:
            detach(token)
