"""The Guard: what every HTTP request passes before it is handled (run by the front door, lsd.api.front).

In order: the peer address and scheme from `X-Forwarded-For`/`-Proto` (only from `gateway.trusted_proxies`),
header count and size limits (431), and the API key (401, see lsd.api.auth). Refusals are JSON in the route's
shape (`send_error`). The deadline for the response to start (`gateway.request_timeout_s`, 504) is kept by
lsd.api.deadlines.
"""

from __future__ import annotations

import ipaddress

from starlette.types import Scope, Send

from lsd.api.auth import authenticate, needs_key
from lsd.api.errors import error_bytes, error_headers
from lsd.config.model import GatewayConfig
from lsd.errors import HeadersTooLarge, LsdError

CONSOLE_PATH = "/ui"


class Guard:
    def __init__(self, gateway: GatewayConfig) -> None:
        self.gateway = gateway

    async def admit(self, scope: Scope) -> None:
        """Check one request (rewriting its client address and scheme behind a trusted proxy); raises LsdError."""
        if self.gateway.trusted_proxies:
            self._forwarded(scope)
        self._check_headers(scope)
        auth = scope["state"]["services"].auth
        if needs_key(auth, scope["path"]) and not self._console(scope["path"]):
            await authenticate(auth, scope)

    def _console(self, path: str) -> bool:
        """The console (lsd.api.console) signs its visitors in with a cookie, not a bearer key."""
        return self.gateway.ui.enabled and (path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/"))

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
    body = error_bytes(exc, scope)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.extend((k.encode(), v.encode()) for k, v in error_headers(exc).items())
    await send({"type": "http.response.start", "status": exc.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
