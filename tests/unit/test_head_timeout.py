"""The uvicorn front door closes a connection that does not send its first request head in time (silent, or
stopped in its headers): such connections otherwise held their file descriptors forever, and ~1,000 of them stopped
a gateway under the usual 1024 fd limit. A connection that sends its request in time is served as before."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from lsd import servers
from lsd.servers import ServerSettings, UvicornServer, uvicorn_config


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def closed_within(port: int, sent: bytes, seconds: float) -> bytes | None:
    """What the server answers to `sent` before it closes the connection, or None if still open after `seconds`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(sent)
    try:
        return await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        return None
    finally:
        writer.close()


async def test_a_silent_or_half_sent_connection_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "HEAD_TIMEOUT_S", 0.3)
    port = free_port()
    server = UvicornServer(uvicorn_config(app, ServerSettings("uvicorn", f"127.0.0.1:{port}", 1, 16384)), "x")
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        assert await closed_within(port, b"", 2) == b""  # silent: closed, nothing answered
        assert await closed_within(port, b"POST / HTTP/1.1\r\nhost: x\r\n", 2) == b""  # stopped in its headers
        served = await closed_within(port, b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", 2)
        assert served is not None and served.startswith(b"HTTP/1.1 200") and served.endswith(b"ok")
    finally:
        server.stop()
        await task
