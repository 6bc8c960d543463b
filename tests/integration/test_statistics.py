"""Statistics stay exact under incremental refresh: late rows, out-of-order commits, feedback before inferences."""

from __future__ import annotations

import random
import re
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from lsd.ids import uuid7
from lsd.store import migrate
from lsd.store.database import Database
from lsd.store.statistics import STATISTICS_LOCK_KEY, RefreshResult, refresh_statistics, refresh_statistics_sync
from tests.support import rows

# Each statistics table, and the same numbers computed from scratch over the base tables.
_INFERENCES = """
    SELECT function_name, variant_name, created_at, input_tokens, output_tokens, cost, processing_time_ms
    FROM chat_inferences
    UNION ALL
    SELECT function_name, variant_name, created_at, input_tokens, output_tokens, cost, processing_time_ms
    FROM json_inferences"""
_FEEDBACK = """
    SELECT target_id, target_level, metric_name, CASE WHEN value THEN 1 ELSE 0 END::numeric AS v
    FROM boolean_metric_feedback
    UNION ALL
    SELECT target_id, target_level, metric_name, value::numeric FROM float_metric_feedback"""
FROM_SCRATCH = {
    "inference_by_function_statistics": f"""
        SELECT function_name, variant_name, bucket_start, sum(n)::bigint, sum(failed)::bigint, sum(it)::bigint,
               sum(ot)::bigint, sum(cost), sum(pt)::bigint, sum(ptc)::bigint, sum(priced)::bigint
        FROM (
            SELECT function_name, variant_name, date_trunc('hour', created_at, 'UTC') AS bucket_start, 1 AS n,
                   0 AS failed, coalesce(input_tokens, 0) AS it, coalesce(output_tokens, 0) AS ot,
                   coalesce(cost, 0) AS cost, coalesce(processing_time_ms, 0) AS pt,
                   (processing_time_ms IS NOT NULL)::int AS ptc, (cost IS NOT NULL)::int AS priced
            FROM ({_INFERENCES}) i
            UNION ALL
            SELECT function_name, variant_name, date_trunc('hour', created_at, 'UTC'), 0, 1, 0, 0, 0, 0, 0, 0
            FROM model_inferences
            WHERE status <> 'ok' AND function_name IS NOT NULL AND variant_name IS NOT NULL
        ) x
        GROUP BY 1, 2, 3""",
    "variant_statistics": f"""
        SELECT function_name, variant_name, count(*), min(created_at), max(created_at)
        FROM ({_INFERENCES}) i GROUP BY 1, 2""",
    "variant_metric_statistics": f"""
        SELECT function_name, variant_name, metric_name, count(*), sum(v), sum(v * v)
        FROM (
            SELECT i.function_name, i.variant_name, f.metric_name, f.v
            FROM ({_FEEDBACK}) f
            JOIN (SELECT id, function_name, variant_name FROM chat_inferences
                  UNION ALL SELECT id, function_name, variant_name FROM json_inferences) i ON i.id = f.target_id
            WHERE f.target_level = 'inference'
            UNION ALL
            SELECT p.function_name, p.variant_name, f.metric_name, f.v
            FROM ({_FEEDBACK}) f
            JOIN (SELECT episode_id, function_name, variant_name FROM chat_inferences
                  UNION SELECT episode_id, function_name, variant_name FROM json_inferences) p
              ON p.episode_id = f.target_id
            WHERE f.target_level = 'episode'
        ) x
        GROUP BY 1, 2, 3""",
    "statistics_feedback_by_target": f"""
        SELECT target_id, target_level, metric_name, count(*), sum(v), sum(v * v)
        FROM ({_FEEDBACK}) f WHERE target_level IN ('inference', 'episode') GROUP BY 1, 2, 3""",
    "session_statistics": """
        SELECT tags ->> 'lsd::session_id', max(lsd_session_tag(tags, 'lsd::parent_session_id')), min(created_at),
               max(created_at),
               count(*) FILTER (WHERE answered), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
               coalesce(sum(cost), 0), count(cost), coalesce(sum(processing_time_ms), 0),
               coalesce(array_agg(DISTINCT lsd_session_model(function_name, variant_name)
                                  ORDER BY lsd_session_model(function_name, variant_name)) FILTER (WHERE answered),
                        '{}'),
               coalesce(array_agg(DISTINCT api_key_public_id ORDER BY api_key_public_id)
                        FILTER (WHERE api_key_public_id IS NOT NULL), '{}'),
               coalesce(array_agg(DISTINCT tags ->> 'user' ORDER BY tags ->> 'user')
                        FILTER (WHERE tags ? 'user'), '{}'),
               count(*) FILTER (WHERE NOT answered OR tags ? 'lsd::stream_error')
        FROM (SELECT tags, function_name, variant_name, created_at, input_tokens, output_tokens, cost,
                     processing_time_ms, api_key_public_id, true AS answered FROM chat_inferences
              UNION ALL
              SELECT tags, function_name, variant_name, created_at, input_tokens, output_tokens, cost,
                     processing_time_ms, api_key_public_id, true FROM json_inferences
              UNION ALL  -- an unanswered inference: its first attempt, which holds its tags
              SELECT tags, NULL, NULL, created_at, NULL, NULL, NULL, NULL, tags ->> 'tensorzero::api_key_public_id',
                     false FROM model_inferences WHERE tags IS NOT NULL AND attempt = 1) i
        WHERE length(tags ->> 'lsd::session_id') <= 512 GROUP BY 1""",
    "model_provider_statistics": """
        SELECT model_name, model_provider_name, date_trunc('hour', created_at, 'UTC'), count(*),
               count(*) FILTER (WHERE status <> 'ok'), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
               coalesce(sum(cost), 0), coalesce(sum(latency_ms), 0), count(latency_ms), count(cost)
        FROM model_inferences GROUP BY 1, 2, 3""",
    "model_latency_histogram_minute": """
        SELECT model_name, model_provider_name, date_trunc('minute', created_at, 'UTC'), lsd_latency_bucket(latency_ms),
               count(*)
        FROM model_inferences WHERE status = 'ok' AND latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4""",
    "model_latency_histogram_hour": """
        SELECT model_name, model_provider_name, date_trunc('hour', created_at, 'UTC'), lsd_latency_bucket(latency_ms),
               count(*)
        FROM model_inferences WHERE status = 'ok' AND latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4""",
    "model_ttft_histogram_minute": """
        SELECT model_name, model_provider_name, date_trunc('minute', created_at, 'UTC'), lsd_latency_bucket(ttft_ms),
               count(*)
        FROM model_inferences WHERE status = 'ok' AND ttft_ms IS NOT NULL GROUP BY 1, 2, 3, 4""",
    "model_ttft_histogram_hour": """
        SELECT model_name, model_provider_name, date_trunc('hour', created_at, 'UTC'), lsd_latency_bucket(ttft_ms),
               count(*)
        FROM model_inferences WHERE status = 'ok' AND ttft_ms IS NOT NULL GROUP BY 1, 2, 3, 4""",
}


def refresh(conn: psycopg.Connection[Any]) -> RefreshResult:
    result = refresh_statistics_sync(conn)
    assert result is not None
    return result


def assert_exact(conn: psycopg.Connection[Any]) -> None:
    for table, query in FROM_SCRATCH.items():
        stored = sorted(conn.execute(f"SELECT * FROM {table}").fetchall())
        expected = sorted(conn.execute(query).fetchall())
        assert stored == expected, table


class Generator:
    """Random rows over a few functions, variants, episodes and metrics, some with ids days old."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.sessions = random.Random(seed + 1)
        self.episodes = [uuid7() for _ in range(8)]
        self.pending_ids: list[UUID] = []  # inference ids that feedback already names but that are not written yet
        self.inference_ids: list[UUID] = []

    def old_id(self) -> UUID:
        at = rows.now() - timedelta(days=self.random.randint(1, 4), minutes=self.random.randint(0, 600))
        return uuid7(rows.ms_of(at))

    def inferences(self, conn: psycopg.Connection[Any], count: int) -> int:
        r = self.random
        for _ in range(count):
            if self.pending_ids and r.random() < 0.3:
                id = self.pending_ids.pop()
            else:
                id = self.old_id() if r.random() < 0.25 else uuid7()
            kind, function = r.choice([("chat", "chat_fn"), ("json", "json_fn")])
            variant = r.choice(["a", "b", "c"])
            # Sessions draw from their own generator: the draws above keep the rounds' feedback free of lock waits
            # between the two connections (feedback on one target from both would wait on the slow transaction).
            s = self.sessions
            if kind == "chat" and s.random() < 0.3:
                function = "tensorzero::default"
            tags = {}
            if s.random() < 0.6:  # an agent session's step, some of them a subagent's, some a named user's
                tags["lsd::session_id"] = f"s{s.randint(1, 5)}"
                if s.random() < 0.5:
                    tags["user"] = s.choice(["ann", "bob"])
                if s.random() < 0.1:  # a stream its provider cut: a row, counted as failed
                    tags["lsd::stream_error"] = "stream_broken"
                if s.random() < 0.2:
                    tags["lsd::parent_session_id"] = f"s{s.randint(1, 5)}"
            rows.inference(
                conn,
                kind=kind,
                function_name=function,
                variant_name=variant,
                id=id,
                episode_id=r.choice(self.episodes),
                tags=tags,
                api_key_public_id=s.choice([None, "key_a", "key_b"]),
                input_tokens=r.choice([None, r.randint(1, 500)]),
                cost=r.choice([None, round(r.random(), 4)]),
                processing_time_ms=r.choice([None, r.randint(1, 5000)]),
            )
            for number in range(r.randint(0, 2)):
                rows.attempt(
                    conn,
                    id,
                    model_name=r.choice(["gpt", "claude"]),
                    provider=r.choice(["p1", "p2"]),
                    status=r.choice(["ok", "ok", "error"]),
                    latency_ms=r.choice([None, r.randint(0, 700_000), r.randint(0, 3000)]),
                    function_name=function,
                    variant_name=variant,
                    attempt_number=number + 1,
                )
            self.inference_ids.append(id)
            if tags and s.random() < 0.2:  # one of the session's inferences got no answer: its attempts hold its tags
                unanswered = self.old_id() if s.random() < 0.25 else uuid7()
                key = s.choice([None, "key_c"])
                failed_tags = {**tags, **({"tensorzero::api_key_public_id": key} if key else {})}
                for number in range(s.randint(1, 2)):
                    rows.attempt(conn, unanswered, status="error", attempt_number=number + 1, tags=failed_tags)
        return count

    def feedback(self, conn: psycopg.Connection[Any], count: int) -> None:
        r = self.random
        for _ in range(count):
            choice = r.random()
            if choice < 0.3:
                target, level = r.choice(self.episodes), "episode"
            elif choice < 0.5 or not self.inference_ids:
                target, level = uuid7(), "inference"  # feedback before its inference
                self.pending_ids.append(target)
            else:
                target, level = r.choice(self.inference_ids), "inference"
            if r.random() < 0.5:
                rows.feedback(conn, target, r.choice(["ok", "good"]), r.random() < 0.5, level=level)
            else:
                rows.feedback(conn, target, "score", r.uniform(-3, 10), level=level, id=self.old_id())


@pytest.fixture
def old_partitions(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT lsd_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 6, 6)")


@pytest.mark.usefixtures("old_partitions")
def test_incremental_refresh_equals_from_scratch_with_late_rows(database_url: str) -> None:
    gen = Generator(seed=7)
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        psycopg.connect(database_url, autocommit=True) as slow,
    ):
        for round in range(6):
            # A transaction that started before this round's other writes and commits after the refresh: its
            # rows carry an older transaction id than rows committed meanwhile.
            with slow.transaction():
                gen.inferences(slow, 3)
                gen.feedback(slow, 3)
                written = gen.inferences(conn, 15)
                gen.feedback(conn, 12)
                result = refresh(conn)
                assert result.rows["chat_inferences"] + result.rows["json_inferences"] >= written
            if round % 2:
                # The slow transaction's rows are now visible, with a transaction id below the watermark's xmax.
                refresh(conn)
                assert_exact(conn)
        # A new variant joins episodes that already have episode-level feedback.
        for episode in gen.episodes[:3]:
            rows.inference(conn, function_name="chat_fn", variant_name="late_variant", episode_id=episode)
        refresh(conn)
        assert_exact(conn)
        assert conn.execute("SELECT count(*) FROM variant_metric_statistics").fetchone()[0] > 10  # type: ignore[index]
        sessions = conn.execute("SELECT count(*), bool_or('a' = ANY(models)) FROM session_statistics").fetchone()
        assert sessions == (5, True)  # every session, a default-function inference under its model's name
        again = refresh(conn)
        assert again.total_rows == 0
        assert_exact(conn)


def test_each_refresh_reads_only_new_rows(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        first = [rows.inference(conn) for _ in range(5)]
        rows.attempt(conn, first[0])
        assert refresh(conn).rows == {
            "chat_inferences": 5,
            "json_inferences": 0,
            "model_inferences": 1,
            "boolean_metric_feedback": 0,
            "float_metric_feedback": 0,
        }
        rows.inference(conn, kind="json")
        rows.feedback(conn, first[1], "ok", True)
        assert refresh(conn).total_rows == 2
        assert conn.execute("SELECT source_table, rows_processed FROM statistics_watermarks ORDER BY 1").fetchall() == [
            ("boolean_metric_feedback", 1),
            ("chat_inferences", 5),
            ("float_metric_feedback", 0),
            ("json_inferences", 1),
            ("model_inferences", 1),
        ]


def test_concurrent_refreshes_never_count_twice(database_url: str) -> None:
    with (
        psycopg.connect(database_url, autocommit=True) as a,
        psycopg.connect(database_url, autocommit=True) as b,
    ):
        rows.inference(a)
        # b takes its snapshot (and reads the old watermark) before a refreshes and commits.
        with pytest.raises(psycopg.errors.SerializationFailure), b.transaction():
            b.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            b.execute("SELECT count(*) FROM chat_inferences")
            refresh(a)
            b.execute("SELECT * FROM statistics_watermarks FOR UPDATE")
        assert_exact(a)


async def test_refresh_job_takes_the_advisory_lock(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows.inference(conn)
        database = Database(database_url, min_size=1, max_size=2)
        await database.open()
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (STATISTICS_LOCK_KEY,))
            assert await refresh_statistics(database) is None
            with psycopg.connect(database_url, autocommit=True) as other:
                assert refresh_statistics_sync(other) is None
            conn.execute("SELECT pg_advisory_unlock(%s)", (STATISTICS_LOCK_KEY,))
            result = await refresh_statistics(database)
            assert result is not None and result.rows["chat_inferences"] == 1
        finally:
            await database.close()
        assert_exact(conn)


def test_latency_quantiles_from_histograms(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        start = rows.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        for i in range(100):
            at = start + timedelta(minutes=i)  # 100 minutes: one whole hour and a partial one
            inference_id = rows.inference(conn, id=uuid7(rows.ms_of(at)))
            rows.attempt(conn, inference_id, latency_ms=(i + 1) * 10)  # 10 ms .. 1000 ms
        rows.attempt(conn, uuid7(), status="error", latency_ms=900_000)
        refresh(conn)
        (count, p50, p90, p99), *_ = conn.execute(
            "SELECT count, p50_ms, p90_ms, p99_ms FROM lsd_model_latency_quantiles(%s, %s)",
            (start, start + timedelta(hours=3)),
        ).fetchall()
        assert count == 100
        assert 200 < p50 <= 500 and 500 < p90 <= 1000 and 500 < p99 <= 1000
        # A range of whole hours reads the hourly table; its edges read minutes.
        (partial,) = conn.execute(
            "SELECT count FROM lsd_model_latency_quantiles(%s, %s)",
            (start + timedelta(minutes=30), start + timedelta(minutes=90)),
        ).fetchone() or (None,)
        assert partial == 60


def test_ttft_histograms_of_streamed_attempts(database_url: str) -> None:
    """Streamed attempts (a ttft_ms) land in the TTFT histograms, which the console's overview draws over time;
    non-streamed and failed ones do not."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        start = rows.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        for i in range(40):
            inference_id = rows.inference(conn, id=uuid7(rows.ms_of(start + timedelta(minutes=i))))
            rows.attempt(conn, inference_id, latency_ms=2000, ttft_ms=(i + 1) * 5)  # 5 .. 200 ms
        rows.attempt(conn, rows.inference(conn), latency_ms=50)  # not streamed
        rows.attempt(conn, uuid7(), status="error", latency_ms=10, ttft_ms=10)
        refresh(conn)
        assert_exact(conn)
        hourly = conn.execute("SELECT sum(count) FROM model_ttft_histogram_hour").fetchone()
        assert hourly == (40,)
        le, counts = conn.execute(
            "SELECT array_agg(le_ms ORDER BY le_ms), array_agg(c ORDER BY le_ms) FROM "
            "(SELECT le_ms, sum(count)::bigint AS c FROM model_ttft_histogram_minute GROUP BY 1) h"
        ).fetchone()
        (p50,) = conn.execute("SELECT lsd_histogram_quantile(0.5, %s, %s)", (le, counts)).fetchone()
        assert 50 <= p50 <= 150


def test_the_sql_examples_in_the_docs_run(database_url: str) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    text = (docs / "querying.md").read_text() + (docs / "feedback.md").read_text()
    examples = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    assert len(examples) >= 7
    with psycopg.connect(database_url, autocommit=True) as conn:
        episode = uuid7()
        for variant in ("a", "b"):
            inference_id = rows.inference(conn, function_name="draft_email", variant_name=variant, episode_id=episode)
            rows.attempt(conn, inference_id)
            rows.feedback(conn, inference_id, "accepted", variant == "a")
            rows.feedback(conn, inference_id, "accepted", True)
        refresh(conn)
        for example in examples:
            conn.execute(example.encode()).fetchall()
        (summary,) = [examples.index(e) for e in examples if "variant_metric_summary" in e]
        assert [r[0] for r in conn.execute(examples[summary].encode()).fetchall()] == ["a", "b"]
        (unfolded,) = [e for e in examples if "'0'::xid8" in e]
        assert conn.execute(unfolded.encode()).fetchall() == [(0,)]  # refreshed just now
        (acceptance,) = [e for e in examples if "acceptance rate per variant" in e]
        answer = sorted(conn.execute(acceptance.encode()).fetchall())
        assert answer == [("a", 1, 1), ("b", 1, 1)]  # each inference's latest value, once


def test_rows_written_before_the_migration_are_counted_once(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        migrations = migrate.load_migrations()
        migrate.apply(conn, [m for m in migrations if m.version < 2])
        episode = uuid7()
        first = rows.inference(conn, episode_id=episode)
        rows.attempt(conn, first)
        conn.execute(
            "INSERT INTO boolean_metric_feedback (id, created_at, target_id, target_level, metric_name, value) "
            "VALUES (%s, now(), %s, 'episode', 'solved', true)",
            (uuid7(), episode),
        )
        migrate.apply(conn, migrations)
        assert refresh(conn).total_rows == 3
        rows.inference(conn, variant_name="b", episode_id=episode)
        refresh(conn)
        assert_exact(conn)
        assert conn.execute(
            "SELECT variant_name, feedback_count FROM variant_metric_statistics ORDER BY 1"
        ).fetchall() == [
            ("a", 1),
            ("b", 1),
        ]


@pytest.mark.usefixtures("old_partitions")
def test_exact_with_writers_committing_while_refreshes_run(database_url: str) -> None:
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        gen = Generator(seed)
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                for _ in range(25):
                    with conn.transaction():
                        gen.inferences(conn, 2)
                        time.sleep(gen.random.random() / 50)  # stay in flight across a refresh now and then
                        gen.feedback(conn, 2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    with psycopg.connect(database_url, autocommit=True) as conn:
        refreshes = 0
        while any(t.is_alive() for t in threads):
            refresh(conn)
            refreshes += 1
        for thread in threads:
            thread.join()
        refresh(conn)
        assert errors == [] and refreshes > 3
        assert_exact(conn)
