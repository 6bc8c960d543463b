"""The outbound HTTP/1.1 transport against scripted servers on real sockets: framing, keep-alive, TLS, deadlines,
cancellation and the per-origin connection limit."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest
import trustme

from lsd.errors import ProviderError, ProviderTimeout
from lsd.providers import connections
from lsd.providers.connections import PAUSE_AT, Connection, Pool
from lsd.providers.transport import HttpResponse, Transport
from tests.fakes.scripted_server import OK, Handler, Server, answer_ok


async def pieces_of(t: Transport, url: str, ttft_timeout_s: float | None = None) -> list[bytes | HttpResponse]:
    """Everything stream_bytes yields for a POST to `url`."""
    async with aclosing(t.stream_bytes(url, b"{}", {}, provider="p", ttft_timeout_s=ttft_timeout_s)) as pieces:
        return [piece async for piece in pieces]


def answer_after(seconds: float) -> Handler:
    async def handler(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(seconds)
        writer.write(OK)
        await writer.drain()

    return handler


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    t = Transport(default_timeout_s=5)
    await t.open()
    yield t
    await t.close()


@pytest.fixture
async def one_connection() -> AsyncIterator[Transport]:
    """A transport allowed one connection per origin."""
    t = Transport(limit_per_host=1, default_timeout_s=5)
    await t.open()
    yield t
    await t.close()


async def post(t: Transport, url: str, timeout_s: float | None = None) -> HttpResponse:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer k"}
    return await t.post(url, b'{"a":1}', headers, provider="p", timeout_s=timeout_s)


async def test_request_bytes_and_keep_alive(transport: Transport) -> None:
    async with Server(answer_ok) as server:
        url = server.url
        first = await post(transport, url)
        second = await post(transport, url)
    assert (first.status, first.body, second.body) == (200, b'{"ok":true}', b'{"ok":true}')
    assert first.headers["content-type"] == "application/json"
    assert server.connections == 1  # the second request reused the connection
    head, body = server.requests[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions?x=1 HTTP/1.1"
    assert set(lines[1:]) == {
        b"Content-Type: application/json",
        b"Authorization: Bearer k",
        f"Host: localhost:{url.split(':')[2].split('/')[0]}".encode(),
        b"Content-Length: 7",
    }
    assert body == b'{"a":1}'


async def test_chunked_gzip_and_close_delimited_bodies(transport: Transport) -> None:
    packed = gzip.compress(b'{"big":"' + b"x" * 5000 + b'"}')

    async def chunked_gzip(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n")
        for i in range(0, len(packed), 100):
            part = packed[i : i + 100]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    async def until_close(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with Server(chunked_gzip) as server:
        reply = await post(transport, server.url)
        assert reply.body == gzip.decompress(packed)
    async with Server(until_close) as server:
        assert (await post(transport, server.url)).body == b"all of it"
        assert (await post(transport, server.url)).body == b"all of it"
        assert server.connections == 2  # Connection: close is not reused


async def test_a_body_over_the_limit_once_decoded_fails_the_call_without_inflating_it(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decompression bomb (a small gzip body that inflates past MAX_RESPONSE_BYTES), or a plain body that large:
    the call fails as response_too_large, and no more than the limit is ever held."""
    monkeypatch.setattr(connections, "MAX_RESPONSE_BYTES", 1 << 20)
    bomb = gzip.compress(b"0" * (64 << 20))  # 64 MiB of zeros: 64 KiB on the wire

    async def gzipped(request: bytes, writer: asyncio.StreamWriter) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
        writer.write(head + bomb)
        await writer.drain()

    async def plain(request: bytes, writer: asyncio.StreamWriter) -> None:
        size = (1 << 20) + 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
        await writer.drain()

    for handler in (gzipped, plain):
        async with Server(handler) as server:
            with pytest.raises(ProviderError) as failed:
                await post(transport, server.url)
            assert failed.value.kind == "response_too_large" and "over 1 MiB" in failed.value.message


async def test_interim_answers_are_skipped(transport: Transport) -> None:
    async def early_hints(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK)

    async with Server(early_hints) as server:
        reply = await post(transport, server.url)
        assert (reply.status, reply.body) == (200, b'{"ok":true}') and "link" not in reply.headers
        assert (await post(transport, server.url)).status == 200
        assert server.connections == 1


async def test_a_stream_arrives_whole_and_an_error_status_as_one_response(transport: Transport) -> None:
    async def sse(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"data: one\n", b"\ndata: t", b"wo\n\n", b"data: [DONE]"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")

    async def refuse(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 4\r\n\r\nslow")

    async with Server(sse) as server:
        got = await pieces_of(transport, server.url)
        assert b"".join(p for p in got if isinstance(p, bytes)) == b"data: one\n\ndata: two\n\ndata: [DONE]"
        assert (await post(transport, server.url)).status == 200  # the connection went back to the pool
        assert server.connections == 1
    async with Server(refuse) as server:
        items = await pieces_of(transport, server.url)
        assert len(items) == 1 and isinstance(items[0], HttpResponse)
        assert (items[0].status, items[0].body) == (429, b"slow")


async def test_slow_consumer_of_a_large_stream_gets_every_byte(transport: Transport) -> None:
    line = b"data: " + b"y" * 1000 + b"\n"

    async def flood(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(line) * 2000))
        for _ in range(2000):
            writer.write(line)
        await writer.drain()

    async with Server(flood) as server:
        received = bytearray()
        reads = 0
        async with aclosing(transport.stream_bytes(server.url, b"{}", {}, provider="p")) as pieces:
            async for got in pieces:
                assert isinstance(got, bytes)
                received += got
                reads += 1
                if reads % 20 == 0:
                    await asyncio.sleep(0.01)  # reading pauses while these bytes pile up
    assert bytes(received) == line * 2000


async def test_deadlines_fail_the_call_and_drop_the_connection(transport: Transport) -> None:
    async def silent(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3)

    async with Server(silent) as server:
        with pytest.raises(ProviderTimeout):
            await post(transport, server.url, timeout_s=0.2)
        with pytest.raises(ProviderTimeout):
            await pieces_of(transport, server.url, ttft_timeout_s=0.2)
        await asyncio.sleep(0.05)
        assert server.connections == 2 and server.closed_by_client == 2


async def test_headers_only_then_no_first_byte_hits_the_ttft_deadline(transport: Transport) -> None:
    async def headers_only(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(3)

    async with Server(headers_only) as server:
        with pytest.raises(ProviderTimeout):
            await pieces_of(transport, server.url, ttft_timeout_s=0.2)


async def test_a_cancelled_call_closes_its_connection(transport: Transport) -> None:
    async with Server(answer_after(0.3)) as server:
        task = asyncio.create_task(post(transport, server.url))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.4)  # the server notices once it has answered and reads again
        assert server.closed_by_client == 1
        assert (await post(transport, server.url)).status == 200
        assert server.connections == 2


async def test_broken_answers_are_connection_errors(transport: Transport) -> None:
    async def garbage(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")

    async def cut_short(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial')
        await writer.drain()
        writer.close()

    for handler in (garbage, cut_short):
        async with Server(handler) as server:
            with pytest.raises(ProviderError) as caught:
                await post(transport, server.url)
            assert caught.value.kind == "connection"
    with pytest.raises(ProviderError) as refused:
        await post(transport, "http://127.0.0.1:1/v1/chat/completions")
    assert refused.value.kind == "connection"


async def test_bytes_that_arrive_with_the_break_are_handed_out_before_the_error() -> None:
    """A chunk and the connection's end in the same pass of the loop (the protocol told of both before the reader
    runs): read_some hands out the chunk, and the next read raises; the deltas that did arrive are relayed."""
    conn = Connection(Pool(limit_per_host=1))
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    await conn.read_head()
    reading = asyncio.ensure_future(conn.read_some())
    await asyncio.sleep(0)  # the reader now waits for bytes
    conn.data_received(b'f\r\ndata: {"a":1}\n\n\r\n')
    conn.connection_lost(ConnectionResetError("reset by peer"))
    assert await reading == b'data: {"a":1}\n\n'
    with pytest.raises(ConnectionResetError):
        await conn.read_some()


async def test_a_connection_the_server_closed_while_idle_is_not_reused(transport: Transport) -> None:
    async def once(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(OK)
        await writer.drain()
        writer.close()  # keep-alive announced, then dropped while idle

    async with Server(once) as server:
        assert (await post(transport, server.url)).status == 200
        await asyncio.sleep(0.05)
        assert (await post(transport, server.url)).status == 200
        assert server.connections == 2


async def test_header_injection_is_refused_before_sending(transport: Transport) -> None:
    async with Server(answer_ok) as server:
        with pytest.raises(ProviderError) as caught:
            await transport.post(server.url, b"{}", {"x-evil": "a\r\nX-Injected: 1"}, provider="p")
        assert caught.value.kind == "request" and not caught.value.retryable
        assert server.requests == []


async def test_the_per_origin_limit_queues_callers(one_connection: Transport) -> None:
    async with Server(answer_after(0.02)) as server:
        replies = await asyncio.gather(*(post(one_connection, server.url) for _ in range(5)))
    assert [r.status for r in replies] == [200] * 5
    assert server.connections == 1


async def test_https_with_verified_certificates() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    trusting = Transport(ssl_context=client_context, default_timeout_s=5)
    default = Transport(default_timeout_s=5)  # the system's CAs: the test CA is unknown to them
    await trusting.open()
    await default.open()
    try:
        async with Server(answer_ok, server_context) as server:
            assert server.url.startswith("https://")
            assert (await post(trusting, server.url)).body == b'{"ok":true}'
            assert (await post(trusting, server.url)).status == 200
            assert server.connections == 1
            with pytest.raises(ProviderError) as caught:
                await post(default, server.url)
            assert caught.value.kind == "connection" and "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    finally:
        await trusting.close()
        await default.close()


async def test_a_caller_leaving_the_queue_does_not_hold_up_the_others(one_connection: Transport) -> None:
    t = one_connection
    async with Server(answer_after(0.1)) as server:
        first = asyncio.create_task(post(t, server.url))
        await asyncio.sleep(0.02)
        leaving = asyncio.create_task(post(t, server.url))
        staying = asyncio.create_task(post(t, server.url))
        await asyncio.sleep(0.02)
        leaving.cancel()
        assert [r.status for r in await asyncio.gather(first, staying)] == [200, 200]
        assert leaving.cancelled() and server.connections == 1
        holder = asyncio.create_task(post(t, server.url))
        await asyncio.sleep(0.02)
        with pytest.raises(ProviderTimeout):  # a queued caller's deadline covers its wait for a connection
            await post(t, server.url, timeout_s=0.05)
        assert (await holder).status == 200


async def test_closing_the_transport_mid_call_lets_the_call_finish() -> None:
    t = Transport(default_timeout_s=5)
    await t.open()
    async with Server(answer_after(0.1)) as server:
        call = asyncio.create_task(post(t, server.url))
        await asyncio.sleep(0.02)
        pool = t.pool
        await t.close()
        assert (await call).status == 200
        assert pool._idle == {}  # not pooled again after close


async def test_a_large_answer_read_whole_is_not_held_back(transport: Transport) -> None:
    body = b"z" * (3 << 20)  # far past the stream back-pressure threshold

    async def big(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 65536):
            writer.write(body[i : i + 65536])
            await writer.drain()

    async with Server(big) as server:
        reply = await transport.get(server.url, {}, provider="p", timeout_s=5)
        assert reply.body == body
        assert server.requests[0].startswith(b"GET /v1/chat/completions?x=1 HTTP/1.1\r\n")
        assert b"content-length" not in server.requests[0].lower()


async def test_a_host_that_never_completes_the_connection_fails_after_the_connect_timeout() -> None:
    async def never(request: bytes, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("no request should arrive")

    t = Transport(connect_timeout_s=0.2, default_timeout_s=5)
    await t.open()
    try:
        async with Server(never) as server:  # plain TCP: a TLS handshake to it never completes
            https = server.url.replace("http://", "https://")
            started = asyncio.get_running_loop().time()
            with pytest.raises(ProviderError) as caught:
                await post(t, https)
            assert asyncio.get_running_loop().time() - started < 2
            assert caught.value.kind == "connection" and "within 0.2 s" in caught.value.message
            assert not isinstance(caught.value, ProviderTimeout)  # the provider did not time out: it never answered
    finally:
        await t.close()


async def test_a_connection_pooled_while_its_reading_was_paused_reads_its_next_answer(
    one_connection: Transport,
) -> None:
    """A stream whose answer ended while its reader lagged (reading paused past PAUSE_AT in the read that ended it)
    and whose reader then left goes back to the pool finished: the next call on it must read its answer, not hang
    with reading still paused."""
    first, rest = b"data: start\n\n", b"data: " + b"x" * (PAUSE_AT + 1000) + b"\n\n"
    calls = 0

    async def answers(request: bytes, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            writer.write(OK)
            return await writer.drain()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(first) + len(rest)) + first)
        await writer.drain()
        await asyncio.sleep(0.1)  # the reader has its first piece and lags
        writer.write(rest)
        await writer.drain()

    async with Server(answers) as server:
        async with aclosing(one_connection.stream_bytes(server.url, b"{}", {}, provider="p")) as pieces:
            async for _ in pieces:
                await asyncio.sleep(0.3)  # the rest arrives meanwhile: reading pauses in the read that ends it
                break  # the reader leaves
        reply = await asyncio.wait_for(post(one_connection, server.url, timeout_s=5), 3)
    assert reply.status == 200 and reply.body == b'{"ok":true}'
