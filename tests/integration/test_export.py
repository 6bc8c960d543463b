"""Exporting stored inferences: `lsd export inferences` and `POST /v1/inferences/export` give back the API's rows
(feedback joined) as Parquet, CSV and JSON Lines, honour the filters, stream, and hold one batch in memory."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tracemalloc
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import polars as pl
import psycopg
import pyarrow.parquet as pq
import pytest

from lsd.export import stream_inferences
from lsd.ids import timestamp_of, uuid7
from lsd.store.database import Database
from lsd.store.export import ExportQuery
from tests.support import rows
from tests.support.configs import boolean_metric, chat_function, echo_chat
from tests.support.gateway import in_process_gateway, run_lsd

CONFIG = f"""
[gateway.observability]
async_writes = false
{echo_chat()}
{chat_function("other", variant="b")}
{boolean_metric("thumbs")}
[metrics.score]
type = "float"
optimize = "max"
level = "inference"
"""

# The API's fields an export holds under the same names (list_inferences splits tool_params into its keys).
SHARED = ("inference_id", "episode_id", "type", "function_name", "variant_name", "input", "output", "tags")


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_gateway(CONFIG, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http


async def infer(client: httpx.AsyncClient, function_name: str, text: str) -> str:
    r = await client.post(
        "/inference",
        json={
            "function_name": function_name,
            "input": {"messages": [{"role": "user", "content": text}]},
            "tags": {"user": text},
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["inference_id"])


async def recorded(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Three chat inferences, two with feedback, and one of another function; the API's rows by id."""
    first = await infer(client, "chat", "one")
    second = await infer(client, "chat", 'two ,"quoted"\nline')
    await infer(client, "chat", "three")
    await infer(client, "other", "elsewhere")
    for metric, value in (("thumbs", False), ("thumbs", True), ("score", 0.5)):  # the latest thumbs counts
        r = await client.post("/feedback", json={"metric_name": metric, "inference_id": first, "value": value})
        assert r.status_code == 200, r.text
    r = await client.post("/feedback", json={"metric_name": "score", "inference_id": second, "value": 2.0})
    assert r.status_code == 200, r.text
    demonstration = [{"type": "text", "text": "better"}]
    r = await client.post(
        "/feedback", json={"metric_name": "demonstration", "inference_id": first, "value": demonstration}
    )
    assert r.status_code == 200, r.text
    listed = await client.post("/v1/inferences/list_inferences", json={"function_name": "chat", "limit": 100})
    assert listed.status_code == 200, listed.text
    return {row["inference_id"]: row for row in listed.json()["inferences"]}


def check_rows(exported: list[dict[str, Any]], api: dict[str, dict[str, Any]]) -> None:
    """`exported` (nested values decoded) are the API's rows, oldest first, with their feedback."""
    assert [r["inference_id"] for r in exported] == sorted(api, key=UUID)
    for row in exported:
        expected = api[row["inference_id"]]
        assert {k: row[k] for k in SHARED} == {k: expected[k] for k in SHARED}
        assert row["inference_params"] == expected["inference_params"]
        assert row["extra_body"] == expected["extra_body"]
        assert row["processing_time_ms"] == expected["processing_time_ms"]
    first, second, third = exported
    assert first["feedback"] == {"thumbs": True, "score": 0.5}
    assert first["demonstration"] == [{"type": "text", "text": "better"}]
    assert second["feedback"] == {"score": 2.0} and second["demonstration"] is None
    assert third["feedback"] is None


def timestamp_of_str(inference_id: str) -> datetime:
    return timestamp_of(UUID(inference_id))


def decoded(row: dict[str, Any], json_columns: tuple[str, ...]) -> dict[str, Any]:
    return {k: json.loads(v) if k in json_columns and isinstance(v, str) else v for k, v in row.items()}


JSON_COLUMNS = ("input", "output", "tool_params", "output_schema", "inference_params", "extra_body", "feedback")
JSON_COLUMNS += ("demonstration",)


def export_cli(database_url: str, out: Path, *args: str) -> None:
    done = run_lsd("export", "inferences", *args, "--out", str(out), env={"LSD_DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr


async def test_parquet_round_trips_the_api_rows_with_feedback(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    api = await recorded(client)
    out = tmp_path / "chat.parquet"
    args = ("--function", "chat", "--with-feedback", "--format", "parquet", "--batch-rows", "2")
    await asyncio.to_thread(export_cli, database_url, out, *args)
    table = pq.read_table(out)
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    exported = [decoded({**r, "tags": dict(r["tags"])}, JSON_COLUMNS) for r in table.to_pylist()]
    check_rows(exported, api)
    assert [r["timestamp"] for r in exported] == [timestamp_of_str(r["inference_id"]) for r in exported]
    # What docs/querying.md shows: Polars reads the file and decodes a JSON column.
    frame = pl.read_parquet(out)
    assert frame.height == 3 and frame["function_name"].unique().to_list() == ["chat"]


async def test_csv_and_jsonl_hold_the_same_rows(client: httpx.AsyncClient, database_url: str, tmp_path: Path) -> None:
    api = await recorded(client)
    jsonl, csv_file = tmp_path / "chat.jsonl", tmp_path / "chat.csv"
    await asyncio.to_thread(
        export_cli, database_url, jsonl, "--function", "chat", "--with-feedback", "--format", "jsonl"
    )
    await asyncio.to_thread(
        export_cli, database_url, csv_file, "--function", "chat", "--with-feedback", "--format", "csv"
    )
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    check_rows(lines, api)
    assert lines[0]["timestamp"].endswith("Z")
    with csv_file.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["timestamp"] for r in table] == [line["timestamp"] for line in lines]  # RFC 3339, the same text
    # CSV writes null as an empty field.
    exported = [
        decoded(
            {
                **{k: v or None for k, v in r.items()},
                "tags": json.loads(r["tags"]),
                "processing_time_ms": int(r["processing_time_ms"]),
            },
            JSON_COLUMNS,
        )
        for r in table
    ]
    check_rows(exported, api)


async def test_the_http_endpoint_streams_each_format(client: httpx.AsyncClient) -> None:
    api = await recorded(client)
    body = {"function_name": "chat", "with_feedback": True}
    async with client.stream("POST", "/v1/inferences/export", json={**body, "format": "parquet"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/vnd.apache.parquet"
        assert r.headers.get("transfer-encoding") == "chunked"  # streamed: no length known up front
        data = await r.aread()
    exported = [
        decoded({**row, "tags": dict(row["tags"])}, JSON_COLUMNS) for row in pq.read_table(io.BytesIO(data)).to_pylist()
    ]
    check_rows(exported, api)
    r = await client.post("/v1/inferences/export", json={**body, "format": "jsonl"})
    lines = [json.loads(line) for line in r.text.splitlines()]
    check_rows(lines, api)
    # the model and provider that answered each (which models did a session use?)
    assert {(row["model_name"], row["model_provider_name"]) for row in lines} == {("echo", "dummy")}
    r = await client.post("/v1/inferences/export", json={**body, "format": "csv"})
    assert r.headers["content-type"].startswith("text/csv") and len(list(csv.DictReader(io.StringIO(r.text)))) == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "xlsx"}, "format"),
        ({"since": "yesterday"}, "since"),
        ({"with_feedback": "yes"}, "with_feedback"),
        ({"tags": {"a": 1}}, "tags"),
        ({"limit": 5}, "limit"),
        ([], "body"),
    ],
)
async def test_a_bad_body_is_a_400_naming_the_field(client: httpx.AsyncClient, body: Any, field: str) -> None:
    r = await client.post("/v1/inferences/export", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(f"{field}:")


async def test_filters_are_honoured(database_url: str, database: Database) -> None:
    day = timedelta(days=1)
    with psycopg.connect(database_url) as conn:
        now = rows.now()
        old = rows.inference(conn, function_name="f", variant_name="a", id=uuid7(rows.ms_of(now - day)))
        new_a = rows.inference(conn, function_name="f", variant_name="a")
        new_b = rows.inference(conn, function_name="f", variant_name="b", kind="json")
        other = rows.inference(conn, function_name="g", variant_name="a", tags={"lsd::session_id": "s1", "team": "x"})

    async def ids(**filters: Any) -> list[str]:
        data = b"".join([c async for c in stream_inferences(database, ExportQuery(**filters), "jsonl")])
        return [json.loads(line)["inference_id"] for line in data.splitlines()]

    assert await ids() == [str(i) for i in (old, new_a, new_b, other)]  # oldest first, chat and json merged
    assert await ids(function_name="f") == [str(i) for i in (old, new_a, new_b)]
    assert await ids(function_name="f", variant_name="b") == [str(new_b)]
    assert await ids(since=now - day / 2) == [str(i) for i in (new_a, new_b, other)]
    assert await ids(until=now - day / 2) == [str(old)]
    assert await ids(function_name="nobody") == []
    # an agent session's inferences, by its tag (each tag given, with its value)
    assert await ids(tags={"lsd::session_id": "s1"}) == [str(other)]
    assert await ids(tags={"lsd::session_id": "s1", "team": "y"}) == []


async def test_memory_stays_one_batch_whatever_the_rows(database_url: str, database: Database) -> None:
    prompt = "x" * 2000
    with psycopg.connect(database_url) as conn:
        for function_name, first, count in (("small", 1, 300), ("large", 301, 2400)):
            # Bulk rows in SQL: ids in time order, each with a 2 KB input.
            conn.execute(
                "INSERT INTO chat_inferences (id, created_at, function_name, variant_name, episode_id, input, "
                "output, inference_params) "
                "SELECT lsd_uuid7_floor(now() + n * interval '1 ms'), now(), %s, 'a', gen_random_uuid(), "
                "jsonb_build_object('messages', jsonb_build_array(jsonb_build_object('role', 'user', 'content', "
                "%s || n))), '[]', '{}' FROM generate_series(%s::int, %s::int) n",
                (function_name, prompt, first, first + count - 1),
            )

    async def peak(function_name: str) -> tuple[int, int]:
        tracemalloc.start()
        try:
            size = rows_out = 0
            query = ExportQuery(function_name=function_name)
            async for chunk in stream_inferences(database, query, "parquet", batch_rows=100):
                size += len(chunk)
                rows_out += 1
            return tracemalloc.get_traced_memory()[1], size
        finally:
            tracemalloc.stop()

    small_peak, small_bytes = await peak("small")
    large_peak, large_bytes = await peak("large")
    assert large_bytes > 5 * small_bytes  # eight times the rows written...
    assert large_peak < 2 * small_peak  # ...in about the same memory: one batch of 100


def test_cli_usage_errors_name_the_option(database_url: str, tmp_path: Path) -> None:
    env = {"LSD_DATABASE_URL": database_url}
    done = run_lsd("export", "inferences", "--since", "yesterday", "--format", "csv", "--out", "-", env=env)
    assert done.returncode == 2 and "--since: invalid RFC 3339 timestamp" in done.stderr
    done = run_lsd("export", "inferences", "--format", "xlsx", "--out", str(tmp_path / "x"), env=env)
    assert done.returncode == 2 and "invalid choice" in done.stderr
    done = run_lsd("export", "inferences", "--tag", "novalue", "--format", "csv", "--out", "-", env=env)
    assert done.returncode == 2 and "--tag: expected KEY=VALUE" in done.stderr
