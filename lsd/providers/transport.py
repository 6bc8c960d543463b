"""Outbound HTTP for every provider: one aiohttp session with pooled keep-alive connections.

This is the only module that imports an HTTP client. aiohttp is used because it measured ~6x the
throughput of httpx.AsyncClient on a local proxy hop (see bench/README.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import contextmanager

import aiohttp

from lsd.errors import ProviderError, ProviderTimeout
from lsd.immutable import immutable


@immutable
class HttpResponse:
    status: int
    body: bytes
    headers: Mapping[str, str]


class Transport:
    """No I/O until `open()`. Maps aiohttp's exceptions to ProviderError/ProviderTimeout in one place."""

    def __init__(self, *, limit_per_host: int = 256, default_timeout_s: float = 900.0) -> None:
        self._limit_per_host = limit_per_host
        self._default_timeout_s = default_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._limit_per_host, ttl_dns_cache=300)
        # No skip_auto_headers: it makes aiohttp copy every request's headers; providers send their own
        # User-Agent instead (lsd.providers.http), so aiohttp's is never added.
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Transport.open() was not called")
        return self._session

    def _timeout(self, timeout_s: float | None) -> aiohttp.ClientTimeout:
        total = timeout_s or self._default_timeout_s
        timeout = self._timeouts.get(total)
        if timeout is None:  # one per configured timeout: a handful in all
            timeout = self._timeouts[total] = aiohttp.ClientTimeout(total=total)
        return timeout

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        provider: str,
        timeout_s: float | None = None,
    ) -> HttpResponse:
        with _mapped_errors(provider, f"timed out after {timeout_s}s"):
            async with self.session.post(url, data=body, headers=headers, timeout=self._timeout(timeout_s)) as resp:
                data = await resp.read()
                return HttpResponse(resp.status, data, resp.headers)

    async def get(
        self, url: str, headers: Mapping[str, str], *, provider: str, timeout_s: float | None = None
    ) -> HttpResponse:
        """GET `url` (batch status and result files)."""
        with _mapped_errors(provider, f"timed out after {timeout_s}s"):
            async with self.session.get(url, headers=headers, timeout=self._timeout(timeout_s)) as resp:
                return HttpResponse(resp.status, await resp.read(), resp.headers)

    async def stream_lines(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        provider: str,
        timeout_s: float | None = None,
        ttft_timeout_s: float | None = None,
    ) -> AsyncGenerator[bytes | HttpResponse, None]:
        """POST and yield response lines as they arrive; on a non-2xx status yield one HttpResponse instead.
        Close the generator (contextlib.aclosing) to release the connection as soon as the caller stops."""
        with _mapped_errors(provider, "timed out while streaming"):
            async with self.session.post(url, data=body, headers=headers, timeout=self._timeout(timeout_s)) as resp:
                if resp.status >= 300:
                    yield HttpResponse(resp.status, await resp.read(), resp.headers)
                    return
                first = True
                while True:
                    if first and ttft_timeout_s:
                        line = await asyncio.wait_for(resp.content.readline(), ttft_timeout_s)
                    else:
                        line = await resp.content.readline()
                    first = False
                    if not line:
                        return
                    yield line


@contextmanager
def _mapped_errors(provider: str, timeout_message: str) -> Iterator[None]:
    """aiohttp's exceptions (and timeouts) as ProviderTimeout/ProviderError, the one place they are mapped."""
    try:
        yield
    except TimeoutError as exc:
        raise ProviderTimeout(timeout_message, provider=provider, kind="timeout") from exc
    except aiohttp.ClientError as exc:
        raise ProviderError(
            f"connection error: {type(exc).__name__}: {exc}", provider=provider, kind="connection"
        ) from exc
