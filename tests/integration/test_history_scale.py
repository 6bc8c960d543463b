"""A page of list_inferences filtered or ordered by a metric reads about a page of rows, however much feedback the
metric has (EXPLAIN ANALYZE over 60k inferences with 66k feedback rows per metric), and answers exactly what
reading every feedback row would."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from lsd.ids import uuid7
from lsd.inference.listing import parse_list_request
from lsd.store.database import Database
from lsd.store.queries import QUERY_SETTINGS, Metric, list_inferences, list_statement, uuid7_floor_ms

INFERENCES = 60_000
DAYS = 5
LIMIT = 20
METRICS = {"score": Metric("score", "float", "inference"), "thumbs": Metric("thumbs", "boolean", "inference")}
FEEDBACK_TABLES = {"float_metric_feedback", "boolean_metric_feedback", "float_metric_latest", "boolean_metric_latest"}


def _load(conn: psycopg.Connection[Any]) -> None:
    rng = random.Random(7)
    now = datetime.now(tz=UTC)
    conn.execute("SELECT lsd_ensure_partitions(%s::date, %s)", ((now - timedelta(days=DAYS)).date(), DAYS + 1))
    made: list[tuple[UUID, datetime]] = []
    with conn.cursor() as cur:
        with cur.copy(
            "COPY chat_inferences (id, created_at, function_name, variant_name, episode_id, input, output, tags) "
            "FROM STDIN"
        ) as copy:
            for n in range(INFERENCES):
                at = now - timedelta(days=DAYS) * (1 - n / INFERENCES)
                id = uuid7(int(at.timestamp() * 1000))
                made.append((id, at))
                tags = '{"env": "prod", "rare": "yes"}' if n % 1000 == 0 else '{"env": "prod"}'
                copy.write_row((id, at, "f", "a", id, '{"messages": []}', "[]", tags))
        for table, value in (
            ("float_metric_feedback", lambda: round(rng.random(), 3)),
            ("boolean_metric_feedback", lambda: rng.random() < 0.5),
        ):
            metric = "score" if table.startswith("float") else "thumbs"
            with cur.copy(
                sql.SQL("COPY {} (id, created_at, target_id, target_level, metric_name, value) FROM STDIN").format(
                    sql.Identifier(table)
                )
            ) as copy:
                for id, at in made:
                    # Every inference gets a value, one in ten a second, later one that supersedes it.
                    for k in range(2 if rng.random() < 0.1 else 1):
                        later = at + timedelta(seconds=1 + k)
                        copy.write_row((uuid7(int(later.timestamp() * 1000)), later, id, "inference", metric, value()))
    conn.execute("ANALYZE")


@pytest.fixture(scope="module")
def loaded_url(pg: Any, template_db: str) -> Iterator[str]:
    """One database for the module: loading it takes most of the time. Each test computes its expected answer from
    the rows as they are, so the last test may change them."""
    name = pg.database_from(template_db)
    with psycopg.connect(pg.url(name), autocommit=True) as connection:
        _load(connection)
    yield pg.url(name)
    pg.drop_database(name)


@pytest.fixture
def conn(loaded_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(loaded_url, autocommit=True) as connection:
        yield connection


def _plan_and_ids(conn: psycopg.Connection[Any], body: dict[str, Any]) -> tuple[dict[str, Any], list[UUID]]:
    statement, params = list_statement(parse_list_request({"limit": LIMIT, **body}), METRICS)
    with conn.transaction():
        conn.execute(QUERY_SETTINGS)
        (plan,) = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + statement, params).fetchone()  # type: ignore[misc]
        ids = [row[1] for row in conn.execute(statement, params)]
    return plan[0]["Plan"], ids


def _rows_read(node: dict[str, Any], tables: set[str]) -> int:
    """Rows the plan's scans of `tables` produced, over all their loops."""
    here = round(node.get("Actual Rows", 0) * node.get("Actual Loops", 0)) if node.get("Relation Name") in tables else 0
    return here + sum(_rows_read(child, tables) for child in node.get("Plans", []))


def _inference_tables(conn: psycopg.Connection[Any]) -> set[str]:
    return {
        p
        for (p,) in conn.execute(
            "SELECT partition_name FROM lsd_partitions WHERE table_name IN ('chat_inferences', 'json_inferences')"
        )
    }


# The answer from every feedback row, as list_inferences computed it before migration 0009.
_LATEST = """
SELECT i.id, l.value FROM chat_inferences i
LEFT JOIN (SELECT DISTINCT ON (target_id) target_id, value FROM {table} WHERE metric_name = %s
           ORDER BY target_id, id DESC) l ON l.target_id = i.id
"""


def _expected(conn: psycopg.Connection[Any], table: str, metric: str, tail: str) -> list[UUID]:
    return [r[0] for r in conn.execute(_LATEST.format(table=table) + tail, (metric,))]


def test_a_metric_filter_reads_about_a_page(conn: psycopg.Connection[Any]) -> None:
    assert conn.execute("SELECT count(*) FROM float_metric_feedback").fetchone()[0] >= 50_000  # type: ignore[index]
    high = {"type": "float_metric", "metric_name": "score", "value": 0.5, "comparison_operator": ">"}
    plan, ids = _plan_and_ids(conn, {"filters": high})
    assert ids == _expected(
        conn, "float_metric_feedback", "score", f"WHERE l.value > 0.5 ORDER BY i.id DESC LIMIT {LIMIT}"
    )
    assert _rows_read(plan, FEEDBACK_TABLES) <= 10 * LIMIT
    assert _rows_read(plan, _inference_tables(conn)) <= 10 * LIMIT
    # The complement (no value, or not above 0.5) is bounded the same way.
    plan, ids = _plan_and_ids(conn, {"filters": {"type": "not", "child": high}})
    assert ids == _expected(
        conn,
        "float_metric_feedback",
        "score",
        f"WHERE NOT coalesce(l.value > 0.5, false) ORDER BY i.id DESC LIMIT {LIMIT}",
    )
    assert _rows_read(plan, FEEDBACK_TABLES) <= 10 * LIMIT


@pytest.mark.parametrize(
    ("metric", "table", "direction"),
    [
        ("score", "float_metric_feedback", "descending"),
        ("score", "float_metric_feedback", "ascending"),
        ("thumbs", "boolean_metric_feedback", "descending"),  # ties: by id, newest first
        ("thumbs", "boolean_metric_feedback", "ascending"),
    ],
)
def test_ordering_by_a_metric_reads_about_a_page(
    conn: psycopg.Connection[Any], metric: str, table: str, direction: str
) -> None:
    order = [{"by": "metric", "name": metric, "direction": direction}]
    plan, ids = _plan_and_ids(conn, {"order_by": order})
    sql_direction = "DESC" if direction == "descending" else "ASC"
    assert ids == _expected(
        conn, table, metric, f"ORDER BY l.value {sql_direction} NULLS LAST, i.id DESC LIMIT {LIMIT}"
    )
    assert _rows_read(plan, FEEDBACK_TABLES) <= 5 * LIMIT
    assert _rows_read(plan, _inference_tables(conn)) <= 5 * LIMIT


def test_ordering_by_a_metric_ends_with_the_inferences_without_a_value(conn: psycopg.Connection[Any]) -> None:
    newest = conn.execute("SELECT id FROM chat_inferences ORDER BY id DESC LIMIT 3").fetchall()
    conn.execute("DELETE FROM float_metric_latest WHERE target_id = ANY(%s)", ([r[0] for r in newest],))
    conn.execute("DELETE FROM float_metric_feedback WHERE target_id = ANY(%s)", ([r[0] for r in newest],))
    since = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(minutes=1)
    order = [{"by": "metric", "name": "score", "direction": "descending"}]
    _, ids = _plan_and_ids(conn, {"order_by": order, "since": since.isoformat()})
    bound = uuid7_floor_ms(int(since.timestamp() * 1000))
    tail = f"WHERE i.id >= '{bound}' ORDER BY l.value DESC NULLS LAST, i.id DESC LIMIT {LIMIT}"
    expected = _expected(conn, "float_metric_feedback", "score", tail)
    assert ids == expected and set(ids[-3:]) == {r[0] for r in newest}


@pytest.mark.parametrize(
    "body",
    [
        {"tags": {"env": "prod"}},  # every row: the newest rows fill the page
        {"tags": {"rare": "yes"}},  # one in 1000: read from the GIN index
        {"filters": {"type": "tag", "key": "env", "value": "dev", "comparison_operator": "!="}},
        {"tags": {"rare": "yes"}, "order_by": [{"by": "timestamp", "direction": "ascending"}]},
        {"tags": {"rare": "yes"}, "offset": 50},  # past the last match but ten
        {"tags": {"rare": "yes"}, "offset": 45, "limit": 10},  # a page that spans windows
        {"tags": {"nowhere": "x"}},  # no match: every window, then the rest of the history
        {  # bounded in time: the windows stop at the query's own bounds
            "tags": {"rare": "yes"},
            "since": (datetime.now(tz=UTC) - timedelta(days=3)).isoformat(),
            "until": (datetime.now(tz=UTC) - timedelta(days=1)).isoformat(),
        },
        {
            "tags": {"rare": "yes"},
            "order_by": [{"by": "timestamp", "direction": "ascending"}],
            "since": (datetime.now(tz=UTC) - timedelta(days=4)).isoformat(),
        },
    ],
)
async def test_tag_filters_answer_the_same_whether_common_or_rare(loaded_url: str, body: dict[str, Any]) -> None:
    query = parse_list_request({"limit": LIMIT, **body})
    with psycopg.connect(loaded_url, autocommit=True) as conn:
        expected = [r[1] for r in conn.execute(*list_statement(query, METRICS))]
    database = Database(loaded_url, min_size=1, max_size=1)
    await database.open()
    try:
        assert [r.id for r in await list_inferences(database, query, METRICS)] == expected
    finally:
        await database.close()
