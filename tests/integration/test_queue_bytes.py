"""`max_queue_bytes`: the writer's queue is bounded by the memory its rows hold, not only by their count.

With agent-sized prompts a queue of `max_queue_rows` rows would hold gigabytes; past `max_queue_bytes` (as
lsd.store.footprint estimates it) the oldest rows move to the spool, as past `max_queue_rows`, and are replayed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsd.store import writer as writer_module
from lsd.store.footprint import footprint
from lsd.store.local import free_port
from lsd.store.writer import Writer
from tests.integration.test_spool import replay
from tests.integration.test_writer import chat_ids, eventually, ids_of, inference, inferences, observability

PROMPT = "word " * 20_000  # 100,000 characters


def nowhere() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


async def test_big_rows_spill_past_max_queue_bytes_and_are_replayed(database_url: str, tmp_path: Path) -> None:
    groups = [inference(f"{i} {PROMPT}") for i in range(60)]  # ~100 KB each: ~6 MB in all
    size = footprint(groups[0])
    assert 100_000 < size < 250_000  # the prompt twice (input, output reversed), and the rest
    limit = 20 * size
    writer = Writer(nowhere(), observability(tmp_path, max_queue_bytes=limit))
    await writer.open()
    try:
        small = inferences(writer_module.MEASURE_FROM_ROWS // 2)  # past MEASURE_FROM_ROWS: sizes count from here
        for group in small:
            writer.submit(group)
        for group in groups:
            writer.submit(group)
            await asyncio.sleep(0)  # the writer task spills between submissions
        await eventually(lambda: writer.stats.queued_bytes <= limit and sum(writer.stats.spooled_rows.values()) > 0)
        queued, spooled = writer.stats.queued_rows, sum(writer.stats.spooled_rows.values())
        # Two rows per inference, and an input_strings row for each big prompt (lsd.store.input_strings): none lost
        rows = 2 * len(small) + 3 * len(groups)
        assert queued + spooled == rows
        assert queued < rows  # far below max_queue_rows (100,000): the bytes decided
        assert writer.stats.queued_bytes <= limit
        assert sum(writer.stats.dropped_rows.values()) == 0
    finally:
        await writer.close()  # nothing reachable: what is left is spooled too
    assert writer.stats.queued_bytes == 0
    await replay(database_url, tmp_path)
    assert set(chat_ids(database_url)) == ids_of(small) | ids_of(groups)


async def test_queued_bytes_are_estimated_once_the_queue_is_long_and_return_to_zero(
    database_url: str, tmp_path: Path
) -> None:
    writer = Writer(nowhere(), observability(tmp_path))
    await writer.open()
    try:
        short = inferences(10)
        for group in short:
            writer.submit(group)
        assert writer.stats.queued_bytes == 0  # a short queue is not measured: no cost per request
        long = inferences(writer_module.MEASURE_FROM_ROWS)
        for group in long:
            writer.submit(group)
        # Past MEASURE_FROM_ROWS the task sizes what was queued before, and every later group is sized as it comes
        # (one in SAMPLE_EVERY measured, the others estimated from it: these groups differ only by a few digits).
        expected = sum(footprint(group) for group in [*short, *long])
        await eventually(lambda: abs(writer.stats.queued_bytes - expected) < expected * 0.01)
    finally:
        await writer.close()
    assert writer.stats.queued_bytes == 0
    await replay(database_url, tmp_path)
    assert len(chat_ids(database_url)) == len(short) + len(long)
