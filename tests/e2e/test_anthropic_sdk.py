"""The official `anthropic` SDK against a real `lsd serve` on POST /anthropic/v1/messages: plain and streamed messages
with system blocks, images, tools and thinking, count_tokens, with an Anthropic fake behind (passed through) and an
OpenAI fake behind (translated); the rows each call leaves are checked."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import anthropic
import httpx
import psycopg
import pytest
from anthropic import AsyncAnthropic

from tests.fakes.anthropic_server import CACHE_READ, CACHE_WRITE, RETRY_AFTER_S, SIGNATURE, FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.support.gateway import Daemon, run_lsd

ANTHROPIC_KEY = "sk-ant-fake-provider-key"
OPENAI_KEY = "sk-fake-openai-key"
WEATHER = {
    "name": "weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n-not-really-a-png").decode()
CONTEXT_MANAGEMENT = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
# Anthropic's prices for the claude model below (USD per million tokens).
INPUT, OUTPUT, CACHE_READ_PRICE, CACHE_WRITE_PRICE = 3.0, 15.0, 0.30, 3.75


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[tuple[FakeAnthropic, FakeOpenAI]]:
    claude = FakeAnthropic(api_key=ANTHROPIC_KEY)
    await claude.start()
    try:
        async with FakeOpenAI(api_key=OPENAI_KEY) as gpt:
            yield claude, gpt
    finally:
        await claude.stop()


@pytest.fixture(scope="module")
def db_url(pg: Any, template_db: str) -> Iterator[str]:
    """One database for the module's daemon (the tests find their rows by inference id)."""
    name = pg.database_from(template_db)
    yield pg.url(name)
    pg.drop_database(name)


@pytest.fixture(scope="module")
def daemon(
    fakes: tuple[FakeAnthropic, FakeOpenAI], tmp_path_factory: pytest.TempPathFactory, db_url: str
) -> Iterator[Daemon]:
    claude, gpt = fakes
    config = tmp_path_factory.mktemp("anthropic") / "lsd.toml"
    config.write_text(
        f"""
[gateway.observability]
async_writes = false

[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-fake"
api_base = "{claude.base_url}"
api_key_location = "env::FAKE_ANTHROPIC_KEY"
[models.claude.providers.anthropic.cost]
input_per_million = {INPUT}
output_per_million = {OUTPUT}
cache_read_per_million = {CACHE_READ_PRICE}
cache_write_per_million = {CACHE_WRITE_PRICE}

[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{gpt.api_base}"
api_key_location = "env::FAKE_OPENAI_KEY"
cost = {{ input_per_million = 1.0, output_per_million = 2.0 }}

[functions.assistant]
type = "chat"
[functions.assistant.variants.claude]
type = "chat_completion"
model = "claude"

[inbound.anthropic.models]
"claude-sonnet-4-5" = "claude"
"claude-haiku-4-5" = "lsd::function_name::assistant"
"gpt-4o-mini" = "gpt"
"""
    )
    running = Daemon(config, db_url, env={"FAKE_ANTHROPIC_KEY": ANTHROPIC_KEY, "FAKE_OPENAI_KEY": OPENAI_KEY})
    running.wait_ready()
    yield running
    assert running.terminate() == 0


@pytest.fixture(scope="module")
async def client(daemon: Daemon) -> AsyncIterator[AsyncAnthropic]:
    sdk = AsyncAnthropic(base_url=f"{daemon.base_url}/anthropic", api_key="unused-lsd-key", max_retries=0)
    yield sdk
    await sdk.close()


def inference_id(message_id: str) -> UUID:
    assert message_id.startswith("msg_")
    return UUID(hex=message_id.removeprefix("msg_"))


def row(database_url: str, query: str, *params: Any) -> tuple[Any, ...]:
    with psycopg.connect(database_url) as conn:
        found = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert found is not None, query
    return tuple(found)


async def test_messages_create_text_system_blocks_and_image(
    client: AsyncAnthropic, fakes: tuple[FakeAnthropic, FakeOpenAI], db_url: str
) -> None:
    claude, _ = fakes
    message = await client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
                    {"type": "text", "text": "hello claude"},
                ],
            }
        ],
        extra_headers={"lsd-tag-team": "search"},
    )
    assert message.model == "claude-sonnet-4-5" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "echo: hello claude"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    sent = claude.last.json
    assert sent["model"] == "claude-fake" and sent["system"] == "Be brief.\n\nBe kind."
    assert sent["messages"][0]["content"][0] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
    }
    assert claude.last.headers["x-api-key"] == ANTHROPIC_KEY
    function, variant, tags, tokens, output = row(
        db_url,
        "SELECT function_name, variant_name, tags, input_tokens, output FROM chat_inferences WHERE id = %s",
        inference_id(message.id),
    )
    assert (function, variant) == ("tensorzero::default", "claude")
    assert tags["team"] == "search"
    assert tokens == message.usage.input_tokens and output == [{"type": "text", "text": "echo: hello claude"}]


async def test_cache_tokens_are_reported_stored_and_priced(client: AsyncAnthropic, db_url: str) -> None:
    message = await client.messages.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "cached prompt here"}]
    )
    usage = message.usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (CACHE_READ, CACHE_WRITE)
    uncached, output = usage.input_tokens, usage.output_tokens
    assert uncached == 3  # the fake counts words: Anthropic's input_tokens leaves the cached ones out
    expected = (
        uncached * INPUT + CACHE_READ * CACHE_READ_PRICE + CACHE_WRITE * CACHE_WRITE_PRICE + output * OUTPUT
    ) / 1e6
    tokens, read, written, cost = row(
        db_url,
        "SELECT input_tokens, cache_read_input_tokens, cache_write_input_tokens, cost FROM model_inferences"
        " WHERE inference_id = %s",
        inference_id(message.id),
    )
    assert (tokens, read, written) == (uncached + CACHE_READ + CACHE_WRITE, CACHE_READ, CACHE_WRITE)
    assert cost == pytest.approx(Decimal(str(expected)))
    chat = row(
        db_url,
        "SELECT cache_read_input_tokens, cache_write_input_tokens, cost FROM chat_inferences WHERE id = %s",
        inference_id(message.id),
    )
    assert chat == (CACHE_READ, CACHE_WRITE, cost)

    async with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "cached prompt here"}]
    ) as stream:
        final = await stream.get_final_message()
    assert (final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens) == (CACHE_READ, CACHE_WRITE)
    assert final.usage.input_tokens == 3
    streamed = row(
        db_url,
        "SELECT cache_read_input_tokens, cache_write_input_tokens, cost FROM model_inferences WHERE inference_id = %s",
        inference_id(final.id),
    )
    assert streamed[:2] == (CACHE_READ, CACHE_WRITE) and streamed[2] == pytest.approx(Decimal(str(expected)))


async def test_tool_use_round_trip_with_tool_result(
    client: AsyncAnthropic, fakes: tuple[FakeAnthropic, FakeOpenAI], db_url: str
) -> None:
    claude, _ = fakes
    first = await client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "auto"},
        messages=[{"role": "user", "content": "tool Oslo"}],
    )
    assert first.stop_reason == "tool_use"
    [call] = first.content
    assert call.type == "tool_use" and call.name == "weather" and call.input == {"query": "tool Oslo", "n": 2}
    second = await client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "tool Oslo"},
            {"role": "assistant", "content": [call.model_dump()]},  # type: ignore[list-item]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "sunny"}]}
                ],
            },
        ],
    )
    assert second.content[0].text == "result: sunny"  # type: ignore[union-attr]
    sent = claude.last.json["messages"]
    assert sent[1]["content"][0] == {"type": "tool_use", "id": call.id, "name": "weather", "input": call.input}
    assert sent[2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
    function, variant, output = row(
        db_url,
        "SELECT function_name, variant_name, output FROM chat_inferences WHERE id = %s",
        inference_id(first.id),
    )
    assert (function, variant) == ("assistant", "claude")
    assert output[0]["type"] == "tool_call" and output[0]["id"] == call.id and output[0]["raw_name"] == "weather"


async def test_stream_with_tools(client: AsyncAnthropic, db_url: str) -> None:
    async with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=100,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "tool Bergen"}],
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "input_json" in kinds
    [call] = final.content
    assert call.type == "tool_use" and call.input == {"query": "tool Bergen", "n": 2}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0
    streamed, output = row(
        db_url,
        "SELECT streamed, (SELECT output FROM chat_inferences c WHERE c.id = m.inference_id)"
        " FROM model_inferences m WHERE inference_id = %s",
        inference_id(final.id),
    )
    assert streamed is True and output[0]["raw_arguments"] == json.dumps(call.input, separators=(",", ":"))


async def test_thinking_with_signature_passes_through_plain_and_streamed(
    client: AsyncAnthropic, fakes: tuple[FakeAnthropic, FakeOpenAI], db_url: str
) -> None:
    claude, _ = fakes
    thinking = {"type": "enabled", "budget_tokens": 1024}
    plain = await client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=2048,
        thinking=thinking,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "thinking about it"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    assert claude.last.json["thinking"] == thinking  # Anthropic's own field reaches the Anthropic provider
    assert claude.last.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert [b.type for b in plain.content] == ["thinking", "text"]
    assert plain.content[0].signature == SIGNATURE  # type: ignore[union-attr]

    async with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=2048,
        thinking=thinking,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "thinking again"}],
    ) as stream:
        final = await stream.get_final_message()
    block = final.content[0]
    assert block.type == "thinking" and block.signature == SIGNATURE
    assert block.thinking == "The user said thinking again."
    assert final.content[1].text == "echo: thinking again"  # type: ignore[union-attr]

    # The signed thought goes back unchanged (the fake refuses a wrong signature).
    again = await client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=2048,
        thinking=thinking,  # type: ignore[arg-type]
        messages=[
            {"role": "user", "content": "thinking again"},
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},  # type: ignore[misc]
            {"role": "user", "content": "and then"},
        ],
    )
    assert again.content[-1].text == "echo: and then"  # type: ignore[union-attr]
    assert claude.last.json["messages"][1]["content"][0]["signature"] == SIGNATURE
    (output,) = row(db_url, "SELECT output FROM chat_inferences WHERE id = %s", inference_id(plain.id))
    assert output[0] == {
        "type": "thought",
        "text": "The user said thinking about it.",
        "signature": SIGNATURE,
        "provider_type": "anthropic",  # its signature goes back only to an anthropic provider
    }


async def test_openai_provider_behind_is_translated(
    client: AsyncAnthropic, fakes: tuple[FakeAnthropic, FakeOpenAI], db_url: str
) -> None:
    _, gpt = fakes
    message = await client.messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        system="Be brief.",
        thinking={"type": "enabled", "budget_tokens": 1024},  # Anthropic-only: never sent to OpenAI
        messages=[{"role": "user", "content": "hello gpt"}],
    )
    assert message.content[0].text == "echo: hello gpt"  # type: ignore[union-attr]
    body = gpt.requests[-1].body
    assert "thinking" not in body and body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["max_tokens"] == 100 or body.get("max_completion_tokens") == 100
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    await client.messages.create(  # structured output: asked of OpenAI as its response_format
        model="gpt-4o-mini",
        max_tokens=100,
        messages=[{"role": "user", "content": "[fake:json] structured"}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}},
    )
    assert gpt.requests[-1].body["response_format"]["json_schema"]["schema"] == schema
    assert "output_config" not in gpt.requests[-1].body

    async with client.messages.stream(
        model="lsd::model_name::gpt",
        max_tokens=100,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "[fake:tool] Rome"}],
    ) as stream:
        final = await stream.get_final_message()
    [call] = final.content
    assert call.type == "tool_use" and call.name == "weather" and call.input == {"text": "Rome"}
    assert final.stop_reason == "tool_use"
    provider_type, tokens, cost = row(
        db_url,
        "SELECT provider_type, input_tokens, cost FROM model_inferences WHERE inference_id = %s",
        inference_id(message.id),
    )
    assert provider_type == "openai" and tokens == message.usage.input_tokens
    assert cost == pytest.approx(Decimal(str((tokens * 1.0 + message.usage.output_tokens * 2.0) / 1e6)))


async def test_count_tokens_and_errors(client: AsyncAnthropic, fakes: tuple[FakeAnthropic, FakeOpenAI]) -> None:
    claude, _ = fakes
    counted = await client.messages.count_tokens(
        model="claude-sonnet-4-5",
        system="one two",
        messages=[{"role": "user", "content": [{"type": "text", "text": "three four five"}]}],
    )
    assert counted.input_tokens == 5
    assert claude.last.path == "/v1/messages/count_tokens" and claude.last.json["model"] == "claude-fake"
    await client.messages.count_tokens(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"anthropic-beta": "token-counting-2024-11-01"},
    )
    assert claude.last.headers.get("anthropic-beta") == "token-counting-2024-11-01"  # forwarded, as /messages does

    with pytest.raises(anthropic.BadRequestError) as refused:
        await client.messages.count_tokens(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "model" in refused.value.body["error"]["message"]  # type: ignore[index]

    with pytest.raises(anthropic.NotFoundError) as missing:
        await client.messages.create(model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert missing.value.body == {  # type: ignore[comparison-overlap]
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: Unknown model: claude-nope"},
    }

    with pytest.raises(anthropic.BadRequestError) as bad:
        await client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=10,
            messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}],  # type: ignore[list-item, typeddict-item]
        )
    assert bad.value.body["error"]["message"].startswith("messages[0].content[0].source.type:")  # type: ignore[index]

    with pytest.raises(anthropic.APIStatusError) as failed:
        await client.messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "error-529 now"}]
        )
    assert failed.value.body["type"] == "error"  # type: ignore[index]
    await asyncio.sleep(0)


async def test_a_providers_answers_a_client_acts_on_are_passed_on(client: AsyncAnthropic) -> None:
    """Every attempt failed, the last with 400, 429 or 529: the Claude client gets that status, the provider's error
    type and message and its retry-after (Claude Code compacts on 400 "prompt is too long", backs off on 429/529);
    a provider's 401 stays the gateway's 502 (its key, not the client's)."""
    cases: list[tuple[str, type[anthropic.APIStatusError], int, str]] = [
        ("error-400", anthropic.BadRequestError, 400, "invalid_request_error"),
        ("error-429", anthropic.RateLimitError, 429, "rate_limit_error"),
        ("error-529", anthropic.APIStatusError, 529, "overloaded_error"),
        ("error-401", anthropic.InternalServerError, 502, "api_error"),
    ]
    for text, error_class, status, kind in cases:
        with pytest.raises(error_class) as info:
            await client.messages.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": f"{text} now"}]
            )
        assert info.value.status_code == status, text
        assert info.value.body["error"]["type"] == kind  # type: ignore[index]
        if status != 502:
            assert info.value.body["error"]["message"] == f"fake error {status}"  # type: ignore[index]
        expected_retry_after = str(RETRY_AFTER_S) if status == 429 else None
        assert info.value.response.headers.get("retry-after") == expected_retry_after
    with pytest.raises(anthropic.RateLimitError):  # a stream whose provider answered before any event: the same
        async with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "error-429 streamed"}]
        ) as stream:
            await stream.get_final_message()


async def test_message_start_carries_the_providers_input_and_cache_counts(client: AsyncAnthropic) -> None:
    async with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "cached please"}]
    ) as stream:
        events = [event async for event in stream]
    start = events[0]
    assert start.type == "message_start"
    usage = start.message.usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (CACHE_READ, CACHE_WRITE)
    assert usage.input_tokens == 2  # the fake counts words; the cache counts are apart, as Anthropic reports them
    final = events[-1]
    assert final.type == "message_stop" and final.message.usage.cache_read_input_tokens == CACHE_READ


async def test_the_models_list_and_the_request_id(client: AsyncAnthropic) -> None:
    """client.models.list() / retrieve() list what `model` takes (the inbound names first); every answer carries
    `request-id`, which the SDK reads as `_request_id`."""
    listed = [m.id async for m in client.models.list()]
    inbound, models = ["claude-haiku-4-5", "claude-sonnet-4-5", "gpt-4o-mini"], ["claude", "gpt"]
    assert listed == [*inbound, *models, "lsd::function_name::assistant"]
    first = await client.models.list(limit=2)
    assert [m.id for m in first.data] == listed[:2] and first.has_more and first.last_id == listed[1]
    model = await client.models.retrieve("claude-sonnet-4-5")
    assert (model.id, model.type) == ("claude-sonnet-4-5", "model")
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("claude-nope")
    message = await client.messages.create(
        model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    assert message._request_id  # the gateway's request id, also in x-request-id


async def test_gateway_auth_takes_the_sdks_x_api_key(
    fakes: tuple[FakeAnthropic, FakeOpenAI], tmp_path: Path, database_url: str
) -> None:
    claude, _ = fakes
    created = run_lsd("keys", "create", "--description", "claude code", env={"LSD_DATABASE_URL": database_url})
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    config = tmp_path / "auth.toml"
    config.write_text(
        f"""
[gateway.auth]
enabled = true

[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-fake"
api_base = "{claude.base_url}"
api_key_location = "env::FAKE_ANTHROPIC_KEY"
"""
    )
    daemon = Daemon(config, database_url, env={"FAKE_ANTHROPIC_KEY": ANTHROPIC_KEY})
    try:
        daemon.wait_ready()
        async with AsyncAnthropic(base_url=f"{daemon.base_url}/anthropic", api_key=token, max_retries=0) as sdk:
            message = await sdk.messages.create(
                model="claude", max_tokens=10, messages=[{"role": "user", "content": "hello"}]
            )
            assert message.content[0].text == "echo: hello"  # type: ignore[union-attr]
        async with AsyncAnthropic(
            base_url=f"{daemon.base_url}/anthropic", api_key="sk-lsd-wrong", max_retries=0
        ) as bad:
            with pytest.raises(anthropic.AuthenticationError) as refused:
                await bad.messages.create(model="claude", max_tokens=10, messages=[{"role": "user", "content": "x"}])
        assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    finally:
        assert daemon.terminate() == 0
    public_id = token.split("-")[2]
    assert row(
        database_url, "SELECT api_key_public_id FROM chat_inferences WHERE id = %s", inference_id(message.id)
    ) == (public_id,)
    assert claude.last.headers["x-api-key"] == ANTHROPIC_KEY  # the provider's key, never the client's


async def test_a_claude_code_shaped_request_through_the_beta_client(
    client: AsyncAnthropic, fakes: tuple[FakeAnthropic, FakeOpenAI], db_url: str
) -> None:
    """What Claude clients send: `?beta=true`, betas in `anthropic-beta`, cache_control marks, metadata.user_id."""
    claude, _ = fakes
    ephemeral = {"type": "ephemeral"}
    async with client.beta.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=256,
        betas=["interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"],
        metadata={"user_id": "user_abc_session_1"},
        system=[{"type": "text", "text": "You are a coding agent.", "cache_control": ephemeral}],  # type: ignore[list-item]
        tools=[{**WEATHER, "cache_control": ephemeral}],  # type: ignore[list-item]
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello agent", "cache_control": ephemeral}]}],  # type: ignore[list-item]
        # What Claude Code 2.1 sends with every request (a 400 "unknown field" before): passed on to Anthropic.
        extra_body={"context_management": CONTEXT_MANAGEMENT, "output_config": {"effort": "high"}},
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "echo: hello agent" and final.stop_reason == "end_turn"
    assert claude.last.json["context_management"] == CONTEXT_MANAGEMENT
    assert claude.last.json["output_config"] == {"effort": "high"}
    assert claude.last.json["metadata"] == {"user_id": "user_abc_session_1"}
    assert (
        claude.last.headers["anthropic-beta"]
        == "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
    )
    sent = claude.last.json  # the cache breakpoints reach Anthropic
    assert sent["system"] == [{"type": "text", "text": "You are a coding agent.", "cache_control": ephemeral}]
    assert sent["tools"][0]["cache_control"] == ephemeral
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hello agent", "cache_control": ephemeral}]}
    ]
    (tags,) = row(db_url, "SELECT tags FROM chat_inferences WHERE id = %s", inference_id(final.id))
    assert tags["user_id"] == "user_abc_session_1"


async def test_tensorzero_and_openai_answers_carry_the_cache_counts_too(daemon: Daemon) -> None:
    """The same provider answer through POST /inference and /openai/v1/chat/completions (TensorZero's keys)."""
    async with httpx.AsyncClient(base_url=daemon.base_url) as http:
        native = await http.post(
            "/inference",
            json={"model_name": "claude", "input": {"messages": [{"role": "user", "content": "cached prompt here"}]}},
        )
        chat = await http.post(
            "/openai/v1/chat/completions",
            json={"model": "lsd::model_name::claude", "messages": [{"role": "user", "content": "cached prompt here"}]},
        )
    usage = native.json()["usage"]
    total = 3 + CACHE_READ + CACHE_WRITE
    assert (usage["input_tokens"], usage["provider_cache_read_input_tokens"]) == (total, CACHE_READ)
    assert usage["provider_cache_write_input_tokens"] == CACHE_WRITE and usage["cost"] > 0
    openai_usage = chat.json()["usage"]
    assert openai_usage["prompt_tokens"] == total
    assert openai_usage["prompt_tokens_details"] == {"cached_tokens": CACHE_READ}
    assert openai_usage["tensorzero_provider_cache_write_input_tokens"] == CACHE_WRITE
