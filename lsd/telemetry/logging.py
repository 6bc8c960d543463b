"""Process-wide logging set-up: JSON lines (default) or text, level from LSD_LOG_LEVEL; a buffered line sink.

The access log writes one line per request, so it skips `logging`'s per-record machinery when it can: in JSON
format at INFO, lines go to a `LineSink` that gathers them and writes them to stderr in one `write` per burst
(at most `max_delay_s` late, flushed at shutdown), in the same shape as every other JSON log line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from lsd.errors import ConfigError


def json_line(logger: str, level: str, message: str, fields: dict[str, Any] | None, created: float) -> bytes:
    """One JSON log line (without the newline): time, level, logger, message, then the fields."""
    return _line(
        datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds"), logger, level, message, fields
    )


def _line(time_text: str, logger: str, level: str, message: str, fields: dict[str, Any] | None) -> bytes:
    entry: dict[str, Any] = {"time": time_text, "level": level, "logger": logger, "message": message}
    if fields:
        entry.update(fields)
    return orjson.dumps(entry, default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = getattr(record, "fields", None)
        fields = dict(extra) if isinstance(extra, dict) else {}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json_line(record.name, record.levelname.lower(), record.getMessage(), fields, record.created).decode()


def json_format() -> bool:
    return os.environ.get("LSD_LOG_FORMAT", "json") != "text"


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def configure() -> None:
    level = os.environ.get("LSD_LOG_LEVEL", "INFO").upper()
    if level not in LEVELS:
        raise ConfigError([f"LSD_LOG_LEVEL: expected one of {', '.join(LEVELS)}, got {level.lower()!r}"])
    handler = logging.StreamHandler(sys.stderr)
    if json_format():
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class TextFormatter(logging.Formatter):
    """The text format: the message, then a record's structured fields (an access line's request id, latency,
    inference...) as `key=value` pairs, which the JSON format writes as keys."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if "\n" in message or "\r" in message:  # a line break from a request (a %0a path) must not forge a line
            record = logging.makeLogRecord({**record.__dict__, "msg": _one_line(message), "args": None})
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{key}={_one_line(str(value))}" for key, value in fields.items())
        return line


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class LineSink:
    """INFO lines of one logger, written to a file descriptor in bursts; through `logging` when it is not JSON.

    `emit` costs one orjson call and a bytes append; the write happens from an event-loop timer at most
    `max_delay_s` later (or at once past `max_bytes`, or outside an event loop). `flush()` at shutdown.
    Callers check `enabled()` first."""

    def __init__(self, logger: str, *, fd: int = 2, max_delay_s: float = 0.02, max_bytes: int = 64 * 1024) -> None:
        self._log = logging.getLogger(logger)
        self._name = logger
        self._fd = fd
        self._max_delay_s = max_delay_s
        self._max_bytes = max_bytes
        self._buffer = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._second, self._second_text = -1, ""
        # Direct only where configure() set up JSON lines on stderr; otherwise `logging` decides (tests, embedding).
        self._direct = any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)

    def enabled(self) -> bool:
        return self._log.isEnabledFor(logging.INFO)

    def emit(self, message: str, fields: dict[str, Any]) -> None:
        if not self._direct:
            self._log.info(message, extra={"fields": fields})
            return
        self._buffer += _line(self._time(time.time()), self._name, "info", message, fields)
        self._buffer += b"\n"
        if len(self._buffer) >= self._max_bytes:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self._max_delay_s, self.flush)

    def _time(self, now: float) -> str:
        """`now` as json_line writes it (ISO 8601, milliseconds, UTC), the date part formatted once a second."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._second_text}.{int((now - second) * 1000):03d}+00:00"

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        data, self._buffer = bytes(self._buffer), bytearray()
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                continue
            except OSError:
                return  # stderr closed: nowhere left to log
            view = view[written:]
