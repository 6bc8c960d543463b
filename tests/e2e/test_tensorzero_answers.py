"""Answers as TensorZero gives them, through real clients against a real `lsd serve`: error bodies (with and
without `gateway.unstable_error_json`), the OpenAI-compatible `model` echo and request checks, streamed chunks
(the last one's usage and finish reason, a provider's error mid-stream), and the cache for streamed requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from openai import AsyncOpenAI, BadRequestError
from tensorzero import AsyncTensorZeroGateway, TensorZeroError

from tests.fakes.openai_server import FakeOpenAI
from tests.support.configs import openai_model, write_answer_schema
from tests.support.gateway import Daemon
from tests.support.polling import count, eventually

KEY = "sk-fake-provider-key"
HINT = (
    "Invalid request to OpenAI-compatible endpoint: `model` field must start with `tensorzero::function_name::` "
    "or `tensorzero::model_name::`. For example, `tensorzero::function_name::my_function` for a function "
    "`my_function` defined in your config, `tensorzero::model_name::my_model` for a model `my_model` defined in "
    "your config, or default functions like `tensorzero::model_name::openai::gpt-4o-mini`."
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=KEY) as server:
        yield server


def config_text(fake: FakeOpenAI, error_json: bool) -> str:
    return f"""
[gateway]
unstable_error_json = {"true" if error_json else "false"}

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

[metrics.good]
type = "boolean"
optimize = "max"
level = "inference"

[functions.chat]
type = "chat"
[functions.chat.variants.gpt]
type = "chat_completion"
model = "gpt"

[functions.greet]
type = "chat"
user_schema = "name.json"
[functions.greet.variants.gpt]
type = "chat_completion"
model = "gpt"
user_template = "hello.minijinja"

[functions.extract]
type = "json"
output_schema = "answer.json"
[functions.extract.variants.gpt]
type = "chat_completion"
model = "gpt"
json_mode = "strict"
"""


def start(fake: FakeOpenAI, folder: Path, database_url: str, *, error_json: bool) -> Daemon:
    folder.mkdir(exist_ok=True)
    write_answer_schema(folder)
    (folder / "name.json").write_text(json.dumps({"type": "object", "required": ["name"]}))
    (folder / "hello.minijinja").write_text("Hello {{ name }}")
    config = folder / "lsd.toml"
    config.write_text(config_text(fake, error_json))
    daemon = Daemon(config, database_url, env={"FAKE_OPENAI_KEY": KEY})
    daemon.wait_ready()
    return daemon


@pytest.fixture
def daemon(fake: FakeOpenAI, tmp_path: Path, database_url: str) -> Iterator[Daemon]:
    """A gateway with `gateway.unstable_error_json = true`."""
    running = start(fake, tmp_path / "on", database_url, error_json=True)
    yield running
    assert running.terminate() == 0


@pytest.fixture
def plain_daemon(fake: FakeOpenAI, tmp_path: Path, database_url: str) -> Iterator[Daemon]:
    """The same gateway without `unstable_error_json`."""
    running = start(fake, tmp_path / "off", database_url, error_json=False)
    yield running
    assert running.terminate() == 0


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def sse(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> list[Any]:
    """Every `data:` event of a streamed answer, decoded (the final `[DONE]` kept as the string)."""
    events: list[Any] = []
    async with client.stream("POST", url, json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


# -- error bodies ----------------------------------------------------------------------------------------------


async def test_error_bodies_with_error_json(daemon: Daemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.base_url) as client:
        r = await client.post("/inference", json={"function_name": "nope", "input": user("x")})
        assert r.status_code == 404
        assert r.text == (
            '{"error":"Unknown function: nope","error_json":{"UnknownFunction":{"name":"nope"}},'
            '"error_code":"not_found","field":"function_name"}'
        )
        r = await client.post("/inference", json={"function_name": "chat", "variant_name": "v9", "input": user("x")})
        assert r.status_code == 404
        assert r.json()["error"] == "Unknown variant: v9"
        assert r.json()["error_json"] == {"UnknownVariant": {"name": "v9"}}
        r = await client.post("/inference", json={"model_name": "missing", "input": user("x")})
        assert r.status_code == 404
        assert r.json()["error"] == "Unknown model: missing"
        assert r.json()["error_json"] == {"UnknownModel": {"name": "missing"}}
        feedback = {"metric_name": "nope", "inference_id": "0190f0a8-1111-7000-8000-000000000000", "value": True}
        r = await client.post("/feedback", json=feedback)
        assert r.status_code == 404 and r.json()["error"] == "Unknown metric: nope"
        assert r.json()["error_json"] == {"UnknownMetric": {"name": "nope"}}
        r = await client.post(
            "/inference", json={"function_name": "greet", "input": {"messages": [{"role": "user", "content": "Hi"}]}}
        )
        assert r.status_code == 400 and "JSON Schema validation failed" in r.json()["error"]
        assert "'Hi' is not of type 'object'" in r.json()["error"]
        assert list(r.json()["error_json"]) == ["InputValidation"]
        r = await client.post("/no/such/route", json={})
        assert r.status_code == 404
        assert r.json()["error"] == "Route not found: POST /no/such/route"
        assert r.json()["error_json"] == {"RouteNotFound": {"path": "/no/such/route", "method": "POST"}}

        r = await client.post(
            "/openai/v1/chat/completions",
            json={"model": "tensorzero::function_name::nope", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 404
        assert r.text == (
            '{"error":{"message":"Unknown function: nope","error_json":{"UnknownFunction":{"name":"nope"}},'
            '"tensorzero_error_json":{"UnknownFunction":{"name":"nope"}},'
            '"type":"not_found","code":"not_found","param":"function_name"}}'
        )

    tz = await AsyncTensorZeroGateway.build_http(gateway_url=daemon.base_url)
    try:
        with pytest.raises(TensorZeroError) as info:
            await tz.inference(function_name="not_a_function", input=user("x"))
        assert info.value.status_code == 404
        assert '"error":"Unknown function: not_a_function"' in str(info.value)
        assert '"error_json":{"UnknownFunction":{"name":"not_a_function"}}' in str(info.value)
    finally:
        await tz.close()


async def test_error_bodies_without_error_json(plain_daemon: Daemon) -> None:
    async with httpx.AsyncClient(base_url=plain_daemon.base_url) as client:
        r = await client.post("/inference", json={"function_name": "nope", "input": user("x")})
        assert r.status_code == 404
        assert r.text == '{"error":"Unknown function: nope","error_code":"not_found","field":"function_name"}'
        r = await client.post(
            "/openai/v1/chat/completions",
            json={"model": "tensorzero::function_name::nope", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.text == (
            '{"error":{"message":"Unknown function: nope","type":"not_found","code":"not_found",'
            '"param":"function_name"}}'
        )
    tz = await AsyncTensorZeroGateway.build_http(gateway_url=plain_daemon.base_url)
    try:
        with pytest.raises(TensorZeroError) as info:
            await tz.inference(function_name="chat", variant_name="nope", input=user("x"))
        assert info.value.status_code == 404 and "Unknown variant: nope" in str(info.value)
        assert "error_json" not in str(info.value)
    finally:
        await tz.close()


# -- the OpenAI-compatible endpoint -----------------------------------------------------------------------------


async def test_openai_model_echo_and_validation(daemon: Daemon) -> None:
    client = AsyncOpenAI(base_url=f"{daemon.base_url}/openai/v1", api_key="unused")
    try:
        chat = await client.chat.completions.create(
            model="tensorzero::function_name::chat", messages=[{"role": "user", "content": "hi"}]
        )
        assert chat.model == "tensorzero::function_name::chat::variant_name::gpt"
        lsd = await client.chat.completions.create(
            model="lsd::function_name::chat", messages=[{"role": "user", "content": "hi"}]
        )
        assert lsd.model == "lsd::function_name::chat::variant_name::gpt"
        by_model = await client.chat.completions.create(
            model="tensorzero::model_name::gpt", messages=[{"role": "user", "content": "hi"}]
        )
        assert by_model.model == "tensorzero::model_name::gpt"
        stream = await client.chat.completions.create(
            model="tensorzero::function_name::chat",
            messages=[{"role": "user", "content": "one two"}],
            stream=True,
        )
        models = {chunk.model async for chunk in stream}
        assert models == {"tensorzero::function_name::chat::variant_name::gpt"}
        embedded = await client.embeddings.create(model="tensorzero::embedding_model_name::small", input="a b")
        assert embedded.model == "tensorzero::embedding_model_name::small"

        async def refused(model: str, messages: list[Any]) -> str:
            with pytest.raises(BadRequestError) as info:
                await client.chat.completions.create(model=model, messages=messages)
            assert info.value.status_code == 400
            body = info.value.body
            assert isinstance(body, dict)
            return str(body["message"])

        hi = [{"role": "user", "content": "hi"}]
        assert await refused("chatgpt", hi) == HINT
        assert await refused("tensorzero::function_name::", hi) == (
            "Invalid request to OpenAI-compatible endpoint: function_name (passed in model field after "
            '"tensorzero::function_name::") cannot be empty'
        )
        both = [{"role": "user", "content": [{"type": "text", "text": "a", "tensorzero::arguments": {"x": 1}}]}]
        assert await refused("tensorzero::function_name::chat", both) == (
            "Invalid request to OpenAI-compatible endpoint: Invalid TensorZero content block: Only one of `text` or "
            "`tensorzero::arguments` can be set"
        )
        neither = [{"role": "user", "content": [{"type": "text"}]}]
        assert await refused("tensorzero::function_name::chat", neither) == (
            "Invalid request to OpenAI-compatible endpoint: Invalid content block: Either `text` or "
            '`tensorzero::arguments` must be set when using `"type": "text"`'
        )
        fake_type = [{"role": "user", "content": [{"type": "my_fake_type", "text": "a"}]}]
        assert await refused("tensorzero::function_name::chat", fake_type) == (
            "Invalid request to OpenAI-compatible endpoint: Invalid content block: unknown variant `my_fake_type`, "
            "expected one of `text`, `image_url`, `file`"
        )
        image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
        system_image = [{"role": "system", "content": [image]}, *hi]
        assert await refused("tensorzero::function_name::chat", system_image) == (
            "Invalid request to OpenAI-compatible endpoint: System message must contain only text or template "
            "content blocks"
        )
        with_file = await client.chat.completions.create(
            model="tensorzero::function_name::chat",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "read this"},
                        {"type": "file", "file": {"file_data": "data:text/plain;base64,aGk=", "filename": "a.txt"}},
                    ],
                }
            ],
        )
        assert with_file.choices[0].message.content is not None
    finally:
        await client.close()


# -- streams ---------------------------------------------------------------------------------------------------


async def test_streamed_answer_chunk_by_chunk(daemon: Daemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.base_url, timeout=30) as client:
        events = await sse(client, "/inference", {"function_name": "chat", "input": user("a b c"), "stream": True})
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert len({(c["inference_id"], c["episode_id"]) for c in chunks}) == 1
        *content, last = chunks
        assert "".join(c["content"][0]["text"] for c in content) == "echo: a b c"
        assert all("usage" not in c and "finish_reason" not in c for c in content)
        assert last["content"] == [] and last["finish_reason"] == "stop"
        assert last["usage"]["input_tokens"] == 3 and last["usage"]["output_tokens"] == 4
        assert "cost" in last["usage"]

        json_events = await sse(
            client, "/inference", {"function_name": "extract", "input": user("[fake:json] Oslo"), "stream": True}
        )
        *json_content, json_last = json_events[:-1]
        assert json.loads("".join(c["raw"] for c in json_content)) == {"answer": "Oslo"}
        assert all(c["raw"] for c in json_content)  # no empty chunk (a thought, say) before the first piece
        assert json_last["raw"] == "" and json_last["finish_reason"] == "stop" and json_last["usage"]

        openai_events = await sse(
            client,
            "/openai/v1/chat/completions",
            {
                "model": "tensorzero::function_name::extract",
                "messages": [{"role": "user", "content": "[fake:json] Oslo"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
        *_, openai_last = openai_events[:-1]
        assert openai_last["choices"][0]["finish_reason"] == "stop"
        assert openai_last["choices"][0]["delta"]["content"] == ""
        assert openai_last["usage"]["completion_tokens"] > 0
        assert all(e["usage"] is None for e in openai_events[:-2])


async def test_a_provider_error_mid_stream_is_an_event_and_the_stream_goes_on(
    daemon: Daemon, database_url: str
) -> None:
    async with httpx.AsyncClient(base_url=daemon.base_url, timeout=30) as client:
        body = {"function_name": "chat", "input": user("[fake:midstream-error] one two three"), "stream": True}
        events = (await sse(client, "/inference", body))[:-1]
        # the client saw an error: the inference says so (written in the background)
        query = "SELECT count(*) FROM chat_inferences WHERE id = %s AND tags->>'lsd::stream_error' = 'provider_error'"
        assert eventually(lambda: count(database_url, query, events[0]["inference_id"]), timeout=5) == 1
        errors = [i for i, e in enumerate(events) if "error" in e]
        assert len(errors) == 1
        error = events[errors[0]]
        assert "transient upstream hiccup" in error["error"]
        assert list(error["error_json"]) == ["InferenceServer"]
        texts = [e["content"][0]["text"] for e in events if e.get("content")]
        assert "".join(texts) == "echo: one two three"  # what came before and after the error
        assert errors[0] < len(events) - 2  # content followed the error
        assert events[-1]["finish_reason"] == "stop"

        openai_events = await sse(
            client,
            "/openai/v1/chat/completions",
            {
                "model": "tensorzero::function_name::chat",
                "messages": [{"role": "user", "content": "[fake:midstream-error] one two three"}],
                "stream": True,
            },
        )
        error_events = [e for e in openai_events if isinstance(e, dict) and "error" in e]
        assert len(error_events) == 1 and "hiccup" in error_events[0]["error"]["message"]
        assert "tensorzero_error_json" in error_events[0]["error"]
        text = "".join(
            e["choices"][0]["delta"].get("content") or "" for e in openai_events if isinstance(e, dict) and "id" in e
        )
        assert text == "echo: one two three"

    tz = await AsyncTensorZeroGateway.build_http(gateway_url=daemon.base_url)
    try:
        stream = await tz.inference(function_name="chat", input=user("[fake:midstream-error] a b c"), stream=True)
        pieces, raised = [], 0
        iterator = stream.__aiter__()  # type: ignore[union-attr]
        while True:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except TensorZeroError:
                raised += 1
                continue
            pieces.extend(b.text for b in chunk.content if getattr(b, "text", None))  # type: ignore[union-attr]
        assert raised == 1 and "".join(pieces) == "echo: a b c"
    finally:
        await tz.close()


async def test_streamed_requests_use_the_cache(daemon: Daemon, fake: FakeOpenAI, database_url: str) -> None:
    body = {
        "function_name": "chat",
        "input": user("cache me please"),
        "stream": True,
        "cache_options": {"enabled": "on", "max_age_s": None},
    }
    async with httpx.AsyncClient(base_url=daemon.base_url, timeout=30) as client:
        first = (await sse(client, "/inference", body))[:-1]
        calls = len(fake.requests)
        second = (await sse(client, "/inference", body))[:-1]
    assert len(fake.requests) == calls  # the second answer came from the cache
    text = "".join(c["content"][0]["text"] for c in second if c.get("content"))
    assert text == "".join(c["content"][0]["text"] for c in first if c.get("content")) == "echo: cache me please"
    assert second[-1]["usage"]["input_tokens"] == 0 and second[-1]["usage"]["output_tokens"] == 0
    assert second[-1]["finish_reason"] == "stop"
    ids = (first[0]["inference_id"], second[0]["inference_id"])
    for _ in range(100):
        with psycopg.connect(database_url) as conn:
            rows = dict(
                conn.execute("SELECT id::text, cached FROM chat_inferences WHERE id = ANY(%s::uuid[])", [list(ids)])
            )
        if len(rows) == 2:
            break
        await asyncio.sleep(0.05)
    assert rows == {ids[0]: False, ids[1]: True}
