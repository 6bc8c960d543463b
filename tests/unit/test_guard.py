"""The Guard's address rewriting, header redaction for stored rows, and the JSON depth check."""

from __future__ import annotations

import asyncio
import ipaddress
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from lsd.api.body import receive_json, too_deep
from lsd.api.guard import Guard
from lsd.config.model import GatewayConfig
from lsd.errors import InvalidRequest
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


def received(body: bytes, max_depth: int = 8) -> Any:
    """`body` through receive_json, as POST /inference reads it."""
    gateway = SimpleNamespace(max_json_depth=max_depth)
    scope = {"headers": [], "state": {"services": SimpleNamespace(config=SimpleNamespace(gateway=gateway))}}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return asyncio.run(receive_json(scope, receive, 1 << 24))


def refusal(body: Any, max_depth: int = 8) -> str:
    with pytest.raises(InvalidRequest) as caught:
        received(orjson.dumps(body), max_depth)
    return caught.value.message


@pytest.mark.parametrize("size", [10, 50_000], ids=["small", "big"])
def test_body_checks_whatever_its_size(size: int) -> None:
    """A big body is checked by walking its values instead of scanning its bytes: the same answers."""
    long = "word " * (size // 5)
    ok = {"input": {"messages": [{"role": "user", "content": [{"type": "text", "text": long}]}]}, "tags": {}}
    assert received(orjson.dumps(ok)) == ok
    nul = {**ok, "tags": {"k": "v\x00"}}
    assert "tags.k: contains U+0000" in refusal(nul)
    assert "a key" in refusal({**ok, "tags": {"k\x00": "v"}})
    in_text = {"input": {"messages": [{"role": "user", "content": [{"type": "text", "text": long + "\x00"}]}]}}
    assert "input.messages[0].content[0].text: contains U+0000" in refusal(in_text)
    deep: Any = "x"
    for _ in range(10):
        deep = [deep]
    assert "max_json_depth" in refusal({**ok, "deep": deep})
    assert "max_json_depth" in refusal({**nul, "deep": deep})  # nesting is reported first, as for small bodies
    many = {**ok, "many": [{"n": i} for i in range(5_000)], "tags": {"k": "v\x00"}}  # more values than the walk's
    assert "tags.k: contains U+0000" in refusal(many)
    assert received(b'{"text": "\\\\u0000 is text"}') == {"text": "\\u0000 is text"}
