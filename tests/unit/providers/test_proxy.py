"""Outbound calls through an HTTP proxy (tests/fakes/connect_proxy.py): CONNECT tunnels to TLS origins, absolute-form
requests to http ones, NO_PROXY, a provider's `proxy` option over the environment, proxy credentials and refusals."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink, Table
from lsd.errors import ConfigError, ProviderError
from lsd.providers.base import CallContext
from lsd.providers.openai import OpenAIProvider
from lsd.providers.proxies import EnvironmentProxies, NoProxy, Proxy, ProxyChoice, proxy_option
from lsd.providers.transport import HttpResponse, Transport
from lsd.types import Message, ProviderRequest, Text
from tests.fakes.connect_proxy import ConnectProxy
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.scripted_server import Server, answer_ok

PASSWORD = "s3cr3t-pa55"


@pytest.fixture(scope="module")
def tls() -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    """A server context with a certificate for "localhost" and a client context that trusts its CA."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    yield server, client


@asynccontextmanager
async def opened(environ: Mapping[str, str], **kwargs: Any) -> AsyncIterator[Transport]:
    t = Transport(default_timeout_s=5, environ=environ, **kwargs)
    await t.open()
    try:
        yield t
    finally:
        await t.close()


async def post(t: Transport, url: str, proxy: ProxyChoice = None) -> HttpResponse:
    return await t.post(url, b'{"a":1}', {"Authorization": "Bearer k"}, provider="p", proxy=proxy)


async def refused(t: Transport, url: str, proxy: ProxyChoice = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await post(t, url, proxy)
    return caught.value


def origin_form(request: bytes) -> bytes:
    return request.split(b"\r\n")[0]


# ---- https: CONNECT tunnels ---------------------------------------------------------------------------------------


async def test_https_goes_through_a_connect_tunnel_with_the_origin_name_checked(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls
    async with (
        ConnectProxy(user="me", password=PASSWORD) as proxy,
        Server(answer_ok, server_context) as server,
        opened({"HTTPS_PROXY": proxy.url}, ssl_context=client_context) as t,
    ):
        assert (await post(t, server.url)).body == b'{"ok":true}'
        assert (await post(t, server.url)).status == 200
        port = server.url.split(":")[2].split("/")[0]
        assert proxy.tunnels == [f"localhost:{port}"]  # one tunnel, kept alive for the second call
        assert server.connections == 1
        assert origin_form(server.requests[0]) == b"POST /v1/chat/completions?x=1 HTTP/1.1"
        assert b"proxy-authorization" not in server.requests[0].lower()  # the credentials stay with the proxy
        assert proxy.authorizations[0] is not None and proxy.authorizations[0].startswith("Basic ")
        # The certificate is for "localhost": the same server named by its address fails verification.
        error = await refused(t, server.url.replace("localhost", "127.0.0.1"))
        assert error.kind == "connection" and "CERTIFICATE_VERIFY_FAILED" in error.message
        assert proxy.tunnels[-1] == f"127.0.0.1:{port}"


async def test_a_stream_comes_through_the_tunnel(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    async def sse(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"data: one\n\n", b"data: t", b"wo\n\n", b"data: [DONE]\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")

    server_context, client_context = tls
    async with (
        ConnectProxy() as proxy,
        Server(sse, server_context) as server,
        opened({"https_proxy": proxy.url}, ssl_context=client_context) as t,
    ):
        async with aclosing(t.stream_bytes(server.url, b"{}", {}, provider="p")) as pieces:
            got = [piece async for piece in pieces]
        assert b"".join(p for p in got if isinstance(p, bytes)) == b"data: one\n\ndata: two\n\ndata: [DONE]\n\n"
        assert len(proxy.tunnels) == 1 and proxy.relayed > 0


@pytest.mark.parametrize("status", [407, 403, 502])
async def test_a_refused_tunnel_is_a_connection_error_without_the_password(
    status: int, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = tls
    options: dict[str, Any] = {"user": "me", "password": "wrong"} if status == 407 else {"refuse": status}
    async with (
        ConnectProxy(**options) as proxy,
        Server(answer_ok, server_context) as server,
        opened({}, ssl_context=client_context) as t,
    ):
        error = await refused(t, server.url, Proxy.parse(proxy.url.replace("wrong", PASSWORD)))
    assert error.kind == "connection" and error.retryable
    assert f"proxy http://127.0.0.1:{proxy.port} refused to tunnel" in error.message
    assert f"HTTP {status}" in error.message
    assert PASSWORD not in repr(error.__dict__) + str(error)
    assert server.requests == []


# ---- http: absolute-form requests -----------------------------------------------------------------------------------


async def test_http_is_sent_to_the_proxy_in_absolute_form() -> None:
    async with (
        ConnectProxy(user="me", password=PASSWORD) as proxy,
        Server(answer_ok) as server,
        opened({"HTTP_PROXY": proxy.url, "HTTPS_PROXY": "http://127.0.0.1:1"}) as t,
    ):
        url = server.url
        assert (await post(t, url)).body == b'{"ok":true}'
        assert (await post(t, url)).status == 200
    port = url.split(":")[2].split("/")[0]
    assert proxy.requests == [f"POST http://localhost:{port}/v1/chat/completions?x=1 HTTP/1.1".encode()] * 2
    assert proxy.connections == 1 and proxy.tunnels == []
    assert proxy.authorizations == [proxy.authorizations[0]] * 2 and proxy.authorizations[0] is not None
    assert origin_form(server.requests[0]) == b"POST /v1/chat/completions?x=1 HTTP/1.1"


async def test_a_407_for_an_http_origin_is_a_connection_error_without_the_password() -> None:
    async with (
        ConnectProxy(user="me", password="right") as proxy,
        Server(answer_ok) as server,
        opened({"HTTP_PROXY": proxy.url.replace("right", PASSWORD)}) as t,
    ):
        error = await refused(t, server.url)
        async with aclosing(t.stream_bytes(server.url, b"{}", {}, provider="p")) as pieces:
            with pytest.raises(ProviderError) as streamed:
                _ = [piece async for piece in pieces]
    for exc in (error, streamed.value):
        assert exc.kind == "connection" and "HTTP 407" in exc.message
        assert PASSWORD not in repr(exc.__dict__) + str(exc)
    assert server.requests == []


# ---- which calls use a proxy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("no_proxy", "proxied"),
    [
        ("localhost", False),
        ("*", False),
        ("example.com, .localhost", False),
        ("localhost:{port}", False),
        ("localhost:1", True),
        ("127.0.0.1", True),  # names are not resolved
        ("notlocalhost", True),
        ("", True),
    ],
)
async def test_no_proxy_sends_matching_origins_directly(no_proxy: str, proxied: bool) -> None:
    async with ConnectProxy() as proxy, Server(answer_ok) as server:
        port = server.url.split(":")[2].split("/")[0]
        async with opened({"http_proxy": proxy.url, "NO_PROXY": no_proxy.format(port=port)}) as t:
            assert (await post(t, server.url)).status == 200
    assert len(proxy.requests) == (1 if proxied else 0)


async def test_a_calls_proxy_wins_over_the_environment_and_pools_apart() -> None:
    async with (
        ConnectProxy() as from_env,
        ConnectProxy() as own,
        Server(answer_ok) as server,
        opened({"HTTP_PROXY": from_env.url, "NO_PROXY": "localhost"}) as t,
    ):
        assert (await post(t, server.url)).status == 200  # NO_PROXY: direct
        assert (await post(t, server.url, Proxy.parse(own.url))).status == 200  # NO_PROXY does not apply
        assert (await post(t, server.url, "direct")).status == 200
        assert (await post(t, server.url)).status == 200
    assert (len(from_env.requests), len(own.requests)) == (0, 1)
    assert server.connections == 2  # one direct (reused three times), one from the proxy


async def test_direct_calls_ignore_proxies_of_the_other_scheme() -> None:
    async with ConnectProxy() as proxy, Server(answer_ok) as server, opened({"HTTPS_PROXY": proxy.url}) as t:
        assert (await post(t, server.url)).status == 200
    assert proxy.connections == 0


async def test_an_unreachable_proxy_is_a_connection_error() -> None:
    async with Server(answer_ok) as server, opened({"HTTP_PROXY": f"http://me:{PASSWORD}@127.0.0.1:1"}) as t:
        error = await refused(t, server.url)
    assert error.kind == "connection" and "cannot reach proxy http://127.0.0.1:1" in error.message
    assert PASSWORD not in str(error) and server.requests == []


async def test_a_proxy_that_never_answers_fails_within_the_connect_timeout(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls
    async with (
        ConnectProxy(silent=True) as proxy,
        Server(answer_ok, server_context) as server,
        opened({"HTTPS_PROXY": proxy.url}, ssl_context=client_context, connect_timeout_s=0.2) as t,
    ):
        started = asyncio.get_running_loop().time()
        error = await refused(t, server.url)
        assert asyncio.get_running_loop().time() - started < 2
    assert error.kind == "connection"
    assert f"through proxy http://127.0.0.1:{proxy.port} within 0.2 s" in error.message


async def test_an_unusable_proxy_variable_fails_open_naming_it() -> None:
    t = Transport(environ={"https_proxy": f"socks5://me:{PASSWORD}@proxy:1080"})
    with pytest.raises(ConfigError, match="https_proxy: unsupported proxy scheme 'socks5'") as caught:
        await t.open()
    assert PASSWORD not in str(caught.value)


# ---- parsing ---------------------------------------------------------------------------------------------------


def test_proxy_urls() -> None:
    assert Proxy.parse("proxy.corp:3128") == Proxy("proxy.corp", 3128, None, "http://proxy.corp:3128")
    assert Proxy.parse("http://PROXY") == Proxy("proxy", 80, None, "http://proxy:80")
    with_user = Proxy.parse("http://d%40me:p%3Ass@[::1]:8080/")
    assert with_user.authorization == "Basic ZEBtZTpwOnNz"  # "d@me:p:ss"
    assert with_user.shown == "http://[::1]:8080"
    for bad in ("https://proxy:443", "http://proxy:3128/path", "http://:3128", "http://proxy:port"):
        with pytest.raises(ValueError):
            Proxy.parse(bad)


@pytest.mark.parametrize(
    ("rules", "host", "port", "bypass"),
    [
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        (".example.com", "example.com", 443, True),
        ("*.example.com", "a.b.example.com", 443, True),
        ("example.com", "notexample.com", 443, False),
        ("EXAMPLE.com", "Api.Example.COM.", 443, True),
        ("example.com:8443", "example.com", 443, False),
        ("example.com:8443", "example.com", 8443, True),
        (" a.test ,, example.com ", "example.com", 80, True),
        ("*", "anything", 1, True),
        ("10.0.0.0/8", "10.2.3.4", 443, True),
        ("10.0.0.0/8", "11.2.3.4", 443, False),
        ("10.0.0.0/8", "ten.example", 443, False),
        ("192.168.1.7", "192.168.1.7", 80, True),
        ("::1", "::1", 443, True),
        ("[::1]:443", "::1", 443, True),
        ("[::1]:443", "::1", 80, False),
        ("fd00::/8", "fd12::1", 443, True),
        ("", "example.com", 443, False),
    ],
)
def test_no_proxy_rules(rules: str, host: str, port: int, bypass: bool) -> None:
    assert NoProxy.parse(rules).matches(host, port) is bypass


def test_environment_variables() -> None:
    assert EnvironmentProxies.read({"NO_PROXY": "x"}) is None  # nothing to check on the direct path
    env = EnvironmentProxies.read({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "no_proxy": "a"})
    assert env is not None and env.https is not None and env.http is None
    assert env.https.host == "lower"  # lowercase wins
    assert env.proxy_for("https", "b", 443) == env.https
    assert env.proxy_for("https", "a", 443) is None and env.proxy_for("http", "b", 80) is None


def parsed(options: dict[str, Any]) -> tuple[ProxyChoice, list[str]]:
    sink = ErrorSink()
    table = Table(options, "models.m.providers.p", sink, Path("."))
    choice = proxy_option(table)
    table.finish()
    return choice, sink.errors


def test_the_proxy_option(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parsed({}) == (None, [])
    assert parsed({"proxy": "none"}) == ("direct", [])
    assert parsed({"proxy": ""}) == ("direct", [])
    assert parsed({"proxy": "http://proxy:3128"}) == (Proxy("proxy", 3128, None, "http://proxy:3128"), [])
    monkeypatch.setenv("CORP_PROXY", f"http://me:{PASSWORD}@proxy:3128")
    choice, errors = parsed({"proxy": "env::CORP_PROXY"})
    assert errors == [] and isinstance(choice, Proxy) and choice.authorization is not None
    choice, errors = parsed({"proxy": f"socks5h://me:{PASSWORD}@proxy:1080"})
    assert choice is None and len(errors) == 1
    assert errors[0].startswith("models.m.providers.p.proxy: unsupported proxy scheme 'socks5h'")
    assert PASSWORD not in errors[0] and "me:***@proxy:1080" in errors[0]
    assert parsed({"proxy": 3128}) == (None, ["models.m.providers.p.proxy: expected a string, got int"])


# ---- a provider configured with `proxy` ---------------------------------------------------------------------------


async def test_a_provider_with_a_proxy_sends_its_calls_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    async with FakeOpenAI(api_key="sk-test") as fake, ConnectProxy(user="me", password=PASSWORD) as proxy:
        options = {"model_name": "gpt-test", "api_base": fake.api_base, "proxy": proxy.url}
        config = ProviderConfig("p", "openai", options, "models.m.providers.p", Path("."))
        sink = ErrorSink()
        table = Table(options, config.key_path, sink, Path("."))
        provider = OpenAIProvider.from_config(config, table)
        table.finish()
        assert sink.errors == []
        request = ProviderRequest(system=None, messages=(Message("user", (Text("hi"),)),))
        async with opened({}) as t:
            ctx = CallContext(transport=t, timeout_s=5.0)
            response = await provider.infer(request, ctx)
            chunks = [chunk async for chunk in provider.stream(request, ctx)]
        assert response.content == (Text("echo: hi"),)
        assert "".join(b.text for c in chunks for b in c.content if isinstance(b, Text)) == "echo: hi"
        assert [r.split(b" ")[1] for r in proxy.requests] == [f"{fake.api_base}chat/completions".encode()] * 2
        assert len(fake.requests) == 2 and "Proxy-Authorization" not in fake.requests[0].headers
        assert PASSWORD not in repr(response)
