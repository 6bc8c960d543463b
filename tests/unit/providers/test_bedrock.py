"""The `aws_bedrock` provider: Converse mapping and the event-stream decoder without sockets, then signed calls
against FakeBedrock (which recomputes every SigV4 signature), credentials from botocore's chain included."""

from __future__ import annotations

import datetime
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.credentials import RefreshableCredentials
from botocore.session import Session

from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink, Table
from lsd.errors import InvalidRequest, LsdError, ProviderError
from lsd.providers.aws_bedrock import provider as bedrock_provider
from lsd.providers.aws_bedrock.provider import BedrockProvider
from lsd.providers.aws_bedrock.stream import EventStreamDecoder, StreamState
from lsd.providers.aws_bedrock.wire import build_body, parse_response, parse_usage, status_error
from lsd.providers.base import REDACTED, CallContext, key_fingerprint
from lsd.providers.transport import Transport
from lsd.types import (
    File,
    InferenceParams,
    Message,
    ProviderRequest,
    StreamChunk,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)
from tests.fakes.bedrock_server import SIGNATURE, FakeBedrock, event_frame, exception_frame

KEY_PATH = "models.m.providers.p"
ACCESS_KEY, SECRET_KEY, TOKEN = (
    "AKIDTESTBEDROCK00001",
    "test-secret-key/0123456789abcdefghij",
    "FQoGZXIvYXdzTESTTOKEN01",
)
WEATHER = ToolSpec("weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_BEARER_TOKEN_BEDROCK",
)


def build(options: Mapping[str, Any]) -> tuple[BedrockProvider, list[str]]:
    sink = ErrorSink()
    config = ProviderConfig(name="p", type="aws_bedrock", options=options, key_path=KEY_PATH, base_dir=Path("."))
    table = Table(options, KEY_PATH, sink, Path("."))
    provider = BedrockProvider.from_config(config, table)
    table.finish()
    return provider, sink.errors


def ask(text: str, **fields: Any) -> ProviderRequest:
    return ProviderRequest(system=fields.pop("system", None), messages=(Message("user", (Text(text),)),), **fields)


@pytest.fixture(autouse=True)
def aws_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only what a test sets: no profile files, no instance metadata, the test credentials in the environment."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "missing-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    yield


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, token=TOKEN, delay_s=30.0) as server:
        yield server


@pytest.fixture(scope="module")
async def transport() -> AsyncIterator[Transport]:
    transport = Transport()
    await transport.open()
    yield transport
    await transport.close()


@pytest.fixture
def ctx(transport: Transport) -> CallContext:
    return CallContext(transport=transport, timeout_s=10.0)


def provider_for(fake: FakeBedrock, model_id: str = "anthropic.claude-test-v1:0", **options: Any) -> BedrockProvider:
    provider, errors = build({"model_id": model_id, "region": "us-east-1", "endpoint_url": fake.url, **options})
    assert errors == []
    return provider


async def collect(stream: AsyncIterator[StreamChunk]) -> tuple[list[StreamChunk], LsdError | None]:
    chunks: list[StreamChunk] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except LsdError as exc:
        return chunks, exc
    return chunks, None


# ---- the wire, without sockets -------------------------------------------------------------------------------


def test_body_maps_system_parameters_and_roles() -> None:
    request = ProviderRequest(
        system="Be brief.",
        messages=(
            Message("user", (Text("weather in Paris?"),)),
            Message("assistant", (Thought("thinking", "sig-1"), ToolCall("t1", "weather", '{"city": "Paris"}'))),
            Message("user", (Text("and then?"), ToolResult("t1", "weather", "sunny"))),
        ),
        params=InferenceParams(max_tokens=50, temperature=0.2, top_p=0.9, stop_sequences=("END",), seed=7),
        tools=(WEATHER,),
    )
    body = build_body(request)
    assert body["system"] == [{"text": "Be brief."}]
    assert body["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]}
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"reasoningContent": {"reasoningText": {"text": "thinking", "signature": "sig-1"}}},
                {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}},
            ],
        },
        # Tool results go first in a user message.
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}}, {"text": "and then?"}],
        },
    ]
    spec = {"name": "weather", "description": "Weather for a city", "inputSchema": {"json": dict(WEATHER.parameters)}}
    assert body["toolConfig"] == {"tools": [{"toolSpec": spec}], "toolChoice": {"auto": {}}}
    assert "model" not in body and "seed" not in orjson.dumps(body).decode()


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("required", {"any": {}}), ({"specific": "weather"}, {"tool": {"name": "weather"}}), ("auto", {"auto": {}})],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = build_body(ask("hi", tools=(WEATHER,), tool_choice=choice))
    assert body["toolConfig"]["toolChoice"] == expected  # type: ignore[call-overload, index]


def test_tool_choice_none_sends_no_tools_unless_the_conversation_holds_tool_blocks() -> None:
    assert "toolConfig" not in build_body(ask("hi", tools=(WEATHER,), tool_choice="none"))
    history = (
        Message("user", (Text("hi"),)),
        Message("assistant", (ToolCall("t1", "weather", "{}"),)),
        Message("user", (ToolResult("t1", "weather", "sunny"),)),
    )
    body = build_body(ProviderRequest(system=None, messages=history, tools=(WEATHER,), tool_choice="none"))
    assert body["toolConfig"] == {"tools": [build_body(ask("x", tools=(WEATHER,)))["toolConfig"]["tools"][0]]}  # type: ignore[call-overload, index]


def test_json_modes() -> None:
    forced = build_body(ask("hi", params=InferenceParams(json_mode="strict"), output_schema=SCHEMA))
    assert forced["toolConfig"]["toolChoice"] == {"tool": {"name": "respond"}}  # type: ignore[call-overload, index]
    on = build_body(ask("hi", system="S", params=InferenceParams(json_mode="on"), output_schema=SCHEMA))
    assert "toolConfig" not in on
    [system] = on["system"]  # type: ignore[misc]
    assert system["text"].startswith("S\n\nRespond with one valid JSON value only") and '"answer"' in system["text"]


def test_files() -> None:
    image = File(mime_type="image/png", data="aGVsbG8=")
    pdf = File(None, url="data:application/pdf;base64,JVBERi0=")
    body = build_body(ProviderRequest(system=None, messages=(Message("user", (image, pdf)),)))
    assert body["messages"][0]["content"] == [  # type: ignore[index, call-overload]
        {"image": {"format": "png", "source": {"bytes": "aGVsbG8="}}},
        {"document": {"format": "pdf", "name": "document", "source": {"bytes": "JVBERi0="}}},
    ]
    with pytest.raises(InvalidRequest, match="not URLs"):
        build_body(
            ProviderRequest(system=None, messages=(Message("user", (File("image/png", url="https://x/y.png"),)),))
        )


def test_documents_get_unique_names_converse_takes_across_the_conversation() -> None:
    """Converse refuses two documents of one name in a request (turns apart too) and names with dots."""

    def doc(name: str | None, mime: str = "application/pdf") -> File:
        return File(mime, data="JVBERi0=", filename=name)

    messages = (
        Message("user", (doc("report.v2.pdf"), doc(None), doc(None))),
        Message("assistant", (Text("ok"),)),
        Message("user", (doc("Report.v2.pdf"), doc("notes.txt", "text/plain"), doc("ünïcode §.csv", "text/csv"))),
    )
    body = build_body(ProviderRequest(system=None, messages=messages))
    documents = [
        (part["document"]["name"], part["document"]["format"])
        for message in body["messages"]  # type: ignore[attr-defined]
        for part in message["content"]
        if "document" in part
    ]
    assert documents == [
        ("report v2", "pdf"),
        ("document", "pdf"),
        ("document (2)", "pdf"),
        ("Report v2 (2)", "pdf"),
        ("notes", "txt"),
        ("n code", "csv"),
    ]
    with pytest.raises(InvalidRequest, match="documents"):
        build_body(ProviderRequest(system=None, messages=(Message("user", (doc("a.bin", "application/zip"),)),)))


def test_response_with_reasoning_tool_use_and_cache_usage() -> None:
    answer = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s"}}},
                    {"reasoningContent": {"redactedContent": "cmVkYWN0ZWQ="}},
                    {"text": "calling"},
                    {"toolUse": {"toolUseId": "t9", "name": "weather", "input": {"city": "Oslo"}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 4, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20},
    }
    content, usage, reason = parse_response(answer)
    assert content == (
        Thought("hmm", "s"),
        Thought(None, signature="cmVkYWN0ZWQ="),
        Text("calling"),
        ToolCall("t9", "weather", '{"city":"Oslo"}'),
    )
    assert usage == Usage(130, 4, 100, 20)  # input counts the cached tokens too
    assert reason == "tool_call"
    assert parse_usage({"inputTokens": 5, "outputTokens": 1}) == Usage(5, 1)
    with pytest.raises(ValueError):
        parse_response({"output": {}})


def test_event_stream_decoder_takes_frames_cut_anywhere() -> None:
    data = b"".join(
        [
            event_frame("messageStart", {"role": "assistant"}),
            event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
            exception_frame("throttlingException", "slow down"),
        ]
    )
    decoder = EventStreamDecoder("p")
    events = [event for i in range(0, len(data), 5) for event in decoder.feed(data[i : i + 5])]
    assert [(e.event, orjson.loads(e.data)) for e in events] == [
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ("exception:throttlingException", {"message": "slow down"}),
    ]
    broken = event_frame("messageStart", {"role": "assistant"})
    with pytest.raises(ProviderError) as caught:
        list(EventStreamDecoder("p").feed(broken[:-1] + bytes([broken[-1] ^ 1])))
    assert caught.value.kind == "malformed"


def test_stream_state_holds_the_finish_until_metadata() -> None:
    state = StreamState("p")
    decoder = EventStreamDecoder("p")
    frames = [
        event_frame("messageStart", {"role": "assistant"}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        event_frame("messageStop", {"stopReason": "max_tokens"}),
        event_frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1}}),
    ]
    chunks = [state.feed_event(event) for frame in frames for event in decoder.feed(frame)]
    assert [c.content for c in chunks if c is not None] == [(Text("Hi"),)]
    assert state.missing_end() is None
    last = state.finish()
    assert (last.usage, last.finish_reason) == (Usage(3, 1), "length")


# ---- against the fake ----------------------------------------------------------------------------------------


async def test_a_signed_call_and_what_it_stores(fake: FakeBedrock, ctx: CallContext) -> None:
    provider = provider_for(fake)
    response = await provider.infer(ask("hello there", system="Be brief."), ctx)
    assert response.content == (Text("echo: hello there"),)
    assert (response.finish_reason, response.usage) == ("stop", Usage(4, 3))
    sent = fake.requests[-1]
    assert sent.path == "/model/anthropic.claude-test-v1:0/converse"
    assert sent.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert sent.headers["X-Amz-Security-Token"] == TOKEN
    assert orjson.loads(response.raw_request) == sent.json
    assert response.api_key_sha256 == key_fingerprint(ACCESS_KEY)
    assert response.request_headers["Authorization"] == response.request_headers["X-Amz-Security-Token"] == REDACTED
    for secret in (ACCESS_KEY, SECRET_KEY, TOKEN, sent.headers["Authorization"].rpartition("=")[2]):
        assert secret not in repr(response)


async def test_streamed_text_thinking_and_cache_usage(fake: FakeBedrock, ctx: CallContext) -> None:
    chunks, error = await collect(provider_for(fake, "thinking").stream(ask("hi you"), ctx))
    assert error is None
    blocks = [b for c in chunks for b in c.content]
    assert blocks[:2] == [Thought("The user said hi you."), Thought("", signature=SIGNATURE)]
    assert "".join(b.text for b in blocks if isinstance(b, Text)) == "echo: hi you"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].raw_request is not None
    assert fake.requests[-1].path.endswith("/converse-stream")
    chunks, error = await collect(provider_for(fake, "cache").stream(ask("hi"), ctx))
    assert error is None
    assert chunks[-1].usage == Usage(1 + 3 + 2, 2, 3, 2)
    response = await provider_for(fake, "cache").infer(ask("hi"), ctx)
    assert response.usage == Usage(6, 2, 3, 2)


async def test_tool_call_and_forced_json(fake: FakeBedrock, ctx: CallContext) -> None:
    response = await provider_for(fake, "tool").infer(ask("Oslo", tools=(WEATHER,)), ctx)
    [call] = response.content
    assert isinstance(call, ToolCall) and call.name == "weather" and orjson.loads(call.arguments)["query"] == "Oslo"
    assert response.finish_reason == "tool_call"
    request = ask("forty two", params=InferenceParams(json_mode="tool"), output_schema=SCHEMA)
    chunks, error = await collect(provider_for(fake).stream(request, ctx))
    assert error is None
    assert orjson.loads("".join(b.text for c in chunks for b in c.content if isinstance(b, Text))) == {
        "answer": "forty two"
    }
    assert chunks[-1].finish_reason == "stop"


async def test_a_bad_signature_is_refused_with_a_clear_error(
    fake: FakeBedrock, ctx: CallContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-right-secret-key-0123456789")
    provider = provider_for(fake)
    for attempt in ("infer", "stream"):
        if attempt == "infer":
            with pytest.raises(ProviderError) as caught:
                await provider.infer(ask("hi"), ctx)
            error = caught.value
        else:
            chunks, streamed = await collect(provider.stream(ask("hi"), ctx))
            assert chunks == [] and isinstance(streamed, ProviderError)
            error = streamed
        assert (error.status, error.kind, error.retryable) == (403, "auth", False)
        assert (
            "signature we calculated does not match" in error.message and "invalidSignatureException" in error.message
        )
        assert "not-the-right-secret" not in repr(vars(error)) and TOKEN not in repr(vars(error))
    assert fake.refused[-1].startswith("InvalidSignatureException")


async def test_a_bedrock_api_key_is_sent_as_a_bearer_token_instead_of_a_signature(
    ctx: CallContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_BEARER_TOKEN_BEDROCK (a Bedrock API key, which botocore reads for Bedrock): `Authorization: Bearer`, no
    SigV4, even with IAM keys in the environment; the key is fingerprinted, never stored, and scrubbed."""
    api_key = "ABSKQmVkcm9ja0FQSUtleS1mYWtlLTAxMjM0NTY3ODk="
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", api_key)
    async with FakeBedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, api_key=api_key) as server:
        provider = provider_for(server)
        response = await provider.infer(ask("hi"), ctx)
        assert response.content == (Text("echo: hi"),)
        sent = server.requests[-1].headers
        assert sent["Authorization"] == f"Bearer {api_key}" and "X-Amz-Date" not in sent
        assert response.api_key_sha256 == key_fingerprint(api_key)
        assert api_key not in repr(response.request_headers) and api_key not in str(response.raw_request)
        chunks, error = await collect(provider.stream(ask("a b"), ctx))
        assert error is None and chunks[-1].finish_reason == "stop"
        monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSK-revoked-key-000000000000")
        with pytest.raises(ProviderError) as refused:
            await provider.infer(ask("hi"), ctx)
        assert (refused.value.kind, refused.value.retryable) == ("auth", False)
        assert "ABSK-revoked" not in repr(vars(refused.value))


async def test_a_file_by_url_fails_the_attempt_so_routing_can_fall_back(fake: FakeBedrock, ctx: CallContext) -> None:
    provider = provider_for(fake)
    before = len(fake.requests)
    by_url = ProviderRequest(system=None, messages=(Message("user", (File("image/png", url="https://x/y.png"),)),))
    with pytest.raises(ProviderError, match="files by URL") as refused:
        await provider.infer(by_url, ctx)
    assert (refused.value.kind, refused.value.retryable) == ("unsupported", False)
    chunks, error = await collect(provider.stream(by_url, ctx))
    assert chunks == [] and isinstance(error, ProviderError) and error.kind == "unsupported"
    assert len(fake.requests) == before  # nothing was sent


async def test_errors_mid_stream_and_broken_frames(fake: FakeBedrock, ctx: CallContext) -> None:
    chunks, error = await collect(provider_for(fake, "stream-error").stream(ask("a b c"), ctx))
    assert [b.text for c in chunks for b in c.content if isinstance(b, Text)] == ["echo:"]
    assert isinstance(error, ProviderError)
    assert (error.status, error.kind, error.retryable) == (429, "rate_limited", True)
    assert "throttlingException" in error.message
    chunks, error = await collect(provider_for(fake, "badframe").stream(ask("hi"), ctx))
    assert chunks == [] and isinstance(error, ProviderError) and error.kind == "malformed"
    with pytest.raises(ProviderError) as caught:
        await provider_for(fake, "error-400").infer(ask("hi"), ctx)
    assert (caught.value.status, caught.value.kind) == (400, "bad_request")
    assert "validationException" in caught.value.message


def test_a_service_quota_is_a_retryable_rate_limit_not_a_bad_request() -> None:
    body = b'{"message": "Your request exceeds the service quota for your account."}'
    quota = status_error("p", 400, body, "ServiceQuotaExceededException:http://internal.amazon.com/x")
    assert (quota.kind, quota.retryable) == ("rate_limited", True)
    invalid = status_error("p", 400, b'{"message": "bad"}', "ValidationException")
    assert (invalid.kind, invalid.retryable) == ("bad_request", False)


def test_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    _, errors = build({"model_id": "m"})
    assert errors == [
        f"{KEY_PATH}.region: missing: set `region`, or `allow_auto_detect_region = true` to take the AWS one"
    ]
    _, errors = build({"region": "us-east-1", "endpoint_url": "ftp://x", "api_key_location": "env::X"})
    assert errors == [
        f"{KEY_PATH}.model_id: missing required key",
        f"{KEY_PATH}.endpoint_url: expected an http:// or https:// URL, got 'ftp://x'",
        f"{KEY_PATH}.api_key_location: unknown key",
    ]
    monkeypatch.setattr(bedrock_provider, "AWS_EXTRA_MISSING", True)
    _, errors = build({"model_id": "m", "region": "us-east-1"})
    assert errors == [f"{KEY_PATH}.type: aws_bedrock needs botocore: pip install 'lsd[aws]'"]


async def test_the_region_can_come_from_the_environment(
    fake: FakeBedrock, ctx: CallContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, errors = build({"model_id": "m", "allow_auto_detect_region": True, "endpoint_url": fake.url})
    assert errors == []
    with pytest.raises(ProviderError, match="no AWS region was found") as caught:
        await provider.infer(ask("hi"), ctx)
    assert (caught.value.kind, caught.value.retryable) == ("auth", False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert (await provider.infer(ask("hi"), ctx)).content == (Text("echo: hi"),)


async def test_credentials_from_a_shared_profile(
    fake: FakeBedrock, ctx: CallContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    provider = provider_for(fake)
    before = len(fake.requests)
    with pytest.raises(ProviderError, match="no AWS credentials found") as caught:
        await provider.infer(ask("hi"), ctx)
    assert (caught.value.kind, caught.value.retryable) == ("auth", False)
    assert len(fake.requests) == before  # nothing went out
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[bedrock]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        f"aws_session_token = {TOKEN}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "bedrock")
    assert (await provider.infer(ask("hi"), ctx)).content == (Text("echo: hi"),)


async def test_temporary_credentials_are_refreshed_on_a_worker_thread(
    fake: FakeBedrock, ctx: CallContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials near their expiry (botocore's advisory window) are refreshed before the call, off the event
    loop; fresh ones are reused as they are."""
    refreshed_on: list[str] = []

    def metadata(minutes: int) -> dict[str, str]:
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)
        return {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "token": TOKEN, "expiry_time": expiry.isoformat()}

    def refresh() -> dict[str, str]:
        refreshed_on.append(threading.current_thread().name)
        return metadata(60)

    expiring = RefreshableCredentials.create_from_metadata(metadata(5), refresh, "test")
    monkeypatch.setattr(Session, "get_credentials", lambda self: expiring)
    provider = provider_for(fake)
    for _ in range(3):
        assert (await provider.infer(ask("hi"), ctx)).content == (Text("echo: hi"),)
    assert len(refreshed_on) == 1 and refreshed_on[0] != threading.main_thread().name


async def test_an_inference_profile_arn_as_model_id(fake: FakeBedrock, ctx: CallContext) -> None:
    """The model id goes in the path URL-encoded (an ARN's `:` and `/` too), and the signature covers that path."""
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    response = await provider_for(fake, arn).infer(ask("hi"), ctx)
    assert response.content == (Text("echo: hi"),)
    assert "%2F" in fake.requests[-1].raw_path and ":converse" not in fake.requests[-1].raw_path
