"""The `gcp_vertex_gemini` and `gcp_vertex_anthropic` providers against FakeVertex: config, URLs and bodies,
service-account tokens (fetched with a signed JWT grant, cached, refreshed off the event loop) and their failures."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import google.auth
import orjson
import pytest
from google.oauth2 import credentials as google_credentials
from google.oauth2 import service_account

from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink, Table
from lsd.errors import LsdError, ProviderError
from lsd.providers.base import REDACTED, CallContext, key_fingerprint
from lsd.providers.gcp_vertex import provider as vertex_provider
from lsd.providers.registry import PROVIDER_TYPES
from lsd.providers.transport import Transport
from lsd.types import File, Message, ProviderRequest, StreamChunk, Text, ToolCall, ToolSpec
from tests.fakes.anthropic_server import CACHE_READ, CACHE_WRITE
from tests.fakes.vertex_server import CLIENT_EMAIL, CLOUD_PLATFORM, FakeVertex

KEY_PATH = "models.m.providers.p"
KEY_VAR = "LSD_TEST_VERTEX_KEY"
WEATHER = ToolSpec("weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})
PREFIX = "/v1/projects/fake-project/locations/us-central1"


def build(type_name: str, options: Mapping[str, Any], base_dir: Path = Path(".")) -> tuple[Any, list[str]]:
    sink = ErrorSink()
    config = ProviderConfig(name="p", type=type_name, options=options, key_path=KEY_PATH, base_dir=base_dir)
    table = Table(options, KEY_PATH, sink, base_dir)
    provider = PROVIDER_TYPES[type_name].from_config(config, table)
    table.finish()
    return provider, sink.errors


def ask(text: str, **fields: Any) -> ProviderRequest:
    return ProviderRequest(system=None, messages=(Message("user", (Text(text),)),), **fields)


async def collect(stream: AsyncIterator[StreamChunk]) -> tuple[list[StreamChunk], LsdError | None]:
    chunks: list[StreamChunk] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except LsdError as exc:
        return chunks, exc
    return chunks, None


@pytest.fixture
async def fake() -> AsyncIterator[FakeVertex]:
    async with FakeVertex(delay_s=30.0) as server:
        yield server


@pytest.fixture
def key_in_env(fake: FakeVertex, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(KEY_VAR, orjson.dumps(fake.service_account_info()).decode())
    yield


@pytest.fixture(scope="module")
async def transport() -> AsyncIterator[Transport]:
    transport = Transport()
    await transport.open()
    yield transport
    await transport.close()


@pytest.fixture
def ctx(transport: Transport) -> CallContext:
    return CallContext(transport=transport, timeout_s=10.0)


def options(fake: FakeVertex, model: str = "m-test", **extra: Any) -> dict[str, Any]:
    return {
        "model_id": model,
        "location": "us-central1",
        "project_id": "fake-project",
        "api_base": fake.base_url,
        "credential_location": f"env::{KEY_VAR}",
        **extra,
    }


def provider_for(type_name: str, fake: FakeVertex, model: str = "m-test", **extra: Any) -> Any:
    provider, errors = build(type_name, options(fake, model, **extra))
    assert errors == []
    return provider


# ---- config --------------------------------------------------------------------------------------------------


def test_config_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    gemini, errors = build(
        "gcp_vertex_gemini", {"model_id": "gemini-2.5-flash", "location": "europe-west4", "project_id": "p"}
    )
    assert errors == []
    assert gemini.url("generateContent") == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4"
        "/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    claude, errors = build("gcp_vertex_anthropic", {"endpoint_id": "123", "location": "global", "project_id": "p"})
    assert errors == []
    assert claude.url == "https://aiplatform.googleapis.com/v1/projects/p/locations/global/endpoints/123:rawPredict"
    _, errors = build("gcp_vertex_gemini", {"model_id": "m", "endpoint_id": "e", "credential_location": "file::x"})
    assert errors == [
        f"{KEY_PATH}.location: missing required key",
        f"{KEY_PATH}.project_id: missing required key",
        f"{KEY_PATH}.credential_location: expected 'path::FILE', 'path_from_env::VAR', 'env::VAR' or 'sdk', "
        "got 'file::x'",
        f"{KEY_PATH}.model_id: set exactly one of `model_id` and `endpoint_id`",
    ]
    monkeypatch.setattr(vertex_provider, "GCP_EXTRA_MISSING", True)
    _, errors = build("gcp_vertex_anthropic", {"model_id": "m", "location": "l", "project_id": "p"})
    assert errors == [f"{KEY_PATH}.type: gcp_vertex_anthropic needs google-auth: pip install 'lsd[gcp]'"]


# ---- calls and tokens ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("key_in_env")
async def test_gemini_at_vertex(fake: FakeVertex, ctx: CallContext) -> None:
    provider = provider_for("gcp_vertex_gemini", fake, "gemini-2.5-flash")
    response = await provider.infer(ask("hello there"), ctx)
    assert response.content == (Text("echo: hello there"),)
    sent = fake.requests[-1]
    assert sent.path == f"{PREFIX}/publishers/google/models/gemini-2.5-flash:generateContent"
    [token] = fake.issued
    assert sent.headers["Authorization"] == f"Bearer {token}"
    assert response.request_headers["Authorization"] == REDACTED
    assert response.api_key_sha256 == key_fingerprint(token)
    assert token not in repr(response)
    chunks, error = await collect(provider.stream(ask("hi there"), ctx))
    assert error is None and chunks[-1].finish_reason == "stop"
    assert fake.requests[-1].path.endswith(":streamGenerateContent") and fake.requests[-1].query == {"alt": "sse"}
    with pytest.raises(ProviderError, match="does not support embeddings"):
        await provider.embed(["x"], ctx)


@pytest.mark.usefixtures("key_in_env")
async def test_anthropic_at_vertex(fake: FakeVertex, ctx: CallContext) -> None:
    provider = provider_for("gcp_vertex_anthropic", fake, "claude-sonnet-4-5@20250929")
    response = await provider.infer(ask("hello there", tools=(WEATHER,)), ctx)
    assert response.content == (Text("echo: hello there"),)
    sent = fake.requests[-1]
    assert sent.path == f"{PREFIX}/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    assert sent.json["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent.json
    assert "anthropic-version" not in sent.headers and "x-api-key" not in sent.headers
    tool = provider_for("gcp_vertex_anthropic", fake, "tool")
    chunks, error = await collect(tool.stream(ask("Oslo", tools=(WEATHER,)), ctx))
    assert error is None and chunks[-1].finish_reason == "tool_call"
    calls = [b for c in chunks for b in c.content if isinstance(b, ToolCall)]
    assert calls[0].name == "weather" and orjson.loads("".join(c.arguments for c in calls))["query"] == "Oslo"
    assert fake.requests[-1].path.endswith("/models/tool:streamRawPredict") and fake.requests[-1].json["stream"]
    content = [{"type": "text", "text": "one two three"}]
    counted = await provider.count_tokens({"messages": [{"role": "user", "content": content}]}, ctx)
    assert counted == {"input_tokens": 3}
    assert fake.requests[-1].path == f"{PREFIX}/publishers/anthropic/models/count-tokens:rawPredict"
    assert fake.requests[-1].json["model"] == "claude-sonnet-4-5@20250929"
    cached = await provider_for("gcp_vertex_anthropic", fake, "cached").infer(ask("hi"), ctx)
    assert (cached.usage.cache_read_input_tokens, cached.usage.cache_write_input_tokens) == (CACHE_READ, CACHE_WRITE)


@pytest.mark.usefixtures("key_in_env")
async def test_claude_at_vertex_takes_no_file_urls(fake: FakeVertex, ctx: CallContext) -> None:
    """Vertex answers 400 "URL sources are not supported" to Claude files by URL: LSD says so before the call."""
    provider = provider_for("gcp_vertex_anthropic", fake, "claude-sonnet-4-5@20250929")
    before = len(fake.requests)
    by_url = File("image/png", url="https://example.com/cat.png")
    with pytest.raises(ProviderError, match="files by URL") as refused:  # this provider's failure: routing falls back
        await provider.infer(ProviderRequest(system=None, messages=(Message("user", (by_url,)),)), ctx)
    assert (refused.value.kind, refused.value.retryable) == ("unsupported", False)
    assert len(fake.requests) == before
    inline = File(None, url="data:image/png;base64,aGVsbG8=")
    await provider.infer(ProviderRequest(system=None, messages=(Message("user", (Text("hi"), inline)),)), ctx)
    [part] = [p for p in fake.requests[-1].json["messages"][0]["content"] if p["type"] == "image"]
    assert part["source"]["type"] == "base64"


@pytest.mark.usefixtures("key_in_env")
async def test_an_endpoint_id(fake: FakeVertex, ctx: CallContext) -> None:
    opts = options(fake, endpoint_id="4567")
    del opts["model_id"]
    for type_name, method in (("gcp_vertex_gemini", "generateContent"), ("gcp_vertex_anthropic", "rawPredict")):
        provider, errors = build(type_name, opts)
        assert errors == []
        assert (await provider.infer(ask("hi"), ctx)).content == (Text("echo: hi"),)
        assert fake.requests[-1].path == f"{PREFIX}/endpoints/4567:{method}"


@pytest.mark.usefixtures("key_in_env")
async def test_the_token_is_fetched_once_and_reused_while_fresh(fake: FakeVertex, ctx: CallContext) -> None:
    provider = provider_for("gcp_vertex_gemini", fake)
    for _ in range(3):
        await provider.infer(ask("hi"), ctx)
    assert len(fake.issued) == 1
    [claims] = fake.token_requests  # a JWT grant signed with the key file's private key (checked by the fake)
    assert claims["iss"] == CLIENT_EMAIL and CLOUD_PLATFORM in claims["scope"]


async def test_a_stale_token_is_refreshed_off_the_event_loop(ctx: CallContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token within google-auth's refresh margin (3m45s) is replaced before the call; the refresh (google-auth
    blocks) runs on a worker thread, and each call carries the newest token."""
    refreshed_on: list[str] = []
    refresh = service_account.Credentials.refresh

    def recording(self: Any, request: Any) -> None:
        refreshed_on.append(threading.current_thread().name)
        refresh(self, request)

    monkeypatch.setattr(service_account.Credentials, "refresh", recording)
    async with FakeVertex(token_lifetime_s=60) as fake:
        monkeypatch.setenv(KEY_VAR, orjson.dumps(fake.service_account_info()).decode())
        provider = provider_for("gcp_vertex_anthropic", fake, "claude-test@1")
        for _ in range(2):
            await provider.infer(ask("hi"), ctx)
            assert fake.requests[-1].headers["Authorization"] == f"Bearer {fake.issued[-1]}"
        _, error = await collect(provider.stream(ask("hi"), ctx))
        assert error is None and fake.requests[-1].headers["Authorization"] == f"Bearer {fake.issued[-1]}"
    assert fake.issued == ["ya29.fake-1", "ya29.fake-2", "ya29.fake-3"]
    assert len(refreshed_on) == 3 and threading.main_thread().name not in refreshed_on


async def test_credential_locations(
    fake: FakeVertex, ctx: CallContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """path:: (relative to the config file's folder), path_from_env:: (the default variable), env:: holding a
    path, and sdk (Application Default Credentials from GOOGLE_APPLICATION_CREDENTIALS)."""
    key_file = tmp_path / "keys" / "vertex.json"
    key_file.parent.mkdir()
    key_file.write_bytes(orjson.dumps(fake.service_account_info()))
    monkeypatch.setenv("GCP_VERTEX_CREDENTIALS_PATH", str(key_file))
    monkeypatch.setenv("LSD_TEST_VERTEX_PATH", str(key_file))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    locations = ("path::keys/vertex.json", None, "env::LSD_TEST_VERTEX_PATH", "sdk")
    for location in locations:
        opts = options(fake, credential_location=location)
        if location is None:
            del opts["credential_location"]  # the default: path_from_env::GCP_VERTEX_CREDENTIALS_PATH
        provider, errors = build("gcp_vertex_gemini", opts, base_dir=tmp_path)
        assert errors == []
        assert (await provider.infer(ask("hi"), ctx)).content == (Text("echo: hi"),), location
    assert len(fake.issued) == len(locations)
    assert "x-goog-user-project" not in fake.requests[-1].headers


async def test_the_quota_project_of_the_credentials_is_sent(
    fake: FakeVertex, ctx: CallContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gcloud's user credentials (and a key file that names one) carry a quota project: Google bills and checks
    quota against it only when calls send it as x-goog-user-project, as google-auth's own requests do."""
    info = fake.authorized_user_info(quota_project="my-billing-project")
    # google.auth.default() reads such a file but always refreshes at Google's own token endpoint: the discovery
    # is replaced by the credentials it makes, pointed at the fake's (the refresh and the header are LSD's).
    user = google_credentials.Credentials.from_authorized_user_info(info)  # type: ignore[no-untyped-call]
    assert user.quota_project_id == "my-billing-project"
    user._token_uri = info["token_uri"]
    monkeypatch.setattr(google.auth, "default", lambda **_: (user, None))
    for type_name, model in (("gcp_vertex_gemini", "gemini-2.5-flash"), ("gcp_vertex_anthropic", "claude-x@1")):
        provider, errors = build(type_name, {**options(fake, credential_location="sdk"), "model_id": model})
        assert errors == []
        await provider.infer(ask("hi"), ctx)
        assert fake.requests[-1].headers["x-goog-user-project"] == "my-billing-project", type_name


async def test_credentials_that_cannot_be_used(
    fake: FakeVertex, ctx: CallContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing variable, a file that is not a service-account key, a key the token endpoint refuses: each fails
    the attempt as `auth`, not retryable, before any model call; a token the model endpoint refuses is `auth` too."""
    monkeypatch.delenv(KEY_VAR, raising=False)
    not_a_key = tmp_path / "user.json"
    not_a_key.write_text('{"type": "authorized_user"}')
    async with FakeVertex() as stranger:
        foreign = {**stranger.service_account_info(), "token_uri": f"{fake.url}/token"}  # another private key
    monkeypatch.setenv("LSD_TEST_FOREIGN_KEY", orjson.dumps(foreign).decode())
    cases = {
        f"env::{KEY_VAR}": f"environment variable {KEY_VAR} is not set",
        f"path::{not_a_key}": "is not a service-account key file",
        "path::/nonexistent/key.json": "cannot read the service-account key",
        "env::LSD_TEST_FOREIGN_KEY": "the Google token endpoint refused the credentials",
    }
    for location, message in cases.items():
        provider = provider_for("gcp_vertex_gemini", fake, credential_location=location)
        for call in ("infer", "stream"):
            if call == "infer":
                with pytest.raises(ProviderError) as caught:
                    await provider.infer(ask("hi"), ctx)
                error: Any = caught.value
            else:
                _, error = await collect(provider.stream(ask("hi"), ctx))
            assert isinstance(error, ProviderError) and message in error.message, (location, error)
            assert (error.kind, error.retryable) == ("auth", False)
    assert fake.requests == [] and fake.issued == []
    # A token from one Vertex sent to another: its 401 is an auth error.
    monkeypatch.setenv(KEY_VAR, orjson.dumps(fake.service_account_info()).decode())
    async with FakeVertex() as other:
        provider = provider_for("gcp_vertex_gemini", fake, api_base=other.base_url)
        with pytest.raises(ProviderError) as refused:
            await provider.infer(ask("hi"), ctx)
    assert (refused.value.status, refused.value.kind, refused.value.retryable) == (401, "auth", False)
    assert fake.issued[-1] not in repr(vars(refused.value))


async def test_an_unreachable_token_endpoint_is_a_retryable_connection_error(
    fake: FakeVertex, ctx: CallContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeVertex() as gone:
        dead = f"{gone.url}/token"
    monkeypatch.setenv(KEY_VAR, orjson.dumps({**fake.service_account_info(), "token_uri": dead}).decode())
    with pytest.raises(ProviderError, match="token endpoint could not be reached") as caught:
        await provider_for("gcp_vertex_gemini", fake).infer(ask("hi"), ctx)
    assert (caught.value.kind, caught.value.retryable) == ("connection", True)
    assert fake.requests == []
