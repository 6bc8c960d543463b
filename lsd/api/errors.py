"""The one place an LsdError becomes an HTTP response: its status, and its body in the wire format of the route
(lsd.api.tensorzero_wire, or lsd.api.openai_wire under /openai/)."""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lsd.api.openai_wire import openai_error_body
from lsd.api.tensorzero_wire import error_body
from lsd.errors import LsdError, RateLimited

log = logging.getLogger("lsd.api")


def error_bytes(exc: LsdError, path: str) -> bytes:
    """The error's body in the wire format of the route at `path`."""
    return openai_error_body(exc) if path.startswith("/openai/") else error_body(exc)


def error_response(exc: LsdError, path: str) -> Response:
    if exc.http_status >= 500:
        log.warning("request failed: %s %s", exc.error_code, exc.message)
    body = error_bytes(exc, path)
    headers = {"retry-after": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
    return Response(body, status_code=exc.http_status, media_type="application/json", headers=headers)


async def handle_lsd_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LsdError)
    return error_response(exc, request.url.path)


async def handle_not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    message = "route not found" if status == 404 else "method not allowed"
    body = {"error": f"{message}: {request.method} {request.url.path}", "error_code": "not_found"}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
