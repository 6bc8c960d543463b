"""Each payload stored once: the copies an inference's rows can rebuild are left out, and read back unchanged."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import orjson
import psycopg
import pytest
from psycopg.types.json import Jsonb

from lsd.config.model import ObservabilityConfig
from lsd.errors import ProviderError
from lsd.ids import uuid7
from lsd.inference.recording import Attempt, InferenceRow, attempt_records, inference_records
from lsd.store import queries
from lsd.store.database import Database
from lsd.store.escaping import escape_text
from lsd.store.payloads import inference_payloads
from lsd.store.writer import Writer
from lsd.types import Usage
from tests.fakes.openai_server import FakeOpenAI
from tests.support import rows
from tests.support.configs import dummy_fallback_model, echo_chat
from tests.support.gateway import in_process_gateway

MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]


def config(tmp: Path) -> str:
    (tmp / "system.j2").write_text("You help {{ name }}.")
    (tmp / "system_schema.json").write_text(
        json.dumps({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
    )
    return f"""
[gateway.observability]
async_writes = false
{echo_chat()}
{dummy_fallback_model("broken", failing="bad", answering="good")}

[functions.templated]
type = "chat"
system_schema = "{tmp}/system_schema.json"
[functions.templated.variants.a]
type = "chat_completion"
model = "echo"
system_template = "{tmp}/system.j2"

[functions.extract]
type = "json"
[functions.extract.variants.a]
type = "chat_completion"
model = "dummy::json"
json_mode = "strict"
"""


def openai_config(fake: FakeOpenAI) -> str:
    return f"""
[gateway.observability]
async_writes = false
[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{fake.api_base}"
api_key_location = "none"
"""


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        in_process_gateway(config(tmp_path), database_url) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        yield http


def stored(database_url: str, table: str, inference_id: UUID) -> tuple[object, ...] | None:
    """The inference's data row (copies and flags); None when none was written."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f"SELECT rendered_input, rendered_input_is_input, original_response, original_response_is_raw "
            f"FROM {table} WHERE inference_id = %s",
            (inference_id,),
        ).fetchone()
    return None if row is None else tuple(row)


async def payloads_of(database_url: str, inference_id: UUID) -> tuple[object, str | None]:
    database = Database(database_url, min_size=1, max_size=1)
    await database.open()
    try:
        found = await inference_payloads(database, [inference_id])
    finally:
        await database.close()
    return found[inference_id].rendered_input, found[inference_id].original_response


async def test_an_untemplated_prompt_and_its_answer_are_stored_once(
    client: httpx.AsyncClient, database_url: str
) -> None:
    r = await client.post(
        "/inference",
        json={"function_name": "chat", "input": {"messages": MESSAGES}, "include_original_response": True},
    )
    assert r.status_code == 200, r.text
    inference_id = UUID(r.json()["inference_id"])
    original = r.json()["original_response"]
    # Neither copy is stored, and with nothing else to hold there is no data row at all...
    assert stored(database_url, "chat_inference_data", inference_id) is None
    # ... and both read back as they were.
    assert await payloads_of(database_url, inference_id) == ({"system": None, "messages": MESSAGES}, original)


async def test_a_data_row_with_extra_body_flags_the_copies_left_out(
    client: httpx.AsyncClient, database_url: str
) -> None:
    extra_body = [{"variant_name": "a", "pointer": "/temperature", "value": 0.5}]
    r = await client.post(
        "/inference",
        json={"function_name": "chat", "input": {"messages": MESSAGES}, "extra_body": extra_body,
              "include_original_response": True},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    inference_id = UUID(r.json()["inference_id"])
    assert stored(database_url, "chat_inference_data", inference_id) == (None, True, None, True)
    expected = ({"system": None, "messages": MESSAGES}, r.json()["original_response"])
    assert await payloads_of(database_url, inference_id) == expected


async def test_a_json_inference_too(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post(
        "/inference",
        json={"function_name": "extract", "input": {"system": "Be brief.", "messages": MESSAGES}},
    )
    assert r.status_code == 200, r.text
    inference_id = UUID(r.json()["inference_id"])
    assert stored(database_url, "json_inference_data", inference_id) is None
    rendered, original = await payloads_of(database_url, inference_id)
    assert rendered == {"system": "Be brief.", "messages": MESSAGES}
    assert original is not None and json.loads(original)


async def test_a_rendered_template_is_stored(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post(
        "/inference",
        json={"function_name": "templated", "input": {"system": {"name": "Ada"}, "messages": MESSAGES}},
    )
    assert r.status_code == 200, r.text
    inference_id = UUID(r.json()["inference_id"])
    data = stored(database_url, "chat_inference_data", inference_id)
    assert data is not None
    rendered, is_input, _, _ = data
    assert is_input is False
    assert rendered == {"system": "You help Ada.", "messages": MESSAGES}
    assert (await payloads_of(database_url, inference_id))[0] == rendered


async def test_the_original_response_is_the_successful_attempts(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post(
        "/inference",
        json={"model_name": "broken", "input": {"messages": MESSAGES}, "include_original_response": True},
    )
    assert r.status_code == 200, r.text
    inference_id = UUID(r.json()["inference_id"])
    with psycopg.connect(database_url) as conn:
        attempts = conn.execute(
            "SELECT m.status, d.raw_response FROM model_inferences m "
            "JOIN model_inference_data d ON d.model_inference_id = m.id WHERE m.inference_id = %s ORDER BY m.attempt",
            (inference_id,),
        ).fetchall()
    assert [status for status, _ in attempts] == ["error", "ok"]
    assert (await payloads_of(database_url, inference_id))[1] == attempts[1][1] == r.json()["original_response"]


async def test_rows_written_before_keep_their_copies(database_url: str, database: Database) -> None:
    """A row with both copies (written before 0012, or imported from TensorZero) reads back as it was."""
    rendered = {"system": "as sent", "messages": MESSAGES}
    original = '{"old": "row"}\x00'  # a provider's U+0000, stored escaped like every provider text
    with psycopg.connect(database_url) as conn:
        inference_id = rows.inference(conn)
        conn.execute(
            "UPDATE chat_inference_data SET rendered_input = %s, original_response = %s WHERE inference_id = %s",
            (Jsonb(rendered), escape_text(original), inference_id),
        )
    found = await inference_payloads(database, [inference_id, uuid7()])
    assert list(found) == [inference_id]
    assert (found[inference_id].rendered_input, found[inference_id].original_response) == (rendered, original)


# -- the prompt and answer inside raw_request / raw_response -------------------------------------------------

TRICKY = 'quotes " and \\ backslashes, a\nnewline, a\ttab, \x01\x1f controls, é € 😀 \u2028 and </script> ' * 8


def row_of(inference_id: UUID, input: dict[str, Any], output: Any, kind: str = "chat") -> InferenceRow:
    return InferenceRow(
        inference_id=inference_id, episode_id=uuid7(), function_name="f", function_type=kind, variant_name="v",
        input=input, output=output, rendered_input=None, inference_params={}, tool_params=None, output_schema=None,
        tags={}, processing_time_ms=1, ttft_ms=None, usage=Usage(), cost=None, finish_reason="stop", cached=False,
        config_hash=None, api_key_public_id=None, extra_body=None, extra_headers=None, original_response=None,
    )  # fmt: skip


def attempt(raw_request: str | None, raw_response: str | None, error: bool = False) -> Attempt:
    names = ("v", "m", "p", "openai")
    failure = ProviderError("boom", provider="p", kind="server_error") if error else None
    return Attempt(*names, started_ms=rows.ms_of(rows.now()), latency_ms=1, raw_request=raw_request,
                   raw_response=raw_response, error=failure)  # fmt: skip


async def write_and_read(
    database_url: str, database: Database, row: InferenceRow, attempts: list[Attempt]
) -> tuple[list[dict[str, Any]], list[bool]]:
    records = inference_records(row)
    records += attempt_records(row.inference_id, "chat", "f", attempts, records[0])
    writer = Writer(database_url, ObservabilityConfig(spool_dir=Path(f"/tmp/lsd-test-{row.inference_id}")))
    await writer.open()
    await writer.write(records)
    await writer.close()
    found = await queries.list_inferences(
        database, queries.ListQuery(ids=(row.inference_id,), limit=1, include_model_inferences=True)
    )
    with psycopg.connect(database_url) as conn:
        flags = conn.execute(
            "SELECT d.payload_refs FROM model_inference_data d JOIN model_inferences m ON m.id = d.model_inference_id "
            "WHERE d.inference_id = %s ORDER BY m.attempt",
            (row.inference_id,),
        ).fetchall()
    return found[0].model_inferences, [f[0] for f in flags]


async def test_long_texts_in_the_raw_payloads_are_stored_once_and_read_back_exactly(
    database_url: str, database: Database
) -> None:
    prompt, system, answer = "ask: " + TRICKY, "system: " + TRICKY, "answer: " + TRICKY
    input = {"system": system, "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]}
    output = [{"type": "text", "text": answer}]
    raw_request = orjson.dumps(
        {"model": "m", "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]}
    ).decode()
    raw_response = orjson.dumps({"choices": [{"message": {"content": answer}}], "again": answer}).decode()
    failed_request = raw_request.replace('"m"', '"other"')
    row = row_of(uuid7(), input, output)
    read, flags = await write_and_read(
        database_url, database, row, [attempt(failed_request, "error \ue001 text", error=True),
                                      attempt(raw_request, raw_response)]
    )  # fmt: skip
    assert flags == [False, True]  # a raw text holding the delimiter itself is stored as it is
    assert [(a["raw_request"], a["raw_response"]) for a in read] == [
        (failed_request, "error \ue001 text"),
        (raw_request, raw_response),
    ]
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT length(raw_request), length(raw_response) FROM model_inference_data WHERE payload_refs"
        ).fetchone()
    assert stored is not None and stored[0] < 200 and stored[1] < 200  # the texts live in input/output only


async def test_short_texts_and_texts_not_in_the_raw_payload_stay_in_place(
    database_url: str, database: Database
) -> None:
    input = {"messages": [{"role": "user", "content": [{"type": "text", "text": "short"}]}]}
    row = row_of(uuid7(), input, {"raw": "x" * 300, "parsed": None}, kind="json")
    raw_response = '{"content": "' + "y" * 300 + '"}'  # not the output's raw
    read, flags = await write_and_read(database_url, database, row, [attempt('{"m": "short"}', raw_response)])
    assert flags == [False]
    assert (read[0]["raw_request"], read[0]["raw_response"]) == ('{"m": "short"}', raw_response)


async def test_the_gateway_stores_a_long_prompt_once(database_url: str, tmp_path: Path) -> None:
    prompt = "Summarise this: " + TRICKY
    async with FakeOpenAI() as fake, in_process_gateway(openai_config(fake), database_url) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as http:
            r = await http.post(
                "/inference",
                json={"model_name": "gpt", "input": {"messages": [{"role": "user", "content": prompt}]},
                      "include_original_response": True},
            )  # fmt: skip
            assert r.status_code == 200, r.text
            inference_id = r.json()["inference_id"]
            got = await http.post(
                "/v1/inferences/get_inferences", json={"ids": [inference_id], "include_model_inferences": True}
            )
        sent = orjson.dumps(fake.requests[-1].body).decode()
    [model_inference] = got.json()["inferences"][0]["model_inferences"]
    assert model_inference["raw_request"] == sent
    assert model_inference["raw_response"] == r.json()["original_response"]
    assert json.loads(model_inference["raw_response"])["choices"][0]["message"]["content"] == f"echo: {prompt}"
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT raw_request, raw_response, payload_refs FROM model_inference_data").fetchone()
    assert stored is not None and stored[2] is True
    assert prompt not in json.loads(stored[0])["messages"][0]["content"]  # a reference, not the prompt
    assert len(stored[1]) < len(prompt)


async def test_tool_results_and_images_are_stored_once_too(database_url: str) -> None:
    """An agent's tool loop is mostly tool results, and a screenshot is sent on every later step: both are stored in
    the inference's input and referred to from the raw request (the image inside its data URL), which reads back
    byte for byte as it was sent."""
    result = "file contents: " + TRICKY
    image = base64.b64encode(bytes(range(256)) * 40).decode()  # 13 KiB of base64
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "file", "mime_type": "image/png", "data": image}]},
        {"role": "assistant", "content": [{"type": "tool_call", "id": "call_1", "name": "read", "arguments": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "id": "call_1", "name": "read", "result": result}]},
    ]  # fmt: skip
    async with FakeOpenAI() as fake, in_process_gateway(openai_config(fake), database_url) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as http:
            r = await http.post("/inference", json={"model_name": "gpt", "input": {"messages": messages}})
            assert r.status_code == 200, r.text
            got = await http.post(
                "/v1/inferences/get_inferences",
                json={"ids": [r.json()["inference_id"]], "include_model_inferences": True},
            )
        sent = orjson.dumps(fake.requests[-1].body).decode()
    assert image in sent and orjson.dumps(result).decode() in sent  # as a data URL, and as the tool message
    [model_inference] = got.json()["inferences"][0]["model_inferences"]
    assert model_inference["raw_request"] == sent
    with psycopg.connect(database_url) as conn:
        stored, refs = conn.execute("SELECT raw_request, payload_refs FROM model_inference_data").fetchone()  # type: ignore[misc]
    assert refs is True and image not in stored and result not in stored
    assert len(stored) < 1000
