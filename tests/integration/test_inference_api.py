"""`/inference` in-process on a real socket: TensorZero's shapes, clear 4xx errors, and nothing half-written."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from lsd.config import parse
from tests.support.configs import dummy_fallback_model, echo_chat
from tests.support.gateway import in_process_gateway

CONFIG = f"""
[gateway]
max_body_bytes = 2048
[gateway.observability]
async_writes = false
{echo_chat()}
{dummy_fallback_model("broken", failing="bad", answering="good")}

[functions.failing]
type = "chat"
[functions.failing.variants.a]
type = "chat_completion"
model = "dummy::error"

[functions.extract]
type = "json"
[functions.extract.variants.a]
type = "chat_completion"
model = "dummy::json"
json_mode = "strict"
"""

MESSAGE = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_gateway(CONFIG, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http


def count_rows(database_url: str) -> dict[str, int]:
    tables = (
        "chat_inferences",
        "json_inferences",
        "chat_inference_data",
        "model_inferences",
        "model_inference_data",
    )
    with psycopg.connect(database_url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[index]


async def test_chat_function(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post("/inference", json={"function_name": "chat", "input": MESSAGE})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"inference_id", "episode_id", "variant_name", "content", "usage", "finish_reason"}
    assert body["usage"] == {"input_tokens": 1, "output_tokens": 2, "cost": None}
    # async_writes = false: the rows are committed before the response. No chat_inference_data row: its payloads are
    # the input's and the attempt's own (stored once, docs/schema.md#payloads-stored-once).
    counts = count_rows(database_url)
    assert counts == {
        "chat_inferences": 1,
        "json_inferences": 0,
        "chat_inference_data": 0,
        "model_inferences": 1,
        "model_inference_data": 1,
    }


async def test_json_function(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post("/inference", json={"function_name": "extract", "input": MESSAGE})
    assert r.status_code == 200
    assert r.json()["output"] == {"raw": '{"answer":"hello"}', "parsed": {"answer": "hello"}}
    assert count_rows(database_url)["json_inferences"] == 1


async def test_model_name_shorthand_and_tensorzero_client_nulls(client: httpx.AsyncClient) -> None:
    body = {
        "function_name": None,
        "model_name": "dummy::echo",
        "episode_id": None,
        "input": MESSAGE,
        "stream": None,
        "params": {"chat_completion": {}},
        "variant_name": None,
        "dryrun": None,
        "tags": {},
        "internal": False,
        "namespace": None,
        "credentials": {},
        "cache_options": {"max_age_s": None, "enabled": "off"},
        "include_original_response": False,
        "include_raw_response": False,
        "include_raw_usage": False,
        "include_aggregated_response": False,
        "extra_body": [],
        "extra_headers": [],
        "provider_tools": [],
        "output_schema": None,
        "internal_dynamic_variant_config": None,
    }
    r = await client.post("/inference", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["variant_name"] == "dummy::echo"


async def test_fallback_to_next_provider_records_both_attempts(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post("/inference", json={"model_name": "broken", "input": MESSAGE})
    assert r.status_code == 200
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT attempt, model_provider_name, status FROM model_inferences ORDER BY attempt"
        ).fetchall()
    assert rows == [(1, "bad", "error"), (2, "good", "ok")]


async def test_a_streams_failed_attempts_are_recorded_as_streamed(client: httpx.AsyncClient, database_url: str) -> None:
    async with client.stream(
        "POST", "/inference", json={"model_name": "broken", "input": MESSAGE, "stream": True}
    ) as r:
        assert r.status_code == 200
        await r.aread()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT attempt, model_provider_name, status, streamed FROM model_inferences ORDER BY attempt"
        ).fetchall()
    assert rows == [(1, "bad", "error", True), (2, "good", "ok", True)]


async def test_a_failed_inference_is_named_in_its_access_line_and_warning(
    client: httpx.AsyncClient, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every attempt failed, the rows are written: the access line names the inference (to find its rows) and the
    warning carries the request id (to pair the two lines)."""
    with caplog.at_level(logging.INFO):
        r = await client.post("/inference", json={"function_name": "failing", "input": MESSAGE})
        assert r.status_code == 502
    request_id = r.headers["x-request-id"]
    [access] = [rec for rec in caplog.records if rec.name == "lsd.access" and rec.fields["request_id"] == request_id]  # type: ignore[attr-defined]
    fields = access.fields  # type: ignore[attr-defined]
    assert fields["function"] == "failing" and fields["status"] == 502
    with psycopg.connect(database_url) as conn:
        [(stored,)] = conn.execute("SELECT DISTINCT inference_id::text FROM model_inferences").fetchall()
    assert fields["inference_id"] == stored
    assert any(request_id in rec.getMessage() for rec in caplog.records if rec.name == "lsd.api")


async def test_all_attempts_failing_is_a_502_summarising_each(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post("/inference", json={"function_name": "failing", "input": MESSAGE})
    assert r.status_code == 502
    body = r.json()
    assert body["error_code"] == "all_attempts_failed" and len(body["attempts"]) == 1
    counts = count_rows(database_url)
    assert counts["chat_inferences"] == 0 and counts["model_inferences"] == 1  # the failed attempt is recorded


async def test_dryrun_writes_nothing(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post("/inference", json={"function_name": "chat", "input": MESSAGE, "dryrun": True})
    assert r.status_code == 200
    assert set(count_rows(database_url).values()) == {0}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, "body"),
        (b"", 400, "body"),
        (b"[1, 2]", 400, "body"),
        (
            b'{"function_name": "chat", "input": {"messages": [{"role": "robot", "content": "x"}]}}',
            400,
            "input.messages[0].role",
        ),
        (
            b'{"function_name": "chat", "input": {"messages": [{"role": "user", "content": 5}]}}',
            400,
            "input.messages[0].content",
        ),
        (b'{"function_name": 5, "input": {}}', 400, "function_name"),
        (b'{"function_name": "chat", "model_name": "echo", "input": {}}', 400, "function_name"),
        (b'{"function_name": "chat", "input": {}, "surprise": 1}', 400, "surprise"),
        (
            b'{"function_name": "chat", "input": {}, "params": {"chat_completion": {"temperature": "hot"}}}',
            400,
            "params.chat_completion.temperature",
        ),
        (b'{"function_name": "chat", "input": {}, "episode_id": "not-a-uuid"}', 400, "episode_id"),
        (
            b'{"function_name": "chat", "input": {}, "episode_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}',
            400,
            "episode_id",
        ),
        (
            b'{"function_name": "chat", "input": {}, "tags": {"tensorzero::x": "y"}}',
            400,
            "tags.tensorzero::x",
        ),
        (
            b'{"function_name": "chat", "input": {}, '
            b'"extra_headers": [{"name": "x-a", "value": "1\\r\\nX-Smuggled: 2"}]}',
            400,
            "extra_headers[0].value",
        ),
        (
            b'{"function_name": "chat", "input": {}, "extra_headers": [{"name": "bad name:", "value": "1"}]}',
            400,
            "extra_headers[0].name",
        ),
        (b'{"function_name": "nope", "input": {}}', 404, "function_name"),
        (b'{"model_name": "nope", "input": {}}', 404, "model_name"),
        (b'{"function_name": "chat", "variant_name": "zzz", "input": {}}', 404, "variant_name"),
        (b'{"function_name": "chat", "input": {"messages": []}, "pad": "' + b"x" * 4096 + b'"}', 413, "body"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, database_url: str, body: bytes, status: int, field: str
) -> None:
    r = await client.post("/inference", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()
    assert error["field"] == field
    assert isinstance(error["error"], str) and error["error_code"]
    assert set(count_rows(database_url).values()) == {0}


async def test_unknown_route_is_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/nope")
    assert r.status_code == 404 and "error" in r.json()


async def test_a_gateway_that_records_nothing_still_answers(database_url: str) -> None:
    """`[gateway.observability] enabled = false`: inferences, streamed or not, are answered and no row is written."""
    config = CONFIG.replace("[gateway.observability]\n", "[gateway.observability]\nenabled = false\n")
    async with in_process_gateway(config, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        plain = await http.post("/inference", json={"function_name": "chat", "input": MESSAGE})
        assert plain.status_code == 200 and plain.json()["content"][0]["text"]
        streamed = await http.post("/inference", json={"function_name": "chat", "input": MESSAGE, "stream": True})
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
    assert set(count_rows(database_url).values()) == {0}


CHAT_MODEL = "tensorzero::function_name::chat"
HI = [{"role": "user", "content": "hi"}]
CHAT, RESPONSES = "/openai/v1/chat/completions", "/openai/v1/responses"
FALSY = ("", [], 0, False)
BAD_SCHEMA = {"type": "bogus"}
SCHEMA, FORMAT = {"schema": BAD_SCHEMA}, {"type": "json_schema", "schema": BAD_SCHEMA}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        *(("/inference", {"function_name": "chat", "input": {"messages": v}}, "input.messages")
          for v in ("", 0, False, {}, None)),
        *((CHAT, {"model": CHAT_MODEL, "messages": HI, "stream": v}, "stream") for v in ("no", 5, "", [])),
        *((CHAT, {"model": CHAT_MODEL, "messages": HI, "lsd::tags": v}, "lsd::tags") for v in FALSY),
        (CHAT, {"model": CHAT_MODEL, "messages": HI, "tensorzero::credentials": []}, "credentials"),
        (CHAT, {"model": CHAT_MODEL, "messages": HI, "stream_options": ""}, "stream_options"),
        ("/openai/v1/responses", {"model": CHAT_MODEL, "input": []}, "input"),
        ("/anthropic/v1/messages", {"model": CHAT_MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": []}]},  # noqa: E501
         "messages[0].content"),
        # A schema that is not one: every answer would fail it.
        ("/inference", {"function_name": "extract", "input": MESSAGE, "output_schema": BAD_SCHEMA}, "output_schema"),
        (CHAT, {"model": CHAT_MODEL, "messages": HI, "response_format": {"type": "json_schema", "json_schema": SCHEMA}},
         "response_format.json_schema.schema"),
        (RESPONSES, {"model": CHAT_MODEL, "input": "hi", "text": {"format": FORMAT}}, "text.format.schema"),
        ("/openai/v1/responses", {"model": CHAT_MODEL, "input": "hi", "lsd::credentials": ""}, "credentials"),
        *(("/feedback", {"metric_name": "comment", "inference_id": "{inference}", "value": "x", "tags": v}, "tags")
          for v in FALSY),
    ],
)  # fmt: skip
async def test_values_of_the_wrong_type_are_refused(
    client: httpx.AsyncClient, database_url: str, path: str, body: dict[str, object], field: str
) -> None:
    """A wrong type is a 400 naming the field, also when it is falsy ("", 0, false, [] and {} are not "absent"), and
    no row is written."""
    if body.get("inference_id") == "{inference}":
        answered = await client.post("/inference", json={"function_name": "chat", "input": MESSAGE})
        body = {**body, "inference_id": answered.json()["inference_id"]}
    before = count_rows(database_url)
    r = await client.post(path, json=body)
    assert r.status_code == 400 and field in r.text, r.text
    assert count_rows(database_url) == before


DYNAMIC = {
    "function_name": "chat",
    "input": MESSAGE,
    "dryrun": True,
    "internal_dynamic_variant_config": {"type": "chat_completion", "model": "dummy::echo"},
}


async def test_dynamic_variants_can_be_turned_off_and_are_off_with_auth_by_default(database_url: str) -> None:
    """A caller's dynamic variant runs its templates in the gateway: a gateway can refuse them (403 naming the key
    and the setting), and does by default once auth is on."""
    off = CONFIG.replace("[gateway]\n", "[gateway]\nallow_dynamic_variants = false\n", 1)
    async with in_process_gateway(off, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        r = await http.post("/inference", json=DYNAMIC)
    assert r.status_code == 403 and "gateway.allow_dynamic_variants" in r.text
    async with in_process_gateway(CONFIG, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        assert (await http.post("/inference", json=DYNAMIC)).status_code == 200  # auth off: allowed
    assert parse("[gateway.auth]\nenabled = true\n", base_dir=Path(".")).gateway.allow_dynamic_variants is False
    on = "[gateway]\nallow_dynamic_variants = true\n[gateway.auth]\nenabled = true\n"
    assert parse(on, base_dir=Path(".")).gateway.allow_dynamic_variants is True


async def test_unknown_routes_answer_in_the_shape_of_their_api(client: httpx.AsyncClient) -> None:
    """An SDK reads a 404 under /anthropic/ or /openai/ in its own API's error shape (was TensorZero's)."""
    anthropic = await client.get("/anthropic/v1/files")
    assert anthropic.status_code == 404 and anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "not_found_error"
    openai = await client.get("/openai/v1/responses/resp_123/input_items")
    assert openai.status_code == 404 and "Route not found" in openai.json()["error"]["message"]
    native = await client.get("/nothing/here")
    assert native.status_code == 404 and native.json()["error"] == "Route not found: GET /nothing/here"
