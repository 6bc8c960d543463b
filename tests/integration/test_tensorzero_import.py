"""`lsd import tensorzero --from-postgres`: a TensorZero database (its 2026.x tables) copied into LSD's, read back
with SQL and list_inferences, a second run importing nothing, and the failures a user sees."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from lsd.ids import timestamp_of, uuid7
from lsd.store.local import free_port
from tests.conftest import PgCluster
from tests.support.gateway import in_process_gateway, run_lsd

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tensorzero_postgres.sql"
PASSWORD = "s3cret-tz-pw"  # the test cluster trusts local connections: a password in the URL is never checked

CONFIG = """
[models.echo]
routing = ["dummy"]
[models.echo.providers.dummy]
type = "dummy"
model_name = "echo"

[functions.chat]
type = "chat"
[functions.chat.variants.a]
type = "chat_completion"
model = "echo"

[functions.extract]
type = "json"
[functions.extract.variants.b]
type = "chat_completion"
model = "echo"
json_mode = "strict"

[metrics.thumbs_up]
type = "boolean"
optimize = "max"
level = "inference"

[metrics.score]
type = "float"
optimize = "max"
level = "episode"
"""


def ago(days: int, minutes: int = 0) -> uuid.UUID:
    """A UUIDv7 of `days` days (and `minutes`) before now."""
    at = datetime.now(UTC) - timedelta(days=days, minutes=minutes)
    return uuid7(int(at.timestamp() * 1000))


@dataclass(frozen=True)
class Source:
    url: str  # with PASSWORD in it, as a user would pass it
    chat_old: uuid.UUID
    chat_new: uuid.UUID
    json_id: uuid.UUID
    episode: uuid.UUID
    model_ids: tuple[uuid.UUID, ...]
    feedback: dict[str, uuid.UUID]


def with_password(url: str) -> str:
    params = conninfo_to_dict(url)
    params["password"] = PASSWORD
    return make_conninfo("", **params)


def insert(conn: psycopg.Connection[Any], table: str, **values: Any) -> None:
    query = sql.SQL("INSERT INTO tensorzero.{} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)),
    )
    conn.execute(query, list(values.values()))


def fill(conn: psycopg.Connection[Any]) -> Source:
    """Two chat inferences (one 10 days old, with tools), a json inference, their model inferences (one retried),
    one row of each feedback table and a row whose id is not a UUIDv7."""
    episode = ago(10, 1)
    chat_old, chat_new, json_id = ago(10), ago(0, 5), ago(3)
    chat_input = {"system": "be brief", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    for inference_id, tools in ((chat_old, True), (chat_new, False)):
        created = timestamp_of(inference_id)
        insert(
            conn,
            "chat_inferences",
            id=inference_id,
            function_name="chat",
            variant_name="a",
            episode_id=episode,
            processing_time_ms=120,
            ttft_ms=None,
            tags=Jsonb({"user": "ann", "tensorzero::api_key_public_id": "abcdefghijkl"}),
            created_at=created,
        )
        insert(
            conn,
            "chat_inference_data",
            id=inference_id,
            input=Jsonb(chat_input),
            output=Jsonb([{"type": "text", "text": "hello"}]),
            inference_params=Jsonb({"chat_completion": {"temperature": 0.5}}),
            extra_body=Jsonb([{"pointer": "/x", "value": 1}] if tools else []),
            dynamic_tools=Jsonb(
                [{"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}, "strict": False}]
                if tools
                else []
            ),
            allowed_tools=Jsonb({"tools": ["lookup"], "choice": "explicit"}) if tools else None,
            tool_choice=Jsonb("auto") if tools else None,
            parallel_tool_calls=True if tools else None,
            created_at=created,
        )
    created = timestamp_of(json_id)
    insert(
        conn,
        "json_inferences",
        id=json_id,
        function_name="extract",
        variant_name="b",
        episode_id=episode,
        processing_time_ms=80,
        ttft_ms=30,
        tags=Jsonb({}),
        created_at=created,
    )
    insert(
        conn,
        "json_inference_data",
        id=json_id,
        input=Jsonb({"messages": [{"role": "user", "content": [{"type": "text", "text": "extract"}]}]}),
        output=Jsonb({"raw": '{"answer": 1}', "parsed": {"answer": 1}}),
        output_schema=Jsonb({"type": "object"}),
        inference_params=Jsonb({"chat_completion": {"json_mode": "strict"}}),
        auxiliary_content=Jsonb({}),
        created_at=created,
    )
    model_ids = []
    # chat_old: one call; chat_new: a failed-over first call then the answer; json: one streamed call.
    for inference_id, offset_ms, tokens, cost, finish, ttft in (
        (chat_old, 5, (10, 5), Decimal("0.000123"), "stop", None),
        (chat_new, 5, (7, 0), None, "length", None),
        (chat_new, 9, (8, 3), Decimal("0.000002"), "stop", None),
        (json_id, 5, (4, 6), Decimal("0.5"), "stop", 30),
    ):
        model_id = uuid7(int(timestamp_of(inference_id).timestamp() * 1000) + offset_ms)
        model_ids.append(model_id)
        created = timestamp_of(model_id)
        insert(
            conn,
            "model_inferences",
            id=model_id,
            inference_id=inference_id,
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            response_time_ms=100,
            model_name="echo",
            model_provider_name="dummy",
            ttft_ms=ttft,
            cached=False,
            finish_reason=finish,
            created_at=created,
            cost=cost,
        )
        insert(
            conn,
            "model_inference_data",
            id=model_id,
            raw_request=f'{{"request": "{model_id}"}}',
            raw_response=f'{{"response": "{model_id}"}}',
            system="be brief",
            input_messages=Jsonb([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
            output=Jsonb([{"type": "text", "text": "hello"}]),
            created_at=created,
        )
    feedback = {"boolean": ago(2), "float": ago(1), "comment": ago(0, 2), "demonstration": ago(0, 1)}
    insert(
        conn,
        "boolean_metric_feedback",
        id=feedback["boolean"],
        target_id=chat_old,
        metric_name="thumbs_up",
        value=True,
        tags=Jsonb({"by": "ann"}),
    )
    insert(conn, "float_metric_feedback", id=feedback["float"], target_id=episode, metric_name="score", value=0.75)
    insert(conn, "comment_feedback", id=feedback["comment"], target_id=episode, target_type="episode", value="nice")
    insert(
        conn,
        "demonstration_feedback",
        id=feedback["demonstration"],
        inference_id=chat_old,
        value=Jsonb([{"type": "text", "text": "hello there"}]),
    )
    insert(  # a UUIDv4 id: LSD's partitions come from the id's time, which a v4 does not have
        conn, "boolean_metric_feedback", id=uuid.uuid4(), target_id=chat_old, metric_name="thumbs_up", value=False
    )
    return Source("", chat_old, chat_new, json_id, episode, tuple(model_ids), feedback)


@pytest.fixture
def source(pg: PgCluster) -> Iterator[Source]:
    """A database holding TensorZero's tables and a few rows."""
    name = pg.create_database()
    url = pg.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FIXTURE.read_text())
        filled = fill(conn)
    yield dataclasses.replace(filled, url=with_password(url))
    pg.drop_database(name)


def lsd_import(database_url: str, *args: str) -> Any:
    return run_lsd("import", "tensorzero", *args, env={"LSD_DATABASE_URL": database_url})


def fetch(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


async def test_import_copies_every_table_and_a_rerun_imports_nothing(source: Source, database_url: str) -> None:
    done = lsd_import(database_url, "--from-postgres", source.url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert PASSWORD not in out + done.stderr
    for table, n in (
        ("chat_inferences", 2),
        ("chat_inference_data", 2),
        ("json_inferences", 1),
        ("json_inference_data", 1),
        ("model_inferences", 4),
        ("model_inference_data", 4),
        ("boolean_metric_feedback", 1),
        ("float_metric_feedback", 1),
        ("comment_feedback", 1),
        ("demonstration_feedback", 1),
    ):
        assert any(line.split()[:3] == [table, "imported", f"{n},"] for line in out.splitlines()), (table, out)
    assert "skipped 1 rows of tensorzero.boolean_metric_feedback: id is not a UUIDv7" in out

    # The old chat inference: its payload, tools, usage summed from its model inference, time from its id.
    (chat,) = fetch(
        database_url,
        "SELECT created_at, episode_id, input, output, tool_params, inference_params, tags, input_tokens,"
        " output_tokens, cost, finish_reason, api_key_public_id, config_hash FROM chat_inferences WHERE id = %s",
        source.chat_old,
    )
    assert chat[0] == timestamp_of(source.chat_old)
    assert chat[1] == source.episode
    assert chat[2]["system"] == "be brief"
    assert chat[3] == [{"type": "text", "text": "hello"}]
    assert chat[4]["tools_available"][0]["name"] == "get_weather"
    assert chat[4]["allowed_tools"] == ["lookup"]
    assert chat[4]["tool_choice"] == "auto"
    assert chat[4]["parallel_tool_calls"] is True
    assert chat[5] == {"chat_completion": {"temperature": 0.5}}
    assert chat[6]["user"] == "ann"
    assert chat[7:12] == (10, 5, Decimal("0.000123"), "stop", "abcdefghijkl")
    assert chat[12] is None
    (data,) = fetch(
        database_url,
        "SELECT extra_body, rendered_input, original_response FROM chat_inference_data WHERE inference_id = %s",
        source.chat_old,
    )
    assert data[0] == [{"pointer": "/x", "value": 1}]
    assert data[1]["system"] == "be brief"
    assert data[2] == f'{{"response": "{source.model_ids[0]}"}}'

    # The retried one: tokens of both calls, the last call's finish reason; no tools means no tool_params.
    (retried,) = fetch(
        database_url,
        "SELECT input_tokens, output_tokens, cost, finish_reason, tool_params FROM chat_inferences WHERE id = %s",
        source.chat_new,
    )
    assert retried == (15, 3, Decimal("0.000002"), "stop", None)
    attempts = fetch(
        database_url,
        "SELECT attempt, inference_kind, function_name, variant_name, provider_type, status, latency_ms"
        " FROM model_inferences WHERE inference_id = %s ORDER BY attempt",
        source.chat_new,
    )
    assert attempts == [(1, "chat", "chat", "a", "unknown", "ok", 100), (2, "chat", "chat", "a", "unknown", "ok", 100)]
    (json_row,) = fetch(
        database_url, "SELECT output, output_schema, ttft_ms FROM json_inferences WHERE id = %s", source.json_id
    )
    assert json_row == ({"raw": '{"answer": 1}', "parsed": {"answer": 1}}, {"type": "object"}, 30)
    (json_call,) = fetch(
        database_url,
        "SELECT m.inference_kind, m.streamed, d.raw_request FROM model_inferences m"
        " JOIN model_inference_data d ON d.model_inference_id = m.id WHERE m.inference_id = %s",
        source.json_id,
    )
    assert json_call == ("json", True, f'{{"request": "{source.model_ids[3]}"}}')

    # Feedback: the level is told from whether the target is an inference.
    assert fetch(database_url, "SELECT target_level, value, tags FROM boolean_metric_feedback") == [
        ("inference", True, {"by": "ann"})
    ]
    assert fetch(database_url, "SELECT target_id, target_level, value FROM float_metric_feedback") == [
        (source.episode, "episode", 0.75)
    ]
    assert fetch(database_url, "SELECT target_level, value FROM comment_feedback") == [("episode", "nice")]
    assert fetch(database_url, "SELECT inference_id, value FROM demonstration_feedback") == [
        (source.chat_old, [{"type": "text", "text": "hello there"}])
    ]
    # Every row sits in the partition of its id's day (10 days ago had none before the import).
    assert fetch(
        database_url,
        "SELECT count(*) FROM chat_inferences WHERE id >= lsd_uuid7_floor(%s) AND created_at = lsd_uuid7_time(id)",
        timestamp_of(source.chat_old) - timedelta(seconds=1),
    ) == [(2,)]

    # list_inferences through the gateway returns the history.
    async with in_process_gateway(CONFIG, database_url) as base, httpx.AsyncClient(base_url=base) as client:
        listed = (await client.post("/v1/inferences/list_inferences", json={"function_name": "chat"})).json()
        assert [i["inference_id"] for i in listed["inferences"]] == [str(source.chat_new), str(source.chat_old)]
        old = listed["inferences"][1]
        assert old["episode_id"] == str(source.episode)
        assert old["output"] == [{"type": "text", "text": "hello"}]
        assert old["allowed_tools"] == ["lookup"]
        got = (await client.post("/v1/inferences/get_inferences", json={"ids": [str(source.json_id)]})).json()
        assert got["inferences"][0]["output"]["parsed"] == {"answer": 1}

    again = lsd_import(database_url, "--from-postgres", source.url)
    assert again.returncode == 0, again.stderr
    assert "chat_inferences" in again.stdout
    for line in again.stdout.splitlines()[1:]:
        if "imported" in line:
            assert " imported 0," in line, again.stdout
    assert fetch(database_url, "SELECT count(*) FROM model_inferences") == [(4,)]


def test_since_and_dry_run(source: Source, database_url: str) -> None:
    dry = lsd_import(database_url, "--from-postgres", source.url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout
    assert any(line.split() == ["chat_inferences", "would", "import", "2"] for line in dry.stdout.splitlines())
    assert fetch(database_url, "SELECT count(*) FROM chat_inferences") == [(0,)]

    since = (datetime.now(UTC) - timedelta(days=5)).date().isoformat()
    done = lsd_import(database_url, "--from-postgres", source.url, "--since", since)
    assert done.returncode == 0, done.stderr
    assert fetch(database_url, "SELECT id FROM chat_inferences") == [(source.chat_new,)]
    assert fetch(database_url, "SELECT id FROM json_inferences") == [(source.json_id,)]
    # Later, the whole history: only the older rows are new.
    done = lsd_import(database_url, "--from-postgres", source.url)
    assert "chat_inferences" in done.stdout
    assert any(line.split()[:3] == ["chat_inferences", "imported", "1,"] for line in done.stdout.splitlines())


def test_unreachable_and_unrecognised_sources(database_url: str) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://tz:{PASSWORD}@127.0.0.1:{port}/tensorzero?connect_timeout=2"
    started = time.monotonic()
    failed = lsd_import(database_url, "--from-postgres", url)
    assert failed.returncode == 3
    assert "lsd: cannot connect to the TensorZero database 127.0.0.1:" in failed.stderr
    assert PASSWORD not in failed.stdout + failed.stderr
    assert time.monotonic() - started < 30

    # LSD's own database is PostgreSQL, but holds no TensorZero tables.
    wrong = lsd_import(database_url, "--from-postgres", with_password(database_url))
    assert wrong.returncode == 2
    assert "no TensorZero tables found" in wrong.stderr
    assert PASSWORD not in wrong.stdout + wrong.stderr


def test_lsd_database_not_migrated(source: Source, empty_database_url: str) -> None:
    failed = lsd_import(empty_database_url, "--from-postgres", source.url)
    assert failed.returncode == 3
    assert "lsd migrate" in failed.stderr
