"""A fake Gemini API (generativelanguage v1beta) on a real socket, for provider tests.

Endpoints, as Google serves them under `{base_url}` = "http://127.0.0.1:<port>/v1beta/":
    POST models/{model}:generateContent                one GenerateContentResponse
    POST models/{model}:streamGenerateContent?alt=sse  chunked SSE, one GenerateContentResponse per `data:`
    POST models/{model}:embedContent                   {"embedding": {"values": [...]}}
    POST models/{model}:batchEmbedContents             {"embeddings": [{"values": [...]}, ...]}

The scenario is the model name when it is one of SCENARIOS, else the first word of the last user text when it
is one, else "echo":
    echo        "echo: <last user text>" (streamed one word per event); a JSON object {"answer": <text>} when
                generationConfig.responseMimeType is application/json; function calls when toolConfig forces
                one (mode ANY), as for `function`
    function    one functionCall per allowedFunctionNames entry, else per declared function, else to "lookup";
                args {"query": <last user text>}
    thought     a thought part, then an answer whose part carries thoughtSignature "sig-1"
    json        the text {"answer": <last user text>}
    length      "echo" cut short, finishReason MAX_TOKENS
    safety      a candidate with no content and finishReason SAFETY
    blocked     promptFeedback.blockReason SAFETY and no candidates (the prompt was blocked)
    error-NNN   Google's error JSON with status NNN (400, 401, 403, 404, 429, 500, 503)
    slow        waits `delay_s` seconds, then answers like echo
    malformed   a 200 whose body (or first stream event) is not JSON
    cutoff      streams the first two words and ends the stream without a finishReason (not streamed: a
                truncated JSON body)
    drop        streams the first word and then drops the connection
    stream-error  streams the first word and then an {"error": ...} event (status 500)
    leak-401    Google's 401 whose message repeats the x-goog-api-key received (whole, masked and cut short)
    leak        the echo, ending with the x-goog-api-key received
When the last content holds functionResponse parts, the answer is the text "results: name=result, ...".

`expected_key`: every request without that `x-goog-api-key` is refused as Google refuses a bad key: 400
INVALID_ARGUMENT with reason API_KEY_INVALID (`key_error="invalid"`, the default) or 403 PERMISSION_DENIED
(`key_error="denied"`). `release`: when set to an Event, a stream pauses after its first event until it is set.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import orjson
from aiohttp import web

from tests.fakes.serving import FakeServer

SCENARIOS = frozenset(
    {
        "echo",
        "function",
        "thought",
        "json",
        "length",
        "safety",
        "blocked",
        "slow",
        "malformed",
        "cutoff",
        "drop",
        "stream-error",
        "leak",
        "leak-401",
        *(f"error-{status}" for status in (400, 401, 403, 404, 429, 500, 503)),
    }
)
_ERRORS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "models/nope is not found for API version v1beta, or is not supported for generateContent."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


def error_body(status: int, message: str | None = None, reason: str | None = None) -> bytes:
    code_name, default = _ERRORS.get(status, ("UNKNOWN", "error"))
    error: dict[str, Any] = {"code": status, "message": message or default, "status": code_name}
    if reason:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}
        ]
    return orjson.dumps({"error": error})


def _words(text: str) -> int:
    return len(text.split())


def _texts(content: Any) -> list[str]:
    parts = content.get("parts", []) if isinstance(content, dict) else []
    return [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]


class FakeGemini(FakeServer):
    """Start with `await start()` (returns `base_url`), stop with `await stop()`; `requests` lists each call."""

    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {"handler_cancellation": True, "shutdown_timeout": 1.0}

    def __init__(
        self,
        *,
        expected_key: str | None = None,
        key_error: Literal["invalid", "denied"] = "invalid",
        delay_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.expected_key = expected_key
        self.key_error = key_error
        self.delay_s = delay_s
        self.release: asyncio.Event | None = None
        self.requests: list[ReceivedRequest] = []
        self.base_url = ""  # set by start()

    async def start(self) -> str:
        await self.listen()
        self.base_url = f"{self.url}/v1beta/"
        return self.base_url

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        return app

    # ---- dispatch ----------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(ReceivedRequest(request.path, dict(request.query), dict(request.headers), body))
        resource, _, method = request.path.removeprefix("/v1beta/").rpartition(":")
        if not request.path.startswith("/v1beta/") or not resource.startswith("models/"):
            return self._error(404, f"{request.path} was not found")
        if self.expected_key is not None and request.headers.get("x-goog-api-key") != self.expected_key:
            if self.key_error == "denied":
                return self._error(403, "Permission denied: Consumer has been suspended or the API key is invalid.")
            return self._error(400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
        if not isinstance(body, dict):
            return self._error(400, "Invalid JSON payload received.")
        scenario = self._scenario(resource.removeprefix("models/"), body)
        if scenario.startswith("error-"):
            return self._error(int(scenario.removeprefix("error-")))
        key = request.headers.get("x-goog-api-key", "")
        if scenario == "leak-401":
            return self._error(401, f"API key not valid: {key}. Key {key[:4]}{'*' * 20}{key[-4:]} ({key[:12]}…).")
        if scenario == "leak":
            body = {**body, "contents": [*body.get("contents", []), {"role": "user", "parts": [{"text": key}]}]}
        if scenario == "slow":
            await asyncio.sleep(self.delay_s)
        if method in ("embedContent", "batchEmbedContents"):
            return self._embed(method, body)
        if method == "generateContent":
            return self._generate(scenario, body)
        if method == "streamGenerateContent" and request.query.get("alt") == "sse":
            return await self._stream(request, scenario, body)
        return self._error(404, f"method {method!r} is not supported")

    def _scenario(self, model: str, body: dict[str, Any]) -> str:
        if model in SCENARIOS:
            return model
        words = _last_user_text(body).split()
        return words[0] if words and words[0] in SCENARIOS else "echo"

    def _error(self, status: int, message: str | None = None, reason: str | None = None) -> web.Response:
        return web.Response(status=status, body=error_body(status, message, reason), content_type="application/json")

    # ---- answers -----------------------------------------------------------------------------------------

    def _generate(self, scenario: str, body: dict[str, Any]) -> web.Response:
        if scenario == "malformed":
            return web.Response(body=b"<html>not json</html>", content_type="application/json")
        events = _answer(scenario, body)
        if scenario == "cutoff":
            return web.Response(body=orjson.dumps(events[0])[:25], content_type="application/json")
        return web.Response(body=orjson.dumps(_merge(events)), content_type="application/json")

    async def _stream(self, request: web.Request, scenario: str, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if scenario == "malformed":
            await response.write(b"data: {not json\r\n\r\n")
            await response.write_eof()
            return response
        events = _answer(scenario, body)
        if scenario == "cutoff":
            events = [_without_finish(event) for event in events[:2]]
        elif scenario in ("drop", "stream-error"):
            events = events[:1]
        for index, event in enumerate(events):
            await response.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
            if index == 0 and self.release is not None:
                await self.release.wait()
        if scenario == "drop":
            if request.transport is not None:
                request.transport.close()
            return response
        if scenario == "stream-error":
            await response.write(b"data: " + error_body(500) + b"\r\n\r\n")
        await response.write_eof()
        return response

    def _embed(self, method: str, body: dict[str, Any]) -> web.Response:
        if method == "embedContent":
            embedding = _embedding(body)
            return web.json_response({"embedding": embedding}, dumps=lambda v: orjson.dumps(v).decode())
        requests = body.get("requests")
        if not isinstance(requests, list):
            return self._error(400, "requests is required")
        answer = {"embeddings": [_embedding(item) for item in requests]}
        return web.json_response(answer, dumps=lambda v: orjson.dumps(v).decode())


def _last_user_text(body: dict[str, Any]) -> str:
    for content in reversed(body.get("contents") or []):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            texts = _texts(content)
            if texts:
                return texts[-1]
    return ""


def _prompt_tokens(body: dict[str, Any]) -> int:
    texts = _texts(body.get("systemInstruction"))
    for content in body.get("contents") or []:
        texts.extend(_texts(content))
    return max(sum(_words(t) for t in texts), 1)


def _function_responses(body: dict[str, Any]) -> list[dict[str, Any]]:
    contents = body.get("contents") or []
    last = contents[-1] if contents and isinstance(contents[-1], dict) else {}
    parts = last.get("parts") or []
    return [p["functionResponse"] for p in parts if isinstance(p, dict) and "functionResponse" in p]


def _called_functions(body: dict[str, Any]) -> list[str]:
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if config.get("allowedFunctionNames"):
        return list(config["allowedFunctionNames"])
    names = [d["name"] for tool in body.get("tools") or [] for d in tool.get("functionDeclarations") or []]
    return names or ["lookup"]


def _forced_call(body: dict[str, Any]) -> bool:
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    return config.get("mode") == "ANY"


def _answer(scenario: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer as the list of stream events; the last one carries the finishReason."""
    text = _last_user_text(body)
    prompt = _prompt_tokens(body)
    if scenario == "blocked":
        return [{"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": prompt}}]
    if scenario == "safety":
        return [_event([], prompt, 0, finish="SAFETY")]
    responses = _function_responses(body)
    config = body.get("generationConfig") or {}
    if responses:
        results = ", ".join(f"{r.get('name')}={(r.get('response') or {}).get('result')}" for r in responses)
        return _text_events(f"results: {results}", prompt)
    if scenario == "function" or (scenario == "echo" and _forced_call(body)):
        parts = [{"functionCall": {"name": name, "args": {"query": text}}} for name in _called_functions(body)]
        return [_event(parts, prompt, len(parts), finish="STOP")]
    if scenario == "json" or config.get("responseMimeType") == "application/json":
        return _text_events(orjson.dumps({"answer": text}).decode(), prompt)
    if scenario == "thought":
        thought = _event([{"text": "Let me think.", "thought": True}], prompt, 0, thoughts=3)
        answer = _event([{"text": f"echo: {text}", "thoughtSignature": "sig-1"}], prompt, _words(text) + 1)
        answer["candidates"][0]["finishReason"] = "STOP"
        answer["usageMetadata"]["thoughtsTokenCount"] = 3
        return [thought, answer]
    if scenario == "length":
        return _text_events("echo", prompt, finish="MAX_TOKENS")
    return _text_events(f"echo: {text}" if text else "echo", prompt)


def _event(
    parts: list[dict[str, Any]], prompt: int, output: int, *, finish: str | None = None, thoughts: int | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if not parts:
        del candidate["content"]
    if finish is not None:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output}
    if thoughts is not None:
        usage["thoughtsTokenCount"] = thoughts
        usage["totalTokenCount"] += thoughts
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "fake-gemini"}


def _text_events(text: str, prompt: int, *, finish: str = "STOP") -> list[dict[str, Any]]:
    words = text.split(" ")
    events = []
    for index, word in enumerate(words):
        last = index == len(words) - 1
        piece = word if index == 0 else " " + word
        events.append(_event([{"text": piece}], prompt, index + 1, finish=finish if last else None))
    return events


def _without_finish(event: dict[str, Any]) -> dict[str, Any]:
    candidates = [{k: v for k, v in c.items() if k != "finishReason"} for c in event.get("candidates", [])]
    return {**event, "candidates": candidates}


def _merge(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed answer: every event's parts in one candidate, text parts joined as Google does."""
    last = events[-1]
    if "candidates" not in last:
        return last
    parts: list[dict[str, Any]] = []
    for event in events:
        for part in event["candidates"][0].get("content", {}).get("parts", []):
            plain_text = set(part) == {"text"}
            if plain_text and parts and set(parts[-1]) == {"text"}:
                parts[-1] = {"text": parts[-1]["text"] + part["text"]}
            else:
                parts.append(dict(part))
    candidate = {k: v for k, v in last["candidates"][0].items() if k != "content"}
    if parts:
        candidate["content"] = {"parts": parts, "role": "model"}
    return {**last, "candidates": [candidate]}


def _embedding(item: Any) -> dict[str, list[float]]:
    """A deterministic vector: `outputDimensionality` (default 4) values derived from the text's characters."""
    texts = _texts(item.get("content")) if isinstance(item, dict) else []
    text = " ".join(texts)
    size = (item.get("outputDimensionality") if isinstance(item, dict) else None) or 4
    return {"values": [(sum(ord(c) * (i + 1) for c in text) % 1000) / 1000 for i in range(size)]}
