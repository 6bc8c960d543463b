"""Each payload stored once: the copies an inference's rows can rebuild are left out, and read back unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from lsd.ids import uuid7
from lsd.store.database import Database
from lsd.store.escaping import escape_text
from lsd.store.payloads import inference_payloads
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


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        in_process_gateway(config(tmp_path), database_url) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        yield http


def stored(database_url: str, table: str, inference_id: UUID) -> tuple[object, ...]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f"SELECT rendered_input, rendered_input_is_input, original_response, original_response_is_raw "
            f"FROM {table} WHERE inference_id = %s",
            (inference_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


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
    # Neither copy is stored: the flags say where each lives.
    assert stored(database_url, "chat_inference_data", inference_id) == (None, True, None, True)
    # ... and both read back as they were.
    assert await payloads_of(database_url, inference_id) == ({"system": None, "messages": MESSAGES}, original)


async def test_a_json_inference_too(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post(
        "/inference",
        json={"function_name": "extract", "input": {"system": "Be brief.", "messages": MESSAGES}},
    )
    assert r.status_code == 200, r.text
    inference_id = UUID(r.json()["inference_id"])
    assert stored(database_url, "json_inference_data", inference_id) == (None, True, None, True)
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
    rendered, is_input, _, _ = stored(database_url, "chat_inference_data", inference_id)
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
