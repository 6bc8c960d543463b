"""The official OpenAI SDK's `client.responses.create` against a real `lsd serve`, with an OpenAI and an Anthropic
provider behind it (fakes): plain, streamed, function calling round trips, json_schema, previous_response_id; the
rows recorded match what was answered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import psycopg
import pytest
from openai import AsyncOpenAI

from lsd.api.responses_items import open_thought
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.support.configs import openai_model
from tests.support.gateway import Daemon

KEY = "sk-fake-provider-key"
WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeOpenAI, FakeAnthropic]]:
    anthropic = FakeAnthropic(api_key=KEY)
    await anthropic.start()
    try:
        async with FakeOpenAI(api_key=KEY) as fake:
            yield fake, anthropic
    finally:
        await anthropic.stop()


@pytest.fixture
def daemon(fakes: tuple[FakeOpenAI, FakeAnthropic], tmp_path: Path, database_url: str) -> Iterator[Daemon]:
    fake, anthropic = fakes
    config = tmp_path / "lsd.toml"
    config.write_text(
        f"""
[gateway.observability.batch_writes]
flush_interval_ms = 20

{openai_model("gpt", fake.api_base, key_location="env::FAKE_KEY")}
[models.gpt.providers.openai.cost]
input_per_million = 1.0
output_per_million = 2.0

[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-test"
api_base = "{anthropic.base_url}"
api_key_location = "env::FAKE_KEY"

[functions.assistant]
type = "chat"
[functions.assistant.variants.gpt]
type = "chat_completion"
model = "gpt"

[inbound.openai.models]
gpt-5-codex = "gpt"
my-assistant = "lsd::function_name::assistant"

[functions.claude_assistant]
type = "chat"
[functions.claude_assistant.variants.claude]
type = "chat_completion"
model = "claude"
"""
    )
    running = Daemon(config, database_url, env={"FAKE_KEY": KEY})
    running.wait_ready()
    yield running
    assert running.terminate() == 0


def rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query).fetchall()


async def test_responses_with_an_openai_provider(daemon: Daemon, database_url: str) -> None:
    client = AsyncOpenAI(base_url=f"{daemon.base_url}/openai/v1", api_key="unused")
    try:
        plain = await client.responses.create(
            model="lsd::function_name::assistant",
            input="hello responses",
            instructions="be brief",
            metadata={"team": "search"},
        )
        assert plain.output_text == "echo: hello responses"
        assert plain.status == "completed" and plain.object == "response"
        assert plain.model == "lsd::function_name::assistant::variant_name::gpt"
        assert plain.id.startswith("resp_")
        assert plain.usage is not None and plain.usage.input_tokens == 4 and plain.usage.output_tokens == 3
        assert plain.usage.total_tokens == 7 and plain.usage.input_tokens_details.cached_tokens == 0

        follow = await client.responses.create(
            model="lsd::function_name::assistant", input="and again", previous_response_id=plain.id
        )
        assert follow.output_text == "echo: and again"
        assert follow.previous_response_id == plain.id

        stream = await client.responses.create(model="lsd::model_name::gpt", input="one two three", stream=True)
        kinds, deltas, completed = [], [], None
        async for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.completed":
                completed = event.response
        assert "".join(deltas) == "echo: one two three"
        assert kinds[:2] == ["response.created", "response.in_progress"]
        assert kinds[-1] == "response.completed"
        assert {"response.output_item.added", "response.content_part.added", "response.output_text.done"} <= set(kinds)
        assert completed is not None and completed.output_text == "echo: one two three"
        assert completed.usage is not None and completed.usage.output_tokens == 4

        call = await client.responses.create(
            model="lsd::model_name::gpt",
            input="[fake:toolround] Oslo",
            tools=[WEATHER],  # type: ignore[list-item]
        )
        function_calls = [item for item in call.output if item.type == "function_call"]
        assert len(function_calls) == 1 and function_calls[0].name == "weather"
        assert json.loads(function_calls[0].arguments) == {"text": "Oslo"}
        answer = await client.responses.create(
            model="lsd::model_name::gpt",
            previous_response_id=call.id,
            input=[{"type": "function_call_output", "call_id": function_calls[0].call_id, "output": "sunny"}],
            tools=[WEATHER],  # type: ignore[list-item]
        )
        assert answer.output_text == "result: sunny"

        streamed_call = await client.responses.create(
            model="lsd::model_name::gpt",
            input="[fake:tool] Bergen",
            tools=[WEATHER],
            stream=True,  # type: ignore[list-item]
        )
        arguments, done = [], None
        async for event in streamed_call:
            if event.type == "response.function_call_arguments.delta":
                arguments.append(event.delta)
            if event.type == "response.function_call_arguments.done":
                done = event.arguments
        assert json.loads("".join(arguments)) == {"text": "Bergen"} and done == "".join(arguments)

        structured = await client.responses.create(
            model="lsd::model_name::gpt",
            input="[fake:json] Rome",
            text={"format": {"type": "json_schema", "name": "answer", "schema": SCHEMA, "strict": True}},
        )
        assert json.loads(structured.output_text) == {"answer": "Rome"}

        with pytest.raises(openai.NotFoundError) as missing:
            await client.responses.create(
                model="lsd::model_name::gpt", input="x", previous_response_id="resp_" + "0" * 32
            )
        assert missing.value.body["param"] == "previous_response_id"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(
                model="lsd::model_name::gpt",
                input="x",
                tools=[{"type": "file_search", "vector_store_ids": ["v"]}],  # type: ignore[list-item]
            )
        assert refused.value.body["param"] == "tools[0].type"  # type: ignore[index]

        unstored = await client.responses.create(model="lsd::model_name::gpt", input="secret", store=False)
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model="lsd::model_name::gpt", input="x", previous_response_id=unstored.id)
    finally:
        await client.close()
    await asyncio.sleep(0.5)
    recorded = rows(
        database_url,
        "SELECT id, function_name, variant_name, input, output, tags, input_tokens, output_tokens, cost, episode_id "
        "FROM chat_inferences ORDER BY id",
    )
    assert len(recorded) == 8
    first, second = recorded[0], recorded[1]
    assert first[0].hex == plain.id.removeprefix("resp_")
    assert (first[1], first[2], first[5]) == ("assistant", "gpt", {"team": "search"})
    assert first[3] == {
        "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello responses"}]}],
    }
    assert first[4] == [{"type": "text", "text": "echo: hello responses"}]
    assert (first[6], first[7]) == (4, 3) and float(first[8]) == pytest.approx((4 * 1.0 + 3 * 2.0) / 1e6)
    # the follow-up carries the first exchange (not its instructions), then the new message
    assert second[3]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hello responses"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "echo: hello responses"}]},
        {"role": "user", "content": [{"type": "text", "text": "and again"}]},
    ]
    assert "system" not in second[3]
    assert second[9] == first[9] and recorded[2][9] != first[9]  # a follow-up continues its episode
    assert recorded[-1][5] == {"lsd::store": "false"}
    assert rows(database_url, "SELECT count(*) FROM json_inferences") == [(0,)]
    providers = rows(database_url, "SELECT DISTINCT model_provider_name, status FROM model_inferences")
    assert providers == [("openai", "ok")]


async def test_responses_with_an_anthropic_provider(
    fakes: tuple[FakeOpenAI, FakeAnthropic], daemon: Daemon, database_url: str
) -> None:
    client = AsyncOpenAI(base_url=f"{daemon.base_url}/openai/v1", api_key="unused")
    try:
        plain = await client.responses.create(model="lsd::function_name::claude_assistant", input="hello claude")
        assert plain.output_text == "echo: hello claude"
        assert plain.model == "lsd::function_name::claude_assistant::variant_name::claude"

        follow = await client.responses.create(
            model="lsd::function_name::claude_assistant", input="second turn", previous_response_id=plain.id
        )
        assert follow.output_text == "echo: second turn"

        stream = await client.responses.create(model="lsd::model_name::claude", input="stream me please", stream=True)
        deltas, completed = [], None
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.completed":
                completed = event.response
        assert "".join(deltas) == "echo: stream me please"
        assert completed is not None and completed.usage is not None and completed.usage.input_tokens > 0

        call = await client.responses.create(
            model="lsd::model_name::claude",
            input="tool Oslo",
            tools=[WEATHER],  # type: ignore[list-item]
        )
        (function_call,) = [item for item in call.output if item.type == "function_call"]
        assert function_call.name == "weather" and json.loads(function_call.arguments)["query"] == "tool Oslo"
        answer = await client.responses.create(
            model="lsd::model_name::claude",
            previous_response_id=call.id,
            input=[{"type": "function_call_output", "call_id": function_call.call_id, "output": "rainy"}],
            tools=[WEATHER],  # type: ignore[list-item]
        )
        assert answer.output_text == "result: rainy"

        structured = await client.responses.create(
            model="lsd::model_name::claude",
            input="json Rome",
            text={"format": {"type": "json_schema", "name": "answer", "schema": SCHEMA, "strict": True}},
        )
        assert "answer" in json.loads(structured.output_text)

        async with client.responses.stream(model="lsd::model_name::claude", input="thinking about Oslo") as events:
            thought = [e.delta async for e in events if e.type == "response.reasoning_text.delta"]
            thinking = await events.get_final_response()
        assert "".join(thought) == "The user said thinking about Oslo."
        reasoning = thinking.output[0]
        assert reasoning.type == "reasoning" and reasoning.encrypted_content  # the signature
        assert thinking.output_text == "echo: thinking about Oslo"
        await client.responses.create(
            model="lsd::model_name::claude", input="and now?", previous_response_id=thinking.id
        )
        sent = fakes[1].last.json["messages"]
        assert sent[1]["role"] == "assistant" and sent[1]["content"][0]["type"] == "thinking"
        assert (sent[1]["content"][0]["thinking"], sent[1]["content"][0]["signature"]) == open_thought(
            reasoning.encrypted_content or ""
        )  # the thought's text sealed with its signature
    finally:
        await client.close()
    await asyncio.sleep(0.5)
    recorded = rows(database_url, "SELECT function_name, input, output, input_tokens FROM chat_inferences ORDER BY id")
    assert len(recorded) == 8
    assert [r[0] for r in recorded] == ["claude_assistant"] * 2 + ["tensorzero::default"] * 6
    assert all(r[3] is not None and r[3] > 0 for r in recorded)
    # the tool round trip: the stored follow-up holds the call and its result
    round_trip = recorded[4][1]["messages"]
    assert round_trip[1]["content"][0]["type"] == "tool_call" and round_trip[2]["content"][0]["type"] == "tool_result"
    assert rows(database_url, "SELECT DISTINCT model_provider_name, status FROM model_inferences") == [
        ("anthropic", "ok")
    ]


async def test_a_providers_400_and_429_reach_the_client_as_given(daemon: Daemon) -> None:
    """Codex and the Agents SDK act on a provider's 400 (context window) and 429 (back off): the Responses API
    passes them on in OpenAI's shape (type, code, Retry-After), as Chat Completions does; a 5xx stays the gateway's
    502."""
    client = AsyncOpenAI(base_url=f"{daemon.base_url}/openai/v1", api_key="unused", max_retries=0)
    try:
        with pytest.raises(openai.RateLimitError) as limited:
            await client.responses.create(model="lsd::model_name::gpt", input="[fake:error-429] hi")
        assert limited.value.code == "rate_limit_exceeded" and limited.value.type == "requests"
        assert limited.value.body["message"] == "Rate limit reached (fake)."  # type: ignore[index]
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as refused:
                await client.responses.create(model="lsd::model_name::gpt", input="[fake:error-400] hi", stream=stream)
            assert (
                refused.value.type == "invalid_request_error"
                and refused.value.body["message"] == "Invalid request (fake)."
            )  # type: ignore[index]
        with pytest.raises(openai.InternalServerError) as failed:
            await client.responses.create(model="lsd::model_name::gpt", input="[fake:error-500] hi")
        assert failed.value.status_code == 502
        with pytest.raises(openai.RateLimitError) as chat:
            await client.chat.completions.create(
                model="lsd::model_name::gpt", messages=[{"role": "user", "content": "[fake:error-429] hi"}]
            )
        assert chat.value.code == "rate_limit_exceeded"
    finally:
        await client.close()


async def test_plain_openai_model_names_mapped_in_inbound_openai(daemon: Daemon, database_url: str) -> None:
    """Codex and other OpenAI clients send names like `gpt-5-codex`: [inbound.openai] models maps them on both
    routes, the answers echo them, and the models list offers them first."""
    client = AsyncOpenAI(base_url=f"{daemon.base_url}/openai/v1", api_key="unused", max_retries=0)
    try:
        answer = await client.responses.create(model="gpt-5-codex", input="mapped name")
        assert answer.output_text == "echo: mapped name" and answer.model == "gpt-5-codex"
        chat = await client.chat.completions.create(
            model="my-assistant", messages=[{"role": "user", "content": "mapped function"}]
        )
        assert chat.choices[0].message.content == "echo: mapped function" and chat.model == "my-assistant"
        listed = [m.id async for m in client.models.list()]
        assert listed[:2] == ["gpt-5-codex", "my-assistant"]
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(model="gpt-4o", input="unmapped")
    finally:
        await client.close()
    row = None
    for _ in range(100):  # the writer flushes every 20 ms
        with psycopg.connect(database_url) as conn:
            query = "SELECT function_name, variant_name, tags FROM chat_inferences WHERE id = %s"
            row = conn.execute(query, (chat.id,)).fetchone()
        if row is not None:
            break
        await asyncio.sleep(0.05)
    assert row == ("assistant", "gpt", {"lsd::model_alias": "my-assistant"})  # who sent what: the name it used


async def test_a_custom_tool_through_the_sdk(daemon: Daemon, fakes: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    """A freeform tool (Codex's apply_patch) reaches the provider as a function of one string and comes back as a
    custom_tool_call the SDK reads, streamed or not."""
    fake, _ = fakes
    tool = {"type": "custom", "name": "apply_patch", "description": "Edit files."}
    client = AsyncOpenAI(base_url=f"{daemon.base_url}/openai/v1", api_key="unused", max_retries=0)
    try:
        answer = await client.responses.create(
            model="lsd::model_name::gpt",
            input="[fake:tool] patch",
            tools=[tool],  # type: ignore[list-item]
        )
        [item] = answer.output
        assert item.type == "custom_tool_call" and item.name == "apply_patch"
        sent = fake.requests[-1].body["tools"][0]["function"]
        assert sent["name"] == "apply_patch" and sent["parameters"]["required"] == ["input"]
        stream = await client.responses.create(
            model="lsd::model_name::gpt",
            input="[fake:tool] patch",
            tools=[tool],  # type: ignore[list-item]
            stream=True,
        )
        done = [event.item async for event in stream if event.type == "response.output_item.done"]
        assert [d.type for d in done] == ["custom_tool_call"]
        followed = await client.responses.create(
            model="lsd::model_name::gpt",
            tools=[tool],  # type: ignore[list-item]
            input=[
                {"role": "user", "content": "patch"},
                {"type": "custom_tool_call", "call_id": item.call_id, "name": "apply_patch", "input": "*** Begin"},
                {"type": "custom_tool_call_output", "call_id": item.call_id, "output": "Done!"},
            ],
        )
        assert followed.status == "completed"
        messages = fake.requests[-1].body["messages"]
        assert messages[1]["tool_calls"][0]["function"]["arguments"] == '{"input":"*** Begin"}'
        assert messages[2] == {"role": "tool", "tool_call_id": item.call_id, "content": "Done!"}
    finally:
        await client.close()
