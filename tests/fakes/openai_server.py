"""A fake OpenAI (and Azure OpenAI) HTTP server on a real socket, speaking the real wire format.

    async with FakeOpenAI(api_key="sk-test") as fake:   # or: await fake.start() ... await fake.stop()
        fake.api_base        # "http://127.0.0.1:<port>/v1/"  (an `openai` provider's api_base)
        fake.url             # "http://127.0.0.1:<port>"      (an `azure` provider's endpoint)
        fake.requests        # every request received: RecordedRequest(method, path, query, headers, body)

Routes: POST /v1/chat/completions (plain and `"stream": true`), POST /v1/embeddings and Azure's
POST /openai/deployments/{deployment}/chat/completions?api-version=... and .../embeddings?api-version=... .
With `api_key` set, a request without `Authorization: Bearer <key>` (Azure: `api-key: <key>`) gets OpenAI's 401
error JSON.

The behaviour is steered by a directive: the last user message may start with "[fake:<directive>]" (the
rest of the message is the text the answer uses); otherwise a model name that is a directive applies;
otherwise a request whose tool_choice forces a function gets a call to it; otherwise the answer echoes.

    echo             "echo: <last user text>" (the default; the fast path, no sleeps)
    tool             one call to the first offered tool (or the forced one), arguments {"text": <text>}
    toolround        as `tool` until the conversation ends with a tool result (a `tool` message): then the
                     text "result: <that message's content>" (a function calling round trip)
    tools            two calls (the first two offered tools, or the first one twice)
    json             the text {"answer": "<text>"}
    choose-<n>       the text {"thinking": "...", "answer_choice": <n>} (a best_of_n evaluator's choice)
    cot              the text {"thinking": "...", "response": {"answer": "<text>"}} (a chain_of_thought answer)
    score-<json>     the text {"score": <json>} (an llm_judge's verdict: score-true, score-0.25)
    error-<status>   HTTP <status> with {"error": {"message", "type", "param", "code"}} (e.g. error-429)
    slow, slow-<ms>  sleeps `delay_s` (or <ms>), then echoes; for exercising timeouts
    hold             streams the first delta, then waits for `fake.release` (an asyncio.Event) to be set
    finish-<reason>  echoes with that finish_reason (length, content_filter, ...)
    malformed        a 200 whose body (stream: whose first event) is not JSON
    nochoices        a 200 chat.completion object without choices
    broken           streams two deltas, then closes the connection without `data: [DONE]`;
                     without streaming, closes the connection without answering
    nul              echoes with U+0000 (and U+E000, LSD's escape character) in the answer: "nul\\x00: <text> \\ue0000"
    midstream-error  streams two deltas, then an `{"error": {...}}` event, then the rest and `data: [DONE]`
                     (without streaming: echoes)
    leak-401         HTTP 401 whose message repeats the key received, whole, masked and cut short (`leaked`)
    leak             echoes, the answer ending with the key received (a provider that repeats it in a 200)
    reasoning        echoes after `reasoning_content` "pondering <text>" (DeepSeek's, vLLM's field; streamed as
                     one reasoning delta first)

Embeddings take the model name as their directive: error-<status>, slow/slow-<ms> (then answer), and
flaky-<n> (the first <n> calls of that model answer 503, the later ones succeed).

Streamed answers are sent one word (or argument fragment) per `chat.completion.chunk` event, then a
chunk with the finish_reason, then (with stream_options.include_usage) a usage-only chunk with empty
choices, then `data: [DONE]`. A request with no `stream_options` key at all gets its usage on the finish_reason
chunk instead, as Mistral (which refuses the key) sends it. Usage counts words: prompt_tokens over all message
text, completion_tokens over the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from aiohttp import web

from tests.fakes.serving import FakeServer

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (fake)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (fake)."),
    403: ("request_forbidden", "unsupported_country_region_territory", "Forbidden (fake)."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (fake)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (fake)."),
    500: ("server_error", None, "The server had an error while processing your request (fake)."),
    503: ("server_error", None, "The engine is currently overloaded (fake)."),
}
_PREFIX = "[fake:"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True, slots=True)
class _Call:
    """One chat request, decoded: what to do and with which text."""

    directive: str
    text: str
    model: str
    body: dict[str, Any]


def error_body(status: int, message: str | None = None) -> bytes:
    kind, code, default = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status} (fake).")
    )
    return orjson.dumps({"error": {"message": message or default, "type": kind, "param": None, "code": code}})


def leaked(key: str) -> str:
    """A message repeating `key` as providers do: whole, masked as OpenAI shows it, and cut short."""
    return f"Incorrect API key provided: {key}. You passed {key[:4]}{'*' * 20}{key[-4:]} ({key[:12]}…)."


def received_key(headers: Any) -> str:
    """The key a request carried (`Authorization: Bearer <key>`, or Azure's `api-key`)."""
    return str(headers.get("api-key") or headers.get("Authorization", "").removeprefix("Bearer "))


def _error(status: int, message: str | None = None) -> web.Response:
    return web.Response(status=status, body=error_body(status, message), content_type="application/json")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _words(text: str) -> int:
    return len(text.split())


class FakeOpenAI(FakeServer):
    """No I/O until `start()`; `stop()` closes the socket and cancels handlers still running."""

    # handler_cancellation: a handler whose client went away (a timed-out slow call) stops at once.
    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {
        "access_log": None,
        "handler_cancellation": True,
        "shutdown_timeout": 0.5,
    }

    def __init__(self, *, api_key: str | None = None, delay_s: float = 1.0, record: bool = True) -> None:
        super().__init__()
        self.api_key = api_key
        self.delay_s = delay_s
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.release = asyncio.Event()
        self.failures: dict[str, int] = {}  # flaky-<n> embedding models: calls failed so far

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on `host`:`port` (default 127.0.0.1 and a free port) and return the server's root URL."""
        await self.listen(host, port)
        return self.url

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure_chat)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self._azure_embeddings)
        return app

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1/"

    # ---- request handling ----------------------------------------------------------------------------------

    async def _receive(self, request: web.Request, key_header: str) -> Any:
        """The decoded JSON body, recording the request; raises an HTTP error response when refused."""
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if self.record:
            self.requests.append(
                RecordedRequest(request.method, request.path, dict(request.query), dict(request.headers), body)
            )
        if self.api_key is not None:
            expected = f"Bearer {self.api_key}" if key_header == "Authorization" else self.api_key
            if request.headers.get(key_header) != expected:
                raise _HttpError(_error(401))
        if not isinstance(body, dict):
            raise _HttpError(_error(400, "We could not parse the JSON body of your request (fake)."))
        return body

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._receive(request, "Authorization")
        except _HttpError as exc:
            return exc.response
        return await self._answer(request, body, str(body.get("model", "")))

    async def _azure_receive(self, request: web.Request) -> Any:
        """As `_receive` for an Azure deployment's route: its key header, and the api-version it requires."""
        body = await self._receive(request, "api-key")
        if "api-version" not in request.query:
            raise _HttpError(_error(400, "Missing required query parameter: api-version (fake)."))
        return body

    async def _azure_chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._azure_receive(request)
        except _HttpError as exc:
            return exc.response
        return await self._answer(request, body, str(body.get("model") or request.match_info["deployment"]))

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._receive(request, "Authorization")
        except _HttpError as exc:
            return exc.response
        return await self._embed(body, str(body.get("model", "")))

    async def _azure_embeddings(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._azure_receive(request)
        except _HttpError as exc:
            return exc.response
        return await self._embed(body, request.match_info["deployment"])

    async def _embed(self, body: dict[str, Any], model: str) -> web.StreamResponse:
        if model.startswith("error-") and model[6:].isdigit():
            return _error(int(model[6:]))
        if model.startswith("slow"):
            await asyncio.sleep(int(model[5:]) / 1000 if model[5:].isdigit() else self.delay_s)
        if model.startswith("flaky-") and model[6:].isdigit():  # the first <n> calls of this model fail with 503
            self.failures[model] = self.failures.get(model, 0) + 1
            if self.failures[model] <= int(model[6:]):
                return _error(503)
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if isinstance(inputs, list) and inputs and all(type(i) is int for i in inputs):
            inputs = [inputs]  # one input's token ids
        if not isinstance(inputs, list) or not all(
            isinstance(i, str) or (isinstance(i, list) and all(type(t) is int for t in i)) for i in inputs
        ):
            return _error(400, "'input' must be a string, a list of strings, or token ids (fake).")
        dimensions = body.get("dimensions") or 8
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(str(text), dimensions)}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(_words(text) if isinstance(text, str) else len(text) for text in inputs)
        answer = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    def _decode(self, body: dict[str, Any], model: str) -> _Call:
        messages = body.get("messages") or []
        text = ""
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                text = _text_of(message.get("content"))
                break
        directive = ""
        if text.startswith(_PREFIX) and "]" in text:
            directive, _, text = text[len(_PREFIX) :].partition("]")
            text = text.strip()
        elif _is_directive(model):
            directive = model
        else:
            choice = body.get("tool_choice")
            if isinstance(choice, dict) and choice.get("type") == "function":
                directive = "tool"
        return _Call(directive or "echo", text, model, body)

    async def _answer(self, request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
        call = self._decode(body, model)
        directive = call.directive
        if directive.startswith("error-") and directive[6:].isdigit():
            return _error(int(directive[6:]))
        if directive == "leak-401":
            return _error(401, leaked(received_key(request.headers)))
        if directive == "leak":
            call = _Call(directive, f"{call.text} {received_key(request.headers)}", call.model, call.body)
        if directive.startswith("slow"):
            delay = int(directive[5:]) / 1000 if directive[5:].isdigit() else self.delay_s
            await asyncio.sleep(delay)
        if directive == "nochoices":
            empty = {"id": "chatcmpl-fake", "object": "chat.completion", "model": model, "choices": []}
            return web.Response(body=orjson.dumps(empty), content_type="application/json")
        message, finish = _message(call)
        if body.get("stream"):
            return await self._stream(request, call, message, finish)
        if directive == "broken":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if directive == "malformed":
            return web.Response(body=b'{"id": "chatcmpl-fake", "choices": [', content_type="application/json")
        completion = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": _usage(body, message),
            "system_fingerprint": "fp_fake",
        }
        return web.Response(body=orjson.dumps(completion), content_type="application/json")

    async def _stream(
        self, request: web.Request, call: _Call, message: dict[str, Any], finish: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        created = int(time.time())

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": call.model,
                "choices": [choice],
            }
            if finish_reason is not None and "stream_options" not in call.body:
                chunk["usage"] = _usage(call.body, message)  # Mistral's way: on the last chunk, unasked
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        if call.directive == "malformed":
            await response.write(b"data: {not json\n\n")
            await response.write_eof()
            return response
        deltas = _deltas(message)
        await response.write(event({"role": "assistant", "content": ""}))
        for i, delta in enumerate(deltas):
            if call.directive == "broken" and i == 2:
                assert request.transport is not None
                request.transport.close()
                return response
            if call.directive == "midstream-error" and i == 2:
                error = {"error": {"message": "transient upstream hiccup (fake)", "type": "server_error"}}
                await response.write(b"data: " + orjson.dumps(error) + b"\n\n")
            await response.write(event(delta))
            if call.directive == "hold" and i == 0:
                await self.release.wait()
        await response.write(event({}, finish))
        options = call.body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": call.model,
                "choices": [],
                "usage": _usage(call.body, message),
            }
            await response.write(b"data: " + orjson.dumps(usage) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


class _HttpError(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _is_directive(name: str) -> bool:
    base = name.split("-", 1)[0]
    return base in (
        "echo",
        "leak",
        "tool",
        "tools",
        "json",
        "error",
        "slow",
        "hold",
        "finish",
        "malformed",
        "nochoices",
        "broken",
        "midstream",
        "nul",
        "choose",
        "cot",
        "score",
        "reasoning",
    )


def _message(call: _Call) -> tuple[dict[str, Any], str]:
    """The assistant message and finish_reason answering `call`."""
    directive = call.directive
    last = (call.body.get("messages") or [{}])[-1]
    if directive == "toolround" and isinstance(last, dict) and last.get("role") == "tool":
        return {"role": "assistant", "content": f"result: {_text_of(last.get('content'))}", "refusal": None}, "stop"
    if directive == "toolround":
        directive = "tool"
    if directive in ("tool", "tools"):
        names = [t["function"]["name"] for t in call.body.get("tools") or () if isinstance(t, dict)]
        choice = call.body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "function":
            names = [choice["function"]["name"]]
        names = names or ["get_weather"]
        if directive == "tools":
            names = (names * 2)[:2]
        arguments = orjson.dumps({"text": call.text}).decode()
        tool_calls = [
            {"id": f"call_fake_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
            for i, name in enumerate(names[:2] if directive == "tools" else names[:1])
        ]
        return {"role": "assistant", "content": None, "tool_calls": tool_calls, "refusal": None}, "tool_calls"
    content = orjson.dumps({"answer": call.text}).decode() if directive == "json" else f"echo: {call.text}"
    if directive.startswith("choose-"):
        content = orjson.dumps({"thinking": "the fake judge chose", "answer_choice": int(directive[7:])}).decode()
    if directive == "cot":
        content = orjson.dumps({"thinking": "step by step", "response": {"answer": call.text}}).decode()
    if directive.startswith("score-"):
        content = orjson.dumps({"score": orjson.loads(directive[6:])}).decode()
    if directive == "nul":
        content = f"nul\x00: {call.text} \ue0000"
    finish = directive[7:] if directive.startswith("finish-") else "stop"
    if directive == "reasoning":
        return {"role": "assistant", "reasoning_content": f"pondering {call.text}", "content": content}, finish
    return {"role": "assistant", "content": content, "refusal": None}, finish


def _deltas(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The message cut into stream deltas: one per word of content, or per third of a call's arguments."""
    if message.get("tool_calls"):
        deltas: list[dict[str, Any]] = []
        for index, call in enumerate(message["tool_calls"]):
            first = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            deltas.append({"tool_calls": [first]})
            arguments = call["function"]["arguments"]
            step = max(1, -(-len(arguments) // 3))
            for start in range(0, len(arguments), step):
                piece = {"index": index, "function": {"arguments": arguments[start : start + step]}}
                deltas.append({"tool_calls": [piece]})
        return deltas
    words = str(message.get("content") or "").split(" ")
    reasoning = [{"reasoning_content": message["reasoning_content"]}] if message.get("reasoning_content") else []
    return reasoning + [{"content": word if i == 0 else " " + word} for i, word in enumerate(words)]


def _usage(body: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    prompt = sum(_words(_text_of(m.get("content"))) for m in body.get("messages") or () if isinstance(m, dict))
    completion = _words(str(message.get("content") or ""))
    for call in message.get("tool_calls") or ():
        completion += _words(call["function"]["arguments"])
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if message.get("reasoning_content"):  # counted in completion_tokens too, as OpenAI and DeepSeek count it
        reasoning = _words(message["reasoning_content"])
        usage.update(completion_tokens=completion + reasoning, total_tokens=prompt + completion + reasoning)
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def _vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [digest[i % len(digest)] / 255 for i in range(dimensions)]
