"""The `google_ai_studio_gemini` provider type: the Gemini API (generativelanguage.googleapis.com, v1beta).

Options (besides type and timeouts):
    model_name        required; "gemini-2.5-flash" becomes the resource "models/gemini-2.5-flash" (a name that
                      already holds a "/", such as "tunedModels/x", is used as the resource as-is)
    api_base          default "https://generativelanguage.googleapis.com/v1beta/"
    api_key_location  default "env::GOOGLE_AI_STUDIO_API_KEY"; sent in the `x-goog-api-key` header, never in
                      the URL's `?key=`, so it never lands in access logs or stored URLs
    cost              optional inline table {input_per_million, output_per_million} in currency per 1M tokens

Endpoints: POST {api_base}{resource}:generateContent, :streamGenerateContent?alt=sse (SSE, one
GenerateContentResponse per `data:`) and :batchEmbedContents.

Mapping choices:
- Tool parameters go as `parametersJsonSchema` and strict JSON schemas as `responseJsonSchema`: both take JSON
  Schema as is, whereas `parameters`/`responseSchema` take an OpenAPI subset that rejects common JSON Schema
  keys (`additionalProperties`, `$defs`, `const`), so no lossy conversion is needed.
- json_mode "on" sets responseMimeType "application/json"; "strict" also sets the output schema when there is
  one; "tool" declares only the function `respond` (parameters = the output schema), forces it with mode ANY,
  and returns its arguments as a Text block of JSON with finish reason "stop".
- tool_choice "auto"/"none"/"required" -> functionCallingConfig mode AUTO/NONE/ANY; {"specific": name} -> ANY
  with allowedFunctionNames [name]. Gemini has no switch for parallel_tool_calls; it is ignored.
- Gemini gives function calls no ids: each gets "call_<n>", n counting the calls of one response from 0.
  Tool results go back as user-role `functionResponse` parts {"name", "response": {"result": <string>}};
  Gemini pairs them with calls by name and order.
- Thinking: parts marked `thought: true` become Thought blocks. A `thoughtSignature` on any other part becomes
  a Thought(text=None, signature=...) block just before that part's block; on input the signature is put back
  on the part that follows it (Gemini 3 rejects function calls sent back without their signatures).
- Usage: input = promptTokenCount; output = candidatesTokenCount + thoughtsTokenCount (thinking is billed as
  output). Embeddings report no usage.
- A prompt blocked before generation (promptFeedback.blockReason, no candidates) raises
  ProviderError(kind="content_filter", retryable=False): another attempt would be blocked the same way.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

import orjson

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.errors import InvalidRequest, ProviderError
from lsd.providers.base import CallContext, KeyLocation, Provider, error_from_status, key_fingerprint, redact_headers
from lsd.providers.sse import sse_events
from lsd.providers.transport import HttpResponse
from lsd.types import (
    EmbeddingResponse,
    File,
    FinishReason,
    Message,
    OutputBlock,
    ProviderRequest,
    ProviderResponse,
    RawText,
    StreamChunk,
    Template,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    Unknown,
    Usage,
)

DEFAULT_API_BASE = "https://generativelanguage.googleapis.com/v1beta/"
KEY_HEADER = "x-goog-api-key"
# json_mode = "tool" forces a call to this function; its arguments are the answer.
JSON_TOOL_NAME = "respond"
_FINISH_REASONS: Mapping[str, FinishReason] = MappingProxyType(
    {
        "STOP": "stop",
        "MAX_TOKENS": "length",
        "SAFETY": "content_filter",
        "RECITATION": "content_filter",
        "BLOCKLIST": "content_filter",
        "PROHIBITED_CONTENT": "content_filter",
        "SPII": "content_filter",
        "IMAGE_SAFETY": "content_filter",
    }
)
_TOOL_MODES: Mapping[str, str] = MappingProxyType({"auto": "AUTO", "none": "NONE", "required": "ANY"})


@dataclass(frozen=True, slots=True)
class Pricing:
    """The `cost` option: price per million input and output tokens."""

    input_per_million: float
    output_per_million: float

    @staticmethod
    def parse(options: Table) -> Pricing | None:
        if not options.has("cost"):
            return None
        table = options.table("cost")
        if not isinstance(options.data["cost"], dict):
            return None  # options.table reported it
        prices = []
        for key in ("input_per_million", "output_per_million"):
            if not table.has(key):
                table.error(key, "missing required key")
            prices.append(table.float(key, 0.0, minimum=0.0))
        table.finish()
        return Pricing(prices[0], prices[1])

    def cost(self, usage: Usage) -> float | None:
        if usage.input_tokens is None and usage.output_tokens is None:
            return None
        spent = (usage.input_tokens or 0) * self.input_per_million
        return (spent + (usage.output_tokens or 0) * self.output_per_million) / 1e6


def model_resource(model_name: str) -> str:
    """The model's resource name in URLs and embedding requests: "models/<name>" unless it names its own."""
    return model_name if "/" in model_name else f"models/{model_name}"


# ---- request mapping ---------------------------------------------------------------------------------------


def build_body(request: ProviderRequest, stream: bool = False, *, provider_name: str = "") -> dict[str, Any]:
    """The GenerateContentRequest body. Gemini chooses streaming by URL, so `stream` changes nothing here; it
    is taken for symmetry with the other providers. `Unknown` blocks holding an object are sent verbatim as
    parts when they name no provider or `provider_name`. Raises InvalidRequest for blocks Gemini cannot take
    (unrendered templates, files without url or data) and for an invalid tool_choice."""
    body: dict[str, Any] = {"contents": build_contents(request.messages, provider_name)}
    if request.system:
        body["systemInstruction"] = {"parts": [{"text": request.system}]}
    _add_tools(body, request)
    config = _generation_config(request)
    if config:
        body["generationConfig"] = config
    return body


def build_contents(messages: Sequence[Message], provider_name: str = "") -> list[dict[str, Any]]:
    contents: list[dict[str, Any]] = []
    for message in messages:
        contents.extend(_convert_message(message, provider_name))
    return contents


def _convert_message(message: Message, provider_name: str) -> list[dict[str, Any]]:
    """One message as Gemini contents: its parts under role "user"/"model"; tool results in an assistant
    message (unusual) follow it as their own user-role content, since functionResponse is a user part."""
    parts: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []
    signature: str | None = None  # a thought signature waiting for the part it belongs to
    for block in message.content:
        part: dict[str, Any] | None = None
        if isinstance(block, Text | RawText):
            text = block.text if isinstance(block, Text) else block.value
            part = {"text": text} if text else None  # Gemini rejects a part with an empty text
        elif isinstance(block, File):
            part = _file_part(block)
        elif isinstance(block, ToolCall):
            part = {"functionCall": {"name": block.name, "args": _arguments_object(block)}}
        elif isinstance(block, ToolResult):
            response = {"functionResponse": {"name": block.name, "response": {"result": block.result}}}
            (parts if message.role == "user" else responses).append(response)
        elif isinstance(block, Thought) and message.role == "assistant":
            if block.text is not None:
                part = {"text": block.text, "thought": True}
                if block.signature:
                    part["thoughtSignature"] = block.signature
            elif block.signature:
                signature = block.signature
        elif isinstance(block, Unknown):
            if block.provider_name in (None, provider_name) and isinstance(block.data, Mapping):
                part = dict(block.data)
        elif isinstance(block, Template):
            raise InvalidRequest(f"template {block.name!r} was not rendered", field="messages")
        if part is not None:
            if signature is not None and not isinstance(block, Thought):
                part["thoughtSignature"] = signature
                signature = None
            parts.append(part)
    contents: list[dict[str, Any]] = []
    if parts:  # Gemini rejects a content with no parts
        contents.append({"role": "user" if message.role == "user" else "model", "parts": parts})
    if responses:
        contents.append({"role": "user", "parts": responses})
    return contents


def _arguments_object(call: ToolCall) -> Any:
    """A tool call's JSON argument string as the object Gemini wants in `args`."""
    if not call.arguments.strip():
        return {}
    try:
        return orjson.loads(call.arguments)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"tool call {call.id!r} has arguments that are not valid JSON", field="messages") from exc


def _file_part(block: File) -> dict[str, Any]:
    if block.url is not None:
        file_data = {"fileUri": block.url}
        if block.mime_type:
            file_data["mimeType"] = block.mime_type
        return {"fileData": file_data}
    if block.data is not None:
        return {"inlineData": {"mimeType": block.mime_type or "application/octet-stream", "data": block.data}}
    raise InvalidRequest("a file block needs a url or data", field="messages")


def _generation_config(request: ProviderRequest) -> dict[str, Any]:
    params = request.params
    config: dict[str, Any] = {}
    for key, value in (
        ("temperature", params.temperature),
        ("maxOutputTokens", params.max_tokens),
        ("topP", params.top_p),
        ("seed", params.seed),
        ("presencePenalty", params.presence_penalty),
        ("frequencyPenalty", params.frequency_penalty),
    ):
        if value is not None:
            config[key] = value
    if params.stop_sequences:
        config["stopSequences"] = list(params.stop_sequences)
    if params.json_mode in ("on", "strict"):
        config["responseMimeType"] = "application/json"
        if params.json_mode == "strict" and request.output_schema is not None:
            config["responseJsonSchema"] = dict(request.output_schema)
    return config


def _declaration(name: str, description: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": name, "description": description, "parametersJsonSchema": dict(parameters)}


def _function_calling(mode: str, names: Sequence[str] = ()) -> dict[str, Any]:
    config: dict[str, Any] = {"mode": mode}
    if names:
        config["allowedFunctionNames"] = list(names)
    return {"functionCallingConfig": config}


def _add_tools(body: dict[str, Any], request: ProviderRequest) -> None:
    if request.params.json_mode == "tool":
        schema = dict(request.output_schema) if request.output_schema is not None else {"type": "object"}
        declaration = _declaration(JSON_TOOL_NAME, "Respond to the user with these arguments.", schema)
        body["tools"] = [{"functionDeclarations": [declaration]}]
        body["toolConfig"] = _function_calling("ANY", [JSON_TOOL_NAME])
        return
    if not request.tools:
        return
    declarations = [_declaration(spec.name, spec.description, spec.parameters) for spec in request.tools]
    body["tools"] = [{"functionDeclarations": declarations}]
    choice = request.tool_choice
    if choice is None:
        return
    if isinstance(choice, str) and choice in _TOOL_MODES:
        body["toolConfig"] = _function_calling(_TOOL_MODES[choice])
    elif not isinstance(choice, str) and set(choice) == {"specific"}:
        body["toolConfig"] = _function_calling("ANY", [choice["specific"]])
    else:
        raise InvalidRequest(
            f"tool_choice must be 'none', 'auto', 'required' or {{'specific': name}}, got {choice!r}",
            field="tool_choice",
        )


# ---- response mapping --------------------------------------------------------------------------------------


def malformed(message: str) -> ProviderError:
    return ProviderError(f"malformed response: {message}", retryable=True, kind="malformed")


def parse_finish_reason(value: Any) -> FinishReason | None:
    if value is None:
        return None
    return _FINISH_REASONS.get(value, "unknown") if isinstance(value, str) else "unknown"


def parse_usage(metadata: Any) -> Usage:
    """usageMetadata as Usage; thinking tokens count as output (see the module docstring)."""
    if not isinstance(metadata, dict):
        return Usage()
    prompt, candidates, thoughts = (
        metadata.get(key) for key in ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount")
    )
    output = candidates if isinstance(candidates, int) else None
    if isinstance(thoughts, int):
        output = (output or 0) + thoughts
    return Usage(prompt if isinstance(prompt, int) else None, output)


def _blocked(body: Mapping[str, Any]) -> ProviderError | None:
    feedback = body.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if reason is None:
        return None
    return ProviderError(f"the prompt was blocked: {reason}", retryable=False, kind="content_filter")


class _Parts:
    """Turns candidate parts into output blocks, numbering function calls across one response."""

    def __init__(self, *, json_tool: bool) -> None:
        self.json_tool = json_tool
        self.calls = 0  # function calls seen, answers to json_mode "tool" excluded
        self._next_id = 0

    def blocks(self, candidate: Mapping[str, Any]) -> list[OutputBlock]:
        content = candidate.get("content")
        if content is None:
            return []
        parts = content.get("parts", []) if isinstance(content, dict) else None
        if not isinstance(parts, list):
            raise malformed("candidates[0].content.parts is not a list")
        blocks: list[OutputBlock] = []
        for part in parts:
            if not isinstance(part, dict):
                raise malformed("a part is not an object")
            blocks.extend(self._part(part))
        return blocks

    def _part(self, part: Mapping[str, Any]) -> list[OutputBlock]:
        signature = part.get("thoughtSignature")
        signature = signature if isinstance(signature, str) and signature else None
        text = part.get("text")
        if part.get("thought") is True:
            return [Thought(text if isinstance(text, str) else None, signature)]
        blocks: list[OutputBlock] = [Thought(None, signature)] if signature else []
        if isinstance(text, str):
            if text:
                blocks.append(Text(text))
        elif "functionCall" in part:
            blocks.append(self._call(part["functionCall"]))
        else:
            blocks.append(Unknown(dict(part)))
        return blocks

    def _call(self, call: Any) -> OutputBlock:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise malformed("a functionCall has no name")
        arguments = orjson.dumps(call.get("args") or {}).decode()
        if self.json_tool and call["name"] == JSON_TOOL_NAME:
            return Text(arguments)
        block = ToolCall(id=f"call_{self._next_id}", name=call["name"], arguments=arguments)
        self._next_id += 1
        self.calls += 1
        return block

    def finish_reason(self, raw: Any) -> FinishReason | None:
        reason = parse_finish_reason(raw)
        return "tool_call" if reason == "stop" and self.calls else reason


def _first_candidate(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    candidates = body.get("candidates")
    if candidates is None or candidates == []:
        return None
    if not isinstance(candidates, list) or not isinstance(candidates[0], dict):
        raise malformed("candidates is not a list of objects")
    return candidates[0]


def parse_response(body: Any, *, json_tool: bool = False) -> tuple[tuple[OutputBlock, ...], Usage, FinishReason | None]:
    """Content blocks, usage and finish reason of a GenerateContentResponse. With `json_tool` (json_mode
    "tool") a call to `respond` becomes a Text block holding its arguments. Raises ProviderError without
    provider or raw fields (the caller adds them): kind "content_filter" for a blocked prompt, "malformed" when
    the shape is wrong."""
    if not isinstance(body, dict):
        raise malformed("the body is not a JSON object")
    candidate = _first_candidate(body)
    if candidate is None:
        raise _blocked(body) or malformed("no candidates")
    parts = _Parts(json_tool=json_tool)
    blocks = parts.blocks(candidate)
    return tuple(blocks), parse_usage(body.get("usageMetadata")), parts.finish_reason(candidate.get("finishReason"))


def parse_embeddings(body: Any, count: int) -> tuple[tuple[float, ...], ...]:
    embeddings = body.get("embeddings") if isinstance(body, dict) else None
    if not isinstance(embeddings, list) or len(embeddings) != count:
        raise malformed(f"expected {count} embeddings")
    vectors = []
    for item in embeddings:
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list) or not all(isinstance(x, int | float) for x in values):
            raise malformed("an embedding is not a list of numbers")
        vectors.append(tuple(float(x) for x in values))
    return tuple(vectors)


class StreamState:
    """Turns the SSE data payloads of one streamGenerateContent call into StreamChunk deltas.

    `feed` returns a chunk for each payload with content (raw = that payload) and None for the others, whose
    payloads ride on the chunk `finish` builds with the last usageMetadata and the finish reason. Gemini sends
    each function call whole, so each ToolCall chunk carries its id, name and complete arguments.
    """

    def __init__(self, *, json_tool: bool = False, provider: str = "", raw_request: str | None = None) -> None:
        self.provider = provider
        self.raw_request = raw_request
        self.usage = Usage()
        self.finish_reason: FinishReason | None = None
        self.payloads: list[str] = []
        self._held: list[str] = []
        self._parts = _Parts(json_tool=json_tool)

    def raw_response(self) -> str:
        return "\n".join(self.payloads)

    def attach(self, exc: ProviderError) -> ProviderError:
        """`exc` with this stream's provider and what crossed the wire so far."""
        exc.provider, exc.raw_request, exc.raw_response = self.provider, self.raw_request, self.raw_response()
        return exc

    def feed(self, data: str) -> StreamChunk | None:
        self.payloads.append(data)
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            raise self.attach(malformed("a stream event is not a JSON object"))
        error = event.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            status = code if isinstance(code, int) and code >= 400 else 500
            raise error_from_status(self.provider, status, data, raw_request=self.raw_request)
        try:
            candidate = _first_candidate(event)
            if candidate is None and (blocked := _blocked(event)) is not None:
                raise blocked
            blocks = self._parts.blocks(candidate) if candidate is not None else []
        except ProviderError as exc:
            raise self.attach(exc) from None
        if "usageMetadata" in event:
            self.usage = parse_usage(event["usageMetadata"])
        if candidate is not None and candidate.get("finishReason") is not None:
            self.finish_reason = self._parts.finish_reason(candidate["finishReason"])
        if not blocks:
            self._held.append(data)
            return None
        return StreamChunk(content=tuple(blocks), raw=data)

    def finish(self) -> StreamChunk:
        """The last chunk: usage and finish reason (call only once `finish_reason` is set)."""
        reason = self.finish_reason
        if reason == "stop" and self._parts.calls:
            reason = "tool_call"  # the call may come in an event before the one with the finish reason
        return StreamChunk(usage=self.usage, finish_reason=reason, raw="\n".join(self._held))


# ---- the provider ------------------------------------------------------------------------------------------


def status_error(provider: str, response: HttpResponse, raw_request: str) -> ProviderError:
    """A non-2xx answer as a ProviderError; Google's 400 for a bad key (reason API_KEY_INVALID) is "auth"."""
    exc = error_from_status(provider, response.status, response.body, raw_request=raw_request)
    try:
        error = orjson.loads(response.body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return exc
    details = error.get("details") if isinstance(error, dict) else None
    reasons = {d.get("reason") for d in details if isinstance(d, dict)} if isinstance(details, list) else set()
    if "API_KEY_INVALID" in reasons or (isinstance(error, dict) and error.get("status") == "UNAUTHENTICATED"):
        exc.kind = "auth"
    return exc


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One successful JSON POST: what crossed the wire, redacted, plus the decoded answer."""

    raw_request: str
    raw_response: str
    request_headers: dict[str, str]
    api_key_sha256: str | None
    data: Any


class GeminiProvider(Provider):
    """The I/O shell around the pure functions above."""

    type_name: ClassVar[str] = "google_ai_studio_gemini"
    supports_embeddings: ClassVar[bool] = True

    def __init__(
        self,
        config: ProviderConfig,
        *,
        model_name: str,
        api_base: str = DEFAULT_API_BASE,
        key_location: KeyLocation,
        pricing: Pricing | None = None,
    ) -> None:
        super().__init__(config)
        self._model_name = model_name
        self.api_base = api_base if api_base.endswith("/") else api_base + "/"
        self.key_location = key_location
        self.pricing = pricing

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> GeminiProvider:
        model_name = options.str("model_name", required=True)
        api_base = options.str("api_base", DEFAULT_API_BASE)
        if isinstance(api_base, str) and (
            not api_base.startswith(("http://", "https://")) or not urlsplit(api_base).hostname
        ):
            options.error("api_base", f"expected an http:// or https:// URL, got {api_base!r}")
            api_base = DEFAULT_API_BASE
        return cls(
            config,
            model_name=model_name or "",
            api_base=api_base or DEFAULT_API_BASE,
            key_location=KeyLocation.parse(options, "api_key_location", "env::GOOGLE_AI_STUDIO_API_KEY"),
            pricing=Pricing.parse(options),
        )

    @property
    def model_name(self) -> str:
        return self._model_name

    def url(self, method: str) -> str:
        return f"{self.api_base}{model_resource(self._model_name)}:{method}"

    def headers(self, key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers[KEY_HEADER] = key
        return headers

    def cost(self, usage: Usage) -> float | None:
        return self.pricing.cost(usage) if self.pricing is not None else None

    async def post_json(self, url: str, body: Mapping[str, Any], ctx: CallContext) -> _Exchange:
        """POST `body`; raise ProviderError for a non-2xx status or an answer that is not JSON."""
        raw_request = orjson.dumps(body).decode()
        key = self.key_location.resolve(ctx.credentials, self.name)
        headers = self.headers(key)
        response = await ctx.transport.post(
            url, raw_request.encode(), headers, provider=self.name, timeout_s=ctx.timeout_s
        )
        if not 200 <= response.status < 300:
            raise status_error(self.name, response, raw_request)
        raw_response = response.body.decode("utf-8", "replace")
        try:
            data = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            raise self._attach(malformed("the body is not JSON"), raw_request, raw_response) from None
        return _Exchange(raw_request, raw_response, redact_headers(headers), key_fingerprint(key), data)

    def _attach(self, exc: ProviderError, raw_request: str, raw_response: str) -> ProviderError:
        exc.provider, exc.raw_request, exc.raw_response = self.name, raw_request, raw_response
        return exc

    async def infer(self, request: ProviderRequest, ctx: CallContext) -> ProviderResponse:
        body = build_body(request, stream=False, provider_name=self.name)
        exchange = await self.post_json(self.url("generateContent"), body, ctx)
        try:
            content, usage, reason = parse_response(exchange.data, json_tool=request.params.json_mode == "tool")
        except ProviderError as exc:
            raise self._attach(exc, exchange.raw_request, exchange.raw_response) from None
        return ProviderResponse(
            content=content,
            usage=usage,
            finish_reason=reason,
            raw_request=exchange.raw_request,
            raw_response=exchange.raw_response,
            cost=self.cost(usage),
            request_headers=exchange.request_headers,
            api_key_sha256=exchange.api_key_sha256,
        )

    async def stream(self, request: ProviderRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        """Yield deltas as they arrive, then one chunk with usage and finish reason. A stream that breaks or
        ends before any finishReason raises ProviderError(kind="stream_interrupted") after its deltas."""
        raw_request = orjson.dumps(build_body(request, stream=True, provider_name=self.name)).decode()
        key = self.key_location.resolve(ctx.credentials, self.name)
        state = StreamState(json_tool=request.params.json_mode == "tool", provider=self.name, raw_request=raw_request)
        # stream_lines is an async generator (annotated AsyncIterator): close it to release the connection.
        lines = cast(
            AsyncGenerator[bytes | HttpResponse, None],
            ctx.transport.stream_lines(
                self.url("streamGenerateContent") + "?alt=sse",
                raw_request.encode(),
                self.headers(key),
                provider=self.name,
                timeout_s=ctx.timeout_s,
            ),
        )
        async with aclosing(lines):
            first = await anext(lines, None)
            if isinstance(first, HttpResponse):
                raise status_error(self.name, first, raw_request)
            try:
                async for event in sse_events(_lines_from(first, lines)):
                    chunk = state.feed(event.data)
                    if chunk is not None:
                        yield chunk
            except ProviderError as exc:
                if exc.kind != "connection":
                    raise
                raise self._interrupted(state, str(exc)) from exc
        if state.finish_reason is None:
            raise self._interrupted(state, "the stream ended before a finishReason")
        yield state.finish()

    def _interrupted(self, state: StreamState, reason: str) -> ProviderError:
        message = f"stream from provider {self.name!r} was interrupted: {reason}"
        return state.attach(ProviderError(message, retryable=True, kind="stream_interrupted"))

    async def embed(
        self, inputs: Sequence[str], ctx: CallContext, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        resource = model_resource(self._model_name)
        requests: list[dict[str, Any]] = []
        for text in inputs:
            item: dict[str, Any] = {"model": resource, "content": {"parts": [{"text": text}]}}
            if dimensions is not None:
                item["outputDimensionality"] = dimensions
            requests.append(item)
        exchange = await self.post_json(self.url("batchEmbedContents"), {"requests": requests}, ctx)
        try:
            embeddings = parse_embeddings(exchange.data, len(inputs))
        except ProviderError as exc:
            raise self._attach(exc, exchange.raw_request, exchange.raw_response) from None
        return EmbeddingResponse(
            embeddings=embeddings,
            usage=Usage(),
            raw_request=exchange.raw_request,
            raw_response=exchange.raw_response,
            request_headers=exchange.request_headers,
            api_key_sha256=exchange.api_key_sha256,
        )


async def _lines_from(first: bytes | None, rest: AsyncIterator[bytes | HttpResponse]) -> AsyncIterator[bytes]:
    """`first` then the rest of the lines (only the first item of stream_lines can be an HttpResponse)."""
    if first is None:
        return
    yield first
    async for line in rest:
        if isinstance(line, bytes):
            yield line
