"""A fake Bedrock runtime (Converse and ConverseStream) on a real socket, checking SigV4 signatures.

Endpoints, as Bedrock serves them under the `endpoint_url` this fake's `start()` returns:
    POST /model/{modelId}/converse          one Converse response (JSON)
    POST /model/{modelId}/converse-stream   application/vnd.amazon.eventstream: binary frames (prelude with the
                                            total and header lengths and its CRC32, string headers, the JSON
                                            payload, the message CRC32), encoded here by `frame`

Every request must carry a SigV4 signature made with `access_key`/`secret_key` (and `token` as
X-Amz-Security-Token when set) for `region` and the service "bedrock": the fake recomputes it with botocore from
the headers the Authorization header names, the raw path and the body, and answers Bedrock's 403 otherwise
(UnrecognizedClientException for an unknown key or token, InvalidSignatureException for a wrong signature).

The scenario is the model id when it is one of SCENARIOS, else the first word of the last user text when it is
one, else "echo":
    echo          "echo: <last user text>" (streamed a word per delta); a forced tool (toolChoice.tool) is always
                  called with {"answer": <last user text>}
    tool          a toolUse of the first tool, input {"query": <last user text>, "n": 2} (streamed in fragments)
    json          the text {"answer": <last user text>}
    thinking      a signed reasoningContent block, then the echo
    cache         the echo, with usage reporting 3 cache-read and 2 cache-write tokens
    length        "echo" cut short: stopReason max_tokens
    error-NNN     HTTP NNN with Bedrock's error body {"message": ...} and x-amzn-ErrorType
    slow          waits `delay_s`, then answers like echo
    malformed     a 200 whose body (or first event's payload) is not JSON
    badframe      (stream) a frame whose message CRC is wrong
    cutoff        streams the first two deltas, then drops the connection
    stream-error  streams the first delta, then a throttlingException frame
    leak-401      HTTP 401 whose message repeats the access key id received (whole, masked and cut short)
    leak          the echo, ending with the access key id received (streamed as one delta)
A last user message holding a toolResult is answered "result: <its text>".
"""

from __future__ import annotations

import asyncio
import itertools
import struct
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes.serving import FakeServer

ERRORS = {
    400: ("ValidationException", "The provided request is not valid"),
    401: ("UnrecognizedClientException", "The security token included in the request is invalid."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    408: ("ModelTimeoutException", "The request took too long to process."),
    424: ("ModelErrorException", "The model failed to process the request."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "The service is unavailable. Please try again later."),
}
SCENARIOS = frozenset(
    {"echo", "tool", "json", "thinking", "cache", "length", "slow", "malformed", "badframe", "cutoff"}
    | {"stream-error", "leak", "leak-401"}
    | {f"error-{status}" for status in ERRORS}
)
SIGNATURE = "c2lnbmF0dXJl"
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    raw_path: str = ""  # as sent, percent-encoding kept


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32), headers, payload, CRC32."""
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps(payload))


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, orjson.dumps({"message": message}))


class FakeBedrock(FakeServer):
    """`await start()` returns the URL to use as `endpoint_url`; `requests` lists each call received."""

    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {"handler_cancellation": True, "shutdown_timeout": 1.0}

    def __init__(
        self,
        *,
        access_key: str = "AKIDFAKEBEDROCK0001",
        secret_key: str = "fake-secret-access-key-0123456789",
        token: str | None = None,
        region: str = "us-east-1",
        delay_s: float = 5.0,
        api_key: str | None = None,
    ) -> None:
        super().__init__()
        self.api_key = api_key  # a Bedrock API key this fake takes as `Authorization: Bearer`, instead of SigV4
        self.access_key = access_key
        self.secret_key = secret_key
        self.token = token
        self.region = region
        self.delay_s = delay_s
        self.requests: list[ReceivedRequest] = []
        self.refused: list[str] = []  # why each refused request was refused
        self._ids = itertools.count(1)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/model/{model}/{operation}", self._handle)
        return app

    # ---- the signature -----------------------------------------------------------------------------------

    def _check_signature(self, request: web.Request, body: bytes) -> web.Response | None:
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            if self.api_key is None or authorization.removeprefix("Bearer ") != self.api_key:
                return self._refuse(
                    "UnrecognizedClientException", "Invalid API Key format: Must start with pre-defined prefix"
                )
            return None
        fields = dict(
            part.strip().split("=", 1)
            for part in authorization.removeprefix("AWS4-HMAC-SHA256 ").split(",")
            if "=" in part
        )
        credential = fields.get("Credential", "").split("/")
        if len(credential) != 5 or credential[0] != self.access_key:
            return self._refuse("UnrecognizedClientException", "The security token included in the request is invalid.")
        if self.token is not None and request.headers.get("X-Amz-Security-Token") != self.token:
            return self._refuse("UnrecognizedClientException", "The security token included in the request is invalid.")
        if credential[2:] != [self.region, "bedrock", "aws4_request"]:
            return self._refuse("InvalidSignatureException", f"Credential should be scoped to {self.region}/bedrock.")
        timestamp = request.headers.get("X-Amz-Date", "")
        if credential[1] != timestamp[:8]:
            return self._refuse("InvalidSignatureException", "Date in Credential scope does not match X-Amz-Date.")
        names = fields.get("SignedHeaders", "").split(";")
        if "host" not in names or "x-amz-date" not in names:
            return self._refuse("InvalidSignatureException", "host and x-amz-date must be signed.")
        headers = {name: request.headers.get(name, "") for name in names}
        url = f"http://{request.headers.get('Host', '')}{request.raw_path}"
        signed = AWSRequest(method=request.method, url=url, data=body, headers=headers)
        signed.context["timestamp"] = timestamp
        signer = SigV4Auth(Credentials(self.access_key, self.secret_key, self.token), "bedrock", self.region)
        expected = signer.signature(signer.string_to_sign(signed, signer.canonical_request(signed)), signed)
        if fields.get("Signature") != expected:
            return self._refuse("InvalidSignatureException", BAD_SIGNATURE)
        return None

    def _refuse(self, error_type: str, message: str) -> web.Response:
        self.refused.append(f"{error_type}: {message}")
        return _error(403, message, error_type)

    # ---- dispatch ----------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        received = ReceivedRequest(request.path, dict(request.query), dict(request.headers), body, request.raw_path)
        self.requests.append(received)
        refused = self._check_signature(request, raw)
        if refused is not None:
            return refused
        model, operation = unquote(request.match_info["model"]), request.match_info["operation"]
        if operation not in ("converse", "converse-stream"):
            return _error(404, f"unknown operation {operation}")
        problem = _validate(body)
        if problem:
            return _error(400, problem)
        scenario = model if model in SCENARIOS else _first_word(body)
        if scenario.startswith("error-"):
            return _error(int(scenario.removeprefix("error-")))
        key = self.access_key
        if scenario == "leak-401":
            return _error(401, f"Unknown access key {key}: {key[:4]}{'*' * 20}{key[-4:]} ({key[:12]}…)")
        if scenario == "slow":
            await asyncio.sleep(self.delay_s)
        answer = self._answer(body, scenario)
        if scenario == "leak":
            answer["output"]["message"]["content"][0]["text"] += f" {key}"
        if operation == "converse-stream":
            return await self._stream(request, answer, scenario)
        if scenario == "malformed":
            return web.Response(body=b"<html>not json</html>", content_type="application/json")
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    # ---- answers -----------------------------------------------------------------------------------------

    def _answer(self, body: dict[str, Any], scenario: str) -> dict[str, Any]:
        text = _last_user_text(body)
        choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
        tools = (body.get("toolConfig") or {}).get("tools") or []
        result = _last_tool_result(body)
        stop = "end_turn"
        content: list[dict[str, Any]]
        if result is not None:
            content = [{"text": f"result: {result}"}]
        elif "tool" in choice:
            content, stop = [self._tool_use(choice["tool"]["name"], {"answer": text})], "tool_use"
        elif scenario == "tool" and tools:
            content, stop = [self._tool_use(tools[0]["toolSpec"]["name"], {"query": text, "n": 2})], "tool_use"
        elif scenario == "json":
            content = [{"text": orjson.dumps({"answer": text}).decode()}]
        elif scenario == "length":
            content, stop = [{"text": "echo"}], "max_tokens"
        else:
            content = [{"text": f"echo: {text}"}]
            if scenario == "thinking":
                reasoning = {"reasoningText": {"text": f"The user said {text}.", "signature": SIGNATURE}}
                content.insert(0, {"reasoningContent": reasoning})
        usage = {"inputTokens": _count_input(body), "outputTokens": max(_count_output(content), 1)}
        if scenario == "cache":
            usage |= {"cacheReadInputTokens": 3, "cacheWriteInputTokens": 2}
        usage["totalTokens"] = sum(usage.values())
        message = {"role": "assistant", "content": content}
        return {"output": {"message": message}, "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 7}}

    def _tool_use(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"toolUse": {"toolUseId": f"tooluse_{next(self._ids):06d}", "name": name, "input": arguments}}

    async def _stream(self, request: web.Request, answer: dict[str, Any], scenario: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream"})
        await response.prepare(request)
        if scenario == "malformed":
            headers = {":event-type": "messageStart", ":content-type": "application/json", ":message-type": "event"}
            await response.write(frame(headers, b"{not json"))
            await response.write_eof()
            return response
        frames = _frames(answer, 1000 if scenario == "leak" else None)
        if scenario == "badframe":
            broken = frames[0]
            frames = [broken[:-4] + bytes(4)]
        elif scenario == "cutoff":
            frames = frames[:4]  # messageStart, contentBlockDelta x 2 ... then the connection drops
        elif scenario == "stream-error":
            frames = [*frames[:2], exception_frame("throttlingException", "Too many tokens, please wait.")]
        for data in frames:
            # Each frame goes out in two writes, so the client sees frames split across reads.
            half = len(data) // 2
            await response.write(data[:half])
            await asyncio.sleep(0)
            await response.write(data[half:])
        if scenario == "cutoff" and request.transport is not None:
            request.transport.close()
            return response
        await response.write_eof()
        return response


def _frames(answer: dict[str, Any], size: int | None) -> list[bytes]:
    """The ConverseStream events for `answer`: text a word per delta (or `size` characters), tool input in
    fragments, then messageStop and metadata (the usage)."""
    frames = [event_frame("messageStart", {"role": "assistant"})]
    for index, block in enumerate(answer["output"]["message"]["content"]):
        if "text" in block:
            words = block["text"].split(" ")
            pieces = [block["text"]] if size else [w if i == 0 else f" {w}" for i, w in enumerate(words)]
            for piece in pieces:
                frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}))
        elif "toolUse" in block:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            frames.append(event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            arguments = orjson.dumps(use["input"]).decode()
            for i in range(0, len(arguments), 7):
                delta = {"toolUse": {"input": arguments[i : i + 7]}}
                frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        elif "reasoningContent" in block:
            reasoning = block["reasoningContent"]["reasoningText"]
            for delta in ({"text": reasoning["text"]}, {"signature": reasoning["signature"]}):
                payload = {"contentBlockIndex": index, "delta": {"reasoningContent": delta}}
                frames.append(event_frame("contentBlockDelta", payload))
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
    frames.append(event_frame("messageStop", {"stopReason": answer["stopReason"]}))
    frames.append(event_frame("metadata", {"usage": answer["usage"], "metrics": answer["metrics"]}))
    return frames


def _error(status: int, message: str | None = None, error_type: str | None = None) -> web.Response:
    name, default = ERRORS.get(status, ("InternalServerException", "error"))
    headers = {"x-amzn-ErrorType": f"{error_type or name}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    return web.Response(
        status=status,
        body=orjson.dumps({"message": message or default}),
        content_type="application/json",
        headers=headers,
    )


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body is not valid JSON"
    if "model" in body or "modelId" in body:
        return "extraneous key [model] is not permitted"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    roles = [m.get("role") for m in messages]
    if roles[0] != "user" or any(a == b for a, b in itertools.pairwise(roles)):
        return "A conversation must start with a user message and alternate user and assistant roles."
    has_tools = any("toolUse" in p or "toolResult" in p for m in messages for p in m.get("content") or [])
    if has_tools and not (body.get("toolConfig") or {}).get("tools"):
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    for message in messages:
        if not message.get("content"):
            return "The content field in the Message object is empty."
        if any("text" in part and not part["text"] for part in message["content"]):
            return "The text field in the ContentBlock object is blank."
    return None


def _last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body["messages"] if m.get("role") == "user"]
    parts = users[-1].get("content") or [] if users else []
    return " ".join(p["text"] for p in parts if isinstance(p.get("text"), str))


def _first_word(body: dict[str, Any]) -> str:
    words = _last_user_text(body).split(maxsplit=1)
    return words[0] if words and words[0] in SCENARIOS else "echo"


def _last_tool_result(body: dict[str, Any]) -> str | None:
    last = body["messages"][-1]
    results = [p["toolResult"] for p in last.get("content") or [] if "toolResult" in p]
    if last.get("role") != "user" or not results:
        return None
    return " ".join(str(item.get("text", "")) for item in results[-1].get("content") or [])


def _count_input(body: dict[str, Any]) -> int:
    words = sum(len(str(s.get("text", "")).split()) for s in body.get("system") or [])
    for message in body["messages"]:
        words += sum(len(str(p.get("text", "")).split()) for p in message.get("content") or [])
    return max(words, 1)


def _count_output(content: list[dict[str, Any]]) -> int:
    return sum(len(str(b.get("text") or b.get("toolUse", {}).get("input") or "").split()) for b in content)
