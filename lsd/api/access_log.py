"""One structured log line per request: request id, route, status, latency and what the handler added.

A pure ASGI middleware (no per-request task or body buffering). Handlers add fields (inference id, function,
variant, model, provider) through `log_fields(request)` (or `scope_fields(scope)`). Lines go through a
`LineSink` (buffered JSON lines). Prompts, outputs and secrets are never logged.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lsd.api.auth import KEY_SCOPE
from lsd.api.metrics import observe_http
from lsd.ids import uuid7
from lsd.telemetry.logging import LineSink

_FIELDS = "lsd.log_fields"


def scope_fields(scope: Scope) -> dict[str, Any]:
    """The dict this request's log line is built from; handlers add their fields to it."""
    fields: dict[str, Any] = scope.setdefault(_FIELDS, {})
    return fields


def log_fields(request: Request[Any]) -> dict[str, Any]:
    return scope_fields(request.scope)


class AccessLog:
    def __init__(self, app: ASGIApp, sink: LineSink) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or str(uuid7())
        fields: dict[str, Any] = {}
        scope[_FIELDS] = fields
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            observe_http(scope, status, time.perf_counter() - started)  # telemetry: lsd_http_requests_total
            if self.sink.enabled():
                route = scope.get("route")
                method, path = scope["method"], scope["path"]
                entry = {
                    "request_id": request_id,
                    "method": method,
                    "route": getattr(route, "path", path),
                    "status": status,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    **fields,
                }
                key_id = scope.get(KEY_SCOPE)  # set by the Guard once a key is verified; never the secret
                if key_id is not None:
                    entry["api_key_public_id"] = key_id
                self.sink.emit(f"{method} {path} {status}", entry)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            decoded: str = value.decode("latin-1")[:200]
            return decoded
    return None
