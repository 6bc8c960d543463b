"""The U+0000 escaping of stored values: lossless both ways, and values without U+0000 or U+E000 untouched."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from lsd.store import escaping

TRICKY = ["", "plain", "\x00", "\ue000", "\ue0000", "\ue000\ue000", "a\x00\ue000b0\x00", "\\u0000", "\x000\ue000\x00"]


@pytest.mark.parametrize("text", TRICKY)
def test_text_round_trips_and_holds_no_nul(text: str) -> None:
    stored = escaping.escape_text(text)
    assert "\x00" not in stored
    assert escaping.unescape_text(stored) == text


@pytest.mark.parametrize("text", ["plain", "\\u0000", "é ☃"])
def test_text_without_nul_or_escape_is_stored_as_is(text: str) -> None:
    assert escaping.escape_text(text) is text
    assert escaping.dumps({"k": text}) == orjson.dumps({"k": text})


def test_json_round_trips_keys_and_nested_values() -> None:
    value: Any = {"a\x00": [{"text": t} for t in TRICKY], "n": 1, "none": None, "\ue000": {"x": "\x00"}}
    data = escaping.dumps(value)
    assert "\\x00" not in str(orjson.loads(data))  # what PostgreSQL gets holds no U+0000
    assert escaping.loads(data) == value
    assert escaping.loads(data.decode()) == value


LONG = "word " * 4000  # past WALK_FROM_BYTES: checked by walking the value, not searching its bytes


@pytest.mark.parametrize(
    "value",
    [
        {"messages": [{"content": [{"text": LONG + "\x00"}]}]},
        {"long": LONG, "k\x00": 1},
        {"long": LONG, "t": ("a", ("b\x00",)), "n": [1, 2.5, True, None]},
        {"long": LONG, "many": [{"n": i} for i in range(3000)] + ["\x00"]},  # more values than the walk takes
    ],
    ids=["text", "key", "tuple", "many"],
)
def test_a_big_value_is_escaped_like_a_small_one(value: dict[str, Any]) -> None:
    for data in (escaping.dumps(value), escaping.dumps_jsonb(value)[1:]):
        assert b"\\u0000" not in data
        assert escaping.loads(data) == orjson.loads(orjson.dumps(value))


def test_a_big_value_without_nul_is_encoded_once() -> None:
    value = {"long": LONG, "backslash": "\\u0000", "n": [1, 2.5, None]}
    assert escaping.dumps(value) == orjson.dumps(value)
    assert escaping.dumps_jsonb(value) == b"\x01" + orjson.dumps(value)
