"""Reading request bodies: size-limited, parsed with orjson, errors as InvalidRequest."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from lsd.errors import InvalidRequest, PayloadTooLarge


async def read_json(request: Request[Any], max_bytes: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"body: larger than the limit of {max_bytes} bytes", field="body")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"body: larger than the limit of {max_bytes} bytes", field="body")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise InvalidRequest("body: empty; expected a JSON object", field="body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body: malformed JSON: {exc}", field="body") from None


def json_response_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
