"""lsd.store.input_strings: which strings of an input are stored once, and what the writer queues for them."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from lsd.ids import uuid7
from lsd.records import ChatInferenceRecord, InputStringRecord, JsonInferenceRecord, ModelInferenceDataRecord, Record
from lsd.store.input_strings import MIN_CHARS, InputStrings, day_of, key_of

LONG = "a long system prompt. " * 60
RESULT = "r" * MIN_CHARS
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
DAY_MS = 86_400_000


def chat(input: dict[str, Any], at_ms: int | None = None) -> ChatInferenceRecord:
    return ChatInferenceRecord(
        uuid7(at_ms), NOW, "f", "v", uuid7(), input, [], None, {}, {}, 1, None, None, None, None, "stop", False,
        None, None,
    )  # fmt: skip


def agent_input(*, short: bool = False) -> dict[str, Any]:
    result = "short" if short else RESULT
    return {
        "system": LONG,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "user", "content": [{"type": "tool_result", "id": "1", "name": "t", "result": result}]},
        ],
    }


def inference_of(records: list[Record] | tuple[Record, ...]) -> ChatInferenceRecord | JsonInferenceRecord:
    found = [r for r in records if isinstance(r, ChatInferenceRecord | JsonInferenceRecord)]
    assert len(found) == 1
    return found[0]


def test_a_string_is_stored_once_a_day_and_keyed_in_every_input() -> None:
    strings = InputStrings()
    first = list(strings.dedupe([chat(agent_input())]))
    assert [type(r) for r in first] == [InputStringRecord, InputStringRecord, ChatInferenceRecord]
    record = inference_of(first)
    assert record.input_refs == ["system", "messages,1,content,0,result"]
    assert record.input["system"] == str(key_of(LONG))
    assert record.input["messages"][1]["content"][0]["result"] == str(key_of(RESULT))
    assert record.input["messages"][0] == agent_input()["messages"][0]
    assert {(r.hash, r.value, r.inference_id) for r in first if isinstance(r, InputStringRecord)} == {
        (key_of(LONG), LONG, record.id),
        (key_of(RESULT), RESULT, record.id),
    }
    again = list(strings.dedupe([chat(agent_input())]))  # stored that day already: only the keys
    assert [type(r) for r in again] == [ChatInferenceRecord]
    assert inference_of(again).input_refs == ["system", "messages,1,content,0,result"]
    short = list(strings.dedupe([chat(agent_input(short=True))]))  # a short result stays inline
    assert inference_of(short).input_refs == ["system"]


def test_the_next_day_stores_the_string_again_in_its_own_partition() -> None:
    strings = InputStrings()
    today = uuid7().int >> 80
    strings.dedupe([chat(agent_input(), today)])
    tomorrow = list(strings.dedupe([chat(agent_input(), today + DAY_MS)]))
    record = inference_of(tomorrow)
    stored = [r for r in tomorrow if isinstance(r, InputStringRecord)]
    assert len(stored) == 2 and all(r.inference_id == record.id for r in stored)
    assert day_of(record.id) == day_of(uuid7(today)) + 1


def test_short_strings_escaped_strings_and_other_records_are_left_alone() -> None:
    strings = InputStrings()
    escaped = "\ue000" + LONG  # stored escaped in jsonb: left inline
    input = {"system": escaped, "messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 100}]}]}
    data = ModelInferenceDataRecord(uuid7(), NOW, uuid7(), "raw " * 500, None, None, None)
    group = [chat(input), data]
    assert strings.dedupe(group) is group  # nothing changed: the same sequence


def test_the_callers_input_is_not_changed() -> None:
    strings = InputStrings()
    input = agent_input()
    before = copy.deepcopy(input)
    out = strings.dedupe([chat(input)])
    assert input == before
    assert inference_of(list(out)).input != before


def test_a_json_inference_and_a_file_and_text_blocks() -> None:
    strings = InputStrings()
    data = "QUJD" * 400
    input = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": LONG}, {"type": "file", "data": data}]},
        ]
    }

    def json_record() -> JsonInferenceRecord:
        return JsonInferenceRecord(
            uuid7(), NOW, "f", "v", uuid7(), input, {"raw": "{}", "parsed": {}}, None, {}, {}, 1, None, None, None,
            None, "stop", False, None, None,
        )  # fmt: skip

    out = list(strings.dedupe([json_record()]))
    assert inference_of(out).input_refs == ["messages,0,content,0,text", "messages,0,content,1,data"]


def test_memory_is_bounded_and_forgets_the_oldest() -> None:
    strings = InputStrings(capacity=2)
    texts = [f"{n} " + "z" * MIN_CHARS for n in range(3)]
    for text in texts:  # three (day, key) pairs: the first is forgotten
        strings.dedupe([chat({"system": text, "messages": []})])
    first_again = list(strings.dedupe([chat({"system": texts[0], "messages": []})]))
    assert [type(r) for r in first_again] == [InputStringRecord, ChatInferenceRecord]  # stored again
    last_again = list(strings.dedupe([chat({"system": texts[2], "messages": []})]))
    assert [type(r) for r in last_again] == [ChatInferenceRecord]


def test_keys_are_sha256_prefixes() -> None:
    assert key_of("abc") == UUID("ba7816bf-8f01-cfea-4141-40de5dae2223")
