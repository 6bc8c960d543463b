"""The one place an LsdError becomes an HTTP response: `{"error": message, "error_code": code, "field"?}`."""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lsd.errors import AllAttemptsFailed, LsdError, RateLimited

log = logging.getLogger("lsd.api")


def error_body(exc: LsdError) -> bytes:
    body: dict[str, object] = {"error": exc.message, "error_code": exc.error_code}
    if exc.field:
        body["field"] = exc.field
    if isinstance(exc, RateLimited):
        body["rule"] = exc.rule
        body["retry_after_s"] = exc.retry_after_s
    if isinstance(exc, AllAttemptsFailed):
        body["attempts"] = [
            {
                "variant": f.variant,
                "model": f.model,
                "provider": f.provider,
                "kind": f.kind,
                "error": f.message,
            }
            for f in exc.failures
        ]
    return orjson.dumps(body)


def openai_error_body(exc: LsdError) -> bytes:
    """OpenAI's error shape, so the OpenAI SDK shows the message: {"error": {"message", "type", "code", "param"}}."""
    error: dict[str, object] = {
        "message": exc.message,
        "type": exc.error_code,
        "code": exc.error_code,
        "param": exc.field,
    }
    if isinstance(exc, RateLimited):
        error["rule"] = exc.rule
    return orjson.dumps({"error": error})


def error_response(exc: LsdError, path: str) -> Response:
    if exc.http_status >= 500:
        log.warning("request failed: %s %s", exc.error_code, exc.message)
    body = openai_error_body(exc) if path.startswith("/openai/") else error_body(exc)
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
