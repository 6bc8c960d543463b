"""Nothing lost: rows survive a database outage, a full queue, a crash and a shutdown; only a full spool drops them.

Outages use a private PostgreSQL this module may stop and start; "never reachable" uses a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from lsd.config import parse
from lsd.ids import uuid7
from lsd.records import (
    ChatInferenceDataRecord,
    EmbeddingInferenceRecord,
    JsonInferenceDataRecord,
    JsonInferenceRecord,
    ModelInferenceDataRecord,
    Record,
)
from lsd.store.local import LocalServer, free_port
from lsd.store.spool import Spool, decode_payload, encode_frame, iter_frames
from lsd.store.spool_format import MAX_HEADER, read_header
from lsd.store.writer import Writer
from tests.integration.test_writer import chat_ids, count, eventually, ids_of, inference, inferences, observability
from tests.support.gateway import ROOT, in_process_gateway
from tests.support.private_server import fresh_database, private_server

TEMPLATE = "lsd_durability_template"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    """A private PostgreSQL, with a migrated template database; tests that stop it start it again."""
    yield from private_server("lsd-durability-pg-", TEMPLATE)


@pytest.fixture
def own_url(server: LocalServer) -> Iterator[str]:
    """A fresh migrated database on the private server."""
    yield from fresh_database(server, TEMPLATE)


@pytest.fixture
def nowhere() -> str:
    """A database URL nothing listens on: every connection is refused at once."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


def spool_files(directory: Path, pattern: str = "*.spool") -> list[Path]:
    return sorted(directory.glob(pattern))


def spool_rows(groups: list[list[Record]]) -> int:
    return sum(len(group) for group in groups)


# -- the spool format ------------------------------------------------------------------------------------------


def every_kind_of_record() -> list[Record]:
    now = datetime.now(UTC)
    india = datetime.now(timezone(timedelta(hours=5, minutes=30)))
    nested = {"a": [1, -2, 2**62, 0.1, 1e-300, None, True, False, "ü\n\"'\\"], "b": {"c": {}}, "d": []}
    return [
        *inference("emoji 🎉 and \u2028"),
        JsonInferenceRecord(
            id=uuid7(),
            created_at=india,
            function_name="extract",
            variant_name="v",
            episode_id=uuid7(),
            input=nested,
            output={"raw": '{"x": 1}', "parsed": {"x": 1}},
            output_schema=None,
            inference_params={},
            tags={},
            processing_time_ms=None,
            ttft_ms=0,
            input_tokens=None,
            output_tokens=2**31 - 1,
            cost=Decimal("-0.000"),
            finish_reason=None,
            cached=True,
            config_hash=None,
            api_key_public_id="key",
        ),
        ChatInferenceDataRecord(uuid7(), now, nested, None, {"h": "v"}, "raw"),
        JsonInferenceDataRecord(uuid7(), now, None, [], None, None),
        ModelInferenceDataRecord(uuid7(), now, uuid7(), "req", None, {"x": [1.5]}, None),
        EmbeddingInferenceRecord(
            id=uuid7(),
            created_at=now.replace(tzinfo=None),
            embedding_model_name="e",
            model_provider_name=None,
            input=["a", "b"],
            num_inputs=2,
            dimensions=None,
            embeddings=[[0.25, -1.0]],
            tags={},
            processing_time_ms=1,
            input_tokens=None,
            cost=Decimal("-Infinity"),
            cached=False,
            config_hash=None,
            api_key_public_id=None,
        ),
    ]


def test_the_spool_format_round_trips_every_field_type() -> None:
    records = every_kind_of_record()
    frame = encode_frame(records)
    [(end, payload)] = list(iter_frames(frame, 0))
    assert end == len(frame)
    assert payload is not None
    decoded = decode_payload(payload)
    assert decoded == records
    for before, after in zip(records, decoded, strict=True):
        for name in before.__dataclass_fields__:
            value, back = getattr(before, name), getattr(after, name)
            assert type(back) is type(value), name
            if isinstance(value, datetime):
                assert back.utcoffset() == value.utcoffset()
    assert str(decoded[2].cost) == "-0.000"  # type: ignore[union-attr]
    for cost in (Decimal("NaN"), math.nan, math.inf, 0.1):  # a float where a Decimal is declared stays a float
        [back] = decode_payload(encode_frame([dataclasses.replace(records[0], cost=cost)])[8:])  # type: ignore[type-var]
        assert str(back.cost) == str(cost) and type(back.cost) is type(cost)  # type: ignore[union-attr]


def test_a_torn_frame_is_detected() -> None:
    frames = encode_frame(inference()) + encode_frame(inference())
    assert [payload is not None for _, payload in iter_frames(frames, 0)] == [True, True]
    assert [payload is not None for _, payload in iter_frames(frames[:-3], 0)] == [True, False]
    flipped = frames[:-1] + bytes([frames[-1] ^ 1])
    assert [payload is not None for _, payload in iter_frames(flipped, 0)] == [True, False]
    # A frame damaged inside the file is skipped alone: the frames after it are read on.
    first = encode_frame(inference())
    damaged = bytes([first[0], *first[1:-1], first[-1] ^ 1]) + encode_frame(inference()) + encode_frame(inference())
    assert [payload is not None for _, payload in iter_frames(damaged, 0)] == [False, True, True]


def test_only_one_process_holds_a_spool_file(tmp_path: Path) -> None:
    first = Spool(tmp_path, 1 << 20)
    assert first.append([encode_frame(inference())]) == (1, None)
    second = Spool(tmp_path, 1 << 20)
    assert second.adopt_orphans() == 0  # the writer of the file holds its lock
    first.close()  # as if its process died: the lock goes, the file stays
    assert second.adopt_orphans() == 1
    assert Spool(tmp_path, 1 << 20).adopt_orphans() == 0
    chunk = second.read_chunk(1000)
    assert chunk is not None and chunk.rows == 2 and chunk.last
    second.release(chunk)
    assert spool_files(tmp_path) == []


def test_files_a_writer_died_creating_are_removed(tmp_path: Path) -> None:
    stale, fresh = tmp_path / f".{uuid7().hex}.tmp", tmp_path / f".{uuid7().hex}.tmp"
    stale.write_bytes(b"LSDSPOOL1\n")
    fresh.write_bytes(b"")  # perhaps a live writer's, about to be locked
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert Spool(tmp_path, 1 << 20).adopt_orphans() == 0
    assert not stale.exists()
    assert fresh.exists()


# -- outages ---------------------------------------------------------------------------------------------------


async def test_rows_queued_while_the_database_is_down_are_all_written_once(
    own_url: str, server: LocalServer, tmp_path: Path
) -> None:
    writer = Writer(own_url, observability(tmp_path))
    await writer.open()
    try:
        before = inferences(1500)
        for group in before:
            writer.submit(group)
        await eventually(lambda: count(own_url) == 1500)
        await asyncio.to_thread(server.stop)
        during = inferences(1500)
        for group in during:
            writer.submit(group)
        await eventually(lambda: writer.stats.flush_failures > 0)
        await asyncio.to_thread(server.start)
        await eventually(lambda: writer.stats.queued_rows == 0, within=30)
    finally:
        await writer.close()
    ids = chat_ids(own_url)
    assert len(ids) == 3000
    assert set(ids) == ids_of(before) | ids_of(during)
    assert count(own_url, "model_inferences") == 3000
    assert sum(writer.stats.dropped_rows.values()) == 0
    assert sum(writer.stats.spooled_rows.values()) == 0  # the queue never filled


async def test_a_full_queue_spills_to_disk_and_is_replayed(own_url: str, server: LocalServer, tmp_path: Path) -> None:
    writer = Writer(own_url, observability(tmp_path, max_queue_rows=100))
    await writer.open()
    groups = inferences(2000)
    try:
        await asyncio.to_thread(server.stop)
        for start in range(0, len(groups), 100):
            for group in groups[start : start + 100]:
                writer.submit(group)
            await asyncio.sleep(0.005)  # the writer task spills between bursts
        await eventually(lambda: sum(writer.stats.spooled_rows.values()) + writer.stats.queued_rows == 4000)
        spooled = sum(writer.stats.spooled_rows.values())
        assert writer.stats.queued_rows <= 100
        assert spool_files(tmp_path)
        assert writer.stats.spool_bytes > 0
        await asyncio.to_thread(server.start)
        await eventually(lambda: count(own_url) == 2000, within=30)
        await eventually(lambda: not spool_files(tmp_path))
        assert writer.stats.replayed_rows == spooled
    finally:
        await writer.close()
    assert len(chat_ids(own_url)) == 2000
    assert set(chat_ids(own_url)) == ids_of(groups)
    assert count(own_url, "model_inferences") == 2000
    assert writer.stats.spool_bytes == 0
    assert sum(writer.stats.dropped_rows.values()) == 0


# -- crashes ---------------------------------------------------------------------------------------------------

CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from lsd.store.writer import Writer
    from tests.integration.test_writer import inferences, observability

    async def main(url, spool_dir, n):
        writer = Writer(url, observability(Path(spool_dir), max_queue_rows=1))
        await writer.open()
        groups = inferences(n)
        for group in groups:
            writer.submit(group)
        while sum(writer.stats.spooled_rows.values()) < 2 * n:
            await asyncio.sleep(0.01)
        sys.stdout.write("\\n".join(str(group[0].id) for group in groups))
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_a_spool_left_by_a_killed_process_is_replayed_at_open(
    database_url: str, nowhere: str, tmp_path: Path
) -> None:
    crashed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASHING_WRITER, nowhere, str(tmp_path), "500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == -9, crashed.stderr
    expected = {UUID(line) for line in crashed.stdout.split()}
    assert len(expected) == 500
    assert spool_files(tmp_path)

    writer = Writer(database_url, observability(tmp_path))
    await writer.open()
    try:
        await eventually(lambda: count(database_url) == 500)
        await eventually(lambda: not spool_files(tmp_path))
    finally:
        await writer.close()
    assert set(chat_ids(database_url)) == expected
    assert len(chat_ids(database_url)) == 500
    assert writer.stats.replayed_rows == 1000
    assert writer.stats.spool_torn_frames == 0


async def test_a_torn_final_frame_is_skipped_and_counted(database_url: str, tmp_path: Path) -> None:
    groups = inferences(10)
    spool = Spool(tmp_path, 1 << 20)
    spool.append([encode_frame(group) for group in groups])
    spool.close()
    [path] = spool_files(tmp_path)
    torn = encode_frame(inference())
    with path.open("ab") as file:
        file.write(torn[: len(torn) // 2])  # a crash in the middle of an append

    writer = Writer(database_url, observability(tmp_path))
    await writer.open()
    try:
        await eventually(lambda: not spool_files(tmp_path))
    finally:
        await writer.close()
    assert set(chat_ids(database_url)) == ids_of(groups)
    assert writer.stats.spool_torn_frames == 1
    assert writer.stats.replayed_rows == 20


async def test_a_frame_damaged_inside_a_spool_file_costs_its_rows_only(database_url: str, tmp_path: Path) -> None:
    """One bit flipped in the 5th of 10 frames: that frame's rows are lost, the 5 after it are replayed (they were
    all skipped as 'torn' before), and the file is kept as .corrupt rather than deleted."""
    groups = inferences(10)
    spool = Spool(tmp_path, 1 << 20)
    spool.append([encode_frame(group) for group in groups])
    spool.close()
    [path] = spool_files(tmp_path)
    data = bytearray(path.read_bytes())
    frame_ends = [end for end, _ in iter_frames(bytes(data), read_header(bytes(data[:MAX_HEADER])).size)]
    data[frame_ends[4] - 1] ^= 0x01  # the last payload byte of the 5th frame
    path.write_bytes(bytes(data))

    writer = Writer(database_url, observability(tmp_path))
    await writer.open()
    try:
        await eventually(lambda: not spool_files(tmp_path))
    finally:
        await writer.close()
    assert set(chat_ids(database_url)) == ids_of(groups[:4] + groups[5:])
    assert writer.stats.spool_torn_frames == 1
    assert [p.name for p in spool_files(tmp_path, "*.corrupt")] == [f"{path.name}.corrupt"]


async def test_a_replay_after_a_partial_success_writes_no_duplicates(database_url: str, tmp_path: Path) -> None:
    groups = inferences(50)
    first = Writer(database_url, observability(tmp_path, async_writes=False))
    await first.open()
    for group in groups[:20]:  # these rows are committed, and also left in the spool below
        await first.write(group)
    await first.close()
    spool = Spool(tmp_path, 1 << 20)
    spool.append([encode_frame(group) for group in groups])
    spool.close()

    writer = Writer(database_url, observability(tmp_path))
    await writer.open()
    try:
        await eventually(lambda: not spool_files(tmp_path))
    finally:
        await writer.close()
    ids = chat_ids(database_url)
    assert len(ids) == 50
    assert set(ids) == ids_of(groups)
    assert writer.stats.written_rows == {"chat_inferences": 30, "model_inferences": 30}


# -- limits and shutdown ---------------------------------------------------------------------------------------


async def test_a_full_spool_drops_rows_and_counts_them(
    nowhere: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cap = 40_000
    writer = Writer(nowhere, observability(tmp_path, max_queue_rows=10, spool_max_bytes=cap))
    await writer.open()
    groups = inferences(300)
    try:
        for group in groups:
            writer.submit(group)
        await eventually(lambda: writer.stats.queued_rows <= 10)
    finally:
        await writer.close()
    spooled = sum(writer.stats.spooled_rows.values())
    dropped = sum(writer.stats.dropped_rows.values())
    assert spooled > 0
    assert dropped > 0
    assert spooled + dropped == 600
    assert writer.stats.dropped_rows["chat_inferences"] == writer.stats.dropped_rows["model_inferences"]
    assert sum(path.stat().st_size for path in spool_files(tmp_path)) <= cap
    assert "dropped" in caplog.text
    assert "spool_max_bytes" in caplog.text
    assert "message 1" not in caplog.text  # counts, never contents


async def test_shutdown_with_the_database_down_spools_everything_within_the_deadline(
    nowhere: str, database_url: str, tmp_path: Path
) -> None:
    writer = Writer(nowhere, observability(tmp_path, shutdown_flush_timeout_s=0.5))
    await writer.open()
    groups = inferences(500)
    for group in groups:
        writer.submit(group)
    started = time.monotonic()
    await writer.close()
    assert time.monotonic() - started < 0.5 + 5  # the flush deadline plus writing the spool: it does not hang
    assert writer.stats.queued_rows == 0
    assert sum(writer.stats.spooled_rows.values()) == 1000
    assert spool_files(tmp_path)

    writer = Writer(database_url, observability(tmp_path))
    await writer.open()
    try:
        await eventually(lambda: count(database_url) == 500)
    finally:
        await writer.close()
    assert set(chat_ids(database_url)) == ids_of(groups)


async def test_close_returns_even_when_the_database_never_answers(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts TCP connections (backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/postgres"
        writer = Writer(url, observability(tmp_path, shutdown_flush_timeout_s=0.5))
        await writer.open()
        writer.submit(inference())
        await asyncio.sleep(0.1)  # a connection attempt is under way
        started = time.monotonic()
        await writer.close()
        assert time.monotonic() - started < 0.5 + 3  # the connect timeout (5 s) is cut short by the deadline
    assert sum(writer.stats.spooled_rows.values()) == 2


async def test_write_waits_for_the_database_and_keeps_its_rows_in_memory(
    own_url: str, server: LocalServer, tmp_path: Path
) -> None:
    writer = Writer(own_url, observability(tmp_path, async_writes=False, max_queue_rows=1))
    await writer.open()
    try:
        await asyncio.to_thread(server.stop)
        group = inference()
        waiting = asyncio.ensure_future(writer.record(group))
        await eventually(lambda: writer.stats.flush_failures > 0)
        assert not waiting.done()
        assert sum(writer.stats.spooled_rows.values()) == 0  # a caller waits on them: never spooled
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(waiting, 30)
        assert chat_ids(own_url) == [group[0].id]
    finally:
        await writer.close()


# -- config ----------------------------------------------------------------------------------------------------


def test_durability_keys_are_parsed(tmp_path: Path) -> None:
    default = parse("", base_dir=tmp_path).gateway.observability
    assert default.spool_dir == Path.cwd() / ".lsd" / "spool"
    assert default.spool_max_bytes == 1024**3
    assert default.shutdown_flush_timeout_s == 10.0
    text = """
    [gateway.observability]
    spool_dir = "spool"
    spool_max_bytes = 1000
    shutdown_flush_timeout_s = 2.5
    """
    config = parse(textwrap.dedent(text), base_dir=tmp_path).gateway.observability
    assert config.spool_dir == tmp_path / "spool"
    assert config.spool_max_bytes == 1000
    assert config.shutdown_flush_timeout_s == 2.5


# -- through the gateway ---------------------------------------------------------------------------------------

GATEWAY = """
[gateway.observability]
max_queue_rows = 200
spool_dir = "{spool_dir}"
shutdown_flush_timeout_s = 30

[gateway.observability.batch_writes]
flush_interval_ms = 20

[functions.chat]
type = "chat"
[functions.chat.variants.a]
type = "chat_completion"
model = "dummy::echo"
"""


class Load:
    """Clients sending inferences until stopped; records every accepted inference_id and every failure."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.accepted: list[UUID] = []
        self.failures: list[str] = []
        self.stop = asyncio.Event()

    async def client(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            while not self.stop.is_set():
                body = {"function_name": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}}
                response = await http.post("/inference", json=body)
                if response.status_code == 200:
                    self.accepted.append(UUID(response.json()["inference_id"]))
                else:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")


async def test_every_accepted_inference_is_recorded_once_across_an_outage(
    own_url: str, server: LocalServer, tmp_path: Path
) -> None:
    config = GATEWAY.format(spool_dir=tmp_path / "spool")
    async with in_process_gateway(config, own_url) as base_url:
        load = Load(base_url)
        clients = [asyncio.ensure_future(load.client()) for _ in range(8)]
        try:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.stop)
            down_at = len(load.accepted)
            await asyncio.sleep(1.5)
            assert len(load.accepted) > down_at + 50  # answers keep coming while PostgreSQL is down
            await asyncio.to_thread(server.start)
            await asyncio.sleep(0.5)
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
    assert load.failures == []
    ids = chat_ids(own_url)
    assert len(ids) == len(set(ids))
    assert set(ids) == set(load.accepted)
    assert (tmp_path / "spool").is_dir()  # the queue (200 rows) filled during the outage: rows went through the spool
    assert not spool_files(tmp_path / "spool")  # the database was back before shutdown: nothing left on disk
