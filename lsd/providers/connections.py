"""HTTP/1.1 client connections to providers, pooled per origin, with httptools (llhttp) parsing the responses.

Why not aiohttp's ClientSession: on the gateway's hop it costs ~100 µs of CPU per request (URL objects, cookie
jar, tracing hooks, timeout handles, a StreamReader per response); this path does the same exchange in ~25 µs
(bench/client_cost.py). It does only what a provider call needs: a request with a known-length body, a response
delimited by Content-Length, chunked encoding or the connection's end (interim 1xx answers skipped), keep-alive
reuse, TLS, gzip/deflate, a deadline, and back-pressure while a stream's consumer is slower than the provider.

Through an HTTP proxy (lsd.providers.proxies), an https origin is reached through a CONNECT tunnel (TLS to the
origin over it, the origin's name checked) and an http origin by sending the request to the proxy with an
absolute-form target. A proxied origin is pooled apart from the direct one (its key holds the proxy).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import Mapping
from functools import lru_cache
from typing import cast

import httptools

from lsd.immutable import immutable
from lsd.providers.proxies import Proxy

IDLE_S = 15.0  # a pooled connection idle for longer is closed rather than reused (servers drop idle ones)
PAUSE_AT = 1 << 18  # a stream's unread bytes above which reading from the socket pauses
# The most one response's body may hold once decoded (gzip/deflate included): no provider answers anywhere near it,
# and a larger one (a decompression bomb, a server gone wrong) would take the process's memory and then a row
# PostgreSQL cannot hold. The call fails (error_kind `response_too_large`) and the connection is closed.
MAX_RESPONSE_BYTES = 64 << 20
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "host", "keep-alive"})


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the response was complete."""


class ResponseTooLarge(ConnectionError):
    """A response whose body, decoded, is over MAX_RESPONSE_BYTES."""


class HeaderRejected(ValueError):
    """A request header name or value that would change the request's framing (CR, LF or NUL)."""


class ProxyRefused(ConnectionError):
    """A proxy could not be reached, or refused to carry a request (its message never holds the password)."""


PoolKey = tuple[str, str, int, Proxy | None]


@immutable
class Origin:
    """Where a URL's requests go, and the request-line target and Host header for it."""

    scheme: str
    host: str
    port: int
    target: bytes  # path and query as sent in the request line (the absolute URL when an http proxy carries it)
    host_header: bytes
    key: PoolKey  # the pool's: a proxied origin does not share the direct one's connections
    proxy: Proxy | None = None
    proxy_header: bytes = b""  # the Proxy-Authorization line of a request sent to a proxy (http origins)


@lru_cache(maxsize=1024)
def origin_of(url: str) -> Origin:
    """`url` split for sending (cached: providers call a handful of URLs over and over)."""
    parsed = httptools.parse_url(url.encode())
    scheme = (parsed.schema or b"").decode().lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme in {url!r}")
    host = (parsed.host or b"").decode()
    if not host:
        raise ValueError(f"no host in {url!r}")
    default = 443 if scheme == "https" else 80
    port = parsed.port or default
    target = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
    shown = f"[{host}]" if ":" in host else host
    host_header = (shown if port == default else f"{shown}:{port}").encode("idna")
    return Origin(scheme, host, port, target, host_header, (scheme, host, port, None))


@lru_cache(maxsize=1024)
def proxied_origin(url: str, proxy: Proxy) -> Origin:
    """`url` sent through `proxy`: through a CONNECT tunnel for https (the request as for a direct one), in
    absolute form with the proxy's credentials for http."""
    direct = origin_of(url)
    key = (direct.scheme, direct.host, direct.port, proxy)
    if direct.scheme == "https":
        return Origin(direct.scheme, direct.host, direct.port, direct.target, direct.host_header, key, proxy)
    target = b"http://" + direct.host_header + direct.target
    credentials = b"" if proxy.authorization is None else b"Proxy-Authorization: %s\r\n" % proxy.authorization.encode()
    return Origin(direct.scheme, direct.host, direct.port, target, direct.host_header, key, proxy, credentials)


def request_head(method: bytes, origin: Origin, headers: Mapping[str, str], length: int | None) -> bytes:
    """The request line and headers; Host and Content-Length are ours unless the caller set Host."""
    lines = [b"%s %s HTTP/1.1\r\n" % (method, origin.target)]
    host = origin.host_header
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _HOP_HEADERS:
            if lowered == "host":
                host = _header_bytes(value)
            continue
        lines.append(b"%s: %s\r\n" % (_header_bytes(name), _header_bytes(value)))
    lines.append(b"Host: %s\r\n" % host)
    if origin.proxy_header:
        lines.append(origin.proxy_header)
    if length is not None:
        lines.append(b"Content-Length: %d\r\n" % length)
    lines.append(b"\r\n")
    return b"".join(lines)


def _header_bytes(text: str) -> bytes:
    if "\r" in text or "\n" in text or "\0" in text:
        raise HeaderRejected("a request header contains CR, LF or NUL")
    return text.encode("latin-1", "replace")


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one exchange at a time. The response's body is kept as a list of chunks, which
    `read_all` joins and `read_some` hands out as they come."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._received = 0  # the body's bytes so far, decoded
        self._head_done = False
        self._complete = False
        self._error: BaseException | None = None
        self._decoder: zlib._Decompress | None = None
        self._paused = False
        self._may_pause = True  # back-pressure for a stream's reader; read_all takes everything as it comes

    # --- asyncio.Protocol -------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not always a registered subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP response: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._complete or self._error is not None:
            return
        if exc is None and self._head_done and self._ends_with_connection():
            self._complete = True  # a body delimited by the connection's end
            self._wake()
        else:
            self._fail(exc or ConnectionClosed("the server closed the connection before answering in full"))

    def _ends_with_connection(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", "")

    # --- httptools callbacks ----------------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            return
        encoding = self.headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._decoder = zlib.decompressobj(47)  # gzip or zlib, detected from the header
        self._head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._error is not None:  # over the limit already: the rest of this read is dropped
            return
        room = MAX_RESPONSE_BYTES - self._received
        if self._decoder is not None:
            body = self._decoder.decompress(body, room + 1)  # never inflated past the limit
            if not body:
                return
        if len(body) > room:
            self._too_large()
            return
        self._received += len(body)
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > PAUSE_AT and self._may_pause and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            self.status, self.headers = 0, {}
            return
        if self._decoder is not None:
            rest = self._decoder.flush(MAX_RESPONSE_BYTES - self._received + 1)
            if len(rest) > MAX_RESPONSE_BYTES - self._received:
                self._too_large()
                return
            if rest:
                self._chunks.append(rest)
        self.keep_alive = self._parser.should_keep_alive()
        self._complete = True
        self._wake()

    # --- the exchange -----------------------------------------------------------------------------------------
    def send(self, head: bytes, body: bytes, deadline: float) -> None:
        """Write a request; the response is read with read_head, read_all and read_some before `deadline`
        (loop time), after which they raise TimeoutError."""
        if self.closed or self.transport is None:
            raise ConnectionClosed("the connection was closed before the request was sent")
        # A stream whose answer ended in the read that paused it (its reader lagging, then gone) came back to the
        # pool with reading paused: resume it, or this answer is never read (the call hangs to its deadline).
        self._resume()
        self._reset()
        self.arm(deadline)
        self.transport.writelines((head, body) if body else (head,))

    def arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.pool.loop.call_at(deadline, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError())
        self.abort()

    async def read_head(self) -> None:
        while not self._head_done:
            await self._wait()

    async def read_all(self) -> bytes:
        self._may_pause = False
        self._resume()
        while not self._complete:
            await self._wait()
        return b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]

    async def read_some(self) -> bytes:
        """The body bytes received since the last call, waiting for some; b"" at the body's end."""
        while not self._chunks and not self._complete:
            await self._wait()
        if not self._chunks:
            return b""
        data = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        self._resume()
        return data

    def _resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    resume = _resume

    def finished(self) -> bool:
        """The response was read in full and the connection can carry another request."""
        return self._complete and self.keep_alive and not self.closed and self._error is None

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wait(self) -> asyncio.Future[None]:
        """A future for the server's next news: bytes or the end (its result), or the error that ends the exchange
        (its exception). Not a coroutine: each streamed token's read awaits the future itself, one frame less."""
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self.pool.loop.create_future()
        return waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _too_large(self) -> None:
        self._chunks.clear()
        self._fail(ResponseTooLarge(f"the response's body is over {MAX_RESPONSE_BYTES >> 20} MiB (decoded)"))
        self.abort()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._error)

    def abort(self) -> None:
        self.closed = True
        self.disarm()
        if self.transport is not None:
            self.transport.abort()


def connect_request(origin: Origin, proxy: Proxy) -> bytes:
    """The CONNECT request that opens a tunnel to `origin` through `proxy`."""
    authority = origin.host_header if origin.port != 443 else b"%s:443" % origin.host_header
    credentials = b"" if proxy.authorization is None else b"Proxy-Authorization: %s\r\n" % proxy.authorization.encode()
    return b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (authority, authority, credentials)


class ProxyAnswer(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT up to the end of its head; `head` gets (status, reason)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._received = b""

    def data_received(self, data: bytes) -> None:
        if self.head.done():
            return
        self._received += data
        end = self._received.find(b"\r\n\r\n")
        if end < 0:
            if len(self._received) > 65536:
                self.head.set_exception(ProxyRefused("the proxy's answer to CONNECT has no end of head"))
            return
        line = self._received[: self._received.find(b"\r\n")].decode("latin-1")
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            self.head.set_exception(ProxyRefused(f"the proxy answered CONNECT with {line[:100]!r}"))
        else:
            self.head.set_result((int(code), reason.strip()[:100]))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(ProxyRefused("the proxy closed the connection before answering CONNECT"))


class Pool:
    """Keep-alive connections per origin (scheme, host, port), at most `limit_per_host` open to each."""

    def __init__(
        self, limit_per_host: int, ssl_context: ssl.SSLContext | None = None, connect_timeout_s: float = 10.0
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._limit = limit_per_host
        self._idle: dict[PoolKey, list[Connection]] = {}
        self._open: dict[PoolKey, int] = {}
        self._waiters: dict[PoolKey, deque[asyncio.Future[None]]] = {}
        self._ssl = ssl_context
        self._connect_timeout_s = connect_timeout_s  # TCP and TLS: a host that never answers fails fast
        self._closed = False

    async def acquire(self, origin: Origin, deadline: float) -> Connection:
        key = origin.key
        reused = self._take_idle(key)
        if reused is not None:
            return reused
        while self._open.get(key, 0) >= self._limit:
            waiter = self.loop.create_future()
            self._waiters.setdefault(key, deque()).append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._notify(key)  # woken, but leaving: pass the free connection on to the next caller
                waiter.cancel()
                raise
            reused = self._take_idle(key)
            if reused is not None:
                return reused
        self._open[key] = self._open.get(key, 0) + 1
        connect_by = self.loop.time() + self._connect_timeout_s
        try:
            async with asyncio.timeout_at(min(deadline, connect_by)):
                if origin.proxy is None:
                    _, conn = await self.loop.create_connection(
                        lambda: Connection(self),
                        origin.host,
                        origin.port,
                        ssl=self._tls() if origin.scheme == "https" else None,
                        server_hostname=origin.host if origin.scheme == "https" else None,
                    )
                else:
                    conn = await self._through(origin, origin.proxy)
        except BaseException as exc:
            self._open[key] = self._open.get(key, 1) - 1
            self._notify(key)
            if isinstance(exc, TimeoutError) and connect_by < deadline:  # the connect limit, not the call's deadline
                via = f" through proxy {origin.proxy.shown}" if origin.proxy is not None else ""
                raise ConnectionError(
                    f"no connection to {origin.host}:{origin.port}{via} within {self._connect_timeout_s:g} s"
                ) from None
            raise
        return conn

    async def _through(self, origin: Origin, proxy: Proxy) -> Connection:
        """A connection to `proxy`: tunnelled with CONNECT and TLS to the origin for https, as it is for http."""
        try:
            if origin.scheme == "http":
                _, conn = await self.loop.create_connection(lambda: Connection(self), proxy.host, proxy.port)
                return conn
            raw, answer = await self.loop.create_connection(lambda: ProxyAnswer(self.loop), proxy.host, proxy.port)
        except OSError as exc:
            raise ProxyRefused(f"cannot reach proxy {proxy.shown}: {exc}") from exc
        try:
            raw.write(connect_request(origin, proxy))
            status, reason = await answer.head
            if status != 200:
                hint = " (check the user and password in the proxy URL)" if status == 407 else ""
                where = f"{origin.host}:{origin.port}"
                raise ProxyRefused(f"proxy {proxy.shown} refused to tunnel to {where}: HTTP {status} {reason}{hint}")
            conn = Connection(self)
            tls = await self.loop.start_tls(raw, conn, self._tls(), server_hostname=origin.host)
        except BaseException:
            raw.abort()
            raise
        if tls is None:  # only when the connection closed during the handshake
            raise ConnectionClosed(f"proxy {proxy.shown} closed the tunnel to {origin.host}:{origin.port}")
        conn.connection_made(tls)
        return conn

    def _take_idle(self, key: PoolKey) -> Connection | None:
        """The most recently pooled connection to `key` that is still open and fresh; stale ones are closed."""
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_S:
                return conn
            self._forget(key, conn)
        return None

    def release(self, origin: Origin, conn: Connection) -> None:
        """Back to the pool if it finished its exchange cleanly, else closed."""
        conn.disarm()
        key = origin.key
        if conn.finished() and not self._closed:
            conn.resume()  # an idle connection reads: a server's close is seen before the connection is reused
            conn.idle_since = time.monotonic()
            self._idle.setdefault(key, []).append(conn)
        else:
            self._forget(key, conn)  # closes it
        self._notify(key)

    def _forget(self, key: PoolKey, conn: Connection) -> None:
        conn.abort()
        self._open[key] = self._open.get(key, 1) - 1

    def _notify(self, key: PoolKey) -> None:
        waiters = self._waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def close(self) -> None:
        """Close the idle connections; those in use are closed when their exchange ends."""
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.abort()
        self._idle.clear()
        self._open.clear()
