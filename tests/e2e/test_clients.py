"""Real clients against a real `lsd serve`: the official OpenAI SDK and the tensorzero Python client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from openai import AsyncOpenAI
from tensorzero import AsyncTensorZeroGateway

from tests.fakes.openai_server import FakeOpenAI
from tests.support.configs import openai_model, write_answer_schema
from tests.support.gateway import Daemon

KEY = "sk-fake-provider-key"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=KEY) as server:
        yield server


@pytest.fixture
def daemon(fake: FakeOpenAI, tmp_path: Path, database_url: str) -> Iterator[Daemon]:
    (tmp_path / "weather.json").write_text(json.dumps({"type": "object", "properties": {"text": {"type": "string"}}}))
    write_answer_schema(tmp_path)
    config = tmp_path / "lsd.toml"
    config.write_text(
        f"""
[gateway.observability.batch_writes]
flush_interval_ms = 20

{openai_model("gpt", fake.api_base, key_location="env::FAKE_OPENAI_KEY")}

[embedding_models.small]
routing = ["openai"]
[embedding_models.small.providers.openai]
type = "openai"
model_name = "text-embedding-3-small"
api_base = "{fake.api_base}"
api_key_location = "env::FAKE_OPENAI_KEY"

[tools.weather]
description = "Weather"
parameters = "weather.json"

[functions.chat]
type = "chat"
tools = ["weather"]
[functions.chat.variants.gpt]
type = "chat_completion"
model = "gpt"

[functions.extract]
type = "json"
output_schema = "answer.json"
[functions.extract.variants.gpt]
type = "chat_completion"
model = "gpt"
json_mode = "strict"
"""
    )
    running = Daemon(config, database_url, env={"FAKE_OPENAI_KEY": KEY})
    running.wait_ready()
    yield running
    assert running.terminate() == 0


async def test_openai_sdk_chat_stream_tools_json_and_embeddings(daemon: Daemon, database_url: str) -> None:
    client = AsyncOpenAI(base_url=f"{daemon.base_url}/openai/v1", api_key="unused")
    try:
        chat = await client.chat.completions.create(
            model="lsd::function_name::chat", messages=[{"role": "user", "content": "hello sdk"}]
        )
        assert chat.choices[0].message.content == "echo: hello sdk"
        assert chat.model == "lsd::function_name::chat::variant_name::gpt"

        stream = await client.chat.completions.create(
            model="tensorzero::model_name::gpt",
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        assert "".join(pieces) == "echo: one two three"
        assert usage is not None and usage.completion_tokens > 0

        tools = await client.chat.completions.create(
            model="lsd::function_name::chat",
            messages=[{"role": "user", "content": "[fake:tool] Oslo"}],
        )
        call = tools.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.name == "weather" and json.loads(call.function.arguments) == {"text": "Oslo"}
        assert tools.choices[0].finish_reason == "tool_calls"

        structured = await client.chat.completions.create(
            model="lsd::function_name::extract",
            messages=[{"role": "user", "content": "[fake:json] Bergen"}],
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
        )
        assert json.loads(structured.choices[0].message.content or "") == {"answer": "Bergen"}

        embedded = await client.embeddings.create(model="lsd::embedding_model_name::small", input=["a b", "c"])
        assert len(embedded.data) == 2 and len(embedded.data[0].embedding) > 0

        with pytest.raises(Exception) as info:
            await client.chat.completions.create(
                model="lsd::function_name::nope", messages=[{"role": "user", "content": "x"}]
            )
        assert "nope" in str(info.value)
    finally:
        await client.close()
    await asyncio.sleep(0.5)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM chat_inferences").fetchone() == (3,)
        assert conn.execute("SELECT count(*) FROM json_inferences").fetchone() == (1,)
        assert conn.execute("SELECT num_inputs FROM embedding_inferences").fetchone() == (2,)


async def test_tensorzero_client_http_mode(daemon: Daemon, database_url: str) -> None:
    client = await AsyncTensorZeroGateway.build_http(gateway_url=daemon.base_url)
    try:
        response = await client.inference(
            function_name="chat", input={"messages": [{"role": "user", "content": "hello tensorzero"}]}
        )
        assert response.content[0].text == "echo: hello tensorzero"  # type: ignore[union-attr]
        assert response.variant_name == "gpt"

        json_response = await client.inference(
            function_name="extract", input={"messages": [{"role": "user", "content": "[fake:json] Rome"}]}
        )
        assert json_response.output.parsed == {"answer": "Rome"}  # type: ignore[union-attr]

        chunks = []
        stream = await client.inference(
            model_name="gpt", input={"messages": [{"role": "user", "content": "a b c"}]}, stream=True
        )
        async for chunk in stream:  # type: ignore[union-attr]
            chunks.append(chunk)
        text = "".join(c.content[0].text for c in chunks if c.content)  # type: ignore[union-attr]
        assert text == "echo: a b c"
        assert chunks[-1].usage is not None
    finally:
        await client.close()
    await asyncio.sleep(0.5)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM chat_inferences").fetchone() == (2,)
