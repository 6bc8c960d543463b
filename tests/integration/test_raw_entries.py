"""`include_raw_usage` / `include_raw_response`: each model inference's own usage object and raw answer, named
by its stored `model_inferences` row, on `/inference` (streamed or not), the OpenAI-compatible route and through the
`tensorzero` client."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import psycopg
from tensorzero import AsyncTensorZeroGateway

from lsd.inference.raw_entries import usage_object
from tests.fakes.openai_server import FakeOpenAI
from tests.support.gateway import in_process_gateway

MESSAGES = [{"role": "user", "content": "hello there"}]


def config(fake: FakeOpenAI) -> str:
    """`gpt`: a dummy provider that always fails, then the fake OpenAI server (a failed attempt has no entry)."""
    return f"""
[gateway.observability]
async_writes = false
[models.gpt]
routing = ["broken", "openai"]
[models.gpt.providers.broken]
type = "dummy"
model_name = "error"
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{fake.url}/v1/"
api_key_location = "none"
[functions.chat]
type = "chat"
[functions.chat.variants.a]
type = "chat_completion"
model = "gpt"
"""


def stored_attempts(database_url: str, inference_id: str) -> list[tuple[str, str, str | None]]:
    """(model_inference id, status, raw_response as read back) of an inference's attempts, in order."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT mi.id::text, mi.status, lsd_attempt_payload(d.raw_response, d.payload_refs, d.inference_id) "
            "FROM model_inferences mi JOIN model_inference_data d ON d.model_inference_id = mi.id "
            "WHERE mi.inference_id = %s ORDER BY mi.attempt",
            (inference_id,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


async def test_a_non_streamed_inference_names_its_successful_model_inference(database_url: str) -> None:
    async with (
        FakeOpenAI() as fake,
        in_process_gateway(config(fake), database_url) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        r = await http.post(
            "/inference",
            json={"function_name": "chat", "input": {"messages": MESSAGES},
                  "include_raw_usage": True, "include_raw_response": True},
        )  # fmt: skip
        plain = await http.post("/inference", json={"function_name": "chat", "input": {"messages": MESSAGES}})
    assert r.status_code == 200, r.text
    body = r.json()
    [(_, failed, _), (ok_id, ok, stored_raw)] = stored_attempts(database_url, body["inference_id"])
    assert (failed, ok) == ("error", "ok")
    [usage_entry] = body["raw_usage"]
    [response_entry] = body["raw_response"]
    assert usage_entry == {
        "model_inference_id": ok_id,
        "provider_type": "openai",
        "api_type": "chat_completions",
        "data": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},  # OpenAI's own usage object
    }
    assert response_entry["model_inference_id"] == ok_id and response_entry["provider_type"] == "openai"
    assert orjson.loads(response_entry["data"])["choices"][0]["message"]["content"] == "echo: hello there"
    assert stored_raw is not None and orjson.loads(stored_raw) == orjson.loads(response_entry["data"])
    assert "raw_usage" not in plain.json() and "raw_response" not in plain.json()


async def test_a_stream_carries_each_raw_chunk_and_ends_with_the_raw_usage(database_url: str) -> None:
    async with (
        FakeOpenAI() as fake,
        in_process_gateway(config(fake), database_url) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        body = {"function_name": "chat", "input": {"messages": MESSAGES}, "stream": True,
                "include_raw_usage": True, "include_raw_response": True}  # fmt: skip
        async with http.stream("POST", "/inference", json=body) as r:
            lines = [line async for line in r.aiter_lines() if line.startswith("data: {")]
    chunks = [orjson.loads(line[6:]) for line in lines]
    content = [c for c in chunks if c.get("content")]
    assert content and all(orjson.loads(c["raw_chunk"])["object"] == "chat.completion.chunk" for c in content)
    assert "".join(c["content"][0]["text"] for c in content) == "echo: hello there"
    last = chunks[-1]
    [(_, _, _), (ok_id, _, _)] = stored_attempts(database_url, last["inference_id"])
    [entry] = last["raw_usage"]
    assert entry["model_inference_id"] == ok_id and entry["provider_type"] == "openai"
    assert entry["data"]["completion_tokens"] == 3
    assert last["raw_response"] == []  # no model inference before the streamed one succeeded


async def test_the_openai_route_and_the_tensorzero_client(database_url: str) -> None:
    async with FakeOpenAI() as fake, in_process_gateway(config(fake), database_url) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as http:
            request: dict[str, Any] = {"model": "tensorzero::function_name::chat", "messages": MESSAGES,
                                       "tensorzero::include_raw_usage": True}  # fmt: skip
            r = await http.post("/openai/v1/chat/completions", json=request)
            bad = await http.post("/openai/v1/chat/completions", json={**request, "tensorzero::include_raw_usage": 1})
        client = await AsyncTensorZeroGateway.build_http(gateway_url=base_url)
        async with client:
            result = await client.inference(function_name="chat", input={"messages": MESSAGES}, include_raw_usage=True)
    assert r.status_code == 200, r.text
    [entry] = r.json()["tensorzero_raw_usage"]
    assert entry["data"]["total_tokens"] == 5 and "tensorzero_raw_response" not in r.json()
    assert bad.status_code == 400 and "tensorzero::include_raw_usage" in bad.text
    assert result.raw_usage is not None and len(result.raw_usage) == 1
    assert result.raw_usage[0].provider_type == "openai" and result.raw_usage[0].api_type == "chat_completions"
    assert str(result.raw_usage[0].model_inference_id) == stored_attempts(database_url, str(result.inference_id))[1][0]


def test_the_usage_object_of_a_body_of_a_stream_and_of_none() -> None:
    assert usage_object('{\n  "usageMetadata": {"promptTokenCount": 3}\n}') == {"promptTokenCount": 3}  # Gemini
    anthropic_stream = "\n".join(
        [
            '{"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":1}}}',
            '{"type":"content_block_delta","delta":{"text":"hi"}}',
            '{"type":"message_delta","usage":{"output_tokens":5}}',
        ]
    )
    assert usage_object(anthropic_stream) == {"input_tokens": 9, "output_tokens": 5}
    assert usage_object("plain text") is None and usage_object(None) is None and usage_object('{"a": 1}') is None
