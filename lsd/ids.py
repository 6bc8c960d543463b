"""UUIDv7 ids: every row id is made by the domain and carries its creation time (RFC 9562)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime

import orjson

# Monotonic within a process: the 12-bit rand_a field is a counter for ids made in the same millisecond.
_lock = threading.Lock()
_state = [0, 0]  # [last_ms, counter]


# Random bits come from os.urandom in 4 KiB draws: one getrandom() call per 512 ids instead of one per id (a
# syscall on the request path costs more than the id itself). A forked child drops the parent's buffer, so two
# processes never hand out the same bits.
class _RandomPool:
    """os.urandom output handed out a few bytes at a time; used with _lock held."""

    __slots__ = ("buffer", "offset")
    CHUNK = 4096

    def __init__(self) -> None:
        self.buffer = b""
        self.offset = 0

    def forget(self) -> None:
        self.buffer, self.offset = b"", 0

    def bits(self, nbytes: int) -> int:
        if self.offset + nbytes > len(self.buffer):
            self.buffer, self.offset = os.urandom(self.CHUNK), 0
        start = self.offset
        self.offset = start + nbytes
        return int.from_bytes(self.buffer[start : self.offset], "big")


_random = _RandomPool()
os.register_at_fork(after_in_child=_random.forget)

MIN_EPISODE_TIMESTAMP_S = 1579751960  # 2020-01-23, as TensorZero
# Episodes of workflow evaluation runs carry their creation time plus this offset (~317 years), as TensorZero's do:
# an episode id at or past it is looked up as a run's episode instead of being validated as a client's id.
WORKFLOW_EPISODE_OFFSET_S = 10_000_000_000


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7 for the current unix time, strictly increasing per process; or for a given time
    (`now_ms`), unique by its random bits but outside that ordering."""
    with _lock:
        rand = _random.bits(10)  # 16 bits for a new millisecond's counter, 64 for rand_b
        if now_ms is None:
            ms = time.time_ns() // 1_000_000
            last_ms, counter = _state
            if ms <= last_ms:
                ms = last_ms
                counter += 1
                if counter > 0xFFF:
                    ms += 1
                    counter = 0
            else:
                counter = rand >> 64 & 0x3FF  # a random start leaves room to count up within the millisecond
            _state[0], _state[1] = ms, counter
        else:
            ms, counter = now_ms, rand >> 64 & 0xFFF
    return _uuid((ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand & 0x3FFFFFFFFFFFFFFF)


def _uuid(value: int) -> uuid.UUID:
    """uuid.UUID(int=value) without its argument checks (half its cost; `value` is a valid 128-bit UUIDv7)."""
    made = _new(uuid.UUID)
    _set(made, "int", value)
    _set(made, "is_safe", _UNKNOWN_SAFETY)
    return made


def text(value: uuid.UUID) -> str:
    """`str(value)` for less: orjson formats a UUID in native code (~0.16 us), uuid.UUID.__str__ in Python (~0.57
    us); a request formats four or five (its request id, the answer's ids, the access log's)."""
    return _dumps(value)[1:-1].decode()


_dumps = orjson.dumps
_new = object.__new__
_set = object.__setattr__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown


def uuid7_floor(at: datetime) -> uuid.UUID:
    """The smallest UUIDv7 whose timestamp is `at` (used as a partition or range bound)."""
    ms = int(at.timestamp() * 1000)
    return uuid.UUID(int=(ms & 0xFFFFFFFFFFFF) << 80)


def timestamp_of(value: uuid.UUID) -> datetime:
    """The creation time carried in a UUIDv7."""
    return datetime.fromtimestamp((value.int >> 80) / 1000, tz=UTC)


def workflow_episode_id() -> uuid.UUID:
    """A new episode id of a workflow evaluation run: a UUIDv7 for now + WORKFLOW_EPISODE_OFFSET_S."""
    return uuid7(time.time_ns() // 1_000_000 + WORKFLOW_EPISODE_OFFSET_S * 1000)


def is_workflow_episode(value: uuid.UUID) -> bool:
    """Whether an episode id is in the range reserved for workflow evaluation runs' episodes."""
    return value.version == 7 and (value.int >> 80) // 1000 >= WORKFLOW_EPISODE_OFFSET_S


def validate_episode_id(value: uuid.UUID) -> None:
    """Raise ValueError with a reason when a client-supplied episode id is not an acceptable UUIDv7. An id in the
    workflow evaluation range passes: whether such an episode exists is looked up where it is used."""
    if value.version != 7:
        raise ValueError(f"must be a UUIDv7, got version {value.version}")
    if is_workflow_episode(value):
        return
    seconds = (value.int >> 80) // 1000
    if seconds < MIN_EPISODE_TIMESTAMP_S:
        raise ValueError("timestamp is before 2020-01-23")
    if seconds > time.time() + 1:
        raise ValueError("timestamp is in the future")
