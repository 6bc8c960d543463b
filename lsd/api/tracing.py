"""W3C trace context: an incoming `traceparent` becomes the parent of the spans this request records.

Called by the front door only when OTLP trace export is on, so a gateway without tracing pays nothing for it.
"""

from __future__ import annotations

from starlette.types import Scope

from lsd.telemetry.tracing import attach, incoming_context


def continue_trace(scope: Scope) -> object | None:
    """Attach the caller's trace context (from `traceparent`/`tracestate`); returns the token to detach, or None
    when the request carries none."""
    traceparent = tracestate = None
    for key, value in scope.get("headers", ()):
        if key == b"traceparent":
            traceparent = value.decode("latin-1")
        elif key == b"tracestate":
            tracestate = value.decode("latin-1")
    if traceparent is None:
        return None
    return attach(incoming_context(traceparent, tracestate))
