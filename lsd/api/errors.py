"""The one place an LsdError becomes an HTTP response: its status, and its body in the wire format of the route
(lsd.api.tensorzero_wire, or lsd.api.openai_wire under /openai/), with TensorZero's `error_json` when
`gateway.unstable_error_json` is on."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from lsd.api.openai_wire import openai_error_body
from lsd.api.tensorzero_wire import error_body, route_not_found_body
from lsd.errors import LsdError, RateLimited

log = logging.getLogger("lsd.api")


def wants_error_json(scope: Scope) -> bool:
    """Whether the running config asks for TensorZero's `error_json` (`gateway.unstable_error_json`)."""
    services = (scope.get("state") or {}).get("services")
    return services is not None and services.config.gateway.unstable_error_json


def error_bytes(exc: LsdError, scope: Scope) -> bytes:
    """The error's body in the wire format of the route `scope` is for."""
    with_error_json = wants_error_json(scope)
    if scope["path"].startswith("/openai/"):
        return openai_error_body(exc, with_error_json=with_error_json)
    return error_body(exc, with_error_json=with_error_json)


def error_response(exc: LsdError, scope: Scope) -> Response:
    if exc.http_status >= 500:
        log.warning("request failed: %s %s", exc.error_code, exc.message)
    body = error_bytes(exc, scope)
    headers = {"retry-after": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
    return Response(body, status_code=exc.http_status, media_type="application/json", headers=headers)


async def handle_lsd_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LsdError)
    return error_response(exc, request.scope)


async def handle_not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    body = route_not_found_body(
        request.method, request.url.path, status, with_error_json=wants_error_json(request.scope)
    )
    return Response(body, status_code=status, media_type="application/json")
