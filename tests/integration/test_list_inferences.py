"""list_inferences / get_inferences over HTTP: TensorZero's shapes, filters, stable pages, pruned partitions."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from lsd.api import inferences
from lsd.api.errors import handle_lsd_error, handle_not_found
from lsd.config import parse
from lsd.errors import LsdError
from lsd.ids import timestamp_of, uuid7
from lsd.inference.listing import parse_get_request, parse_list_request
from lsd.store.database import Database
from lsd.store.local import free_port
from lsd.store.queries import list_statement
from tests.support import rows

CONFIG = """
[metrics.configured_score]
type = "float"
optimize = "max"
level = "inference"
"""


@contextlib.asynccontextmanager
async def serve_listing(database_url: str) -> AsyncIterator[str]:
    """The two handlers in a test-local app (the real route table gains them when merged)."""
    config = parse(CONFIG, base_dir=Path("."))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        database = Database(database_url, min_size=1, max_size=4)
        await database.open()
        try:
            yield {"services": SimpleNamespace(config=config, database=database)}  # the two services these use
        finally:
            await database.close()

    app = Starlette(
        routes=[
            Route("/v1/inferences/list_inferences", inferences.list_inferences, methods=["POST"]),
            Route("/v1/inferences/get_inferences", inferences.get_inferences, methods=["POST"]),
        ],
        lifespan=lifespan,
        exception_handlers={LsdError: handle_lsd_error, HTTPException: handle_not_found},
    )
    hconfig = HypercornConfig()
    port = free_port()
    hconfig.bind = [f"127.0.0.1:{port}"]
    hconfig.accesslog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, hconfig, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                await client.post(f"{base}/v1/inferences/get_inferences", json={"ids": []})
                break
            await asyncio.sleep(0.02)
    try:
        yield base
    finally:
        stop.set()
        await task


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_listing(database_url) as base, httpx.AsyncClient(base_url=base) as http:
        yield http


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


async def list_ids(client: httpx.AsyncClient, **body: Any) -> list[str]:
    r = await client.post("/v1/inferences/list_inferences", json=body)
    assert r.status_code == 200, r.text
    return [i["inference_id"] for i in r.json()["inferences"]]


def ago(minutes: float) -> UUID:
    return uuid7(rows.ms_of(rows.now() - timedelta(minutes=minutes)))


async def test_shapes_and_default_order(client: httpx.AsyncClient, conn: Any) -> None:
    episode = uuid7()
    chat = rows.inference(conn, id=ago(3), episode_id=episode, tags={"user": "ann"}, extra_body=[{"pointer": "/x"}])
    json = rows.inference(conn, kind="json", function_name="extract", id=ago(2), episode_id=episode)
    r = await client.post("/v1/inferences/list_inferences", json={})
    assert r.status_code == 200
    body = r.json()
    assert [i["inference_id"] for i in body["inferences"]] == [str(json), str(chat)]  # most recent first
    first, second = body["inferences"]
    assert first["type"] == "json" and first["output"] == {"raw": '{"a":1}', "parsed": {"a": 1}}
    assert "output_schema" in first and first["dispreferred_outputs"] == []
    assert second == {
        "type": "chat",
        "function_name": "f",
        "variant_name": "a",
        "input": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]},
        "output": [{"type": "text", "text": "hi"}],
        "dispreferred_outputs": [],
        "timestamp": timestamp_of(chat).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "episode_id": str(episode),
        "inference_id": str(chat),
        "tags": {"user": "ann"},
        "extra_body": [{"pointer": "/x"}],
        "inference_params": {"chat_completion": {}},
        "processing_time_ms": 100,
        "ttft_ms": None,
        "additional_tools": None,
        "allowed_tools": None,
        "tool_choice": None,
        "parallel_tool_calls": None,
        "provider_tools": [],
    }
    assert body["next_cursor"]
    assert await list_ids(client, function_name="extract") == [str(json)]
    assert await list_ids(client, function_name="f", variant_name="b") == []
    assert await list_ids(client, episode_id=str(episode), limit=1, offset=1) == [str(chat)]
    assert await list_ids(client, order_by=[{"by": "timestamp", "direction": "ascending"}]) == [str(chat), str(json)]
    # LSD's include_usage: each inference's tokens and cost, without every attempt's payloads; TensorZero's shape
    # (above) has no `usage` unless asked
    usage = {"input_tokens": 10, "output_tokens": 5, "cost": 0.25}
    r = await client.post("/v1/inferences/list_inferences", json={"include_usage": True})
    assert [i["usage"] for i in r.json()["inferences"]] == [usage, usage]
    r = await client.post("/v1/inferences/get_inferences", json={"ids": [str(chat)], "include_usage": True})
    assert r.json()["inferences"][0]["usage"] == usage
    bad = await client.post("/v1/inferences/list_inferences", json={"include_usage": "yes"})
    assert bad.status_code == 400 and bad.json()["field"] == "include_usage"


async def test_tags_time_and_model_filters(client: httpx.AsyncClient, conn: Any) -> None:
    old = rows.inference(conn, id=uuid7(rows.ms_of(rows.now() - timedelta(days=1))), tags={"env": "prod"})
    a = rows.inference(conn, id=ago(30), tags={"env": "prod", "team": "x"})
    b = rows.inference(conn, id=ago(20), tags={"env": "dev"})
    c = rows.inference(conn, id=ago(10))
    rows.attempt(conn, a, model_name="gpt", status="error")
    rows.attempt(conn, a, model_name="claude", attempt_number=2)
    rows.attempt(conn, b, model_name="gpt")
    assert await list_ids(client, tags={"env": "prod"}) == [str(a), str(old)]
    assert await list_ids(client, tags={"env": "prod", "team": "x"}) == [str(a)]
    tag_ne = {"type": "tag", "key": "env", "value": "prod", "comparison_operator": "!="}
    assert await list_ids(client, filters=tag_ne) == [str(b)]
    since = (rows.now() - timedelta(minutes=25)).isoformat()
    assert await list_ids(client, since=since) == [str(c), str(b)]
    assert await list_ids(client, since=since, until=(rows.now() - timedelta(minutes=15)).isoformat()) == [str(b)]
    at_b = timestamp_of(b).isoformat()
    for op, expected in (
        ("<", [a, old]),
        ("<=", [b, a, old]),
        ("=", [b]),
        (">", [c]),
        (">=", [c, b]),
        ("!=", [c, a, old]),
    ):
        time_filter = {"type": "time", "time": at_b, "comparison_operator": op}
        assert await list_ids(client, filters=time_filter) == [str(i) for i in expected], op
    # The model that produced the output, not one that failed on the way.
    assert await list_ids(client, model_name="gpt") == [str(b)]
    assert await list_ids(client, model_name="claude") == [str(a)]
    either = {
        "type": "or",
        "children": [
            {"type": "tag", "key": "team", "value": "x", "comparison_operator": "="},
            {"type": "not", "child": {"type": "time", "time": at_b, "comparison_operator": "<="}},
        ],
    }
    assert await list_ids(client, filters=either) == [str(c), str(a)]
    assert await list_ids(client, filters={"type": "and", "children": []}) == [str(c), str(b), str(a), str(old)]


async def test_metric_filters_and_order(client: httpx.AsyncClient, conn: Any) -> None:
    episode = uuid7()
    a = rows.inference(conn, id=ago(4), episode_id=episode)
    b = rows.inference(conn, id=ago(3))
    c = rows.inference(conn, id=ago(2))
    rows.feedback(conn, a, "thumbs", False)
    rows.feedback(conn, a, "thumbs", True)  # the latest value counts
    rows.feedback(conn, b, "thumbs", False)
    rows.feedback(conn, a, "score", 0.5)
    rows.feedback(conn, c, "score", 2.0)
    rows.feedback(conn, episode, "solved", True, level="episode")
    thumbs_up = {"type": "boolean_metric", "metric_name": "thumbs", "value": True}
    assert await list_ids(client, filters=thumbs_up) == [str(a)]
    assert await list_ids(client, filters={"type": "not", "child": thumbs_up}) == [str(c), str(b)]
    high = {"type": "float_metric", "metric_name": "score", "value": 1, "comparison_operator": ">"}
    assert await list_ids(client, filters=high) == [str(c)]
    solved = {"type": "boolean_metric", "metric_name": "solved", "value": True}
    assert await list_ids(client, filters=solved) == [str(a)]
    by_score = [{"by": "metric", "name": "score", "direction": "descending"}]
    assert await list_ids(client, order_by=by_score) == [str(c), str(a), str(b)]  # no value: last
    by_score[0]["direction"] = "ascending"
    assert await list_ids(client, order_by=by_score) == [str(a), str(c), str(b)]
    configured = {"type": "float_metric", "metric_name": "configured_score", "value": 1, "comparison_operator": "<"}
    assert await list_ids(client, filters=configured) == []  # configured, no feedback yet: a valid, empty answer


async def test_demonstrations(client: httpx.AsyncClient, conn: Any) -> None:
    a = rows.inference(conn, id=ago(3))
    b = rows.inference(conn, id=ago(2))
    rows.demonstration(conn, a, [{"type": "text", "text": "first"}])
    rows.demonstration(conn, a, [{"type": "text", "text": "better"}])
    r = await client.post("/v1/inferences/list_inferences", json={"output_source": "demonstration"})
    (only,) = r.json()["inferences"]
    assert only["inference_id"] == str(a)
    assert only["output"] == [{"type": "text", "text": "better"}]
    assert only["dispreferred_outputs"] == [[{"type": "text", "text": "hi"}]]
    has = {"type": "demonstration_feedback", "has_demonstration": False}
    assert await list_ids(client, filters=has) == [str(b)]


async def test_cursor_pages_stay_stable_while_rows_arrive(client: httpx.AsyncClient, conn: Any) -> None:
    made = [rows.inference(conn, id=ago(60 - i)) for i in range(7)]
    seen: list[str] = []
    body: dict[str, Any] = {"limit": 3}
    while True:
        r = await client.post("/v1/inferences/list_inferences", json=body)
        page = r.json()
        seen.extend(i["inference_id"] for i in page["inferences"])
        rows.inference(conn)  # a new row arrives between pages: it must not shift the next page
        if len(page["inferences"]) < 3:
            break
        body = {"limit": 3, "cursor": page["next_cursor"]}
    assert seen == [str(i) for i in reversed(made)]
    # Ascending: follow new rows as they arrive.
    ascending = [{"by": "timestamp", "direction": "ascending"}]
    r = await client.post("/v1/inferences/list_inferences", json={"limit": 100, "order_by": ascending})
    cursor = r.json()["next_cursor"]
    newest = rows.inference(conn)
    r = await client.post("/v1/inferences/list_inferences", json={"cursor": cursor, "order_by": ascending})
    assert [i["inference_id"] for i in r.json()["inferences"]] == [str(newest)]
    # TensorZero's before/after: both answer most recent first.
    assert await list_ids(client, before=str(made[3]), limit=2) == [str(made[2]), str(made[1])]
    assert await list_ids(client, after=str(made[3]), limit=2) == [str(made[5]), str(made[4])]


async def test_get_inferences(client: httpx.AsyncClient, conn: Any) -> None:
    a = rows.inference(conn, id=uuid7(rows.ms_of(rows.now() - timedelta(days=1))))
    b = rows.inference(conn, kind="json", function_name="extract")
    rows.attempt(conn, a, status="error", model_name="gpt")
    rows.attempt(conn, a, attempt_number=2)
    ids = [str(b), str(uuid7()), str(a)]
    r = await client.post("/v1/inferences/get_inferences", json={"ids": ids})
    assert r.status_code == 200
    assert [i["inference_id"] for i in r.json()["inferences"]] == [str(b), str(a)]
    assert "model_inferences" not in r.json()["inferences"][0]
    r = await client.post("/v1/inferences/get_inferences", json={"ids": [str(a)], "include_model_inferences": True})
    (found,) = r.json()["inferences"]
    attempts = found["model_inferences"]
    assert [(m["attempt"], m["model_name"], m["status"]) for m in attempts] == [(1, "gpt", "error"), (2, "m", "ok")]
    assert attempts[1]["raw_request"] == "req" and attempts[1]["cost"] == 0.5 and attempts[0]["error"] == "boom"
    r = await client.post("/v1/inferences/get_inferences", json={"ids": [str(a)], "function_name": "other"})
    assert r.json() == {"inferences": []}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit": 1001}, "limit"),
        ({"nope": 1}, "nope"),
        ({"episode_id": "not-a-uuid"}, "episode_id"),
        ({"before": str(uuid7()), "after": str(uuid7())}, "after"),
        ({"before": str(uuid7()), "offset": 2}, "offset"),
        ({"cursor": "garbage"}, "cursor"),
        ({"output_source": "elsewhere"}, "output_source"),
        ({"since": "2024-01-01T00:00:00"}, "since"),
        (
            {"filters": {"type": "and", "children": [{"type": "tag", "key": "k", "comparison_operator": "="}]}},
            "filters.children[0].value",
        ),
        (
            {"filters": {"type": "not", "child": {"type": "boolean_metric", "metric_name": "nope", "value": True}}},
            "filters.child.metric_name",
        ),
        ({"filters": {"type": "float_metric", "metric_name": "thumbs", "value": 1, "comparison_operator": "<"}}, None),
        ({"filters": {"type": "tag", "key": "k", "value": "v", "comparison_operator": "=", "x": 1}}, "filters.x"),
        ({"order_by": [{"by": "metric", "name": "unknown", "direction": "ascending"}]}, "order_by[0].name"),
        ({"order_by": [{"by": "metric", "direction": "ascending"}]}, "order_by[0].name"),
        ({"search_query_experimental": "x"}, "search_query_experimental"),
    ],
)
async def test_invalid_list_requests(client: httpx.AsyncClient, conn: Any, body: Any, field: str | None) -> None:
    rows.feedback(conn, uuid7(), "thumbs", True)
    r = await client.post("/v1/inferences/list_inferences", json=body)
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["error_code"] == "invalid_request"
    assert error["field"] == (field or "filters.metric_name"), error


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "ids"), ({"ids": ["x"]}, "ids[0]"), ({"ids": [str(uuid7())] * 1001}, "ids"), ({"ids": [], "y": 1}, "y")],
)
async def test_invalid_get_requests(client: httpx.AsyncClient, body: Any, field: str) -> None:
    r = await client.post("/v1/inferences/get_inferences", json=body)
    assert r.status_code == 400
    assert r.json()["field"] == field


def scanned_partitions(conn: Any, statement: Any, params: Any) -> set[str]:
    plan = "\n".join(r[0] for r in conn.execute(psycopg.sql.SQL("EXPLAIN ") + statement, params))
    return set(re.findall(r"\b(?:chat|json)_inferences_p\d{8}\b", plan))


def test_time_range_and_ids_touch_only_their_partitions(conn: Any) -> None:
    midnight = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = midnight.strftime("%Y%m%d")
    day = {"since": midnight.isoformat(), "until": (midnight + timedelta(days=1)).isoformat(), "function_name": "f"}
    statement, params = list_statement(parse_list_request(day), {})
    assert scanned_partitions(conn, statement, params) == {f"chat_inferences_p{today}", f"json_inferences_p{today}"}
    # Time filters inside the tree prune as well.
    in_tree = {
        "type": "and",
        "children": [
            {"type": "time", "time": day["since"], "comparison_operator": ">="},
            {"type": "time", "time": day["until"], "comparison_operator": "<"},
        ],
    }
    statement, params = list_statement(parse_list_request({"filters": in_tree}), {})
    assert scanned_partitions(conn, statement, params) == {f"chat_inferences_p{today}", f"json_inferences_p{today}"}
    yesterday = uuid7(rows.ms_of(rows.now() - timedelta(days=1)))
    statement, params = list_statement(parse_get_request({"ids": [str(yesterday)]}), {})
    other = timestamp_of(yesterday).strftime("%Y%m%d")
    assert scanned_partitions(conn, statement, params) == {f"chat_inferences_p{other}", f"json_inferences_p{other}"}
