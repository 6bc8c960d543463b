"""`durability = "journal"`: an acknowledged inference survives a SIGKILL; a journal replay adds no duplicate; and
the writer's COPY runs off the gateway's event loop."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from lsd.config.model import BatchWritesConfig
from lsd.records import Record
from lsd.store import bulk
from lsd.store.journal import JOURNAL_DIR
from lsd.store.writer import Writer
from tests.integration.test_writer import chat_ids, count, eventually, ids_of, inferences, observability
from tests.support.configs import echo_chat
from tests.support.gateway import Daemons

BODY = {"function_name": "chat", "input": {"messages": [{"role": "user", "content": "hello"}]}}


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    started = Daemons(tmp_path)
    yield started
    started.stop()


def gateway_config(spool_dir: Path, durability: str) -> str:
    # Nothing is flushed before the kill: the queue holds every acknowledged row for an hour.
    return echo_chat() + (
        f"[gateway.observability]\n"
        f'durability = "{durability}"\n'
        f'spool_dir = "{spool_dir}"\n'
        f"[gateway.observability.batch_writes]\n"
        f"flush_interval_ms = 3600000\n"
        f"max_rows = 100000\n"
    )


def present(database_url: str, inference_id: UUID) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM chat_inferences WHERE id = %s", (inference_id,)).fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.parametrize(
    ("durability", "restarted_with"), [("journal", "journal"), ("queue", "queue"), ("journal", "queue")]
)
async def test_an_acknowledged_inference_survives_a_sigkill_only_with_the_journal(
    database_url: str, tmp_path: Path, daemons: Daemons, durability: str, restarted_with: str
) -> None:
    """... and the journal a crashed gateway left is replayed by the next one whatever its own durability mode."""
    config = gateway_config(tmp_path / "spool", durability)
    daemon = daemons.start(config, database_url)
    async with httpx.AsyncClient(base_url=daemon.base_url, timeout=30) as http:
        answered = await http.post("/inference", json=BODY)
    assert answered.status_code == 200, answered.text
    inference_id = UUID(answered.json()["inference_id"])
    daemon.process.send_signal(signal.SIGKILL)
    assert daemon.process.wait(30) == -signal.SIGKILL
    assert present(database_url, inference_id) == 0  # the writer never flushed: the row was in memory only

    restarted = daemons.start(gateway_config(tmp_path / "spool", restarted_with), database_url)
    if durability == "journal":
        await eventually(lambda: present(database_url, inference_id) == 1)
        await eventually(lambda: not list((tmp_path / "spool").glob("*.spool")))  # replayed, then deleted
    else:
        await asyncio.sleep(1.0)  # give a replay (there is none) the time to happen
        assert present(database_url, inference_id) == 0
    restarted.terminate()
    assert present(database_url, inference_id) == (1 if durability == "journal" else 0)


async def test_a_journal_replay_inserts_no_row_twice(database_url: str, tmp_path: Path) -> None:
    """Rows committed but still in the journal (a crash before it was truncated) are replayed idempotently."""
    config = observability(tmp_path, durability="journal")
    groups = inferences(300)
    writer = Writer(database_url, config)
    await writer.open()
    try:
        for group in groups:
            await writer.record(group)
        await eventually(lambda: count(database_url) == 300)
        journal = tmp_path / JOURNAL_DIR
        saved = {path.name: path.read_bytes() for path in journal.glob("*.spool")}
        assert sum(len(data) for data in saved.values()) > 0  # committed, but the file is not rotated yet
    finally:
        await writer.close()
    for name, data in saved.items():  # as the crashed process would have left it
        (journal / name).write_bytes(data)

    again = Writer(database_url, config)
    await again.open()
    try:
        await eventually(lambda: again.stats.replayed_rows == 600)
        await eventually(lambda: not list(journal.glob("*.spool")) and not list(tmp_path.glob("*.spool")))
    finally:
        await again.close()
    assert len(chat_ids(database_url)) == 300
    assert set(chat_ids(database_url)) == ids_of(groups)
    assert count(database_url, "model_inferences") == 300


async def test_record_returns_once_the_rows_are_in_the_journal(database_url: str, tmp_path: Path) -> None:
    config = observability(
        tmp_path, durability="journal", batch_writes=BatchWritesConfig(flush_interval_ms=3_600_000, max_rows=100_000)
    )
    writer = Writer(database_url, config)
    await writer.open()
    try:
        await writer.record(inferences(1)[0])
        assert writer.stats.queued_rows == 2  # queued once journaled, not yet committed
        assert sum(path.stat().st_size for path in (tmp_path / JOURNAL_DIR).glob("*.spool")) > 0
    finally:
        await writer.close()
    assert count(database_url) == 1
    assert not list((tmp_path / JOURNAL_DIR).glob("*.spool"))  # committed at close: the journal is deleted


async def test_the_copy_runs_off_the_event_loop(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch is being written, the gateway's loop keeps serving other tasks."""
    started, proceed = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    insert = bulk.BulkInserter.insert

    async def held(self: bulk.BulkInserter, conn: Any, records: Sequence[Record], **kwargs: Any) -> dict[str, int]:
        threads.append(threading.current_thread())
        started.set()
        proceed.wait(30)  # the COPY "in progress": blocks whatever loop runs it
        return await insert(self, conn, records, **kwargs)

    monkeypatch.setattr(bulk.BulkInserter, "insert", held)
    writer = Writer(database_url, observability(tmp_path))
    await writer.open()
    try:
        for group in inferences(1000):
            writer.submit(group)
        assert await asyncio.to_thread(started.wait, 30)
        turns = 0
        for _ in range(100):  # the loop turns while the COPY is under way
            await asyncio.sleep(0)
            turns += 1
        assert turns == 100
        assert writer.stats.flushes == 0  # still in progress
        proceed.set()
        await eventually(lambda: count(database_url) == 1000)
    finally:
        proceed.set()
        await writer.close()
    assert threads
    assert all(thread is not threading.main_thread() for thread in threads)


async def test_rows_submitted_without_waiting_are_journaled_then_committed(database_url: str, tmp_path: Path) -> None:
    """A stream abandoned by its client cannot wait: `submit` journals its rows and queues them once fsync'd."""
    writer = Writer(database_url, observability(tmp_path, durability="journal"))
    await writer.open()
    try:
        groups = inferences(50)
        for group in groups:
            writer.submit(group)
        assert writer.stats.queued_rows == 0  # not queued before the fsync
        await eventually(lambda: count(database_url) == 50)
        assert writer.stats.journaled_rows == 100
        assert 1 <= writer.stats.journal_fsyncs < 50  # group commit: the fifty groups share fsyncs
    finally:
        await writer.close()
    assert set(chat_ids(database_url)) == ids_of(groups)
