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
from tests.support.configs import write_answer_schema
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

[functions.chat]
type = "chat"
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
    text = CONFIG.format(flush=flush_ms, schema=schema)
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
