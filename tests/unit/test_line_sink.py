"""The access log's buffered sink: JSON lines in the shape of every other log line, written in bursts."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime

import orjson
import pytest

from lsd.telemetry.logging import JsonFormatter, LineSink


@pytest.fixture
def json_root() -> object:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield root
    root.handlers[:] = saved
    root.setLevel(level)


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def test_lines_are_buffered_until_the_timer_then_written_together(json_root: object) -> None:
    read, write = os.pipe()
    sink = LineSink("lsd.access", fd=write, max_delay_s=0.05)

    async def main() -> tuple[bytes, bytes]:
        sink.emit("POST /inference 200", {"status": 200, "request_id": "a"})
        sink.emit("GET /health 200", {"status": 200, "request_id": "b"})
        before = _read_all(read)
        await asyncio.sleep(0.1)
        return before, _read_all(read)

    before, after = asyncio.run(main())
    assert before == b""
    lines = [orjson.loads(line) for line in after.splitlines()]
    assert [(e["logger"], e["level"], e["request_id"]) for e in lines] == [
        ("lsd.access", "info", "a"),
        ("lsd.access", "info", "b"),
    ]
    assert lines[0]["message"] == "POST /inference 200" and lines[0]["time"].endswith("+00:00")
    os.close(read)
    os.close(write)


def test_flush_writes_at_once_and_outside_a_loop_emit_writes_directly(json_root: object) -> None:
    read, write = os.pipe()
    sink = LineSink("lsd.access", fd=write)
    sink.emit("no loop", {"n": 1})
    assert orjson.loads(_read_all(read))["n"] == 1
    os.close(read)
    os.close(write)


def test_without_json_logging_lines_go_through_logging(caplog: pytest.LogCaptureFixture) -> None:
    sink = LineSink("lsd.access")
    with caplog.at_level(logging.INFO, logger="lsd.access"):
        assert sink.enabled()
        sink.emit("GET /status 200", {"status": 200})
    assert [r.getMessage() for r in caplog.records] == ["GET /status 200"]


def test_times_match_the_logging_format() -> None:
    sink = LineSink("lsd.test")
    for now in (1_700_000_000.0, 1_700_000_000.5004, 1_700_000_059.999, 1_764_000_000.25):
        expected = datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="milliseconds")
        assert sink._time(now) == expected
