"""Reading request bodies: size-limited, parsed with orjson, errors as InvalidRequest."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from lsd.errors import InvalidRequest, PayloadTooLarge

WALK_FROM_BYTES = 8192  # a body larger than this is checked by walking its parsed values (see receive_json)


async def read_json(request: Request[Any], max_bytes: int) -> Any:
    return await receive_json(request.scope, request.receive, max_bytes)


async def receive_json(scope: Scope, receive: Receive, max_bytes: int) -> Any:
    """The request body parsed as JSON, read straight from the ASGI messages (at most `max_bytes`)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
            raise PayloadTooLarge(f"body: larger than the limit of {max_bytes} bytes", field="body")
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"body: larger than the limit of {max_bytes} bytes", field="body")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not raw:
        raise InvalidRequest("body: empty; expected a JSON object", field="body")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body: malformed JSON: {exc}", field="body") from None
    max_depth: int = scope["state"]["services"].config.gateway.max_json_depth
    # A big body is mostly long texts: a walk of its few values is far cheaper than scanning its bytes (on Python
    # 3.11 a search for \u0000 costs ~0.7 us per KiB, counting brackets ~0.8 us; 100 KiB: 150 us, the walk 5 us).
    deep = walked(value, max_depth, len(raw) >> 8) if len(raw) > WALK_FROM_BYTES else None
    if deep is None:  # a small body, one of many values for its size, or U+0000 somewhere: the byte scans decide
        # Arrays and objects cannot nest deeper than there are brackets: most bodies need no walk at all.
        deep = raw.count(b"[") + raw.count(b"{") > max_depth and too_deep(value, max_depth)
        # PostgreSQL cannot store U+0000, which JSON can only spell as the escape \u0000: one scan of the raw bytes,
        # and a walk only when it is there (docs/api.md#nul). Refused before any provider is called.
        if not deep and raw.find(b"\\u0000") >= 0 and (path := nul_path(value)) is not None:
            raise InvalidRequest.at(path, "contains U+0000 (NUL), which cannot be stored; remove it or encode it")
    if deep:
        raise InvalidRequest(f"body: JSON nested deeper than gateway.max_json_depth ({max_depth})", field="body")
    return value


def walked(value: Any, max_depth: int, budget: int) -> bool | None:
    """Whether arrays and objects nest more than `max_depth` levels, from one walk of at most `budget` values that
    also finds no string or key holding U+0000; None when one does, or when there are more values than `budget`."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        budget -= 1
        if budget < 0:
            return None
        item, depth = stack.pop()
        kind = type(item)  # orjson makes exact types
        if kind is str:
            if "\x00" in item:
                return None
        elif kind is dict:
            if depth > max_depth:
                return True
            for key, child in item.items():
                if "\x00" in key:
                    return None
                stack.append((child, depth + 1))
        elif kind is list:
            if depth > max_depth:
                return True
            stack.extend([(child, depth + 1) for child in item])
    return False


def nul_path(value: Any) -> str | None:
    """The path (`input.messages[0].content[0].text`) of the first string or key holding U+0000, or None."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path or "body"
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                if "\x00" in key:
                    return f"{path or 'body'} (a key)"
                stack.append((child, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


def too_deep(value: Any, max_depth: int) -> bool:
    """Whether arrays and objects nest more than `max_depth` levels (iterative: no recursion limit to hit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_response_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
