"""The inference engine end to end: /inference against fake provider servers, rows checked in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.openai_server import FakeOpenAI
from tests.support.configs import write_answer_schema
from tests.support.gateway import in_process_gateway

KEY = "sk-test-secret-key-0123456789"
USER = {"messages": [{"role": "user", "content": "hello world"}]}


def config(openai: FakeOpenAI, anthropic: str, gemini: str, tmp: Path) -> str:
    (tmp / "system.j2").write_text("You help {{ name }}.")
    (tmp / "system_schema.json").write_text(
        json.dumps({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
    )
    (tmp / "weather.json").write_text(
        json.dumps({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
    )
    write_answer_schema(tmp, "out.json")
    return f"""
[gateway.observability]
async_writes = false

[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{openai.api_base}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"
cost = {{ input_per_million = 1.0, output_per_million = 2.0 }}

[models.fallback]
routing = ["broken", "openai"]
[models.fallback.providers.broken]
type = "openai"
model_name = "error-500"
api_base = "{openai.api_base}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"
[models.fallback.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{openai.api_base}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"

[models.dynamic]
routing = ["openai"]
[models.dynamic.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{openai.api_base}"
api_key_location = "dynamic::openai_key"

[models.slow]
routing = ["openai"]
[models.slow.providers.openai]
type = "openai"
model_name = "slow-2000"
api_base = "{openai.api_base}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"
timeouts = {{ non_streaming = {{ total_ms = 200 }} }}

[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-test"
api_base = "{anthropic}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"

[models.gemini]
routing = ["gemini"]
[models.gemini.providers.gemini]
type = "google_ai_studio_gemini"
model_name = "gemini-test"
api_base = "{gemini}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"

[tools.weather]
description = "Get the weather"
parameters = "{tmp}/weather.json"

[functions.assistant]
type = "chat"
tools = ["weather"]
system_schema = "{tmp}/system_schema.json"
[functions.assistant.variants.gpt]
type = "chat_completion"
model = "gpt"
system_template = "{tmp}/system.j2"

[functions.extract]
type = "json"
output_schema = "{tmp}/out.json"
[functions.extract.variants.gpt]
type = "chat_completion"
model = "gpt"
json_mode = "strict"

[functions.resilient]
type = "chat"
[functions.resilient.variants.bad]
type = "chat_completion"
model = "dummy::error"
weight = 1.0
retries = {{ num_retries = 2, max_delay_s = 0.01 }}
[functions.resilient.variants.good]
type = "chat_completion"
model = "gpt"

[models.patched]
routing = ["openai"]
[models.patched.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{openai.api_base}"
api_key_location = {{ default = "dynamic::openai_key", fallback = "env::LSD_TEST_OPENAI_KEY" }}
extra_body = [{{ pointer = "/metadata/by", value = "provider" }}, {{ pointer = "/metadata/p", value = 1 }}]
extra_headers = [{{ name = "X-By", value = "provider" }}]

[functions.patched]
type = "chat"
[functions.patched.variants.v]
type = "chat_completion"
model = "patched"
extra_body = [{{ pointer = "/metadata/by", value = "variant" }}, {{ pointer = "/metadata/v", value = 2 }}]
extra_headers = [{{ name = "X-By", value = "variant" }}]
"""


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeOpenAI, FakeAnthropic, FakeGemini, str, str]]:
    openai = FakeOpenAI(api_key=KEY)
    anthropic = FakeAnthropic(api_key=KEY)
    gemini = FakeGemini(expected_key=KEY)
    await openai.start()
    anthropic_url = await anthropic.start()
    gemini_url = await gemini.start()
    yield openai, anthropic, gemini, anthropic_url, gemini_url
    await openai.stop()
    await anthropic.stop()
    await gemini.stop()


@pytest.fixture
async def client(
    fakes, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LSD_TEST_OPENAI_KEY", KEY)
    openai, _, _, anthropic_url, gemini_url = fakes
    text = config(openai, anthropic_url, gemini_url, tmp_path)
    async with (
        in_process_gateway(text, database_url) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
    ):
        yield http


def rows(database_url: str, query: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


@pytest.mark.parametrize("model", ["gpt", "claude", "gemini"])
async def test_each_provider_non_streaming(client: httpx.AsyncClient, database_url: str, model: str) -> None:
    r = await client.post("/inference", json={"model_name": model, "input": USER})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "hello world" in body["content"][0]["text"]
    assert body["usage"]["input_tokens"] > 0 and body["finish_reason"] == "stop"
    [(status, headers, key_hash, raw_request)] = rows(
        database_url,
        "SELECT m.status, d.request_headers, d.api_key_sha256, d.raw_request "
        "FROM model_inferences m JOIN model_inference_data d ON d.model_inference_id = m.id",
    )
    assert status == "ok"
    assert KEY not in json.dumps(headers) and KEY not in str(raw_request)
    assert "[REDACTED]" in json.dumps(headers)
    assert key_hash is not None and len(str(key_hash)) == 64


@pytest.mark.parametrize("model", ["gpt", "claude", "gemini"])
async def test_each_provider_streaming(client: httpx.AsyncClient, database_url: str, model: str) -> None:
    events = []
    async with client.stream("POST", "/inference", json={"model_name": model, "input": USER, "stream": True}) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["content"][0]["text"] for c in chunks if c.get("content"))
    assert "hello world" in text
    assert chunks[-1]["usage"]["output_tokens"] > 0
    assert len({c["inference_id"] for c in chunks}) == 1
    # No wait: with async_writes = false a stream's rows are committed before its last event.
    [(output, ttft)] = rows(database_url, "SELECT output, ttft_ms FROM chat_inferences")
    assert "hello world" in output[0]["text"] and ttft is not None  # type: ignore[index]
    [(streamed,)] = rows(database_url, "SELECT streamed FROM model_inferences")
    assert streamed is True


async def test_schema_template_and_tool_call(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post(
        "/inference",
        json={
            "function_name": "assistant",
            "input": {"system": {"name": "Ada"}, "messages": [{"role": "user", "content": "[fake:tool] Paris"}]},
        },
    )
    assert r.status_code == 200, r.text
    [call] = r.json()["content"]
    assert call["type"] == "tool_call" and call["name"] == "weather"
    assert call["arguments"] == {"text": "Paris"} and call["raw_name"] == "weather"
    [(rendered, tool_params)] = rows(
        database_url,
        "SELECT d.rendered_input, i.tool_params FROM chat_inferences i "
        "JOIN chat_inference_data d ON d.inference_id = i.id",
    )
    assert rendered["system"] == "You help Ada."  # type: ignore[index]
    assert tool_params["tools_available"][0]["name"] == "weather"  # type: ignore[index]


async def test_schema_violation_names_the_path(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post(
        "/inference", json={"function_name": "assistant", "input": {"system": {"name": 5}, "messages": []}}
    )
    assert r.status_code == 400
    assert r.json()["field"] == "input.system.name"
    assert rows(database_url, "SELECT count(*) FROM model_inferences") == [(0,)]


async def test_json_function_strict_schema(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post(
        "/inference",
        json={"function_name": "extract", "input": {"messages": [{"role": "user", "content": "[fake:json] Oslo"}]}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["output"]["parsed"] == {"answer": "Oslo"}
    sent = rows(database_url, "SELECT raw_request FROM model_inference_data")[0][0]
    assert '"json_schema"' in str(sent)


async def test_fallback_across_providers(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post("/inference", json={"model_name": "fallback", "input": USER})
    assert r.status_code == 200
    attempts = rows(
        database_url, "SELECT model_provider_name, status, error_kind FROM model_inferences ORDER BY attempt"
    )
    assert attempts == [("broken", "error", "server_error"), ("openai", "ok", None)]
    raw = rows(
        database_url,
        "SELECT raw_response FROM model_inference_data d "
        "JOIN model_inferences m ON m.id = d.model_inference_id WHERE m.status = 'error'",
    )
    assert "fake" in str(raw[0][0])  # the failed attempt's response body is kept


async def test_retries_then_fallback_variant(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post("/inference", json={"function_name": "resilient", "input": USER})
    assert r.status_code == 200
    assert r.json()["variant_name"] == "good"
    attempts = rows(database_url, "SELECT variant_name, status FROM model_inferences ORDER BY attempt")
    assert attempts == [("bad", "error")] * 3 + [("good", "ok")]


async def test_timeout(client: httpx.AsyncClient, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lsd.api"):
        r = await client.post("/inference", json={"model_name": "slow", "input": USER})
    assert r.status_code == 408
    assert rows(database_url, "SELECT error_kind FROM model_inferences") == [("timeout",)]
    # a hanging provider is worth a line, as any other provider failure (a 408 was not logged: < 500)
    assert any("all_attempts_failed" in record.getMessage() for record in caplog.records), caplog.text


async def test_credentials_dynamic(client: httpx.AsyncClient) -> None:
    missing = await client.post("/inference", json={"model_name": "dynamic", "input": USER})
    assert missing.status_code == 400 and missing.json()["field"] == "credentials"
    wrong = await client.post(
        "/inference", json={"model_name": "dynamic", "input": USER, "credentials": {"openai_key": "nope"}}
    )
    assert wrong.status_code == 502 and "nope" not in wrong.text
    ok = await client.post(
        "/inference", json={"model_name": "dynamic", "input": USER, "credentials": {"openai_key": KEY}}
    )
    assert ok.status_code == 200


async def test_cache_hit_and_miss(client: httpx.AsyncClient, database_url: str) -> None:
    body = {"model_name": "gpt", "input": USER, "cache_options": {"enabled": "on", "max_age_s": None}}
    first = await client.post("/inference", json=body)
    second = await client.post("/inference", json=body)
    assert first.json()["content"] == second.json()["content"]
    assert second.json()["usage"] == {"input_tokens": 0, "output_tokens": 0, "cost": 0.0}
    assert rows(database_url, "SELECT cached FROM chat_inferences ORDER BY id") == [(False,), (True,)]
    # The cached answer keeps the request as sent, as text (the provider's body bytes decoded for the cache).
    [(sent,), (cached,)] = rows(database_url, "SELECT raw_request FROM model_inference_data ORDER BY inference_id")
    assert sent == cached and json.loads(str(sent))["model"]
    other = await client.post(
        "/inference", json={**body, "input": {"messages": [{"role": "user", "content": "other"}]}}
    )
    assert other.json()["usage"]["input_tokens"] > 0


async def test_the_cache_never_answers_a_caller_whose_dynamic_key_the_provider_would_refuse(
    client: httpx.AsyncClient,
) -> None:
    body = {"model_name": "dynamic", "input": USER, "cache_options": {"enabled": "on", "max_age_s": None}}
    first = await client.post("/inference", json={**body, "credentials": {"openai_key": KEY}})
    assert first.status_code == 200, first.text
    again = await client.post("/inference", json={**body, "credentials": {"openai_key": KEY}})
    assert again.json()["usage"]["input_tokens"] == 0  # the same tenant's key: a hit
    wrong = await client.post("/inference", json={**body, "credentials": {"openai_key": "someone-elses"}})
    assert wrong.status_code == 502  # asked the provider, which refused the key


async def test_cost_from_config(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post("/inference", json={"model_name": "gpt", "input": USER})
    usage = r.json()["usage"]
    expected = usage["input_tokens"] * 1.0 / 1e6 + usage["output_tokens"] * 2.0 / 1e6
    assert usage["cost"] == pytest.approx(expected)


async def test_disconnect_mid_stream_is_recorded(fakes, client: httpx.AsyncClient, database_url: str) -> None:  # type: ignore[no-untyped-def]
    openai = fakes[0]
    body = {
        "model_name": "gpt",
        "stream": True,
        "input": {"messages": [{"role": "user", "content": "[fake:hold] one two three"}]},
    }
    async with client.stream("POST", "/inference", json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                break  # the first delta arrived; hang up
    for _ in range(100):
        found = rows(database_url, "SELECT status, error_kind FROM model_inferences")
        if found:
            break
        await asyncio.sleep(0.05)
    assert found == [("error", "client_disconnected")]
    [(output,)] = rows(database_url, "SELECT output FROM chat_inferences")
    assert output and output[0]["text"]  # type: ignore[index]
    openai.release.set()


async def test_extra_body_and_headers_reach_the_provider(fakes, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    openai = fakes[0]
    r = await client.post(
        "/inference",
        json={
            "model_name": "gpt",
            "input": USER,
            "extra_body": [
                {"pointer": "/temperature", "value": 0.25},
                {"pointer": "/metadata/team", "value": "search"},
                {"pointer": "/stop", "value": ["x"], "model_name": "other"},  # filtered out
            ],
            "extra_headers": [{"name": "X-Trace", "value": "abc"}],
        },
    )
    assert r.status_code == 200, r.text
    sent = openai.requests[-1]
    assert sent.body["temperature"] == 0.25 and sent.body["metadata"] == {"team": "search"}
    assert "stop" not in sent.body
    assert sent.headers.get("X-Trace") == "abc"


async def test_a_custom_credential_header_is_stored_redacted(
    fakes, client: httpx.AsyncClient, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    """A header no provider declares (`X-Custom-Key`) reaches the provider, and no row holds its value: the
    inference's extra_headers and the attempt's request headers say [REDACTED]."""
    openai = fakes[0]
    secret = "custom-secret-value-31415926"
    r = await client.post(
        "/inference",
        json={"model_name": "gpt", "input": USER, "extra_headers": [{"name": "X-Custom-Key", "value": secret}]},
    )
    assert r.status_code == 200, r.text
    assert openai.requests[-1].headers.get("X-Custom-Key") == secret
    inference_id = r.json()["inference_id"]
    [(extra_headers,)] = rows(
        database_url, "SELECT extra_headers FROM chat_inference_data WHERE inference_id = %s", inference_id
    )
    assert extra_headers == [{"name": "X-Custom-Key", "value": "[REDACTED]", "delete": False}]
    [(headers,)] = rows(
        database_url, "SELECT request_headers FROM model_inference_data WHERE inference_id = %s", inference_id
    )
    assert {k.lower(): v for k, v in headers.items()}["x-custom-key"] == "[REDACTED]"
    stored = rows(
        database_url,
        "SELECT d::text FROM chat_inference_data d WHERE inference_id = %s"
        " UNION ALL SELECT m::text FROM model_inference_data m WHERE inference_id = %s"
        " UNION ALL SELECT c::text FROM chat_inferences c WHERE id = %s",
        inference_id,
        inference_id,
        inference_id,
    )
    assert len(stored) == 3 and not any(secret in text for (text,) in stored)


async def test_a_qualified_model_provider_name_filters_patches_and_unknown_blocks(
    fakes, client: httpx.AsyncClient
) -> None:  # type: ignore[no-untyped-def]
    """TensorZero's `tensorzero::model_name::M::provider_name::P` names a provider of a model in extra_body,
    extra_headers and unknown blocks: it matches that provider only."""
    openai = fakes[0]
    this, other = "tensorzero::model_name::gpt::provider_name::openai", "tensorzero::model_name::gpt::provider_name::x"
    blocks = [
        {"type": "text", "text": "hi"},
        {"type": "unknown", "data": {"type": "text", "text": "mine"}, "model_provider_name": this},
        {"type": "unknown", "data": {"type": "text", "text": "theirs"}, "model_provider_name": other},
    ]
    r = await client.post(
        "/inference",
        json={
            "model_name": "gpt",
            "input": {"messages": [{"role": "user", "content": blocks}]},
            "extra_body": [
                {"pointer": "/metadata/a", "value": 1, "model_provider_name": this},
                {"pointer": "/metadata/b", "value": 2, "model_provider_name": other},
            ],
            "extra_headers": [{"name": "X-Mine", "value": "1", "model_provider_name": this}],
        },
    )
    assert r.status_code == 200, r.text
    sent = openai.requests[-1]
    assert sent.body["metadata"] == {"a": 1} and sent.headers.get("X-Mine") == "1"
    texts = [part.get("text") for part in sent.body["messages"][-1]["content"]]
    assert texts == ["hi", "mine"]


async def test_the_openai_route_applies_tensorzero_extensions(fakes, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    openai = fakes[0]
    body = {
        "model": "tensorzero::model_name::gpt",
        "messages": [{"role": "user", "content": "hi"}],
        "tensorzero::extra_body": [{"pointer": "/metadata/team", "value": "search"}],
        "tensorzero::extra_headers": [{"name": "X-Trace", "value": "abc"}],
        "tensorzero::namespace": "mobile",
    }
    r = await client.post("/openai/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    sent = openai.requests[-1]
    assert sent.body["metadata"] == {"team": "search"} and sent.headers.get("X-Trace") == "abc"
    responses = {
        "model": "tensorzero::model_name::gpt",
        "input": "hi",
        "lsd::extra_headers": [{"name": "X-Trace", "value": "def"}],
    }
    r = await client.post("/openai/v1/responses", json=responses)
    assert r.status_code == 200, r.text
    assert openai.requests[-1].headers.get("X-Trace") == "def"


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"tensorzero::episode_id": "00000000-0000-4000-8000-000000000000"}, "tensorzero::episode_id", "UUIDv7"),
        ({"tensorzero::tags": {"tensorzero::x": "1"}}, "tensorzero::tags.tensorzero::x", "reserved"),
        ({"lsd::tags": {"lsd::y": "1"}}, "lsd::tags.lsd::y", "reserved"),
        ({"tensorzero::extra_body": [{"value": 1}]}, "tensorzero::extra_body[0].pointer", ""),
        ({"bogus": 1, "tensorzero::deny_unknown_fields": True}, "bogus", "deny_unknown_fields"),
    ],
)
async def test_the_openai_routes_refuse_what_inference_refuses(
    client: httpx.AsyncClient, database_url: str, extra: dict[str, object], field: str, words: str
) -> None:
    messages = [{"role": "user", "content": "hi"}]
    for path, body in (
        ("/openai/v1/chat/completions", {"model": "tensorzero::model_name::gpt", "messages": messages, **extra}),
        ("/openai/v1/responses", {"model": "tensorzero::model_name::gpt", "input": "hi", **extra}),
    ):
        if path.endswith("responses") and field == "bogus":
            continue  # deny_unknown_fields is the Chat Completions route's
        r = await client.post(path, json=body)
        assert r.status_code == 400, (path, r.text)
        assert field in r.text and words in r.text, (path, r.text)
    assert rows(database_url, "SELECT count(*) FROM chat_inferences") == [(0,)]


async def test_unknown_fields_pass_on_the_openai_route_unless_denied(client: httpx.AsyncClient) -> None:
    body = {"model": "tensorzero::model_name::gpt", "messages": [{"role": "user", "content": "hi"}], "user": "u1"}
    assert (await client.post("/openai/v1/chat/completions", json=body)).status_code == 200
    allowed = {**body, "tensorzero::deny_unknown_fields": True, "temperature": 0.5, "tensorzero::dryrun": True}
    allowed.pop("user")
    assert (await client.post("/openai/v1/chat/completions", json=allowed)).status_code == 200


async def test_config_patches_apply_provider_then_variant_then_request(fakes, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    """TensorZero's provider- and variant-level extra_body / extra_headers: each later edit of the same place wins;
    and api_key_location's {default, fallback}: the environment's key when the request brings none."""
    openai = fakes[0]
    r = await client.post("/inference", json={"function_name": "patched", "input": USER})
    assert r.status_code == 200, r.text
    sent = openai.requests[-1]
    assert sent.body["metadata"] == {"by": "variant", "p": 1, "v": 2} and sent.headers.get("X-By") == "variant"
    assert sent.headers.get("Authorization") == f"Bearer {KEY}"
    r = await client.post(
        "/inference",
        json={
            "function_name": "patched",
            "input": USER,
            "extra_body": [{"pointer": "/metadata/by", "value": "request"}],
            "credentials": {"openai_key": KEY},
        },
    )
    assert r.status_code == 200, r.text
    assert openai.requests[-1].body["metadata"] == {"by": "request", "p": 1, "v": 2}


async def test_a_cut_stream_keeps_the_input_its_provider_counted(
    fakes, client: httpx.AsyncClient, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    """Anthropic counts the input in message_start: a stream cut after it stores that count, not an estimate
    (only the output is estimated, and tagged so)."""
    body = {"model_name": "claude", "stream": True, "input": {"messages": [{"role": "user", "content": "truncated"}]}}
    async with client.stream("POST", "/inference", json=body) as r:
        assert r.status_code == 200
        async for _ in r.aiter_lines():
            pass
    for _ in range(100):
        found = rows(database_url, "SELECT input_tokens, status FROM model_inferences")
        if found:
            break
        await asyncio.sleep(0.05)
    [(input_tokens, status)] = found
    # The fake counts the prompt's words (1); the estimate from characters would be ceil(9 / 4) = 3.
    assert status == "error" and input_tokens == 1
    [(tags,)] = rows(database_url, "SELECT tags FROM chat_inferences")
    assert tags["lsd::usage_estimated"] == "output_tokens"  # type: ignore[index]
