"""The front door: the outermost ASGI layer of every HTTP request, and the hot path's whole stack.

One layer, one `send` wrapper per request, instead of a middleware per concern: the request id and access-log
line (lsd.api.access_log), the caller's trace context when tracing is on (lsd.api.tracing), the Guard's checks
(lsd.api.guard) and the deadline for the response to start (lsd.api.deadlines). `POST /inference` is then served
directly (lsd.api.inference.serve); every other request goes on to starlette (its error middleware, exception
handlers and router). The route is set in `scope["route"]` as the router would, so the access log and the HTTP
metrics name it the same way on both paths.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lsd.api import inference
from lsd.api.access_log import AccessLog
from lsd.api.deadlines import Deadlines
from lsd.api.errors import ANSWERED_KEY, internal_error
from lsd.api.guard import Guard, send_error
from lsd.api.routes import ROUTES
from lsd.api.tracing import continue_trace
from lsd.errors import LsdError, RequestTimeout
from lsd.telemetry.tracing import detach

log = logging.getLogger("lsd.api")

INFERENCE_PATH = "/inference"
REQUEST_ID_HEADER = b"x-request-id"
# Anthropic's SDK reads a response's id from `request-id` (`message._request_id`): its routes send both.
ANTHROPIC_PREFIX = "/anthropic/"
ANTHROPIC_REQUEST_ID_HEADER = b"request-id"


class FrontDoor:
    def __init__(self, app: ASGIApp, guard: Guard, access_log: AccessLog, *, tracing: bool = False) -> None:
        self.app = app
        # HTTP requests between arrival and their last byte answered (a stream until it ends): the metrics job
        # reads it into lsd_http_requests_in_flight.
        self.in_flight = 0
        self.guard = guard
        self.access_log = access_log
        self.tracing = tracing
        timeout_s = guard.gateway.request_timeout_s
        self.deadlines = Deadlines(timeout_s) if timeout_s else None
        self.inference_route = next(r for r in ROUTES if isinstance(r, Route) and r.path == INFERENCE_PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = self.access_log.start(scope)
        answer = _Answer(send, request_id.encode(), self.deadlines, scope["path"].startswith(ANTHROPIC_PREFIX))
        token = continue_trace(scope) if self.tracing else None
        self.in_flight += 1
        try:
            await self._handle(scope, receive, answer)
        finally:
            self.in_flight -= 1
            if token is not None:
                detach(token)
            self.access_log.finish(scope, request_id, answer.status, started)

    async def _handle(self, scope: Scope, receive: Receive, answer: _Answer) -> None:
        try:
            await self.guard.admit(scope)
        except LsdError as exc:
            await send_error(scope, answer.send, exc)
            return
        except Exception as exc:  # noqa: BLE001  (the request guard: a bug in a check is a JSON 500 with an id)
            await send_error(scope, answer.send, internal_error(exc, scope))
            return
        direct = scope["path"] == INFERENCE_PATH and scope["method"] == "POST"
        if direct:
            scope["route"] = self.inference_route
        deadlines, task = self.deadlines, None
        if deadlines is not None:
            task = answer.task = asyncio.current_task()
            deadlines.start(task)  # type: ignore[arg-type]
        try:
            if direct:
                await inference.serve(scope, receive, answer.send)
            else:
                await self.app(scope, receive, answer.send)
        except asyncio.CancelledError:
            if deadlines is None or not deadlines.expired(task) or answer.started:  # type: ignore[arg-type]
                raise
            task.uncancel()  # type: ignore[union-attr]
            limit = f"{self.guard.gateway.request_timeout_s:g}"
            await send_error(
                scope, answer.send, RequestTimeout(f"no response within gateway.request_timeout_s ({limit} s)")
            )
        except Exception as exc:
            # Starlette's error middleware has logged and answered a routed path's error (lsd.api.errors) and
            # re-raises it; POST /inference is answered here. Either way the client gets a JSON 500 with an id.
            if answer.started:
                if ANSWERED_KEY in scope and answer.status == 500:
                    return  # the 500 sent is this error's
                raise
            await send_error(scope, answer.send, internal_error(exc, scope))
        finally:
            if deadlines is not None:
                deadlines.stop(task)  # type: ignore[arg-type]


class _Answer:
    """The request's `send`: notes the status, adds `x-request-id`, and ends the deadline once the response
    starts (a started response, such as a long stream, is not cut)."""

    __slots__ = ("_anthropic", "_deadlines", "_request_id", "_send", "started", "status", "task")

    def __init__(self, send: Send, request_id: bytes, deadlines: Deadlines | None, anthropic: bool = False) -> None:
        self._send = send
        self._request_id = request_id
        self._anthropic = anthropic
        self._deadlines = deadlines
        self.task: asyncio.Task[Any] | None = None
        self.status = 500
        self.started = False

    def send(self, message: Message) -> Awaitable[None]:
        # Not a coroutine: it hands back the server's own awaitable, so a stream's every token goes out without a
        # coroutine frame of this layer in between.
        if message["type"] == "http.response.start" and not self.started:
            # (A second start, an error after a started response, goes as it is: the server's to refuse.)
            self.started = True
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, self._request_id)]
            if self._anthropic:
                message["headers"].append((ANTHROPIC_REQUEST_ID_HEADER, self._request_id))
            if self._deadlines is not None and self.task is not None:
                self._deadlines.stop(self.task)
        return self._send(message)
