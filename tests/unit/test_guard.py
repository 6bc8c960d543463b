"""The Guard's address rewriting, header redaction for stored rows, and the JSON depth check."""

from __future__ import annotations

import ipaddress
from typing import Any

from lsd.api.body import too_deep
from lsd.api.guard import Guard
from lsd.config.model import GatewayConfig
from lsd.providers.base import REDACTED, redact_headers


def forwarded(peer: str, headers: dict[str, str], trusted: tuple[str, ...]) -> tuple[Any, Any]:
    gateway = GatewayConfig(trusted_proxies=tuple(ipaddress.ip_network(t) for t in trusted))
    guard = Guard(gateway)
    scope: dict[str, Any] = {
        "client": (peer, 5000),
        "scheme": "http",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    guard._forwarded(scope)
    return scope["client"][0], scope["scheme"]


def test_forwarded_headers_only_from_trusted_proxies() -> None:
    headers = {"x-forwarded-for": "203.0.113.7, 10.0.0.2", "x-forwarded-proto": "https"}
    assert forwarded("10.0.0.1", headers, ("10.0.0.0/8",)) == ("203.0.113.7", "https")
    assert forwarded("198.51.100.1", headers, ("10.0.0.0/8",)) == ("198.51.100.1", "http")
    # A client cannot pose as a proxy: only the addresses appended by trusted hops are skipped.
    spoofed = {"x-forwarded-for": "1.2.3.4, 198.51.100.9"}
    assert forwarded("10.0.0.1", spoofed, ("10.0.0.0/8",))[0] == "198.51.100.9"


def test_stored_headers_are_redacted() -> None:
    headers = {
        "Authorization": "Bearer sk-provider",
        "x-api-key": "k",
        "api-key": "k",
        "proxy-authorization": "p",
        "Cookie": "session=1",
        "x-custom": "sk-lsd-abcdefghijkl-secret",
        "content-type": "application/json",
    }
    redacted = redact_headers(headers)
    assert redacted.pop("content-type") == "application/json"
    assert set(redacted.values()) == {REDACTED}


def test_json_depth() -> None:
    assert not too_deep({"a": [1, {"b": 2}]}, 3)
    assert too_deep({"a": [1, {"b": []}]}, 3)
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    assert too_deep(deep, 64)
