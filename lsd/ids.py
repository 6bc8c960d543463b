"""UUIDv7 ids: every row id is made by the domain and carries its creation time (RFC 9562)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime

# Monotonic within a process: the 12-bit rand_a field is a counter for ids made in the same millisecond.
_lock = threading.Lock()
_state = [0, 0]  # [last_ms, counter]

MIN_EPISODE_TIMESTAMP_S = 1579751960  # 2020-01-23, as TensorZero


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7 for the current unix time, strictly increasing per process; or for a given time
    (`now_ms`), unique by its random bits but outside that ordering."""
    if now_ms is not None:
        rand = int.from_bytes(os.urandom(10), "big")
        value = (now_ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | (rand >> 64 & 0xFFF) << 64 | 0b10 << 62
        return uuid.UUID(int=value | rand & 0x3FFFFFFFFFFFFFFF)
    ms = int(time.time() * 1000)
    with _lock:
        last_ms, counter = _state
        if ms <= last_ms:
            ms = last_ms
            counter += 1
            if counter > 0xFFF:
                ms += 1
                counter = 0
        else:
            counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _state[0], _state[1] = ms, counter
    rand_b = int.from_bytes(os.urandom(8), "big") & 0x3FFFFFFFFFFFFFFF
    value = (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def uuid7_floor(at: datetime) -> uuid.UUID:
    """The smallest UUIDv7 whose timestamp is `at` (used as a partition or range bound)."""
    ms = int(at.timestamp() * 1000)
    return uuid.UUID(int=(ms & 0xFFFFFFFFFFFF) << 80)


def timestamp_of(value: uuid.UUID) -> datetime:
    """The creation time carried in a UUIDv7."""
    return datetime.fromtimestamp((value.int >> 80) / 1000, tz=UTC)


def validate_episode_id(value: uuid.UUID) -> None:
    """Raise ValueError with a reason when a client-supplied episode id is not an acceptable UUIDv7."""
    if value.version != 7:
        raise ValueError(f"must be a UUIDv7, got version {value.version}")
    seconds = (value.int >> 80) // 1000
    if seconds < MIN_EPISODE_TIMESTAMP_S:
        raise ValueError("timestamp is before 2020-01-23")
    if seconds > time.time() + 1:
        raise ValueError("timestamp is in the future")
