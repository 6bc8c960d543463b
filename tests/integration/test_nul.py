"""U+0000, which PostgreSQL's text and jsonb cannot hold, is never a silent drop: a request input holding it is
refused (400 naming the field) before any provider call; provider output holding it is stored (escaped) and reads
back as sent; a row PostgreSQL still refuses is counted, logged, and listed by `lsd spool rejected`."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from lsd.records import Record
from lsd.store.database import Database
from lsd.store.spool import Spool
from lsd.store.spool_format import encode_frame
from lsd.store.writer import Writer
from lsd.telemetry.metrics import Metrics
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.test_writer import inference, observability
from tests.support.configs import boolean_metric, chat_function, openai_model
from tests.support.gateway import in_process_gateway, run_lsd

KEY = "sk-test-secret-key-0123456789"
NUL_ANSWER = "nul\x00: hello \ue0000"  # the fake's `nul` directive; U+E000 is LSD's escape character


def config(openai: FakeOpenAI, *, async_writes: bool) -> str:
    return f"""
[gateway.observability]
async_writes = {str(async_writes).lower()}
{openai_model("gpt", openai.api_base, key_location="env::LSD_TEST_OPENAI_KEY")}
{chat_function(model="gpt")}
{boolean_metric("good")}

[embedding_models.embed]
routing = ["openai"]
[embedding_models.embed.providers.openai]
type = "openai"
model_name = "text-embedding-3-small"
api_base = "{openai.api_base}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"

[models.batched]
routing = ["d"]
[models.batched.providers.d]
type = "dummy"
model_name = "echo"
batch_delay_ms = 0
{chat_function("batched", model="batched")}
"""


@dataclasses.dataclass
class Gateway:
    http: httpx.AsyncClient
    openai: FakeOpenAI


@pytest.fixture(params=[True, False], ids=["async_writes", "sync_writes"])
async def gateway(
    request: pytest.FixtureRequest, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("LSD_TEST_OPENAI_KEY", KEY)
    openai = FakeOpenAI(api_key=KEY)
    await openai.start()
    try:
        async with (
            in_process_gateway(config(openai, async_writes=request.param), database_url) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        ):
            yield Gateway(http, openai)
    finally:
        await openai.stop()


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}


def count(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return 0 if row is None else int(row[0])


async def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    assert check()


def refused(r: httpx.Response, field: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    message = error["message"] if isinstance(error, dict) else error  # the OpenAI endpoints' shape, or LSD's
    assert f"{field}: contains U+0000" in message, message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"function_name": "chat", "input": user("hi\x00")}, "input.messages[0].content[0].text"),
        ({"function_name": "chat", "input": {**user("hi"), "system": "be\x00brief"}}, "input.system"),
        ({"function_name": "chat", "input": user("hi"), "tags": {"k": "v\x00"}}, "tags.k"),
        ({"function_name": "chat", "input": user("hi"), "tags": {"k\x00": "v"}}, "tags (a key)"),
    ],
)
async def test_an_input_with_nul_is_refused_before_the_provider(
    gateway: Gateway, database_url: str, body: dict[str, Any], field: str
) -> None:
    r = await gateway.http.post("/inference", json=body)
    refused(r, field)
    assert gateway.openai.requests == []  # never sent, never billed
    ok = await gateway.http.post("/inference", json={"function_name": "chat", "input": user("hi")})
    assert ok.status_code == 200  # a literal backslash-u0000 is no NUL either: see the next test
    await eventually(lambda: count(database_url, "chat_inferences") == 1)


async def test_a_literal_backslash_u0000_is_ordinary_text(gateway: Gateway, database_url: str) -> None:
    r = await gateway.http.post("/inference", json={"function_name": "chat", "input": user("\\u0000 and \ue000")})
    assert r.status_code == 200, r.text
    inference_id = r.json()["inference_id"]
    await eventually(lambda: count(database_url, "chat_inferences") == 1)
    [row] = await get_inferences(gateway.http, inference_id)
    assert row["input"]["messages"][0]["content"][0]["text"] == "\\u0000 and \ue000"


async def test_openai_and_embedding_inputs_with_nul_are_refused(gateway: Gateway) -> None:
    r = await gateway.http.post(
        "/openai/v1/chat/completions",
        json={"model": "tensorzero::function_name::chat", "messages": [{"role": "user", "content": "a\x00"}]},
    )
    refused(r, "messages[0].content")
    r = await gateway.http.post(
        "/openai/v1/embeddings", json={"model": "tensorzero::embedding_model_name::embed", "input": ["ok", "b\x00"]}
    )
    refused(r, "input[1]")
    assert gateway.openai.requests == []


async def test_feedback_comment_with_nul_is_refused(gateway: Gateway, database_url: str) -> None:
    r = await gateway.http.post("/inference", json={"function_name": "chat", "input": user("hi")})
    assert r.status_code == 200
    inference_id = r.json()["inference_id"]
    r = await gateway.http.post(
        "/feedback", json={"metric_name": "comment", "inference_id": inference_id, "value": "bad\x00comment"}
    )
    refused(r, "value")
    assert count(database_url, "comment_feedback") == 0


async def test_a_batch_with_nul_is_refused_before_the_provider_batch(gateway: Gateway, database_url: str) -> None:
    r = await gateway.http.post(
        "/batch_inference", json={"function_name": "batched", "inputs": [user("fine"), user("not\x00fine")]}
    )
    refused(r, "inputs[1].messages[0].content[0].text")
    assert count(database_url, "batch_requests") == 0


async def get_inferences(http: httpx.AsyncClient, inference_id: str) -> list[dict[str, Any]]:
    r = await http.post("/v1/inferences/get_inferences", json={"ids": [inference_id]})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["inferences"]
    return found


async def test_provider_output_with_nul_is_stored_and_read_back(gateway: Gateway, database_url: str) -> None:
    r = await gateway.http.post("/inference", json={"function_name": "chat", "input": user("[fake:nul] hello")})
    assert r.status_code == 200, r.text  # async_writes = false included: no 500 after the provider answered
    body = r.json()
    assert body["content"] == [{"type": "text", "text": NUL_ANSWER}]
    await eventually(lambda: count(database_url, "model_inference_data") == 1)
    [row] = await get_inferences(gateway.http, body["inference_id"])
    assert row["output"] == [{"type": "text", "text": NUL_ANSWER}]
    listed = await gateway.http.post(
        "/v1/inferences/list_inferences", json={"function_name": "chat", "include_model_inferences": True}
    )
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["inferences"]
    assert item["output"] == [{"type": "text", "text": NUL_ANSWER}]
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT output::text, raw_response FROM chat_inferences, model_inference_data").fetchone()
    assert stored is not None
    assert "nul\ue0000: hello \ue000\ue0000" in stored[0]  # U+0000 as U+E000 "0", U+E000 doubled
    assert "\ue000\ue0000" in stored[1]  # the raw JSON text holds U+E000 as sent: doubled when stored
    [attempt] = item["model_inferences"]
    assert "\ue0000" in attempt["raw_response"] and "\ue000\ue000" not in attempt["raw_response"]  # as sent


async def test_streamed_output_with_nul_is_stored_and_read_back(gateway: Gateway, database_url: str) -> None:
    chunks: list[str] = []
    inference_id = None
    async with gateway.http.stream(
        "POST", "/inference", json={"function_name": "chat", "input": user("[fake:nul] hello"), "stream": True}
    ) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = orjson.loads(line[6:])
            inference_id = event.get("inference_id", inference_id)
            chunks += [c["text"] for c in event.get("content", ()) if c.get("type") == "text"]
    assert "".join(chunks) == NUL_ANSWER
    assert inference_id is not None
    await eventually(lambda: count(database_url, "model_inference_data") == 1)
    [row] = await get_inferences(gateway.http, inference_id)
    assert row["output"] == [{"type": "text", "text": NUL_ANSWER}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {
                "function_name": "chat",
                "filters": {"type": "tag", "key": "k", "value": "v\x00", "comparison_operator": "="},
            },
            "filters.value",
        ),
        ({"function_name": "chat\x00"}, "function_name"),
    ],
)
async def test_list_inferences_with_nul_in_a_filter_is_a_400(
    gateway: Gateway, body: dict[str, Any], field: str
) -> None:
    r = await gateway.http.post("/v1/inferences/list_inferences", json=body)
    refused(r, field)


@pytest.mark.parametrize("operator", ["=", "!="])
async def test_a_tag_holding_the_escape_character_reads_back_and_filters(
    gateway: Gateway, database_url: str, operator: str
) -> None:
    tagged = {"k": "a\ue000b\ue0000"}
    for tags in (tagged, {"k": "other"}):
        r = await gateway.http.post("/inference", json={"function_name": "chat", "input": user("hi"), "tags": tags})
        assert r.status_code == 200, r.text
    await eventually(lambda: count(database_url, "chat_inferences") == 2)
    filters = {"type": "tag", "key": "k", "value": tagged["k"], "comparison_operator": operator}
    r = await gateway.http.post("/v1/inferences/list_inferences", json={"function_name": "chat", "filters": filters})
    assert r.status_code == 200, r.text
    [found] = r.json()["inferences"]
    assert (found["tags"]["k"] == tagged["k"]) is (operator == "=")


async def test_a_rejected_row_is_counted_logged_and_listed(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(latency_buckets=(1.0,), overhead_buckets=(1.0,), ttft_buckets=(1.0,))
    bad: list[Record] = [dataclasses.replace(inference()[0], function_name="not\x00storable")]  # type: ignore[type-var]
    writer = Writer(database_url, observability(tmp_path), metrics=metrics)
    await writer.open()
    try:
        writer.submit(bad)
        await eventually(lambda: writer.stats.rejected_rows == {"chat_inferences": 1})
    finally:
        await writer.close()
    text = metrics.exposition()[0].decode()
    assert 'lsd_writer_rows_rejected_total{reason="22021",table="chat_inferences"} 1.0' in text
    assert "rejected rows {'chat_inferences': 1} (SQLSTATE 22021" in caplog.text

    listed = run_lsd("spool", "rejected", "--dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    [kept] = (tmp_path / "rejected").glob("*.spool")
    assert f"{kept}: written" in listed.stdout
    assert "1 groups (chat_inferences: 1)" in listed.stdout
    as_json = run_lsd("spool", "rejected", "--dir", str(tmp_path), "--json")
    [entry] = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert entry["rows"] == {"chat_inferences": 1}

    moved = run_lsd("spool", "retry-rejected", "--dir", str(tmp_path))
    assert moved.returncode == 0, moved.stderr
    assert "moved 1 file" in moved.stdout
    assert not list((tmp_path / "rejected").glob("*.spool"))
    assert (tmp_path / kept.name).exists()  # back in the spool: the next replay tries it again


async def test_rows_rejected_for_nul_before_the_escaping_are_recovered_by_retry_rejected(
    database_url: str, tmp_path: Path
) -> None:
    """Rows an older LSD could not store (U+0000 in an output) sit in rejected/; after the upgrade, retry-rejected
    moves them back and a replay stores them, reading back as they were."""
    group = inference()
    chat = dataclasses.replace(group[0], output=[{"type": "text", "text": NUL_ANSWER}])  # type: ignore[type-var]
    rejected = Spool(tmp_path / "rejected", 1 << 30)
    stored, reason = rejected.append([encode_frame([chat, *group[1:]])])
    rejected.close()
    assert stored, reason

    assert run_lsd("spool", "retry-rejected", "--dir", str(tmp_path)).returncode == 0
    replayed = run_lsd("spool", "replay", "--dir", str(tmp_path), env={"LSD_DATABASE_URL": database_url})
    assert replayed.returncode == 0, replayed.stderr
    assert "0 rejected" in replayed.stdout
    database = Database(database_url, min_size=1, max_size=1)
    await database.open()
    try:
        async with database.reading("query") as conn:
            cur = await conn.execute("SELECT output FROM chat_inferences WHERE id = %s", (chat.id,))
            assert await cur.fetchone() == ([{"type": "text", "text": NUL_ANSWER}],)
    finally:
        await database.close()
