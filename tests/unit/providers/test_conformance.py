"""The provider conformance suite: every registered provider type, against its fake server, behaves alike.

Each case runs once per key of PROVIDER_TYPES; HARNESSES says how a type meets the suite (its fake, its options,
the model name that makes its fake play each scenario). A type added to the registry without a harness fails
here. A scenario missing from a harness is one that type cannot produce (the dummy has no wire): skipped, with
the reason. Provider-specific behaviour (wire mapping, finish reasons, thoughts, batches) stays in the
per-provider test modules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink, Table
from lsd.errors import InvalidRequest, LsdError, ProviderError, ProviderTimeout
from lsd.providers.base import REDACTED, CallContext, Provider, key_fingerprint
from lsd.providers.openai.compatible import OPENAI_COMPATIBLE
from lsd.providers.registry import PROVIDER_TYPES
from lsd.providers.scrubber import PREFIX_LENGTH
from lsd.providers.transport import Transport
from lsd.types import (
    BodyPatch,
    HeaderPatch,
    InferenceParams,
    Message,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    Text,
    ToolCall,
    ToolSpec,
    Usage,
)
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.bedrock_server import FakeBedrock
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.vertex_server import FakeVertex

KEY = "sk-conformance-0123456789abcdef"  # every fake expects it; nothing stored may hold it
CREDENTIAL = "conformance"  # providers take KEY from the request's credentials under this name
UNSET_VAR = "LSD_CONFORMANCE_UNSET_KEY"
# The cloud types take no api_key_location: Bedrock signs with the AWS chain's credentials (KEY is the access key
# id, which the Authorization header names), Vertex sends the token its fake issues (KEY) for a service account.
AWS_SECRET, AWS_TOKEN = "wJalrXUtnFEMI-K7MDENG-conformance", "IQoJb3JpZ2luX2VjEConformanceToken0123"
VERTEX_KEY_VAR = "LSD_CONFORMANCE_VERTEX_KEY"  # holds the fake's service-account key file
WEATHER = ToolSpec("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
PRICE = {"input_per_million": 2.0, "output_per_million": 10.0}
# status -> (kind, retryable): what routing sees of each HTTP error status, whichever provider answered it.
STATUSES = {
    400: ("bad_request", False),
    401: ("auth", False),
    403: ("auth", False),
    404: ("not_found", False),
    429: ("rate_limited", True),
    500: ("server_error", True),
    503: ("server_error", True),
    529: ("server_error", True),
}


@dataclass(frozen=True)
class Received:
    """What a fake received in one request, whichever fake it was."""

    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any


@dataclass(frozen=True)
class Harness:
    """How one provider type meets the suite.

    `fake` names the fake server it talks to (None: no network); `options(url, model)` is its TOML table for a
    fake at `url`; `models` maps each scenario to the model name that makes the fake play it (a missing
    scenario is one this type cannot produce); `statuses` are the HTTP error statuses its fake can answer.
    """

    fake: str | None
    options: Callable[[str, str], dict[str, Any]]
    models: Mapping[str, str]
    statuses: tuple[int, ...] = ()
    priced: bool = True  # takes the `cost` option
    keyed: bool = True  # sends an API key
    key_location: bool = True  # takes it from `api_key_location` (the cloud types have their own credentials)
    error_field: str = "error"  # the member of its error bodies that holds the error

    def model(self, scenario: str) -> str:
        if scenario not in self.models:
            pytest.skip(f"this provider type cannot produce {scenario!r}")
        return self.models[scenario]


def _keyed(options: dict[str, Any]) -> dict[str, Any]:
    return {"api_key_location": f"dynamic::{CREDENTIAL}", **options}


def _vertex(url: str, model: str) -> dict[str, Any]:
    return {
        "model_id": model,
        "location": "us-central1",
        "project_id": "fake-project",
        "api_base": f"{url}/v1/",
        "credential_location": f"env::{VERTEX_KEY_VAR}",
    }


_COMMON = (400, 401, 403, 404, 429, 500)
_OPENAI_MODELS = {
    "plain": "gpt-test",
    "tool": "tool",
    "json": "json",
    "json_tool": "gpt-test",
    "broken": "broken",
    "slow": "slow",
    "malformed": "malformed",
    "leak": "leak",
    "leak_401": "leak-401",
}

HARNESSES: dict[str, Harness] = {
    "openai": Harness(
        fake="openai",
        options=lambda url, model: _keyed({"model_name": model, "api_base": f"{url}/v1/"}),
        models=_OPENAI_MODELS,
        statuses=(*_COMMON, 503),
    ),
    "azure": Harness(
        fake="openai",
        options=lambda url, model: _keyed({"deployment_id": model, "endpoint": url}),
        models=_OPENAI_MODELS,
        statuses=(*_COMMON, 503),
    ),
    "anthropic": Harness(
        fake="anthropic",
        options=lambda url, model: _keyed({"model_name": model, "api_base": f"{url}/v1/"}),
        models={
            "plain": "claude-test",
            "tool": "tool",
            "json": "json",
            "json_tool": "claude-test",
            "broken": "cutoff",
            "slow": "slow",
            "malformed": "malformed",
            "leak": "leak",
            "leak_401": "leak-401",
        },
        statuses=(*_COMMON, 529),
    ),
    "google_ai_studio_gemini": Harness(
        fake="gemini",
        options=lambda url, model: _keyed({"model_name": model, "api_base": f"{url}/v1beta/"}),
        models={
            "plain": "gemini-test",
            "tool": "function",
            "json": "json",
            "json_tool": "gemini-test",
            "broken": "drop",
            "slow": "slow",
            "malformed": "malformed",
            "leak": "leak",
            "leak_401": "leak-401",
        },
        statuses=(*_COMMON, 503),
    ),
    "aws_bedrock": Harness(
        fake="bedrock",
        options=lambda url, model: {"model_id": model, "region": "us-east-1", "endpoint_url": url},
        models={
            "plain": "anthropic.claude-test-v1:0",
            "tool": "tool",
            "json": "json",
            "json_tool": "anthropic.claude-test-v1:0",
            "broken": "cutoff",
            "slow": "slow",
            "malformed": "malformed",
            "leak": "leak",
            "leak_401": "leak-401",
        },
        statuses=(*_COMMON, 503),
        key_location=False,
        error_field="message",
    ),
    "gcp_vertex_anthropic": Harness(
        fake="vertex",
        options=lambda url, model: _vertex(url, model),
        models={
            "plain": "claude-test@20250101",
            "tool": "tool",
            "json": "json",
            "json_tool": "claude-test@20250101",
            "broken": "cutoff",
            "slow": "slow",
            "malformed": "malformed",
            "leak": "leak",
            "leak_401": "leak-401",
        },
        statuses=(*_COMMON, 529),
        key_location=False,
    ),
    "gcp_vertex_gemini": Harness(
        fake="vertex",
        options=lambda url, model: _vertex(url, model),
        models={
            "plain": "gemini-test",
            "tool": "function",
            "json": "json",
            "json_tool": "gemini-test",
            "broken": "drop",
            "slow": "slow",
            "malformed": "malformed",
            "leak": "leak",
            "leak_401": "leak-401",
        },
        statuses=(*_COMMON, 503),
        key_location=False,
    ),
    # Every OpenAI-compatible type (deepseek, groq, vllm, ...) is the openai wire at another api_base.
    **{
        cls.type_name: Harness(
            fake="openai",
            options=lambda url, model: _keyed({"model_name": model, "api_base": f"{url}/v1/"}),
            models=_OPENAI_MODELS,
            statuses=(*_COMMON, 503),
        )
        for cls in OPENAI_COMPATIBLE
    },
    "dummy": Harness(
        fake=None,
        options=lambda url, model: {"model_name": model},
        models={"plain": "echo", "tool": "tool", "json": "json", "json_tool": "json", "slow": "slow"},
        priced=False,
        keyed=False,
    ),
}
TYPES = sorted(PROVIDER_TYPES)


def test_every_registered_provider_type_has_a_harness() -> None:
    assert sorted(HARNESSES) == TYPES


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`test_error_status` runs for each (type, status) its harness lists (the dummy has no HTTP statuses)."""
    if "status" in metafunc.fixturenames:
        pairs = [(t, s) for t in TYPES for s in (HARNESSES[t].statuses if t in HARNESSES else (500,))]
        metafunc.parametrize(("type_name", "status"), pairs, ids=[f"{t}-{s}" for t, s in pairs])


# ---- fixtures ------------------------------------------------------------------------------------------------


@dataclass
class Fakes:
    """The fake servers the suite runs, by the name a Harness gives in `fake`."""

    servers: dict[str, Any] = field(default_factory=dict)

    def url(self, harness: Harness) -> str:
        return self.servers[harness.fake].url if harness.fake else ""

    def sent(self, harness: Harness) -> int:
        """How many requests the type's fake has received."""
        return len(self.servers[harness.fake].requests) if harness.fake else 0

    def last(self, harness: Harness) -> Received:
        """The last request the type's fake received."""
        assert harness.fake is not None
        request = self.servers[harness.fake].requests[-1]
        body = request.body if harness.fake == "openai" else request.json
        return Received(request.query, request.headers, body)


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[Fakes]:
    async with AsyncExitStack() as stack:
        vertex = FakeVertex(token=KEY, delay_s=5.0)
        servers: dict[str, Any] = {
            "openai": FakeOpenAI(api_key=KEY, delay_s=5.0),
            "anthropic": FakeAnthropic(api_key=KEY, delay_s=5.0),
            "gemini": FakeGemini(expected_key=KEY, delay_s=5.0),
            "bedrock": FakeBedrock(access_key=KEY, secret_key=AWS_SECRET, token=AWS_TOKEN, delay_s=5.0),
            "vertex": vertex,
        }
        for server in servers.values():
            await stack.enter_async_context(server)
        environ = stack.enter_context(pytest.MonkeyPatch.context())
        for name, value in (("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", AWS_SECRET)):
            environ.setenv(name, value)
        environ.setenv("AWS_SESSION_TOKEN", AWS_TOKEN)
        environ.setenv(VERTEX_KEY_VAR, orjson.dumps(vertex.service_account_info()).decode())
        yield Fakes(servers)


@pytest.fixture(scope="module")
async def transport() -> AsyncIterator[Transport]:
    transport = Transport()
    await transport.open()
    yield transport
    await transport.close()


@pytest.fixture(params=TYPES)
def type_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def harness(type_name: str) -> Harness:
    assert type_name in HARNESSES, f"provider type {type_name!r} has no conformance harness: add it to HARNESSES"
    return HARNESSES[type_name]


@pytest.fixture
def ctx(transport: Transport) -> CallContext:
    return CallContext(transport=transport, credentials={CREDENTIAL: KEY}, timeout_s=10.0)


def build(type_name: str, options: Mapping[str, Any]) -> Provider:
    key_path = "models.m.providers.p"
    config = ProviderConfig(name="p", type=type_name, options=options, key_path=key_path, base_dir=Path("."))
    sink = ErrorSink()
    table = Table(options, key_path, sink, Path("."))
    provider = PROVIDER_TYPES[type_name].from_config(config, table)
    table.finish()
    assert sink.errors == []
    return provider


def provider_for(type_name: str, harness: Harness, fakes: Fakes, scenario: str, **extra: Any) -> Provider:
    return build(type_name, {**harness.options(fakes.url(harness), harness.model(scenario)), **extra})


def ask(text: str, **fields: Any) -> ProviderRequest:
    return ProviderRequest(system=None, messages=(Message("user", (Text(text),)),), **fields)


async def collect(stream: AsyncIterator[StreamChunk]) -> tuple[list[StreamChunk], LsdError | None]:
    """Every chunk of a stream, and the error that ended it (None when it finished)."""
    chunks: list[StreamChunk] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except LsdError as exc:
        return chunks, exc
    return chunks, None


def text_of(blocks: Any) -> str:
    return "".join(b.text for b in blocks if isinstance(b, Text))


def streamed_text(chunks: list[StreamChunk]) -> str:
    return "".join(text_of(c.content) for c in chunks)


def assert_counted(usage: Usage | None) -> None:
    assert usage is not None
    assert isinstance(usage.input_tokens, int) and usage.input_tokens > 0
    assert isinstance(usage.output_tokens, int) and usage.output_tokens > 0


# ---- answers -------------------------------------------------------------------------------------------------


async def test_plain(type_name: str, harness: Harness, fakes: Fakes, ctx: CallContext) -> None:
    response = await provider_for(type_name, harness, fakes, "plain").infer(ask("hello there"), ctx)
    assert response.content == (Text("echo: hello there"),)
    assert response.finish_reason == "stop"
    assert_counted(response.usage)
    assert response.raw_request and response.raw_response
    if harness.fake:
        assert orjson.loads(response.raw_request) == fakes.last(harness).body  # the body as sent
        assert response.api_key_sha256 == key_fingerprint(KEY)


async def test_streamed(type_name: str, harness: Harness, fakes: Fakes, ctx: CallContext) -> None:
    """Deltas as they come, then one last chunk reporting what `infer` would: usage, finish reason, cost,
    the body sent, the redacted headers and the key's fingerprint."""
    cost = {"cost": PRICE} if harness.priced else {}
    provider = provider_for(type_name, harness, fakes, "plain", **cost)
    chunks, error = await collect(provider.stream(ask("hello streaming world", stream=True), ctx))
    assert error is None
    assert streamed_text(chunks) == "echo: hello streaming world"
    *deltas, last = chunks
    assert len([c for c in deltas if c.content]) > 1  # several deltas, not one block
    assert all(c.raw for c in deltas if c.content)
    assert all(c.usage is None and c.finish_reason is None for c in deltas)
    assert (last.content, last.finish_reason) == ((), "stop")
    assert_counted(last.usage)
    assert all(c.raw_request is None and c.request_headers is None and c.api_key_sha256 is None for c in deltas)
    if harness.fake:
        sent = fakes.last(harness).body
        answered = await provider.infer(ask("hello streaming world"), ctx)
        assert last.raw_request is not None and orjson.loads(last.raw_request) == sent
        assert last.request_headers is not None
        assert answered.request_headers.items() <= last.request_headers.items()  # streaming may add `accept`
        assert last.api_key_sha256 == answered.api_key_sha256 == key_fingerprint(KEY)
    if harness.priced:
        assert last.usage is not None
        expected = ((last.usage.input_tokens or 0) * 2.0 + (last.usage.output_tokens or 0) * 10.0) / 1e6
        assert last.cost == pytest.approx(expected)


@pytest.mark.parametrize("stream", [False, True], ids=["infer", "stream"])
async def test_tool_call(type_name: str, harness: Harness, fakes: Fakes, ctx: CallContext, stream: bool) -> None:
    provider = provider_for(type_name, harness, fakes, "tool")
    request = ask("Paris", tools=(WEATHER,), tool_choice="auto")
    if stream:
        chunks, error = await collect(provider.stream(request, ctx))
        assert error is None
        fragments = [b for c in chunks for b in c.content if isinstance(b, ToolCall)]
        assert fragments and fragments[0].name == "get_weather" and all(f.name == "" for f in fragments[1:])
        assert {f.id for f in fragments} == {fragments[0].id} and fragments[0].id
        arguments = "".join(f.arguments for f in fragments)
        finish = chunks[-1].finish_reason
    else:
        response = await provider.infer(request, ctx)
        [call] = response.content
        assert isinstance(call, ToolCall) and call.name == "get_weather" and call.id
        arguments, finish = call.arguments, response.finish_reason
    assert isinstance(orjson.loads(arguments), dict)
    assert finish == "tool_call"


@pytest.mark.parametrize("stream", [False, True], ids=["infer", "stream"])
@pytest.mark.parametrize("mode", ["on", "strict", "tool"])
async def test_json_mode(
    type_name: str, harness: Harness, fakes: Fakes, ctx: CallContext, mode: Any, stream: bool
) -> None:
    """Every JSON mode answers JSON text (the `tool` mode's forced tool call comes back as text too)."""
    provider = provider_for(type_name, harness, fakes, "json_tool" if mode == "tool" else "json")
    request = ask("forty two", params=InferenceParams(json_mode=mode), output_schema=SCHEMA)
    if stream:
        chunks, error = await collect(provider.stream(request, ctx))
        assert error is None
        blocks = [b for c in chunks for b in c.content]
        finish = chunks[-1].finish_reason
    else:
        response = await provider.infer(request, ctx)
        blocks, finish = list(response.content), response.finish_reason
    assert blocks and all(isinstance(b, Text) for b in blocks)
    assert isinstance(orjson.loads(text_of(blocks)), dict)
    assert finish == "stop"


# ---- failures ------------------------------------------------------------------------------------------------


async def test_error_status(type_name: str, harness: Harness, fakes: Fakes, ctx: CallContext, status: int) -> None:
    """An HTTP error status is a ProviderError of the same kind and retryability for every provider, streamed
    or not, carrying the body sent and the answer (and never the key). Parametrised by the statuses each
    type's fake answers (pytest_generate_tests)."""
    kind, retryable = STATUSES[status]
    provider = build(type_name, harness.options(fakes.url(harness), f"error-{status}"))
    with pytest.raises(ProviderError) as caught:
        await provider.infer(ask("hi"), ctx)
    chunks, streamed = await collect(provider.stream(ask("hi"), ctx))
    assert chunks == [] and isinstance(streamed, ProviderError)
    for error in (caught.value, streamed):
        assert (error.status, error.kind, error.retryable, error.provider) == (status, kind, retryable, "p")
        assert error.raw_request is not None and orjson.loads(error.raw_request)
        assert error.raw_response is not None and orjson.loads(error.raw_response)[harness.error_field]
        assert KEY not in repr(vars(error))


async def test_malformed_answer(type_name: str, harness: Harness, fakes: Fakes, ctx: CallContext) -> None:
    provider = provider_for(type_name, harness, fakes, "malformed")
    with pytest.raises(ProviderError) as caught:
        await provider.infer(ask("hi"), ctx)
    chunks, streamed = await collect(provider.stream(ask("hi"), ctx))
    assert chunks == [] and isinstance(streamed, ProviderError)
    for error in (caught.value, streamed):
        assert (error.kind, error.retryable, error.provider) == ("malformed", True, "p")
        assert error.raw_request and error.raw_response


async def test_mid_stream_break(type_name: str, harness: Harness, fakes: Fakes, ctx: CallContext) -> None:
    """A stream that breaks after its first deltas raises a retryable stream_interrupted error after them."""
    provider = provider_for(type_name, harness, fakes, "broken")
    chunks, error = await collect(provider.stream(ask("a b c d e"), ctx))
    text = streamed_text(chunks)
    assert text and "echo: a b c d e".startswith(text) and text != "echo: a b c d e"
    assert all(c.finish_reason is None and c.usage is None for c in chunks)
    assert isinstance(error, ProviderError)
    assert (error.kind, error.retryable, error.provider) == ("stream_interrupted", True, "p")
    assert error.raw_request and error.raw_response  # the body sent and the events received


async def test_timeout(type_name: str, harness: Harness, fakes: Fakes, transport: Transport) -> None:
    provider = provider_for(type_name, harness, fakes, "slow")
    quick = CallContext(transport=transport, credentials={CREDENTIAL: KEY}, timeout_s=0.2)
    with pytest.raises(ProviderTimeout) as caught:
        await provider.infer(ask("hi"), quick)
    assert caught.value.retryable
    chunks, error = await collect(provider.stream(ask("hi"), quick))
    assert chunks == [] and isinstance(error, ProviderTimeout)


# ---- secrets in what comes back ------------------------------------------------------------------------------

# What the fakes' `leak` scenarios show of the key: whole, its start (cut short) and its end (masked).
KEY_FRAGMENTS = (KEY, KEY[:PREFIX_LENGTH], KEY[-4:], "*" * 20)


@pytest.mark.parametrize("stream", [False, True], ids=["infer", "stream"])
async def test_key_repeated_in_an_error_is_scrubbed(
    type_name: str, harness: Harness, fakes: Fakes, ctx: CallContext, stream: bool
) -> None:
    """A provider whose 401 repeats the key (whole, masked, cut short) fails with a ProviderError that holds
    none of it, in its message or in the raw response stored with the attempt; the rest of the message stays."""
    provider = provider_for(type_name, harness, fakes, "leak_401")
    if stream:
        chunks, error = await collect(provider.stream(ask("hi"), ctx))
        assert chunks == []
    else:
        with pytest.raises(ProviderError) as caught:
            await provider.infer(ask("hi"), ctx)
        error = caught.value
    assert isinstance(error, ProviderError)
    assert (error.status, error.kind, error.retryable) == (401, "auth", False)
    assert error.raw_response is not None and orjson.loads(error.raw_response)[harness.error_field]
    assert REDACTED in error.message and REDACTED in error.raw_response
    for fragment in KEY_FRAGMENTS:
        assert fragment not in str(error) and fragment not in repr(vars(error)), fragment


@pytest.mark.parametrize("stream", [False, True], ids=["infer", "stream"])
async def test_key_repeated_in_an_answer_is_scrubbed(
    type_name: str, harness: Harness, fakes: Fakes, ctx: CallContext, stream: bool
) -> None:
    """A 200 that repeats the key is answered, with the key replaced in the content and the raw response."""
    provider = provider_for(type_name, harness, fakes, "leak")
    answered: list[ProviderResponse | StreamChunk]
    if stream:
        chunks, error = await collect(provider.stream(ask("hi"), ctx))
        assert error is None
        text, answered = streamed_text(chunks), list(chunks)
    else:
        response = await provider.infer(ask("hi"), ctx)
        text, answered = text_of(response.content), [response]
    assert text.startswith("echo: ") and text.endswith(REDACTED)
    assert any(
        REDACTED in (item.raw or "") if isinstance(item, StreamChunk) else REDACTED in item.raw_response
        for item in answered
    )
    assert KEY not in repr(answered) and KEY[:PREFIX_LENGTH] not in repr(answered)


# ---- credentials ---------------------------------------------------------------------------------------------


async def test_credentials(
    type_name: str, harness: Harness, fakes: Fakes, transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`env::VAR` and `dynamic::NAME` keys reach the provider; a missing one fails before anything is sent (an
    unset variable fails the attempt, a missing request credential is the caller's 400); a wrong one is `auth`."""
    if not harness.keyed or not harness.key_location:
        pytest.skip("this provider type takes no api_key_location")
    plain = harness.model("plain")
    monkeypatch.setenv(UNSET_VAR, KEY)
    from_env = build(type_name, harness.options(fakes.url(harness), plain) | {"api_key_location": f"env::{UNSET_VAR}"})
    response = await from_env.infer(ask("hi"), CallContext(transport=transport))
    assert response.api_key_sha256 == key_fingerprint(KEY)

    before = fakes.sent(harness)
    monkeypatch.delenv(UNSET_VAR)
    with pytest.raises(ProviderError) as unset:
        await from_env.infer(ask("hi"), CallContext(transport=transport))
    assert (unset.value.kind, unset.value.retryable) == ("auth", False)
    dynamic = build(type_name, harness.options(fakes.url(harness), plain))
    with pytest.raises(InvalidRequest) as missing:
        await dynamic.infer(ask("hi"), CallContext(transport=transport))
    assert missing.value.field == "credentials"
    _, streamed = await collect(dynamic.stream(ask("hi"), CallContext(transport=transport)))
    assert isinstance(streamed, InvalidRequest)
    assert fakes.sent(harness) == before  # nothing went out

    wrong = "sk-wrong-9876543210fedcba"
    with pytest.raises(ProviderError) as refused:
        await dynamic.infer(ask("hi"), CallContext(transport=transport, credentials={CREDENTIAL: wrong}))
    assert (refused.value.kind, refused.value.retryable) == ("auth", False)
    assert wrong not in repr(vars(refused.value))


async def test_credential_headers_are_declared(
    type_name: str, harness: Harness, fakes: Fakes, ctx: CallContext
) -> None:
    """The key travels only in headers the type declares in `credential_headers`: never in the URL or body."""
    declared = {name.lower() for name in PROVIDER_TYPES[type_name].credential_headers}
    if not harness.keyed:
        assert declared == set()
        return
    await provider_for(type_name, harness, fakes, "plain").infer(ask("hi"), ctx)
    received = fakes.last(harness)
    carrying = {name.lower() for name, value in received.headers.items() if KEY in value}
    assert carrying and carrying <= declared
    assert KEY not in repr(received.query) and KEY not in repr(received.body)


async def test_redaction(type_name: str, harness: Harness, fakes: Fakes, transport: Transport) -> None:
    """Stored request headers and raw requests hold no key, whatever header (or body field) carried it: the
    declared header, a header whose name looks like a credential, one named anything that holds the key."""
    patched = CallContext(
        transport=transport,
        credentials={CREDENTIAL: KEY},
        timeout_s=10.0,
        extra_headers=(
            HeaderPatch("X-Custom-Key", "custom-secret-value"),
            HeaderPatch("X-Forwarded-Whatever", KEY),
            HeaderPatch("X-Trace", "visible"),
        ),
        extra_body=(BodyPatch("/conformance_probe", KEY),),
    )
    provider = provider_for(type_name, harness, fakes, "plain")
    response = await provider.infer(ask("hi"), patched)
    chunks, error = await collect(provider.stream(ask("hi"), patched))
    assert error is None
    stored: list[ProviderResponse | StreamChunk] = [response, *chunks]
    for item in stored:
        assert KEY not in repr(item) and "custom-secret-value" not in repr(item)
    if not harness.fake:
        return
    received = fakes.last(harness)
    assert received.body["conformance_probe"] == KEY and received.headers["X-Forwarded-Whatever"] == KEY
    last = chunks[-1]
    assert last.request_headers is not None and last.raw_request is not None
    for headers, raw_request in (
        (response.request_headers, response.raw_request),
        (last.request_headers, last.raw_request),
    ):
        assert headers["X-Custom-Key"] == headers["X-Forwarded-Whatever"] == REDACTED
        assert headers["X-Trace"] == "visible"
        assert all(headers[name] == REDACTED for name in PROVIDER_TYPES[type_name].credential_headers)
        assert orjson.loads(raw_request)["conformance_probe"] == REDACTED

    failing = build(type_name, harness.options(fakes.url(harness), f"error-{harness.statuses[-1]}"))
    with pytest.raises(ProviderError) as caught:
        await failing.infer(ask("hi"), patched)
    assert caught.value.raw_request is not None and KEY not in repr(vars(caught.value))


@pytest.mark.parametrize("streamed", [False, True], ids=["answer", "stream"])
async def test_calls_report_their_own_headers(
    type_name: str, harness: Harness, fakes: Fakes, transport: Transport, streamed: bool
) -> None:
    """Each call's answer (a plain response, a stream's last chunk) reports the headers its own call sent, when the
    call before it sent others (the provider keeps its previous call's redacted headers for reuse)."""
    provider = provider_for(type_name, harness, fakes, "plain")
    for value in ("first", "second", "first"):
        ctx = CallContext(
            transport=transport,
            credentials={CREDENTIAL: KEY},
            timeout_s=10.0,
            extra_headers=(HeaderPatch("X-Trace", value),),
        )
        if streamed:
            chunks, error = await collect(provider.stream(ask("hi"), ctx))
            assert error is None
            headers, key_hash = chunks[-1].request_headers, chunks[-1].api_key_sha256
        else:
            response = await provider.infer(ask("hi"), ctx)
            headers, key_hash = response.request_headers, response.api_key_sha256
        if harness.fake:
            assert headers is not None and headers["X-Trace"] == value
            assert key_hash == (key_fingerprint(KEY) if harness.keyed else None)
