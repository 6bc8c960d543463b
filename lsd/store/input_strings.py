"""An input's long strings stored once a day across inferences (0020_input_strings.sql; docs/schema.md#input-strings).

An agent sends its whole conversation again at every step, so the same system prompt, screenshots and tool results
reach the gateway many times. The writer runs each group of records through `InputStrings.dedupe` before queueing
it: each long string of a chat or json inference's input (a string system prompt, a text block's text, a tool
result, a file's data; MIN_CHARS characters or more) is stored once a UTC day in `input_strings`, keyed by its
SHA-256, and the input holds the key in its place, its path in `input_refs`. Readers put the strings back with the
SQL function `lsd_input(input, input_refs, id)`.

Every long string is hashed (SHA-256: ~75 us for 100 KiB here), the first time too: storing a string's first sight
inline, hashing only those seen again, was measured to store 1.7x the bytes of an agent session (every string twice)
and to cost the server and PostgreSQL more CPU per step, for ~5 % of a unique 100 KiB prompt's cost saved
(docs/performance.md, session 23). The memory of (day, key) pairs stored is per writer, bounded, and forgets the
oldest first: what it forgets is at worst stored again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from hashlib import sha256
from typing import Any
from uuid import UUID

from lsd.records import ChatInferenceRecord, InputStringRecord, JsonInferenceRecord, Record

MIN_CHARS = 1024  # a shorter string stays inline: its key and path would save too little
CAPACITY = 65_536  # (day, key) pairs remembered as stored, per writer
_DAY_MS = 86_400_000
# Where a stored input block keeps its long string: a text block's text, a tool result's result (an agent's tool loop
# is mostly tool results), and a file's base64 `data` (an image a provider gets as a data URL).
_BLOCK_STRINGS = {"text": "text", "tool_result": "result", "file": "data"}

Path = tuple[str | int, ...]
_INFERENCES = frozenset((ChatInferenceRecord, JsonInferenceRecord))  # a set lookup of the type: ~0.1 us a record


def long_strings(input: Mapping[str, Any], min_chars: int = MIN_CHARS) -> list[tuple[Path, str]]:
    """(path, string) of each long string of a stored input: its system when a string, and each message block's
    text, tool result or file data, of `min_chars` characters or more (also the texts lsd.inference.recording's
    payload references point at). A list built in a plain loop: this runs for every inference the writer queues."""
    found: list[tuple[Path, str]] = []
    system = input.get("system")
    if type(system) is str and len(system) >= min_chars:
        found.append((("system",), system))
    for i, message in enumerate(input.get("messages") or ()):
        if type(message) is not dict:
            continue
        for j, block in enumerate(message.get("content") or ()):
            if type(block) is not dict:
                continue
            key = _BLOCK_STRINGS.get(str(block.get("type")), "text")
            text = block.get(key)
            if type(text) is str and len(text) >= min_chars:
                found.append((("messages", i, "content", j, key), text))
    return found


def key_of(text: str) -> UUID:
    """The string's key in input_strings: the first 16 bytes of the SHA-256 of its UTF-8."""
    return UUID(bytes=sha256(text.encode()).digest()[:16])


def day_of(inference_id: UUID) -> int:
    """The UTC day (days since the epoch) a UUIDv7 was made in: its partition's day."""
    return (inference_id.int >> 80) // _DAY_MS


class InputStrings:
    """One writer's memory of the long strings it stored: the (day, key) pairs."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._stored: dict[tuple[int, UUID], None] = {}

    def dedupe(self, records: Sequence[Record]) -> Sequence[Record]:
        """`records`, with each chat or json inference's input holding keys in place of its long strings, preceded
        by the input_strings rows not yet stored that day. The same sequence when nothing changed."""
        out: list[Record] | None = None
        for index, record in enumerate(records):
            if type(record) in _INFERENCES and record.input_refs is None:  # type: ignore[union-attr]
                replaced = self._inference(record)  # type: ignore[arg-type]
                if replaced is not None:
                    if out is None:
                        out = list(records[:index])
                    out += replaced
                    continue
            if out is not None:
                out.append(record)
        return records if out is None else out

    def _inference(self, record: ChatInferenceRecord | JsonInferenceRecord) -> list[Record] | None:
        found = long_strings(record.input)
        if not found:
            return None
        day = day_of(record.id)
        rows: list[Record] = []
        keys: list[tuple[Path, str]] = []
        for path, text in found:
            if "\ue000" in text or "\x00" in text:  # jsonb's escapes (lsd.store.escaping): left inline
                continue
            key = key_of(text)
            if (day, key) not in self._stored:
                _remember(self._stored, (day, key), self.capacity)
                rows.append(InputStringRecord(key, record.id, text))
            keys.append((path, str(key)))
        if not keys:
            return None
        refs = [",".join(map(str, path)) for path, _ in keys]
        rows.append(dataclasses.replace(record, input=_with_keys(record.input, keys), input_refs=refs))
        return rows


def _remember(memory: dict[Any, None], item: Any, capacity: int) -> None:
    if len(memory) >= capacity:
        del memory[next(iter(memory))]  # the oldest
    memory[item] = None


def _with_keys(input: Mapping[str, Any], keys: Sequence[tuple[Path, str]]) -> dict[str, Any]:
    """A copy of `input` with each path's string replaced by its key: only the dicts and lists on the paths are
    copied, the rest shared (the caller's input is not changed)."""
    top = dict(input)
    copies = {id(top)}
    for path, key in keys:
        node: Any = top
        for step in path[:-1]:
            child = node[step]
            if id(child) not in copies:
                child = node[step] = dict(child) if type(child) is dict else list(child)
                copies.add(id(child))
            node = child
        node[path[-1]] = key
    return top
