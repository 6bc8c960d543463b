"""Outbound HTTP for every provider: pooled keep-alive HTTP/1.1 connections (lsd.providers.connections).

This is the only module the providers call for HTTP. It maps connection failures and deadlines to
ProviderError/ProviderTimeout in one place, and picks each call's proxy: the one the call names, else the
environment's (HTTPS_PROXY/HTTP_PROXY/NO_PROXY, read once at open; lsd.providers.proxies).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import contextmanager

from lsd.errors import ConfigError, ProviderError, ProviderTimeout
from lsd.immutable import immutable
from lsd.providers.connections import (
    Connection,
    HeaderRejected,
    Origin,
    Pool,
    PoolKey,
    ProxyRefused,
    ResponseTooLarge,
    origin_of,
    proxied_origin,
    request_head,
)
from lsd.providers.proxies import EnvironmentProxies, Proxy, ProxyChoice

MAX_LINE = 1 << 24  # a streamed line (an SSE field) longer than 16 MiB fails the call


@immutable
class HttpResponse:
    status: int
    body: bytes
    headers: Mapping[str, str]


class Transport:
    """No I/O until `open()`. One pool of connections for all providers, keyed by origin."""

    def __init__(
        self,
        *,
        limit_per_host: int = 256,
        default_timeout_s: float = 900.0,
        connect_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """`connect_timeout_s`: the longest a new connection (TCP, proxy tunnel and TLS) may take, within the
        call's own timeout; `ssl_context`: how https origins are verified (default: the system's CAs, hostname
        checked); `environ`: where `open()` reads the proxy variables (default: os.environ)."""
        self._limit_per_host = limit_per_host
        self._default_timeout_s = default_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._ssl_context = ssl_context
        self._environ = environ
        self._pool: Pool | None = None
        self._env_proxies: EnvironmentProxies | None = None
        self._env_routes: dict[PoolKey, Proxy | None] = {}

    async def open(self) -> None:
        """Read the proxy variables (ConfigError, naming the variable, for a proxy URL that cannot be used) and
        start the pool."""
        try:
            self._env_proxies = EnvironmentProxies.read(os.environ if self._environ is None else self._environ)
        except ValueError as exc:
            raise ConfigError([str(exc)]) from None
        self._env_routes = {}
        self._pool = Pool(self._limit_per_host, self._ssl_context, self._connect_timeout_s)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("Transport.open() was not called")
        return self._pool

    def _proxied(self, url: str, origin: Origin, proxy: ProxyChoice) -> Origin:
        """`origin`, or the same URL through the call's proxy or the environment's (decided once per origin)."""
        if proxy is None:
            env = self._env_proxies
            if env is None:
                return origin
            if origin.key in self._env_routes:
                proxy = self._env_routes[origin.key]
            else:
                proxy = self._env_routes[origin.key] = env.proxy_for(origin.scheme, origin.host, origin.port)
        return origin if proxy is None or proxy == "direct" else proxied_origin(url, proxy)

    async def _send(
        self,
        pool: Pool,
        method: bytes,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout_s: float | None,
        proxy: ProxyChoice,
    ) -> tuple[Connection, Origin, float]:
        origin = origin_of(url)
        if proxy is not None or self._env_proxies is not None:
            origin = self._proxied(url, origin, proxy)
        head = request_head(method, origin, headers, len(body) if method == b"POST" else None)
        deadline = pool.loop.time() + (timeout_s or self._default_timeout_s)
        conn = await pool.acquire(origin, deadline)
        try:
            conn.send(head, body, deadline)
        except BaseException:
            pool.release(origin, conn)
            raise
        return conn, origin, deadline

    async def _exchange(
        self,
        method: bytes,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout_s: float | None,
        proxy: ProxyChoice,
    ) -> HttpResponse:
        pool = self.pool  # kept: close() may come while this call is in flight
        conn, origin, _ = await self._send(pool, method, url, body, headers, timeout_s, proxy)
        try:
            await conn.read_head()
            if conn.status == 407 and origin.proxy is not None:
                raise _proxy_refused(origin, origin.proxy)
            data = await conn.read_all()
            return HttpResponse(conn.status, data, conn.headers)
        finally:
            pool.release(origin, conn)

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        provider: str,
        timeout_s: float | None = None,
        proxy: ProxyChoice = None,
    ) -> HttpResponse:
        """POST `body`. `proxy`: the proxy to go through, "direct" for none, None for the environment's."""
        with _mapped_errors(provider, f"timed out after {timeout_s}s"):
            return await self._exchange(b"POST", url, body, headers, timeout_s, proxy)

    async def get(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        provider: str,
        timeout_s: float | None = None,
        proxy: ProxyChoice = None,
    ) -> HttpResponse:
        """GET `url` (batch status and result files)."""
        with _mapped_errors(provider, f"timed out after {timeout_s}s"):
            return await self._exchange(b"GET", url, b"", headers, timeout_s, proxy)

    async def stream_bytes(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        provider: str,
        timeout_s: float | None = None,
        ttft_timeout_s: float | None = None,
        proxy: ProxyChoice = None,
    ) -> AsyncGenerator[bytes | HttpResponse, None]:
        """POST and yield the response body's bytes as they arrive (the framing, SSE or Bedrock's event stream, is
        the caller's); on a non-2xx status yield one HttpResponse instead. Close the generator (contextlib.aclosing)
        to release the connection as soon as the caller stops."""
        with _mapped_errors(provider, "timed out while streaming"):
            pool = self.pool
            conn, origin, deadline = await self._send(pool, b"POST", url, body, headers, timeout_s, proxy)
            try:
                await conn.read_head()
                if conn.status == 407 and origin.proxy is not None:
                    raise _proxy_refused(origin, origin.proxy)
                if conn.status >= 300:
                    yield HttpResponse(conn.status, await conn.read_all(), conn.headers)
                    return
                if ttft_timeout_s:
                    conn.arm(min(deadline, pool.loop.time() + ttft_timeout_s))
                first = True
                while True:
                    data = await conn.read_some()
                    if not data:
                        return
                    if first and ttft_timeout_s:
                        conn.arm(deadline)
                    first = False
                    yield data
            finally:
                pool.release(origin, conn)


def _proxy_refused(origin: Origin, proxy: Proxy) -> ProxyRefused:
    """A 407 from the proxy carrying an http origin's request: the proxy's refusal, not the provider's answer."""
    return ProxyRefused(
        f"proxy {proxy.shown} refused to carry the request to {origin.host}:{origin.port}: "
        "HTTP 407 Proxy Authentication Required (check the user and password in the proxy URL)"
    )


@contextmanager
def _mapped_errors(provider: str, timeout_message: str) -> Iterator[None]:
    """Connection failures, malformed responses, rejected headers and deadlines as ProviderError/ProviderTimeout,
    the one place they are mapped."""
    try:
        yield
    except TimeoutError as exc:
        raise ProviderTimeout(timeout_message, provider=provider, kind="timeout") from exc
    except HeaderRejected as exc:
        raise ProviderError(str(exc), provider=provider, retryable=False, kind="request") from exc
    except ResponseTooLarge as exc:
        raise ProviderError(str(exc), provider=provider, retryable=False, kind="response_too_large") from exc
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ProviderError(
            f"connection error: {type(exc).__name__}: {exc}", provider=provider, kind="connection"
        ) from exc
