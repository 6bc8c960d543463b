"""The Guard middleware: what every request passes before routing.

In order: the peer address and scheme from `X-Forwarded-For`/`-Proto` (only from `gateway.trusted_proxies`),
header count and size limits (431), the API key (401, see lsd.api.auth), and a deadline for the response to
start (`gateway.request_timeout_s`, 504; a started stream is not cut). Refusals are JSON in the route's shape.
"""

from __future__ import annotations

import asyncio
import ipaddress

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lsd.api.auth import authenticate, needs_key
from lsd.api.errors import error_body, openai_error_body
from lsd.config.model import GatewayConfig
from lsd.errors import HeadersTooLarge, LsdError, RequestTimeout


class Guard:
    def __init__(self, app: ASGIApp, gateway: GatewayConfig) -> None:
        self.app = app
        self.gateway = gateway
        self.timeout_s = gateway.request_timeout_s or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.gateway.trusted_proxies:
            self._forwarded(scope)
        try:
            self._check_headers(scope)
            auth = scope["state"]["auth"]
            if needs_key(auth, scope["path"]):
                await authenticate(auth, scope)
        except LsdError as exc:
            await send_error(scope, send, exc)
            return
        if self.timeout_s is None:
            await self.app(scope, receive, send)
            return
        started = False
        deadline = asyncio.timeout(self.timeout_s)

        async def send_started(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                deadline.reschedule(None)  # a started response (a long stream) is not cut
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, send_started)
        except TimeoutError:
            if not deadline.expired() or started:
                raise
            limit = f"{self.gateway.request_timeout_s:g}"
            await send_error(scope, send, RequestTimeout(f"no response within gateway.request_timeout_s ({limit} s)"))

    def _check_headers(self, scope: Scope) -> None:
        headers = scope["headers"]
        if len(headers) > self.gateway.max_header_count:
            raise HeadersTooLarge(f"headers: more than {self.gateway.max_header_count}", field="headers")
        if sum(len(k) + len(v) for k, v in headers) > self.gateway.max_header_bytes:
            raise HeadersTooLarge(f"headers: larger than {self.gateway.max_header_bytes} bytes", field="headers")

    def _forwarded(self, scope: Scope) -> None:
        client = scope.get("client")
        if not client or not self._trusted(client[0]):
            return
        forwarded_for = proto = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded_for = value.decode("latin-1")
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1")
        if forwarded_for:
            # The rightmost address no trusted proxy vouches for is the client.
            hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
            while len(hops) > 1 and self._trusted(hops[-1]):
                hops.pop()
            if hops:
                scope["client"] = (hops[-1], 0)
        if proto:
            scheme = proto.split(",")[-1].strip().lower()
            if scheme in ("http", "https"):
                scope["scheme"] = scheme

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.gateway.trusted_proxies)


async def send_error(scope: Scope, send: Send, exc: LsdError) -> None:
    body = openai_error_body(exc) if scope["path"].startswith("/openai/") else error_body(exc)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.http_status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": exc.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
