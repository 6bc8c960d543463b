"""One structured log line per request: request id, route, status, latency and what the handler added.

The front door (lsd.api.front) asks for the request id when a request arrives and calls `finish` when it is
answered. Handlers add fields (inference id, function, variant, model, provider) through `scope_fields(scope)`.
Lines go through a `LineSink` (buffered JSON lines). Prompts, outputs and secrets are never logged.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from starlette.types import Scope

from lsd.api.auth import KEY_SCOPE
from lsd.api.metrics import observe_http
from lsd.auth import redact_keys
from lsd.ids import text, uuid7
from lsd.telemetry.logging import LineSink

if TYPE_CHECKING:
    from lsd.inference.result import InferenceResult
    from lsd.inference.streaming import InferenceStream

_FIELDS = "lsd.log_fields"
_REQUEST_ID_TEXT = re.compile(r"[!-~]{1,200}")
_REQUEST_ID = "lsd.request_id"


def request_id(scope: Scope) -> str | None:
    """The request's id, as its access line and `x-request-id` give it (None before the front door saw it)."""
    value: str | None = scope.get(_REQUEST_ID)
    return value


def scope_fields(scope: Scope) -> dict[str, Any]:
    """The dict this request's log line is built from; handlers add their fields to it."""
    fields: dict[str, Any] = scope.setdefault(_FIELDS, {})
    return fields


def note_result(scope: Scope, result: InferenceResult) -> None:
    """Name an answered inference in the request's log line (every route that runs one)."""
    scope_fields(scope).update(
        inference_id=text(result.inference_id),
        function=result.function_name,
        variant=result.variant_name,
        model=result.model_name,
        provider=result.provider_name,
    )


def note_stream(scope: Scope, stream: InferenceStream) -> None:
    """Name a started stream's inference in the request's log line."""
    scope_fields(scope).update(
        inference_id=text(stream.inference_id),
        function=stream.prepared.function.name,
        variant=stream.variant_name,
        model=stream.model_name,
        provider=stream.provider.name,
        stream=True,
    )


class AccessLog:
    def __init__(self, sink: LineSink) -> None:
        self.sink = sink

    def start(self, scope: Scope) -> str:
        """The request's id (the caller's `x-request-id`, else a new one); opens its log fields."""
        scope[_FIELDS] = {}
        given = _header(scope, b"x-request-id")
        # A caller's id is echoed and logged: only visible ASCII (no spaces or line breaks that would forge fields
        # or lines), else a new one.
        scope[_REQUEST_ID] = request = (
            given if given is not None and _REQUEST_ID_TEXT.fullmatch(given) else text(uuid7())
        )
        return request

    def finish(self, scope: Scope, request_id: str, status: int, started: float) -> None:
        """Count the answered request (lsd_http_requests_total) and write its line."""
        elapsed = time.perf_counter() - started
        observe_http(scope, status, elapsed)
        if self.sink.enabled():
            route = scope.get("route")
            method, path = scope["method"], redact_keys(scope["path"])
            entry = {
                "request_id": request_id,
                "method": method,
                "route": getattr(route, "path", path),
                "status": status,
                "latency_ms": round(elapsed * 1000, 3),
                **scope[_FIELDS],
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
