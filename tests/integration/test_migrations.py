"""Migrations against a real PostgreSQL: idempotent, concurrent-safe, edits refused, partitions created."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from lsd.ids import uuid7
from lsd.store import admin, migrate

T = TypeVar("T")


def test_apply_is_idempotent(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        first = migrate.apply(conn)
        assert first == [m.name for m in migrate.load_migrations()]
        assert migrate.apply(conn) == []
        state = migrate.state(conn)
        assert state.pending == () and state.edited == ()


def together(count: int, work: Callable[[], T]) -> list[T]:
    """`work` in `count` threads released at once; their results, or the first thread's error raised."""
    results: list[T] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run() -> None:
        try:
            barrier.wait()
            results.append(work())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def test_concurrent_migrations_apply_once(empty_database_url: str) -> None:
    def apply() -> list[str]:
        with psycopg.connect(empty_database_url, autocommit=True) as conn:
            return migrate.apply(conn)

    results = together(4, apply)
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migrate.load_migrations())]
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert rows == (len(migrate.load_migrations()),)


def test_edited_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    originals = migrate.load_migrations()
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        migrate.apply(conn, originals)
        edited = [migrate.Migration(originals[0].version, originals[0].name, originals[0].sql + "\n-- edit\n")]
        with pytest.raises(migrate.MigrationError, match="changed on disk"):
            migrate.apply(conn, edited + originals[1:])
        with pytest.raises(migrate.MigrationError, match=r"0001_schema\.sql"):
            migrate.apply(conn, edited)


def test_check_reports_missing_migrations(empty_database_url: str) -> None:
    with (
        psycopg.connect(empty_database_url, autocommit=True) as conn,
        pytest.raises(migrate.MigrationError, match="missing migration"),
    ):
        migrate.check(conn)


def test_partitions_exist_for_today_and_the_next_days(database_url: str) -> None:
    today = datetime.now(tz=UTC).date()
    with psycopg.connect(database_url, autocommit=True) as conn:
        admin.ensure_partitions(conn, 7)
        rows = conn.execute("SELECT table_name, day FROM lsd_partitions").fetchall()
        tables = {t for (t,) in conn.execute("SELECT table_name FROM lsd_partitioned_tables")}
        for table in tables:
            days = {day for t, day in rows if t == table}
            for offset in range(8):
                assert today + timedelta(days=offset) in days, (table, offset)
        assert admin.ensure_partitions(conn, 7) == 0  # idempotent
        report = admin.doctor(conn)
        assert report.problems == []


def test_a_new_partition_waits_for_no_reader_or_writer_of_its_table(database_url: str) -> None:
    """Partitions are attached (SHARE UPDATE EXCLUSIVE on the parent), not created with PARTITION OF (ACCESS
    EXCLUSIVE): an open transaction that reads the table, or one that writes it, does not hold up the upkeep, and
    the upkeep, queued, would not hold up the next reader. The new partitions match the old ones."""
    with (
        psycopg.connect(database_url) as reader,
        psycopg.connect(database_url) as writer,
        psycopg.connect(database_url, autocommit=True) as upkeep,
    ):
        reader.execute("SELECT count(*) FROM chat_inferences")  # the transaction stays open
        writer.execute("LOCK TABLE chat_inferences, model_inferences IN ROW EXCLUSIVE MODE")
        upkeep.execute("SET lock_timeout = '5s'")
        last = upkeep.execute("SELECT max(day) FROM lsd_partitions").fetchone()[0]  # type: ignore[index]
        tables = upkeep.execute("SELECT count(*) FROM lsd_partitioned_tables").fetchone()[0]  # type: ignore[index]
        created = upkeep.execute("SELECT lsd_ensure_partitions(%s::date + 1, 0)", (last,)).fetchone()
        assert created == (tables,)
        reader.rollback()
        writer.rollback()

        def shape(partition: str) -> tuple[object, ...]:
            indexes = upkeep.execute(
                "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", (partition,)
            ).fetchone()
            columns = upkeep.execute(
                "SELECT array_agg((attname, attnotnull, attcompression, attstorage) ORDER BY attnum)"
                " FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (partition,),
            ).fetchone()
            return (indexes, columns)

        # today's partitions were made by migration 1's PARTITION OF (the template's last day is already attached)
        today = upkeep.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()[0]  # type: ignore[index]
        for table in ("chat_inferences", "chat_inference_data", "model_inferences"):
            old, new = (f"{table}_p{day:%Y%m%d}" for day in (today, last + timedelta(days=1)))
            assert shape(new) == shape(old), table


def test_concurrent_upkeeps_take_turns(database_url: str) -> None:
    """Three callers find the same day missing at once: one creates it, the others wait and find it there."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        last = conn.execute("SELECT max(day) FROM lsd_partitions").fetchone()[0]  # type: ignore[index]
        tables = conn.execute("SELECT count(*) FROM lsd_partitioned_tables").fetchone()[0]  # type: ignore[index]

    def upkeep() -> int:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute("SELECT lsd_ensure_partitions(%s::date + 1, 0)", (last,)).fetchone()
            return int(row[0])  # type: ignore[index]

    assert sorted(together(3, upkeep)) == [0, 0, tables]
    # the SQL function's lock is the upkeep job's (lsd.store.admin): a job that holds it skips, never waits
    assert str(admin.PARTITION_LOCK_KEY) in (migrate.migrations_dir() / "0016_partition_attach.sql").read_text()


def test_every_documented_table_exists(database_url: str) -> None:
    expected = {
        "chat_inferences",
        "json_inferences",
        "embedding_inferences",
        "chat_inference_data",
        "json_inference_data",
        "model_inference_data",
        "model_inferences",
        "batch_requests",
        "batch_model_inferences",
        "boolean_metric_feedback",
        "float_metric_feedback",
        "comment_feedback",
        "demonstration_feedback",
        "inference_evaluation_runs",
        "inference_evaluation_human_feedback",
        "config_snapshots",
        "api_keys",
        "rate_limit_buckets",
        "model_inference_cache",
    }
    with psycopg.connect(database_url) as conn:
        present = {
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace = 'public'::regnamespace"
            )
        }
        assert expected <= present
        partitioned = {r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relkind = 'p'")}
        assert {"chat_inferences", "model_inferences", "boolean_metric_feedback"} <= partitioned


def test_payload_columns_use_lz4_when_available(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = 'chat_inferences'::regclass AND attname = 'input'"
        ).fetchone()
        assert row is not None and row[0] in ("l", "")


def test_lookup_by_id_prunes_to_one_partition(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        plan = conn.execute("EXPLAIN SELECT * FROM chat_inferences WHERE id = %s", (uuid7(),)).fetchall()
        text = "\n".join(r[0] for r in plan)
        assert len(set(re.findall(r"chat_inferences_p\d{8}\b", text))) == 1, text


def test_a_migration_queued_behind_a_reader_lets_other_sessions_through_and_then_applies(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration waits for a table lock for at most LOCK_TIMEOUT at a time: a long reader delays it, but the
    readers after it are not queued behind its ACCESS EXCLUSIVE request for as long as that reader runs."""
    monkeypatch.setattr(migrate, "LOCK_TIMEOUT", "200ms")
    monkeypatch.setattr(migrate, "LOCK_RETRY_S", 0.3)
    alter = migrate.Migration(9001, "9001_test_alter.sql", "ALTER TABLE api_keys ADD COLUMN test_note text")
    applied: list[list[str]] = []
    with psycopg.connect(database_url) as reader, psycopg.connect(database_url, autocommit=True) as later:
        reader.execute("SELECT count(*) FROM api_keys")  # holds ACCESS SHARE until it commits
        with psycopg.connect(database_url, autocommit=True) as conn:
            thread = threading.Thread(target=lambda: applied.append(migrate.apply(conn, [alter])))
            thread.start()
            for _ in range(5):  # another session's reads keep going while the migration waits
                later.execute("SET statement_timeout = '1500ms'")
                assert later.execute("SELECT count(*) FROM api_keys").fetchone() is not None
            assert thread.is_alive() and not applied
            reader.commit()
            thread.join(30)
    assert applied == [["9001_test_alter.sql"]]


def test_a_wait_for_the_migration_lock_says_who_holds_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(migrate, "WAIT_LOG_S", 0.2)
    with (
        psycopg.connect(database_url, autocommit=True) as holder,
        psycopg.connect(database_url, autocommit=True) as conn,
    ):
        holder.execute("SET application_name = 'the-other-migrate'")
        holder.execute("SELECT pg_advisory_lock(%s)", (migrate.MIGRATION_LOCK_KEY,))
        holder_pid = holder.info.backend_pid
        thread = threading.Thread(target=lambda: migrate.apply(conn, []))
        thread.start()
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not any("the-other-migrate" in r.getMessage() for r in caplog.records) and datetime.now(UTC) < deadline:
            thread.join(0.1)
        holder.execute("SELECT pg_advisory_unlock(%s)", (migrate.MIGRATION_LOCK_KEY,))
        thread.join(30)
    waits = [r.getMessage() for r in caplog.records if "waiting for the migration lock" in r.getMessage()]
    assert waits and f"pid {holder_pid} (the-other-migrate" in waits[0]


def test_a_database_a_newer_lsd_migrated_is_named_so(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A rollback (or an old replica in a rolling deploy) runs on migrations it has no file for: it says so."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, '9999_future.sql', 'x')")
        current = migrate.check(conn)
        assert current.unknown == (9999,) and current.pending == ()
        assert migrate.apply(conn) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and all("[9999] that this build of LSD does not know" in w for w in warnings)
