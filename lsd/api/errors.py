"""The one place an LsdError becomes an HTTP response: its status, and its body in the wire format of the route
(lsd.api.tensorzero_wire, lsd.api.openai_wire under /openai/, lsd.api.anthropic_wire under /anthropic/,
lsd.api.gemini_wire under /gemini/), with
TensorZero's `error_json` when `gateway.unstable_error_json` is on.

An exception outside the tree on a request path is a bug: it is logged with its traceback under a fresh error id
and answered as a JSON 500 carrying that id (`internal_error`), never starlette's plain-text page."""

from __future__ import annotations

import logging
import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from lsd.api.access_log import request_id, scope_fields
from lsd.api.anthropic_wire import anthropic_error_body
from lsd.api.gemini_wire import gemini_error_body
from lsd.api.openai_wire import openai_error_body
from lsd.api.provider_answer import passed_on, retry_after_s
from lsd.api.tensorzero_wire import error_body, route_not_found_body
from lsd.errors import AllAttemptsFailed, InternalError, LsdError, NotFound
from lsd.ids import uuid7

log = logging.getLogger("lsd.api")

# Set in the scope once an unexpected exception has been logged and answered, so the front door does not log it
# again when starlette's error middleware re-raises it.
ANSWERED_KEY = "lsd.internal_error_id"
# The routes whose clients act on a provider's own 400, 413, 429 or 529 (lsd.api.provider_answer): Claude clients,
# OpenAI's (Codex, the Agents SDK, the AI SDK, LangChain), and Gemini's (Gemini CLI backs off on a 429). `/inference`
# keeps TensorZero's 502. Named one by one: a new route passes answers on only when it is decided to.
PASSING_ON_PATHS = (
    "/anthropic/v1/messages",
    "/gemini/",
    "/openai/v1/chat/completions",
    "/openai/v1/responses",
    "/openai/v1/embeddings",
)
LOGGED_MESSAGE_CHARS = 2000


def wants_error_json(scope: Scope) -> bool:
    """Whether the running config asks for TensorZero's `error_json` (`gateway.unstable_error_json`)."""
    services = (scope.get("state") or {}).get("services")
    return services is not None and services.config.gateway.unstable_error_json


def error_bytes(exc: LsdError, scope: Scope) -> bytes:
    """The error's body in the wire format of the route `scope` is for."""
    with_error_json = wants_error_json(scope)
    if scope["path"].startswith("/openai/"):
        return openai_error_body(exc, with_error_json=with_error_json)
    if scope["path"].startswith("/anthropic/"):
        return anthropic_error_body(exc)
    if scope["path"].startswith("/gemini/"):
        return gemini_error_body(exc)
    return error_body(exc, with_error_json=with_error_json)


def error_headers(exc: LsdError) -> dict[str, str]:
    """The headers an error answer carries beside its body. A 413 or 431 may leave part of the request unread, so
    the server closes the connection after it: `Connection: close` tells a keep-alive client not to reuse it."""
    headers: dict[str, str] = {}
    if isinstance(exc, AllAttemptsFailed) and not exc.retryable:
        headers["x-should-retry"] = "false"  # the OpenAI and Anthropic SDKs retry a 502 unless told not to
    # The gateway's rate limit, or the last provider, said when to try again: the SDKs wait that long.
    wait = retry_after_s(exc)
    if wait is not None:
        headers["retry-after"] = str(math.ceil(wait))
    if exc.http_status in (413, 431):
        headers["connection"] = "close"
    if exc.http_status == 401:
        headers["www-authenticate"] = "Bearer"
    return headers


def internal_error(exc: BaseException, scope: Scope) -> InternalError:
    """The 500 for an unexpected exception: logged here, with its traceback, under the id the answer carries."""
    error = InternalError(uuid7().hex)
    scope[ANSWERED_KEY] = error.error_id
    log.error("internal error %s on %s %s", error.error_id, scope.get("method"), scope.get("path"), exc_info=exc)
    return error


def error_response(exc: LsdError, scope: Scope) -> Response:
    failed = getattr(exc, "inference", None)
    if failed is not None:  # an inference whose every attempt failed: its rows exist, its id is worth logging
        scope_fields(scope).update(inference_id=failed[0], function=failed[1])
    if (exc.http_status >= 500 or isinstance(exc, AllAttemptsFailed)) and not isinstance(exc, InternalError):
        # (every provider failure, a 408 when all timed out included: a hanging provider is worth a line)
        # The message may quote providers' error bodies: cut, so a provider echoing a long prompt does not fill logs.
        message = (
            exc.message if len(exc.message) <= LOGGED_MESSAGE_CHARS else exc.message[:LOGGED_MESSAGE_CHARS] + "..."
        )
        log.warning("request %s failed: %s %s", request_id(scope), exc.error_code, message)
    if scope["path"].startswith(PASSING_ON_PATHS):
        exc = passed_on(exc)  # a provider's 400, 413, 429 or 529 as the provider gave it
    body = error_bytes(exc, scope)
    return Response(body, status_code=exc.http_status, media_type="application/json", headers=error_headers(exc))


async def handle_lsd_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LsdError)
    return error_response(exc, request.scope)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Starlette's 500 handler (its error middleware calls it, then re-raises to the front door)."""
    return error_response(internal_error(exc, request.scope), request.scope)


async def handle_not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    path = request.url.path
    if path.startswith(("/anthropic/", "/openai/", "/gemini/")):  # in the shape of the API the client's SDK speaks
        error = NotFound(f"Route not found: {request.method} {path}") if status == 404 else MethodNotAllowed(path)
        return Response(error_bytes(error, request.scope), status_code=status, media_type="application/json")
    body = route_not_found_body(
        request.method, request.url.path, status, with_error_json=wants_error_json(request.scope)
    )
    return Response(body, status_code=status, media_type="application/json")


class MethodNotAllowed(LsdError):
    error_code = "method_not_allowed"
    http_status = 405

    def __init__(self, path: str) -> None:
        super().__init__(f"method not allowed on {path}")
