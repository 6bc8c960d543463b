"""A fake Anthropic Messages API on a real socket (aiohttp.web on 127.0.0.1, port 0) for provider tests.

POST /v1/messages answers like Anthropic, as JSON or (with `"stream": true`) as server-sent events
(`event: <name>` / `data: <json>`, the full message_start ... message_stop sequence, written in pieces).
It checks what Anthropic checks and answers 400 invalid_request_error otherwise: the anthropic-version
header, `model`, `max_tokens`, roles that alternate and tool_result blocks first in a user message.
With `api_key` set it answers 401 unless x-api-key matches. A `thinking` block sent back in an assistant turn must
carry the signature this fake signs with (400 otherwise), as Anthropic checks its own signatures.
POST /v1/messages/count_tokens answers `{"input_tokens": <words in the system and text blocks>}`.

The behaviour is the model name when that is a behaviour below, else the first word of the last user text
when that is one, else `echo`. A last user message holding a tool_result is answered "result: <content>";
a forced tool (`tool_choice` {"type": "tool"}) is always called, with {"answer": <last user text>}.

  echo          text "echo: <last user text>"
  tool          a tool_use of the first tool, input {"query": <last user text>, "n": 2} (streamed in fragments)
  thinking      a signed thinking block, then the echo text
  cached        the echo, its usage reporting cache_read_input_tokens 1000 and cache_creation_input_tokens 100
  json          text '{"answer": "<last user text>"}'
  length        "echo" text cut short: stop_reason max_tokens
  refusal       stop_reason refusal
  error-NNN     HTTP NNN (400 401 403 404 429 500 529) with Anthropic's error body (429: retry-after 17)
  slow          echo after `delay_s` seconds (cut short by stop())
  malformed     a 200 whose body (or first event) is not JSON
  stream-error  streams part of the echo, then `event: error` (overloaded_error) and ends
  cutoff        streams part of the echo, then closes the connection mid-response
  hold          like cached, but streams only part of the echo, then waits for the client to go away
  truncated     streams part of the echo, then ends the response cleanly without message_stop
  leak-401      HTTP 401 whose message repeats the x-api-key received (whole, masked and cut short)
  leak          the echo, ending with the x-api-key received (streamed as one delta)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from aiohttp import web

from tests.fakes.serving import FakeServer

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
BEHAVIOURS = frozenset(
    {"echo", "tool", "thinking", "cached", "json", "length", "refusal", "slow", "malformed"}
    | {"stream-error", "cutoff", "truncated", "leak", "leak-401", "hold"}
    | {f"error-{status}" for status in ERROR_TYPES}
)
SIGNATURE = "c2lnbmF0dXJl"
CACHE_READ, CACHE_WRITE = 1000, 100
RETRY_AFTER_S = 17


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    json: Any
    query: dict[str, str]


class FakeAnthropic(FakeServer):
    """`await start()` returns the base URL to use as `api_base`; `await stop()` shuts it down."""

    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {"shutdown_timeout": 1.0}

    def __init__(self, *, api_key: str | None = None, delay_s: float = 5.0) -> None:
        super().__init__()
        self.api_key = api_key
        self.delay_s = delay_s
        self.requests: list[ReceivedRequest] = []
        self._ids = itertools.count(1)
        self._stopping = asyncio.Event()
        self.base_url = ""

    async def start(self) -> str:
        await self.listen()
        self.base_url = f"{self.url}/v1/"
        return self.base_url

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        return app

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.requests.append(ReceivedRequest(request.path, dict(request.headers), body, dict(request.query)))
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return _error(401, "invalid x-api-key")
        if request.headers.get("anthropic-version") != "2023-06-01" or "model" not in body:
            return _error(400, "anthropic-version header or model missing")
        return web.Response(body=orjson.dumps({"input_tokens": _count_input(body)}), content_type="application/json")

    async def stop(self) -> None:
        self._stopping.set()
        await super().stop()

    @property
    def last(self) -> ReceivedRequest:
        return self.requests[-1]

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(ReceivedRequest(request.path, dict(request.headers), body, dict(request.query)))
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return _error(401, "invalid x-api-key")
        problem = _validate(request, body)
        if problem:
            return _error(400, problem)
        behaviour = _behaviour(body)
        if behaviour.startswith("error-"):
            status = int(behaviour.removeprefix("error-"))
            return _error(status, f"fake error {status}")
        key = request.headers.get("x-api-key", "")
        if behaviour == "leak-401":
            return _error(401, f"invalid x-api-key {key}: {key[:4]}{'*' * 20}{key[-4:]} ({key[:12]}…)")
        if behaviour == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay_s)
        message = self._message(body, behaviour)
        if behaviour == "leak":
            message["content"][0]["text"] += f" {key}"
        if body.get("stream"):
            return await _stream(request, message, behaviour)
        if behaviour == "malformed":
            return web.Response(body=b'{"type": "message", "content": [', content_type="application/json")
        return web.Response(body=orjson.dumps(message), content_type="application/json")

    def _message(self, body: dict[str, Any], behaviour: str) -> dict[str, Any]:
        text = _last_user_text(body)
        content: list[dict[str, Any]]
        stop_reason = "end_turn"
        choice = body.get("tool_choice") or {}
        result = _last_tool_result(body)
        if result is not None:
            content = [{"type": "text", "text": f"result: {result}"}]
        elif choice.get("type") == "tool":
            content = [self._tool_use(choice["name"], {"answer": text})]
            stop_reason = "tool_use"
        elif behaviour == "tool" and body.get("tools"):
            content = [self._tool_use(body["tools"][0]["name"], {"query": text, "n": 2})]
            stop_reason = "tool_use"
        elif behaviour == "json":
            content = [{"type": "text", "text": orjson.dumps({"answer": text}).decode()}]
        elif behaviour == "refusal":
            content, stop_reason = [], "refusal"
        elif behaviour == "length":
            content, stop_reason = [{"type": "text", "text": "echo"}], "max_tokens"
        else:
            content = [{"type": "text", "text": f"echo: {text}"}]
            if behaviour == "thinking":
                thought = {"type": "thinking", "thinking": f"The user said {text}.", "signature": SIGNATURE}
                content.insert(0, thought)
        usage = {"input_tokens": _count_input(body), "output_tokens": max(_count_output(content), 1)}
        if behaviour in ("cached", "hold"):
            usage.update(cache_read_input_tokens=CACHE_READ, cache_creation_input_tokens=CACHE_WRITE)
        return {
            "id": f"msg_{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    def _tool_use(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"type": "tool_use", "id": f"toolu_{next(self._ids):06d}", "name": name, "input": arguments}


def _error(status: int, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}
    headers = {"retry-after": str(RETRY_AFTER_S)} if status == 429 else None  # as Anthropic's rate limit answers
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _validate(request: web.Request, body: Any) -> str | None:
    if request.headers.get("anthropic-version") != "2023-06-01":
        return "anthropic-version header is missing or unknown"
    if not isinstance(body, dict):
        return "body is not a JSON object"
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    roles = [m.get("role") for m in body["messages"]]
    if any(a == b for a, b in itertools.pairwise(roles)):
        return "messages: roles must alternate between 'user' and 'assistant'"
    for message in body["messages"]:
        kinds = [block.get("type") for block in message["content"]]
        if kinds != sorted(kinds, key=lambda kind: kind != "tool_result"):
            return "messages: tool_result blocks must come first in the user message"
        if any(block.get("type") == "text" and not block.get("text") for block in message["content"]):
            return "messages: text content blocks must be non-empty"
        if any(b.get("type") == "thinking" and b.get("signature") != SIGNATURE for b in message["content"]):
            return "messages: a thinking block's signature is not valid"
    return None


def _behaviour(body: dict[str, Any]) -> str:
    if body["model"] in BEHAVIOURS:
        return str(body["model"])
    words = _last_user_text(body).split(maxsplit=1)
    return words[0] if words and words[0] in BEHAVIOURS else "echo"


def _last_user_message(body: dict[str, Any]) -> list[dict[str, Any]]:
    users = [m for m in body["messages"] if m["role"] == "user"]
    content = users[-1]["content"] if users else []
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _last_user_text(body: dict[str, Any]) -> str:
    return " ".join(b["text"] for b in _last_user_message(body) if b.get("type") == "text")


def _last_tool_result(body: dict[str, Any]) -> str | None:
    if not body["messages"] or body["messages"][-1]["role"] != "user":
        return None
    results = [b["content"] for b in _last_user_message(body) if b.get("type") == "tool_result"]
    return str(results[-1]) if results else None


def _count_input(body: dict[str, Any]) -> int:
    words = len(str(body.get("system", "")).split())
    for message in body["messages"]:
        for block in message["content"] if isinstance(message["content"], list) else []:
            words += len(str(block.get("text", "")).split())
    return max(words, 1)


def _count_output(content: list[dict[str, Any]]) -> int:
    return sum(len(str(b.get("text") or b.get("thinking") or b.get("input") or "").split()) for b in content)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps({"type": event, **data}) + b"\n\n"


def _events(message: dict[str, Any], size: int = 6) -> list[bytes]:
    """The full event sequence Anthropic streams for `message` (text in deltas of `size` characters)."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [_sse("message_start", {"message": start}), _sse("ping", {})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(_sse("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
            for text in _pieces(block["text"], size):
                delta = {"type": "text_delta", "text": text}
                events.append(_sse("content_block_delta", {"index": index, "delta": delta}))
        elif block["type"] == "tool_use":
            opened = {**block, "input": {}}
            events.append(_sse("content_block_start", {"index": index, "content_block": opened}))
            for piece in ["", *_pieces(orjson.dumps(block["input"]).decode(), 7)]:
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append(_sse("content_block_delta", {"index": index, "delta": delta}))
        elif block["type"] == "thinking":
            opened = {"type": "thinking", "thinking": ""}
            events.append(_sse("content_block_start", {"index": index, "content_block": opened}))
            for piece in _pieces(block["thinking"], 8):
                delta = {"type": "thinking_delta", "thinking": piece}
                events.append(_sse("content_block_delta", {"index": index, "delta": delta}))
            delta = {"type": "signature_delta", "signature": block["signature"]}
            events.append(_sse("content_block_delta", {"index": index, "delta": delta}))
        events.append(_sse("content_block_stop", {"index": index}))
    final = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(_sse("message_delta", {"delta": final, "usage": {"output_tokens": usage["output_tokens"]}}))
    events.append(_sse("message_stop", {}))
    return events


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def _stream(request: web.Request, message: dict[str, Any], behaviour: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await response.prepare(request)
    if behaviour == "malformed":
        await response.write(b"event: message_start\ndata: {not json\n\n")
        await response.write_eof()
        return response
    events = _events(message, 1000 if behaviour == "leak" else 6)
    if behaviour in ("stream-error", "cutoff", "truncated", "hold"):
        events = events[:4]  # message_start, ping, content_block_start, the first text delta
    for event in events:
        # Each event goes out in two writes, so the client sees lines split across TCP reads.
        half = len(event) // 2
        await response.write(event[:half])
        await asyncio.sleep(0)
        await response.write(event[half:])
    if behaviour == "hold":
        await asyncio.sleep(60)  # cancelled when the client goes away (or by stop())
    if behaviour == "stream-error":
        error = {"error": {"type": "overloaded_error", "message": "Overloaded"}}
        await response.write(_sse("error", error))
    if behaviour == "cutoff" and request.transport is not None:
        request.transport.close()
        return response
    await response.write_eof()
    return response
