"""Retention drops only the daily partitions wholly older than retention_days, once per cluster."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from lsd.config.model import ObservabilityConfig
from lsd.ids import uuid7
from lsd.jobs.maintenance import maintenance_jobs
from lsd.store.database import Database
from lsd.store.retention import RETENTION_LOCK_KEY, apply_retention, apply_retention_sync
from lsd.store.statistics import refresh_statistics_sync
from lsd.telemetry.metrics import Metrics
from tests.support import rows


def noon(day: date) -> int:
    return rows.ms_of(datetime.combine(day, time(12), tzinfo=UTC))


def partition_days(conn: psycopg.Connection[Any], table: str) -> set[date]:
    return {d for (d,) in conn.execute("SELECT day FROM lsd_partitions WHERE table_name = %s", (table,))}


async def test_drops_old_partitions_and_keeps_recent_rows(database_url: str) -> None:
    today = datetime.now(tz=UTC).date()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT lsd_ensure_partitions(%s, 10)", (today - timedelta(days=10),))
        old = [rows.inference(conn, id=uuid7(noon(today - timedelta(days=d)))) for d in (10, 8, 4)]
        recent = [rows.inference(conn, id=uuid7(noon(today - timedelta(days=d)))) for d in (3, 2, 1)]
        recent.append(rows.inference(conn))
        rows.attempt(conn, old[0])
        rows.feedback(conn, old[0], "ok", True)
        rows.feedback(conn, recent[0], "ok", False)
        refresh_statistics_sync(conn)
        tables = [t for (t,) in conn.execute("SELECT table_name FROM lsd_partitioned_tables")]
        before = {t: partition_days(conn, t) for t in tables}

        database = Database(database_url, min_size=1, max_size=2)
        await database.open()
        try:
            dropped = await apply_retention(database, 3)
        finally:
            await database.close()

        assert dropped is not None
        cutoff = today - timedelta(days=3)  # day D goes when D + 1 <= now - 3 days
        expected_days = {d for d in before["chat_inferences"] if d < cutoff}
        assert {p.day for p in dropped} == expected_days == {today - timedelta(days=d) for d in range(4, 11)}
        assert {p.table_name for p in dropped} == set(tables)
        assert len(dropped) == len(tables) * len(expected_days)
        for table in tables:
            assert partition_days(conn, table) == {d for d in before[table] if d >= cutoff}
            assert today in partition_days(conn, table) and today + timedelta(days=1) in partition_days(conn, table)
        left = {i for (i,) in conn.execute("SELECT id FROM chat_inferences")}
        assert left == set(recent)
        assert conn.execute("SELECT count(*) FROM chat_inference_data").fetchone() == (len(recent),)
        assert conn.execute("SELECT count(*) FROM model_inferences").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM boolean_metric_feedback").fetchone() == (2,)
        # Per-target bookkeeping for gone inferences is pruned; statistics already counted are kept.
        assert conn.execute("SELECT target_id FROM statistics_feedback_by_target").fetchall() == [(recent[0],)]
        assert conn.execute("SELECT sum(inference_count) FROM variant_statistics").fetchone() == (7,)
        assert conn.execute("SELECT to_regclass(%s)", (dropped[0].partition_name,)).fetchone() == (None,)

        assert apply_retention_sync(conn, 3) == []  # nothing left to drop


def test_today_and_yesterday_are_never_dropped(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows.inference(conn, id=uuid7(rows.ms_of(rows.now() - timedelta(days=1))))
        assert apply_retention_sync(conn, 1) == []
        assert conn.execute("SELECT count(*) FROM chat_inferences").fetchone() == (1,)
        with pytest.raises(ValueError, match="at least 1"):
            apply_retention_sync(conn, 0)


async def test_only_one_replica_applies_retention(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT lsd_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 9, 1)")
        conn.execute("SELECT pg_advisory_lock(%s)", (RETENTION_LOCK_KEY,))
        database = Database(database_url, min_size=1, max_size=2)
        await database.open()
        try:
            assert await apply_retention(database, 2) is None
            conn.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK_KEY,))
            dropped = await apply_retention(database, 2)
        finally:
            await database.close()
        assert dropped and {p.day for p in dropped} == {datetime.now(tz=UTC).date() - timedelta(days=d) for d in (8, 9)}


def test_a_busy_table_is_skipped_not_waited_on(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lsd.store.retention.LOCK_TIMEOUT", "100ms")
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        psycopg.connect(database_url, autocommit=True) as reader,
    ):
        conn.execute("SELECT lsd_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 9, 0)")
        with reader.transaction():
            reader.execute("SELECT count(*) FROM chat_inferences")  # holds a lock on the parent until commit
            dropped = apply_retention_sync(conn, 2)
        assert "chat_inferences" not in {p.table_name for p in dropped}
        assert len(dropped) == conn.execute("SELECT count(*) FROM lsd_partitioned_tables").fetchone()[0] - 1  # type: ignore[index]
        assert {p.table_name for p in apply_retention_sync(conn, 2)} == {"chat_inferences"}


def test_inserts_go_on_while_retention_waits_for_a_long_reader(database_url: str) -> None:
    """DETACH ... CONCURRENTLY: with a reader's transaction open on chat_inferences, retention waits for the reader,
    and an insert made meanwhile completes while the reader is still open (a plain DETACH queues an ACCESS
    EXCLUSIVE lock that the insert would wait behind until the reader ends)."""
    today = datetime.now(tz=UTC).date()
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        psycopg.connect(database_url) as reader,
        psycopg.connect(database_url, autocommit=True) as writer,
    ):
        conn.execute("SELECT lsd_ensure_partitions(%s, 0)", (today - timedelta(days=6),))
        old = rows.inference(conn, id=uuid7(noon(today - timedelta(days=6))))
        reader.execute("SELECT count(*) FROM chat_inferences").fetchone()  # its transaction stays open
        dropped: list[Any] = []
        retention = threading.Thread(target=lambda: dropped.extend(apply_retention_sync(conn, 3)))
        retention.start()
        try:
            pending = "SELECT count(*) FROM pg_inherits WHERE inhdetachpending AND inhrelid = %s::regclass"
            partition = f"chat_inferences_p{(today - timedelta(days=6)).strftime('%Y%m%d')}"
            for _ in range(500):  # until the detach has started and waits for the reader
                if writer.execute(pending, (partition,)).fetchone() == (1,):
                    break
                threading.Event().wait(0.01)
            else:
                pytest.fail("the detach never started")
            writer.execute("SET statement_timeout = '20s'")  # a guard against hanging, not a measurement
            new = rows.inference(writer)
            assert reader.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            assert retention.is_alive()  # still waiting for the reader
            assert writer.execute("SELECT count(*) FROM chat_inferences WHERE id = %s", (new,)).fetchone() == (1,)
        finally:
            reader.commit()
            retention.join()
        assert partition in {p.partition_name for p in dropped}
        assert conn.execute("SELECT to_regclass(%s)", (partition,)).fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM chat_inferences WHERE id = %s", (old,)).fetchone() == (0,)


async def test_maintenance_jobs_follow_the_config(database_url: str) -> None:
    database = Database(database_url)  # never opened: building jobs does no I/O
    assert [(j.name, j.interval_s) for j in maintenance_jobs(ObservabilityConfig(), database)] == [("statistics", 10.0)]
    configured = SimpleNamespace(statistics_refresh_interval_s=0, retention_days=30)
    assert [(j.name, j.interval_s) for j in maintenance_jobs(configured, database)] == [("retention", 3600.0)]  # type: ignore[arg-type]


async def test_a_failing_statistics_refresh_is_counted(database_url: str) -> None:
    """Only successful refreshes are timed: a failing one (PostgreSQL down) adds to a counter an operator can alert
    on, instead of a histogram that merely stops counting (soak3 review)."""
    metrics = Metrics(latency_buckets=(1.0,), overhead_buckets=(1.0,), ttft_buckets=(1.0,))
    database = Database("postgresql://postgres@127.0.0.1:1/none")  # nothing listens there
    [job] = maintenance_jobs(ObservabilityConfig(), database, metrics)
    for _ in range(2):
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises: the job runner logs it
            await job.run()
    assert metrics.statistics_refresh_failures._value.get() == 2
    assert metrics.statistics_refresh._sum.get() == 0


def test_the_latest_metric_values_go_with_their_feedback_not_with_an_old_episode_id(database_url: str) -> None:
    """An episode that began before the cutoff keeps its kept inferences' episode-level feedback (list_inferences
    filters read it from *_metric_latest); a value goes when its feedback row or its inference goes."""
    today = datetime.now(tz=UTC).date()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT lsd_ensure_partitions(%s, 10)", (today - timedelta(days=10),))
        long_episode = uuid7(noon(today - timedelta(days=6)))  # began before the cutoff, still going
        rows.inference(conn, episode_id=long_episode)
        rows.feedback(conn, long_episode, "solved", True, level="episode")  # given now
        rows.feedback(conn, long_episode, "rating", 4.0, level="episode")
        gone_episode = uuid7(noon(today - timedelta(days=8)))
        rows.feedback(conn, gone_episode, "solved", False, level="episode", id=uuid7(noon(today - timedelta(days=8))))
        gone_inference = rows.inference(conn, id=uuid7(noon(today - timedelta(days=8))))
        rows.feedback(conn, gone_inference, "ok", True)  # recent feedback on an inference retention drops

        apply_retention_sync(conn, 5)

        kept = {(m, t) for m, t in conn.execute("SELECT metric_name, target_id FROM boolean_metric_latest")}
        assert kept == {("solved", long_episode)}
        assert conn.execute("SELECT target_id FROM float_metric_latest").fetchall() == [(long_episode,)]
