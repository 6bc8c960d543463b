"""An input's long strings stored once a day across inferences (0020_input_strings.sql), and read back whole."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import orjson
import psycopg
from psycopg.types.json import Jsonb

from lsd.config.model import ObservabilityConfig
from lsd.ids import uuid7
from lsd.records import ChatInferenceRecord, InputStringRecord, ModelInferenceRecord
from lsd.store import queries
from lsd.store.conversations import find_conversation
from lsd.store.database import Database
from lsd.store.input_strings import key_of
from lsd.store.payloads import inference_payloads
from lsd.store.writer import Writer
from tests.fakes.openai_server import FakeOpenAI
from tests.support import rows
from tests.support.gateway import in_process_gateway

SYSTEM = "You are a careful agent. " * 80  # ~2,000 characters
SCREENSHOT = base64.b64encode(os.urandom(6000)).decode()
PAGE = "<html>" + "lorem ipsum dolor sit amet " * 150 + "</html>"  # a tool's long result


def config(fake: FakeOpenAI, *, once: bool = True) -> str:
    return f"""
[gateway.observability]
async_writes = false
input_strings_once = {str(once).lower()}
[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{fake.api_base}"
api_key_location = "none"
"""


def steps() -> list[dict[str, Any]]:
    """Three steps of an agent's tool loop, each the whole conversation so far."""
    first = [
        {"role": "user", "content": [
            {"type": "text", "text": "What does the page say?"},
            {"type": "file", "mime_type": "image/png", "data": SCREENSHOT},
        ]},
    ]  # fmt: skip
    second = [
        *first,
        {"role": "assistant", "content": [{"type": "tool_call", "id": "c1", "name": "fetch", "arguments": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "id": "c1", "name": "fetch", "result": PAGE}]},
    ]
    third = [
        *second,
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look again."}]},
        {"role": "user", "content": [{"type": "text", "text": "Go on."}]},
    ]
    return [{"system": SYSTEM, "messages": messages} for messages in (first, second, third)]


async def run_steps(base_url: str) -> list[UUID]:
    ids = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for input in steps():
            r = await http.post("/inference", json={"model_name": "gpt", "input": input})
            assert r.status_code == 200, r.text
            ids.append(UUID(r.json()["inference_id"]))
    return ids


def stored(database_url: str, ids: list[UUID]) -> list[tuple[Any, list[str] | None, Any]]:
    """(input as stored, input_refs, lsd_input(...)) of each inference, in order."""
    with psycopg.connect(database_url) as conn:
        found = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT id, input, input_refs, lsd_input(input, input_refs, id) FROM chat_inferences "
                "WHERE id = ANY(%s)",
                (ids,),
            )
        }
    return [found[i] for i in ids]


async def inline_inputs(database_url: str) -> list[Any]:
    """The inputs of the same steps as a gateway with input_strings_once = false stores them."""
    async with FakeOpenAI() as fake, in_process_gateway(config(fake, once=False), database_url) as base_url:
        ids = await run_steps(base_url)
    return [input for input, _, _ in stored(database_url, ids)]


async def test_an_agents_repeated_strings_are_stored_once_and_read_back_whole(database_url: str) -> None:
    async with FakeOpenAI() as fake, in_process_gateway(config(fake), database_url) as base_url:
        ids = await run_steps(base_url)
        sent = [request.body for request in fake.requests]
        async with httpx.AsyncClient(base_url=base_url) as http:
            got = await http.post(
                "/v1/inferences/get_inferences",
                json={"ids": [str(i) for i in ids], "include_model_inferences": True},
            )
    assert got.status_code == 200, got.text
    rows_ = stored(database_url, ids)
    # Every long string is stored once and keyed in each input that holds it: the system prompt and the screenshot
    # from step 1 on, the tool's page from step 2.
    assert [refs for _, refs, _ in rows_] == [
        ["system", "messages,0,content,1,data"],
        ["system", "messages,0,content,1,data", "messages,2,content,0,result"],
        ["system", "messages,0,content,1,data", "messages,2,content,0,result"],
    ]
    assert rows_[2][0]["system"] == str(key_of(SYSTEM))
    assert rows_[2][0]["messages"][2]["content"][0]["result"] == str(key_of(PAGE))
    # lsd_input puts every string back: each input reads as a gateway storing them inline stored it.
    assert [expanded for _, _, expanded in rows_] == await inline_inputs(database_url)
    with psycopg.connect(database_url) as conn:
        strings = conn.execute("SELECT hash, inference_id, value FROM input_strings ORDER BY inference_id").fetchall()
    # Each string once, in the partition of the first inference that referred to it.
    assert sorted((h, i) for h, i, _ in strings) == sorted(
        [(key_of(SYSTEM), ids[0]), (key_of(SCREENSHOT), ids[0]), (key_of(PAGE), ids[1])]
    )
    assert {h: v for h, _, v in strings} == {key_of(SYSTEM): SYSTEM, key_of(SCREENSHOT): SCREENSHOT, key_of(PAGE): PAGE}
    # The query API answers the inputs whole, and each attempt's raw request (whose long texts refer to the input)
    # as it was sent.
    answered = {UUID(i["inference_id"]): i for i in got.json()["inferences"]}
    for inference_id, (_, _, input), body in zip(ids, rows_, sent, strict=True):
        assert answered[inference_id]["input"]["system"] == input["system"]
        assert answered[inference_id]["input"]["messages"] == input["messages"]
        [attempt] = answered[inference_id]["model_inferences"]
        assert orjson.loads(attempt["raw_request"]) == body


async def test_the_other_readers_read_the_strings_back(database_url: str, database: Database) -> None:
    async with FakeOpenAI() as fake, in_process_gateway(config(fake), database_url) as base_url:
        ids = await run_steps(base_url)
    last = (await inline_inputs(database_url))[2]
    conversation = await find_conversation(database, ids[2])
    assert conversation is not None and conversation.input == last
    payloads = await inference_payloads(database, [ids[2]])
    assert payloads[ids[2]].rendered_input == {"system": SYSTEM, "messages": last["messages"]}
    assert last["system"] == SYSTEM and last["messages"][2]["content"][0]["result"] == PAGE
    listed = await queries.list_inferences(database, queries.ListQuery(ids=(ids[2],), limit=1))
    assert listed[0].input == last


async def test_turned_off_every_input_is_stored_whole(database_url: str) -> None:
    async with FakeOpenAI() as fake, in_process_gateway(config(fake, once=False), database_url) as base_url:
        ids = await run_steps(base_url)
    found = stored(database_url, ids)
    assert [refs for _, refs, _ in found] == [None, None, None]
    assert [input["system"] for input, _, _ in found] == [SYSTEM] * 3
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM input_strings").fetchone() == (0,)


async def test_a_key_whose_string_is_gone_reads_as_the_key(database_url: str) -> None:
    """A row referring to a string no partition holds (a hand-made row; the gateway never writes one) reads back
    with the key in place, not an error."""
    with psycopg.connect(database_url) as conn:
        inference_id = rows.inference(conn)
        missing = str(uuid7())
        conn.execute(
            "UPDATE chat_inferences SET input = %s, input_refs = %s WHERE id = %s",
            (Jsonb({"system": missing, "messages": []}), ["system", "messages,9,text"], inference_id),
        )
        found = conn.execute(
            "SELECT lsd_input(input, input_refs, id) FROM chat_inferences WHERE id = %s", (inference_id,)
        ).fetchone()
    assert found == ({"system": missing, "messages": []},)


async def test_rows_retried_through_staging_and_a_big_batch_by_copy(database_url: str, tmp_path: Path) -> None:
    """The COPY path (a batch past one statement's bounds) and the idempotent path carry input_refs and the
    strings' rows as the one-statement path does."""
    writer = Writer(database_url, ObservabilityConfig(spool_dir=tmp_path / "spool"))
    await writer.open()
    groups = []
    for n in range(60):  # 120 rows: past one statement's 100
        inference_id = uuid7()
        value = f"{n} " + "x" * 2000
        key = key_of(value)
        record = ChatInferenceRecord(
            inference_id, rows.now(), "f", "v", uuid7(), {"system": str(key), "messages": []}, [], None, {}, {},
            1, None, None, None, None, "stop", False, None, None, input_refs=["system"],
        )  # fmt: skip
        groups.append([InputStringRecord(key, inference_id, value), record])
    for group in groups:
        writer.submit(group)
    await writer.close()
    with psycopg.connect(database_url) as conn:
        read = conn.execute(
            "SELECT lsd_input(input, input_refs, id) ->> 'system' FROM chat_inferences ORDER BY id"
        ).fetchall()
    assert [r[0] for r in read] == [f"{n} " + "x" * 2000 for n in range(60)]


async def test_lsd_input_rebuilds_every_path_shape(database_url: str) -> None:
    """The system, a message's blocks (beside an empty message and untouched blocks), and a path of another shape."""
    values = {name: f"{name} " + "v" * 2000 for name in ("system", "text", "note")}
    keys = {name: str(key_of(value)) for name, value in values.items()}
    stored_input = {
        "system": keys["system"],
        "messages": [
            {"role": "user", "content": []},
            {"role": "user", "content": [{"type": "text", "text": keys["text"]}, {"type": "text", "text": "plain"}]},
        ],
        "notes": [keys["note"]],
    }
    with psycopg.connect(database_url) as conn:
        inference_id = rows.inference(conn)
        for value in values.values():
            conn.execute(
                "INSERT INTO input_strings (hash, inference_id, value) VALUES (%s, %s, %s)",
                (key_of(value), inference_id, value),
            )
        conn.execute(
            "UPDATE chat_inferences SET input = %s, input_refs = %s WHERE id = %s",
            (Jsonb(stored_input), ["system", "messages,1,content,0,text", "notes,0"], inference_id),
        )
        found = conn.execute(
            "SELECT lsd_input(input, input_refs, id) FROM chat_inferences WHERE id = %s", (inference_id,)
        ).fetchone()
    assert found == (
        {
            "system": values["system"],
            "messages": [
                {"role": "user", "content": []},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": values["text"]}, {"type": "text", "text": "plain"}],
                },
            ],
            "notes": [values["note"]],
        },
    )


async def test_a_rejected_group_still_stores_the_strings_later_inferences_refer_to(
    database_url: str, tmp_path: Path
) -> None:
    """The first group holding a string is refused by PostgreSQL (a U+0000 in a text column): its string is stored
    alone, so the later inferences, which hold only its key, read back whole."""
    system = "You are a careful agent. " * 80

    def chat() -> ChatInferenceRecord:
        return ChatInferenceRecord(
            uuid7(), rows.now(), "f", "v", uuid7(), {"system": system, "messages": []}, [], None, {}, {}, 1, None,
            None, None, None, "stop", False, None, None,
        )  # fmt: skip

    first = chat()
    refused = ModelInferenceRecord(
        uuid7(), rows.now(), first.id, "chat", 1, "f", "v", "m\x00", "p", "openai", "ok", None, None, 1, None, 1, 1,
        None, "stop", False, False,
    )  # fmt: skip
    writer = Writer(database_url, ObservabilityConfig(spool_dir=tmp_path / "spool"))
    await writer.open()
    writer.submit([first, refused])
    later = [chat() for _ in range(3)]
    for record in later:
        writer.submit([record])
    await writer.close()
    assert writer.stats.rejected_rows["chat_inferences"] == 1
    with psycopg.connect(database_url) as conn:
        read = conn.execute(
            "SELECT input_refs, lsd_input(input, input_refs, id) ->> 'system' FROM chat_inferences ORDER BY id"
        ).fetchall()
    assert read == [(["system"], system)] * 3
