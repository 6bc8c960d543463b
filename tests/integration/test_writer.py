"""The observability writer against real PostgreSQL: batching by size and by interval, waiting writes, bad rows."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from lsd.config.model import BatchWritesConfig, ObservabilityConfig
from lsd.errors import LsdError
from lsd.ids import uuid7
from lsd.records import ChatInferenceRecord, ModelInferenceRecord, Record
from lsd.store import bulk
from lsd.store.spool_format import decode_payload, iter_frames, read_header
from lsd.store.writer import Writer

Group = list[Record]


def inference(text: str = "hello") -> Group:
    """The rows of one inference, as the engine records them together: the inference and its provider attempt."""
    now = datetime.now(UTC)
    inference_id = uuid7()
    return [
        ChatInferenceRecord(
            id=inference_id,
            created_at=now,
            function_name="chat",
            variant_name="a",
            episode_id=uuid7(),
            input={"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]},
            output=[{"type": "text", "text": text[::-1]}],
            tool_params=None,
            inference_params={"temperature": 0.5, "nested": {"list": [1, 2.5, None, True, "é"]}},
            tags={"k": "v"},
            processing_time_ms=12,
            ttft_ms=None,
            input_tokens=3,
            output_tokens=4,
            cost=Decimal("0.00012"),
            finish_reason="stop",
            cached=False,
            config_hash="abc",
            api_key_public_id=None,
        ),
        ModelInferenceRecord(
            id=uuid7(),
            created_at=now,
            inference_id=inference_id,
            inference_kind="chat",
            attempt=1,
            function_name="chat",
            variant_name="a",
            model_name="m",
            model_provider_name="p",
            provider_type="dummy",
            status="ok",
            error_kind=None,
            error=None,
            latency_ms=10,
            ttft_ms=None,
            input_tokens=3,
            output_tokens=4,
            cost=Decimal("Infinity"),
            finish_reason="stop",
            cached=False,
            streamed=False,
        ),
    ]


def inferences(count: int) -> list[Group]:
    return [inference(f"message {i}") for i in range(count)]


def ids_of(groups: Sequence[Group]) -> set[UUID]:
    return {group[0].id for group in groups if isinstance(group[0], ChatInferenceRecord)}


def observability(spool_dir: Path, **changes: object) -> ObservabilityConfig:
    """Writer config for tests: the spool in `spool_dir`, anything else overridden by `changes`."""
    batch = changes.pop("batch_writes", BatchWritesConfig(flush_interval_ms=20))
    return dataclasses.replace(
        ObservabilityConfig(spool_dir=spool_dir, shutdown_flush_timeout_s=2.0, batch_writes=batch),  # type: ignore[arg-type]
        **changes,  # type: ignore[arg-type]
    )


def chat_ids(database_url: str) -> list[UUID]:
    """Every chat_inferences id, duplicates kept (a duplicate would show up twice)."""
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM chat_inferences")]


def count(database_url: str, table: str = "chat_inferences") -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


async def eventually(check: Callable[[], bool], within: float = 20.0) -> None:
    """Poll `check` until true; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_a_full_batch_is_flushed_before_the_interval(database_url: str, tmp_path: Path) -> None:
    config = observability(tmp_path, batch_writes=BatchWritesConfig(flush_interval_ms=3_600_000, max_rows=200))
    writer = Writer(database_url, config)
    await writer.open()
    try:
        for group in inferences(100):  # 200 rows: exactly max_rows
            writer.submit(group)
        await eventually(lambda: count(database_url) == 100)
        for group in inferences(10):  # 20 rows: below max_rows, and the interval is an hour
            writer.submit(group)
        await asyncio.sleep(0.3)
        assert count(database_url) == 100
        assert writer.stats.queued_rows == 20
    finally:
        await writer.close()
    assert count(database_url) == 110  # close() flushes the rest
    assert count(database_url, "model_inferences") == 110
    assert writer.stats.written_rows == {"chat_inferences": 110, "model_inferences": 110}


async def test_rows_are_flushed_after_the_interval(database_url: str, tmp_path: Path) -> None:
    config = observability(tmp_path, batch_writes=BatchWritesConfig(flush_interval_ms=50, max_rows=100_000))
    writer = Writer(database_url, config)
    await writer.open()
    try:
        groups = inferences(5)
        for group in groups:
            writer.submit(group)
        await eventually(lambda: count(database_url) == 5)  # far fewer rows than max_rows: the interval flushed
        assert set(chat_ids(database_url)) == ids_of(groups)
    finally:
        await writer.close()


async def test_unbatched_writes_flush_each_group(database_url: str, tmp_path: Path) -> None:
    config = observability(tmp_path, batch_writes=BatchWritesConfig(enabled=False))
    writer = Writer(database_url, config)
    await writer.open()
    try:
        for group in inferences(20):
            writer.submit(group)
        await eventually(lambda: count(database_url) == 20)
    finally:
        await writer.close()
    assert count(database_url, "model_inferences") == 20


async def test_write_returns_once_the_rows_are_committed(database_url: str, tmp_path: Path) -> None:
    writer = Writer(database_url, observability(tmp_path, async_writes=False))
    await writer.open()
    try:
        group = inference()
        await writer.record(group)
        assert chat_ids(database_url) == [group[0].id]
        await asyncio.gather(*(writer.record(g) for g in inferences(50)))
        assert count(database_url) == 51
    finally:
        await writer.close()


async def test_disabled_writes_and_spools_nothing(database_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    writer = Writer(database_url, observability(spool, enabled=False, max_queue_rows=1))
    await writer.open()
    for group in inferences(10):
        writer.submit(group)
    await writer.write(inference())
    await writer.close()
    assert count(database_url) == 0
    assert not spool.exists()
    assert writer.stats.queued_rows == 0


async def test_a_rejected_row_does_not_block_the_others(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = inferences(30)
    secret = "do not log \x00 this"  # PostgreSQL refuses NUL in text
    bad = [dataclasses.replace(inference()[0], function_name=secret)]  # type: ignore[type-var]
    writer = Writer(database_url, observability(tmp_path))
    await writer.open()
    try:
        for group in [*good[:15], bad, *good[15:]]:
            writer.submit(group)
        await eventually(lambda: count(database_url) == 30)
    finally:
        await writer.close()
    assert set(chat_ids(database_url)) == ids_of(good)
    assert writer.stats.rejected_rows == {"chat_inferences": 1}
    assert "rejected" in caplog.text
    assert secret not in caplog.text
    [kept] = (tmp_path / "rejected").glob("*.spool")  # for an operator to look at; never replayed
    data = kept.read_bytes()
    [(_, payload)] = list(iter_frames(data, read_header(data).size))
    assert payload is not None and decode_payload(payload) == bad


async def test_a_rejected_write_says_its_rows_are_kept_for_retry_rejected(database_url: str, tmp_path: Path) -> None:
    """async_writes = false: the caller told its rows were refused learns they are kept (and may be stored later by
    `lsd spool retry-rejected`), so that it does not send the same request again."""
    bad = [dataclasses.replace(inference()[0], function_name="nul \x00")]  # type: ignore[type-var]
    writer = Writer(database_url, observability(tmp_path))
    await writer.open()
    try:
        with pytest.raises(LsdError) as info:
            await writer.write(bad)
    finally:
        await writer.close()
    message = str(info.value)
    assert message.startswith("PostgreSQL rejected the rows (SQLSTATE 22021); the gateway keeps them")
    assert "stored twice" in message and str(tmp_path) not in message  # the spool's path is the operator's
    assert len(list((tmp_path / "rejected").glob("*.spool"))) == 1


async def test_duplicate_rows_are_written_once(database_url: str, tmp_path: Path) -> None:
    group = inference()
    writer = Writer(database_url, observability(tmp_path))
    await writer.open()
    try:
        writer.submit(group)
        writer.submit(group)  # the same primary keys twice in one batch
        await eventually(lambda: writer.stats.queued_rows == 0)
        writer.submit(group)  # and again after they are committed
    finally:
        await writer.close()
    assert chat_ids(database_url) == [group[0].id]
    assert writer.stats.rejected_rows == {}


async def test_values_are_stored_as_given(database_url: str, tmp_path: Path) -> None:
    """JSON comes back equal and a float cost is stored by its shortest repr (0.1 stays 0.1), on the direct COPY
    and on the idempotent path through a staging table (a batch holding the same rows twice takes it)."""
    direct, staged = (inference(f"naïve ☃ {i}") for i in range(2))
    direct[0] = dataclasses.replace(direct[0], cost=0.1)  # type: ignore[type-var]
    staged[0] = dataclasses.replace(staged[0], cost=2.675)  # type: ignore[type-var]
    writer = Writer(database_url, observability(tmp_path))
    await writer.open()
    try:
        await writer.write(direct)
        writer.submit(staged)
        writer.submit(staged)
        await eventually(lambda: writer.stats.queued_rows == 0)
    finally:
        await writer.close()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT id, input, output, inference_params, tags, cost FROM chat_inferences").fetchall()
    expected = [
        (r.id, r.input, r.output, r.inference_params, r.tags, Decimal(repr(r.cost)))
        for r in (direct[0], staged[0])
        if isinstance(r, ChatInferenceRecord)
    ]
    assert sorted(rows) == sorted(expected)
    assert [row[5] for row in sorted(rows)] == [Decimal("0.1"), Decimal("2.675")]
    assert writer.stats.rejected_rows == {}


@pytest.fixture
def yields(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the COPY let other tasks run (one element, reset by the test at will)."""
    count = [0]
    yield_now = bulk.let_others_run

    async def counted() -> None:
        count[0] += 1
        await yield_now()

    monkeypatch.setattr(bulk, "let_others_run", counted)
    return count


async def test_a_cooperative_copy_lets_requests_run_and_a_catching_up_one_does_not(
    database_url: str, yields: list[int]
) -> None:
    """The writer yields to other tasks every few rows while it keeps up; when it is behind (a full batch or
    more waiting behind this one), it writes its batch straight through so that a saturating load cannot
    starve it."""
    counts = {}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        bulk.configure(conn)
        inserter = bulk.BulkInserter()
        for cooperative in (True, False):
            yields[0] = 0
            records = [r for _ in range(200) for r in inference()]  # 200 rows in each of two tables
            await inserter.insert(conn, records, idempotent=False, cooperative=cooperative)
            counts[cooperative] = yields[0]
    assert counts == {True: 2 * (200 // bulk.YIELD_EVERY_ROWS), False: 0}


async def test_the_writer_copies_on_its_own_thread_without_yielding(
    database_url: str, tmp_path: Path, yields: list[int]
) -> None:
    """The COPY runs on the committer's thread, whose loop serves nothing else: it never yields, and the gateway's
    loop stays free while ten batches are written."""
    config = observability(tmp_path, batch_writes=BatchWritesConfig(flush_interval_ms=3_600_000, max_rows=80))
    writer = Writer(database_url, config)
    await writer.open()
    try:
        for group in inferences(400):  # 800 rows: ten batches of 80
            writer.submit(group)
        await eventually(lambda: count(database_url) == 400)
    finally:
        await writer.close()
    assert yields[0] == 0
