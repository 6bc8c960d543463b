"""`lsd serve` under each HTTP server it offers (uvicorn by default, hypercorn): both answer, both refuse an oversized
request head with a 431, and both drain and exit 0 on SIGTERM."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support.configs import echo_chat
from tests.support.gateway import Daemons

BODY = {"function_name": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}}


def config(server: str | None) -> str:
    line = f'http_server = "{server}"\n' if server else ""
    return f"[gateway]\n{line}max_header_bytes = 4096\n{echo_chat(variant='only')}"


def raw_request(port: int, head: bytes) -> bytes:
    """Send `head` as it is and read until the server closes (or 5 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


@pytest.mark.parametrize("server", [None, "hypercorn"])
def test_each_server_serves_limits_the_head_and_drains(server: str | None, daemons: Daemons, database_url: str) -> None:
    daemon = daemons.start(config(server), database_url)
    assert f"({server or 'uvicorn'})" in daemon.log()
    response = httpx.post(f"{daemon.base_url}/inference", json=BODY)
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "echo: hi"}]

    # Over max_header_bytes: the app's guard answers in JSON, naming the field.
    big = {"x-filler": "a" * 5000}
    refused = httpx.post(f"{daemon.base_url}/inference", json=BODY, headers=big)
    assert refused.status_code == 431
    assert refused.json()["error_code"] == "headers_too_large"

    # Far over it: the server itself stops reading the head and answers 431 (never buffers it all).
    head = b"POST /inference HTTP/1.1\r\nhost: x\r\n" + b"".join(
        b"x-filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(200)
    )
    answer = raw_request(daemon.port, head + b"content-length: 2\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 431") or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    if server is None:
        assert answer.startswith(b"HTTP/1.1 431")

    assert daemon.terminate() == 0
    assert "lsd stopped" in daemon.log()
