"""`POST /feedback` against a real PostgreSQL: every type and level, every rejection, no race with the writer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from lsd.ids import uuid7
from tests.support.configs import boolean_metric, echo_chat, write_answer_schema
from tests.support.gateway import in_process_gateway

CONFIG = """
[gateway.observability.batch_writes]
flush_interval_ms = {flush}

[metrics.accepted]
type = "boolean"
optimize = "max"
level = "inference"

[metrics.edits]
type = "float"
optimize = "min"
level = "episode"

[tools.lookup]
description = "Look a word up"
parameters = "{tool}"

[functions.chat]
type = "chat"
tools = ["lookup"]
[functions.chat.variants.a]
type = "chat_completion"
model = "dummy::echo"

[functions.extract]
type = "json"
output_schema = "{schema}"
[functions.extract.variants.a]
type = "chat_completion"
model = "dummy::json"
json_mode = "strict"
"""

MESSAGE = {"messages": [{"role": "user", "content": "hi"}]}


async def gateway(database_url: str, tmp_path: Path, flush_ms: int) -> AsyncIterator[httpx.AsyncClient]:
    schema = write_answer_schema(tmp_path)
    tool = tmp_path / "lookup.json"
    tool.write_text(json.dumps({"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}))
    text = CONFIG.format(flush=flush_ms, schema=schema, tool=tool)
    async with in_process_gateway(text, database_url) as url, httpx.AsyncClient(base_url=url) as http:
        yield http


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for http in gateway(database_url, tmp_path, 50):
        yield http


@pytest.fixture
async def slow_writer_client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for http in gateway(database_url, tmp_path, 60_000):
        yield http


def count(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


async def wait_rows(database_url: str, table: str, expected: int) -> None:
    for _ in range(100):
        if count(database_url, table) >= expected:
            return
        await asyncio.sleep(0.05)
    assert count(database_url, table) == expected


async def infer(client: httpx.AsyncClient, function: str = "chat") -> dict[str, str]:
    r = await client.post("/inference", json={"function_name": function, "input": MESSAGE})
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


async def test_every_feedback_type(client: httpx.AsyncClient, database_url: str) -> None:
    chat = await infer(client)
    extract = await infer(client, "extract")
    sent = [
        {"metric_name": "accepted", "inference_id": chat["inference_id"], "value": True, "tags": {"user": "u1"}},
        {"metric_name": "edits", "episode_id": chat["episode_id"], "value": 3},
        {"metric_name": "comment", "inference_id": chat["inference_id"], "value": "nice"},
        {"metric_name": "comment", "episode_id": chat["episode_id"], "value": "good episode"},
        {"metric_name": "demonstration", "inference_id": chat["inference_id"], "value": "the ideal answer"},
        {"metric_name": "demonstration", "inference_id": extract["inference_id"], "value": {"answer": "x"}},
    ]
    for body in sent:
        r = await client.post("/feedback", json=body)
        assert r.status_code == 200, (body, r.text)
        assert len(r.json()["feedback_id"]) == 36
    await wait_rows(database_url, "demonstration_feedback", 2)
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT metric_name, value, target_level, tags FROM boolean_metric_feedback"
        ).fetchall() == [("accepted", True, "inference", {"user": "u1"})]
        assert conn.execute("SELECT value, target_level FROM float_metric_feedback").fetchall() == [(3.0, "episode")]
        assert count(database_url, "comment_feedback") == 2
        demos = [r[0] for r in conn.execute("SELECT value FROM demonstration_feedback ORDER BY id")]
    assert demos == [[{"type": "text", "text": "the ideal answer"}], {"answer": "x"}]


async def test_feedback_right_after_inference_with_rows_still_queued(
    slow_writer_client: httpx.AsyncClient, database_url: str
) -> None:
    chat = await infer(slow_writer_client)
    assert count(database_url, "chat_inferences") == 0  # still in the write queue
    r = await slow_writer_client.post(
        "/feedback", json={"metric_name": "accepted", "inference_id": chat["inference_id"], "value": False}
    )
    assert r.status_code == 200, r.text
    r = await slow_writer_client.post(
        "/feedback", json={"metric_name": "edits", "episode_id": chat["episode_id"], "value": 1.5}
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"metric_name": "nope", "inference_id": "{inference}", "value": True}, 404, "metric_name"),
        ({"metric_name": "accepted", "inference_id": "{inference}", "value": "true"}, 400, "value"),
        ({"metric_name": "accepted", "inference_id": "{inference}", "value": 1}, 400, "value"),
        ({"metric_name": "edits", "episode_id": "{episode}", "value": True}, 400, "value"),
        ({"metric_name": "edits", "episode_id": "{episode}", "value": "NaN"}, 400, "value"),
        ({"metric_name": "accepted", "episode_id": "{episode}", "value": True}, 400, "episode_id"),
        ({"metric_name": "edits", "inference_id": "{inference}", "value": 1}, 400, "inference_id"),
        (
            {"metric_name": "comment", "inference_id": "{inference}", "episode_id": "{episode}", "value": "x"},
            400,
            "inference_id",
        ),
        ({"metric_name": "comment", "value": "x"}, 400, "inference_id"),
        ({"metric_name": "comment", "inference_id": "{inference}", "value": 5}, 400, "value"),
        ({"metric_name": "demonstration", "episode_id": "{episode}", "value": "x"}, 400, "episode_id"),
        ({"metric_name": "demonstration", "inference_id": "{json_inference}", "value": {"wrong": 1}}, 400, "value"),
        (
            {
                "metric_name": "demonstration",
                "inference_id": "{inference}",
                "value": [{"type": "tool_call", "name": "x"}],
            },
            400,
            "value[0].name",
        ),
        (
            {
                "metric_name": "demonstration",
                "inference_id": "{inference}",
                "value": [{"type": "tool_call", "id": "1", "name": "lookup", "arguments": {"bogus": 1}}],
            },
            400,
            "value[0].arguments",
        ),
        (
            {
                "metric_name": "demonstration",
                "inference_id": "{inference}",
                "value": [{"type": "tool_call", "name": "lookup", "arguments": {"word": "x"}}],
            },
            400,
            "value[0].id",
        ),
        ({"metric_name": "accepted", "inference_id": "{unknown}", "value": True}, 404, "inference_id"),
        ({"metric_name": "edits", "episode_id": "{unknown}", "value": 1}, 404, "episode_id"),
        ({"metric_name": "accepted", "inference_id": "not-a-uuid", "value": True}, 400, "inference_id"),
        ({"metric_name": "accepted", "inference_id": "{inference}", "value": True, "extra": 1}, 400, "extra"),
    ],
)
async def test_rejections_write_nothing(
    client: httpx.AsyncClient, database_url: str, body: dict[str, object], status: int, field: str
) -> None:
    chat = await infer(client)
    extract = await infer(client, "extract")
    ids = {
        "inference": chat["inference_id"],
        "episode": chat["episode_id"],
        "json_inference": extract["inference_id"],
        "unknown": str(uuid7()),
    }
    filled = {k: ids[v[1:-1]] if isinstance(v, str) and v.startswith("{") else v for k, v in body.items()}
    if filled.get("value") == "NaN":
        content = json.dumps(filled).replace('"NaN"', "NaN")
        r = await client.post("/feedback", content=content, headers={"content-type": "application/json"})
    else:
        r = await client.post("/feedback", json=filled)
    assert r.status_code in (status, 400), r.text  # NaN is not JSON: rejected as malformed body
    if filled.get("value") != "NaN":
        assert r.status_code == status and r.json()["field"] == field, r.text
    await asyncio.sleep(0.2)
    for table in ("boolean_metric_feedback", "float_metric_feedback", "comment_feedback", "demonstration_feedback"):
        assert count(database_url, table) == 0


async def test_dryrun_feedback_writes_nothing(client: httpx.AsyncClient, database_url: str) -> None:
    chat = await infer(client)
    r = await client.post(
        "/feedback",
        json={"metric_name": "accepted", "inference_id": chat["inference_id"], "value": True, "dryrun": True},
    )
    assert r.status_code == 200
    await asyncio.sleep(0.2)
    assert count(database_url, "boolean_metric_feedback") == 0


async def test_demonstrations_are_listed_in_the_shape_of_an_output(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """As TensorZero stores them: a chat demonstration's tool calls carry raw_name and raw_arguments (also for rows
    written before LSD stored them), and a json demonstration lists as {raw, parsed}."""
    chat, older, extract = await infer(client), await infer(client), await infer(client, "extract")
    call = {"type": "tool_call", "id": "c1", "name": "lookup", "arguments": '{"word": "gateway"}'}
    for body in (
        {"metric_name": "demonstration", "inference_id": chat["inference_id"], "value": [call]},
        {"metric_name": "demonstration", "inference_id": extract["inference_id"], "value": {"answer": "x"}},
    ):
        r = await client.post("/feedback", json=body)
        assert r.status_code == 200, r.text
    await wait_rows(database_url, "demonstration_feedback", 2)
    legacy = [{"type": "tool_call", "id": "c0", "name": "lookup", "arguments": {"word": "old"}}]
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO demonstration_feedback (id, created_at, inference_id, value) VALUES (%s, now(), %s, %s)",
            (uuid7(), older["inference_id"], json.dumps(legacy)),
        )
    expected = {
        chat["inference_id"]: [
            {**call, "arguments": {"word": "gateway"}, "raw_name": "lookup", "raw_arguments": '{"word":"gateway"}'}
        ],
        older["inference_id"]: [{**legacy[0], "raw_name": "lookup", "raw_arguments": '{"word":"old"}'}],
        extract["inference_id"]: {"raw": '{"answer":"x"}', "parsed": {"answer": "x"}},
    }
    seen = set()
    for function in ("chat", "extract"):
        r = await client.post(
            "/v1/inferences/list_inferences", json={"function_name": function, "output_source": "demonstration"}
        )
        assert r.status_code == 200, r.text
        for row in r.json()["inferences"]:
            assert row["output"] == expected[row["inference_id"]], row
            seen.add(row["inference_id"])
    assert seen == set(expected)


async def test_feedback_is_refused_when_observability_is_off(database_url: str) -> None:
    """Nothing would be stored: a 400 saying so, not a feedback id for a row that never comes (TensorZero: 400)."""
    text = "[gateway.observability]\nenabled = false\n" + boolean_metric("accepted") + echo_chat()
    async with in_process_gateway(text, database_url) as url, httpx.AsyncClient(base_url=url) as http:
        inference = await infer(http)
        r = await http.post(
            "/feedback", json={"metric_name": "accepted", "inference_id": inference["inference_id"], "value": True}
        )
    assert r.status_code == 400 and "gateway.observability.enabled" in r.json()["error"], r.text
