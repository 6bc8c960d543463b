"""UUIDv7 ids: version, monotonicity and the time they carry."""

from __future__ import annotations

import pickle
import time
import uuid
from datetime import UTC, datetime

import pytest

from lsd import ids
from lsd.ids import timestamp_of, uuid7, uuid7_floor, validate_episode_id


def test_uuid7_is_version_7_and_strictly_increasing() -> None:
    ids = [uuid7() for _ in range(10_000)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_uuid7_carries_its_time() -> None:
    before = datetime.now(tz=UTC)
    value = uuid7()
    assert abs((timestamp_of(value) - before).total_seconds()) < 1


def test_floor_orders_with_ids_of_that_instant() -> None:
    now = datetime.now(tz=UTC)
    assert uuid7_floor(now) <= uuid7()


def test_episode_id_validation() -> None:
    validate_episode_id(uuid7())
    with pytest.raises(ValueError, match="UUIDv7"):
        validate_episode_id(uuid.UUID(int=uuid7().int ^ (0xF << 76)))
    with pytest.raises(ValueError, match="future"):
        validate_episode_id(uuid7(int((time.time() + 3600) * 1000)))
    with pytest.raises(ValueError, match="2020"):
        validate_episode_id(uuid7(1000))


def test_ids_behave_as_uuids_built_by_the_uuid_module() -> None:
    value = uuid7()
    same = uuid.UUID(str(value))
    assert value == same and hash(value) == hash(same) and str(value) == str(same)
    assert value.is_safe is same.is_safe and pickle.loads(pickle.dumps(value)) == value
    at = uuid7(1_700_000_000_123)
    assert at.version == 7 and at.variant == uuid.RFC_4122 and at.int >> 80 == 1_700_000_000_123


def test_text_is_str_of_any_uuid() -> None:
    made = [uuid7() for _ in range(100)] + [uuid.uuid4(), uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1)]
    for value in made:
        assert ids.text(value) == str(value)
