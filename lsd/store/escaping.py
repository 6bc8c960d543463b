"""The escaping that lets text and jsonb columns hold U+0000, which PostgreSQL refuses, and its reversal on read.

PostgreSQL's text and jsonb cannot hold U+0000 (NUL). Provider output may contain it, and must be stored, so every
jsonb value LSD writes, and the text columns that hold provider text (`ESCAPED_TEXT_COLUMNS`), are stored with
U+E000 (a private-use code point) as an escape character:

- U+0000 is stored as U+E000 followed by "0";
- U+E000 itself is stored as U+E000 U+E000.

Reading reverses it (jsonb: in the loader every query connection uses; text: `unescape_text` where those columns are
read), so a value reads back exactly as it was written. Request inputs with U+0000 are refused before they get here
(lsd.api.body); this is for what the gateway receives from providers.

Cost: one scan of the encoded bytes per jsonb value (a walk of its strings instead, for a big one) and of each
escaped text value for either character; the walk that escapes runs only when one is found (rare).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

NUL = "\x00"
ESCAPE = "\ue000"
_ESCAPE_UTF8 = ESCAPE.encode()
_NUL_JSON = b"\\u0000"  # how orjson writes U+0000 inside a JSON string (a false positive only costs a walk)
_ESCAPED = re.compile("\ue000(.)", re.DOTALL)
WALK_FROM_BYTES = 8192  # JSON larger than this is checked for U+0000 by walking its value (see _holds_nul)
_SCALARS = frozenset((int, float, bool))

# Text columns that hold what a provider sent (or an error quoting it): escaped when written by the writer's COPY,
# unescaped where the query API reads them.
ESCAPED_TEXT_COLUMNS = frozenset({"raw_request", "raw_response", "original_response", "error"})


def needs_escape(text: str) -> bool:
    return NUL in text or ESCAPE in text


def escape_text(text: str) -> str:
    """`text` as stored: U+E000 doubled, then U+0000 as U+E000 "0"."""
    if NUL not in text and ESCAPE not in text:
        return text
    return text.replace(ESCAPE, ESCAPE + ESCAPE).replace(NUL, ESCAPE + "0")


def _unescaped(match: re.Match[str]) -> str:
    return NUL if match[1] == "0" else match[1]


def unescape_text(text: str) -> str:
    """The original of a stored `text` (the reverse of `escape_text`)."""
    if ESCAPE not in text:
        return text
    return _ESCAPED.sub(_unescaped, text)


def unescape_optional(text: str | None) -> str | None:
    return None if text is None else unescape_text(text)


def _walk(value: Any, convert: Any) -> Any:
    """`value` with every string (keys included) passed through `convert`."""
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, dict):
        return {convert(k) if isinstance(k, str) else k: _walk(v, convert) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, convert) for v in value]
    return value


def escape_json(value: Any) -> Any:
    return _walk(value, escape_text)


def unescape_json(value: Any) -> Any:
    return _walk(value, unescape_text)


def _holds_nul(value: Any, data: bytes) -> bool:
    """Whether `data`, the JSON of `value`, may hold U+0000 (a false positive only costs a walk). A big value is
    mostly long texts: a walk of its strings (a memchr each) is far cheaper than a search of its bytes for
    \\u0000 (~0.7 us per KiB on Python 3.11: 70 us for a 100 KiB prompt, the walk 2 us)."""
    if len(data) > WALK_FROM_BYTES:
        held = _nul_in(value, len(data) >> 8)
        if held is not None:
            return held
    return data.find(_NUL_JSON) >= 0


def _nul_in(value: Any, budget: int) -> bool | None:
    """Whether a string or key of `value` holds U+0000; None for more than `budget` values or a type this walk
    does not know (a dataclass, a str subclass: orjson encodes what it holds, the walk would not see it)."""
    stack = [value]
    while stack:
        budget -= 1
        if budget < 0:
            return None
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if NUL in item:
                return True
        elif kind is dict:
            for key, child in item.items():
                if type(key) is not str:
                    return None
                if NUL in key:
                    return True
                stack.append(child)
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif item is not None and kind not in _SCALARS:
            return None
    return False


def dumps(value: Any) -> bytes:
    """JSON for a jsonb column: orjson's, with U+0000 and U+E000 escaped (see the module's docstring)."""
    data = orjson.dumps(value)
    # 0xEE, an int, is a memchr for the byte that starts U+E000-U+EFFF (private use): far cheaper than a search for
    # all three bytes. Not `bytes in bytes`: on Python 3.11 that first tries its operand as an int, raising and
    # clearing a TypeError (~1,900 instructions, ~0.1 us; eleven a request, docs/performance.md, session 13): find().
    if (0xEE in data and data.find(_ESCAPE_UTF8) >= 0) or _holds_nul(value, data):
        return orjson.dumps(escape_json(value))
    return data


def dumps_jsonb(value: Any) -> bytes:
    """`dumps` in jsonb's binary format (version 1, then the text), as a binary COPY writes it: one Python call per
    value (the writer's COPY makes ~5 per inference)."""
    data = orjson.dumps(value)
    if (0xEE in data and data.find(_ESCAPE_UTF8) >= 0) or _holds_nul(value, data):
        data = orjson.dumps(escape_json(value))
    return b"\x01" + data


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """A jsonb column's value as it was written (the reverse of `dumps`)."""
    value = orjson.loads(data)
    if isinstance(data, str):
        return unescape_json(value) if ESCAPE in data else value
    data = bytes(data)
    if 0xEE in data and data.find(_ESCAPE_UTF8) >= 0:
        return unescape_json(value)
    return value
