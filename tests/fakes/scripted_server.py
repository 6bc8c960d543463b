"""A scripted HTTP/1.1 server on a real socket (127.0.0.1, TLS optional) for the outbound transport's tests: it
reads each request (head and Content-Length body), records it, and lets a handler write the answer, raw bytes.

    async with Server(answer_ok, ssl_context=None) as server:
        server.url          # "http(s)://localhost:<port>/v1/chat/completions?x=1"
        server.requests     # each request as received (head and body)
        server.connections  # connections accepted; closed_by_client: those the client dropped
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


class Server:
    """A TCP server that reads each request (head and Content-Length body) and lets `handler` answer it."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed_by_client = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self.ssl_context else 'http'}://localhost:{port}/v1/chat/completions?x=1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                await self.handler(request, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
        finally:
            writer.close()


async def answer_ok(request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(OK)
    await writer.drain()
