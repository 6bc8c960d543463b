"""A small HTTP forward proxy on a real socket (127.0.0.1), like a corporate one, counting what it relays.

    async with ConnectProxy(user="u", password="p") as proxy:
        proxy.url            # "http://u:p@127.0.0.1:<port>" (without userinfo when no user is set)
        proxy.tunnels        # each CONNECT authority it opened a tunnel to ("localhost:8443")
        proxy.requests       # each absolute-form request line it forwarded (b"POST http://... HTTP/1.1")
        proxy.authorizations # the Proxy-Authorization value of every request it received (None when absent)

It tunnels CONNECT (answering 200, then piping bytes both ways) and forwards absolute-form requests (rewritten
to origin form, Proxy-Authorization removed, the answer piped back). With `user` set, a request without the
matching Basic credentials gets 407; with `refuse` set, every request gets that status; with `silent`, it
accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Self
from urllib.parse import urlsplit


class ConnectProxy:
    def __init__(
        self,
        *,
        user: str | None = None,
        password: str = "",
        refuse: int | None = None,
        silent: bool = False,
    ) -> None:
        self.user = user
        self.password = password
        self.refuse = refuse
        self.silent = silent
        self.tunnels: list[str] = []
        self.requests: list[bytes] = []
        self.authorizations: list[str | None] = []
        self.connections = 0
        self.relayed = 0  # bytes piped from the origins back to the clients
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()  # client and origin sides, closed on exit
        self._idle = asyncio.Event()  # no connection is being served
        self._idle.set()
        self._serving = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._open:
            writer.close()
        await asyncio.wait_for(self._idle.wait(), 5)

    @property
    def url(self) -> str:
        userinfo = f"{self.user}:{self.password}@" if self.user is not None else ""
        return f"http://{userinfo}127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._serving += 1
        self._idle.clear()
        self._open.add(writer)
        try:
            if self.silent:
                await reader.read()  # until the client gives up
                return
            head = await reader.readuntil(b"\r\n\r\n")
            line, headers = _parse(head)
            method, target, _ = line.split(b" ", 2)
            if self._refused(headers, writer):
                return
            if method == b"CONNECT":
                await self._tunnel(target.decode(), reader, writer)
            else:
                await self._forward(line, head, headers, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._open.discard(writer)
            self._serving -= 1
            if not self._serving:
                self._idle.set()

    def _refused(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        """Answers 407 or the `refuse` status (and returns True) when this request may not pass."""
        credentials = headers.get("proxy-authorization")
        self.authorizations.append(credentials)
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if self.user is not None and credentials != expected:
            writer.write(
                b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="fake"\r\n'
                b"Content-Length: 12\r\nConnection: close\r\n\r\nauth needed\n"
            )
            return True
        if self.refuse is not None:
            writer.write(
                b"HTTP/1.1 %d Refused\r\nContent-Length: 8\r\nConnection: close\r\n\r\nrefused\n" % self.refuse
            )
            return True
        return False

    async def _tunnel(self, authority: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = authority.rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        self._open.add(upstream_writer)
        self.tunnels.append(authority)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer, count=True))

    async def _forward(
        self,
        line: bytes,
        head: bytes,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Absolute-form requests on this connection, all to the first one's origin, in origin form."""
        url = urlsplit(line.split(b" ")[1].decode())
        upstream_reader, upstream_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        self._open.add(upstream_writer)

        async def requests(line: bytes, head: bytes, headers: dict[str, str]) -> None:
            try:
                while True:
                    self.requests.append(line)
                    method, target, version = line.split(b" ", 2)
                    parts = urlsplit(target.decode())
                    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                    kept = [h for h in head.split(b"\r\n")[1:] if not h.lower().startswith(b"proxy-authorization:")]
                    upstream_writer.write(b"\r\n".join([b"%s %s %s" % (method, path.encode(), version), *kept]))
                    length = int(headers.get("content-length", "0"))
                    if length:
                        upstream_writer.write(await reader.readexactly(length))
                    head = await reader.readuntil(b"\r\n\r\n")
                    line, headers = _parse(head)
                    if self._refused(headers, writer):
                        return
            except (asyncio.IncompleteReadError, ConnectionError):  # the client is done with this connection
                pass
            finally:
                upstream_writer.close()  # which ends the answers' pipe too

        try:
            await asyncio.gather(requests(line, head, headers), self._pipe(upstream_reader, writer, count=True))
        finally:
            upstream_writer.close()
            self._open.discard(upstream_writer)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, count: bool = False) -> None:
        try:
            while data := await source.read(65536):
                if count:
                    self.relayed += len(data)
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()


def _parse(head: bytes) -> tuple[bytes, dict[str, str]]:
    """The request line and the headers (lowercase names) of a request head."""
    line, *rest = head.rstrip(b"\r\n").split(b"\r\n")
    headers = {}
    for field in rest:
        name, _, value = field.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return line, headers
