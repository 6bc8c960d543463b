"""The Gemini API's wire format as pure functions: request bodies out, GenerateContentResponses in.

Mapping choices:
- Tool parameters go as `parametersJsonSchema` and strict JSON schemas as `responseJsonSchema`: both take JSON
  Schema as is, whereas `parameters`/`responseSchema` take an OpenAPI subset that rejects common JSON Schema
  keys (`additionalProperties`, `$defs`, `const`), so no lossy conversion is needed.
- json_mode "on" sets responseMimeType "application/json"; "strict" also sets the output schema when there is
  one; "tool" declares only the function `respond` (parameters = the output schema), forces it with mode ANY,
  and returns its arguments as a Text block of JSON with finish reason "stop".
- tool_choice "auto"/"none"/"required" -> functionCallingConfig mode AUTO/NONE/ANY; {"specific": name} -> ANY
  with allowedFunctionNames [name]. Gemini has no switch for parallel_tool_calls; it is ignored.
- Gemini gives function calls no ids (or its own, kept): each gets "call_<12 random hex>_<n>", n counting the calls
  of one response from 0 — unique across a conversation's turns, as clients expect of every vendor's ids.
  Tool results go back as user-role `functionResponse` parts {"name", "response": ...}: a result that is a JSON
  object as that object (Gemini reads a response's fields; a Gemini client's structured response comes back as it
  was sent), a failed call's as {"error": <string>}, any other as {"result": <string>}. Gemini pairs them with
  calls by name and order.
- Thinking: parts marked `thought: true` become Thought blocks. A `thoughtSignature` on any other part becomes
  a Thought(text=None, signature=...) block just before that part's block; on input the signature is put back
  on the part that follows it (Gemini 3 rejects function calls sent back without their signatures).
- Usage: input = promptTokenCount; output = candidatesTokenCount + thoughtsTokenCount (thinking is billed as
  output). Embeddings report no usage.
- A prompt blocked before generation (promptFeedback.blockReason, no candidates) raises
  ProviderError(kind="content_filter", retryable=False): another attempt would be blocked the same way.
"""

from __future__ import annotations

import mimetypes
import secrets
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import orjson

from lsd.errors import InvalidRequest, ProviderError
from lsd.providers.base import error_from_status, json_object, malformed, mapped_reason
from lsd.providers.transport import HttpResponse
from lsd.types import (
    File,
    FinishReason,
    Message,
    OutputBlock,
    ProviderRequest,
    RawText,
    Template,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    Unknown,
    Usage,
)

# The key of the Unknown block that holds a candidate's groundingMetadata (Google Search's sources and citations).
GROUNDING = "groundingMetadata"
# The message of a prompt Gemini blocked (promptFeedback.blockReason), the reason after it.
BLOCKED = "the prompt was blocked: "
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


def _function_response(block: ToolResult) -> dict[str, Any]:
    if block.is_error:
        return {"error": block.result}
    value = json_object(block.result) if block.result.startswith("{") else None
    return value if value is not None else {"result": block.result}


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
            response = {"functionResponse": {"name": block.name, "response": _function_response(block)}}
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
                part = dict(block.data) if GROUNDING not in block.data else None  # an answer's sources: no part
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
        # Gemini wants the type of a file given by URI: the block's, else guessed from the URL's path (.jpg, .pdf)
        mime_type = block.mime_type or mimetypes.guess_type(urlsplit(block.url).path)[0]
        if mime_type:
            file_data["mimeType"] = mime_type
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
    if params.thinking_budget_tokens is not None:
        config["thinkingConfig"] = {"thinkingBudget": params.thinking_budget_tokens}
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


def parse_finish_reason(value: Any) -> FinishReason | None:
    return mapped_reason(_FINISH_REASONS, value)


def parse_usage(metadata: Any) -> Usage:
    """usageMetadata as Usage; thinking tokens count as output (see the module docstring)."""
    if not isinstance(metadata, dict):
        return Usage()
    prompt, candidates, thoughts, cached = (
        metadata.get(key)
        for key in ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "cachedContentTokenCount")
    )
    output = candidates if isinstance(candidates, int) else None
    if isinstance(thoughts, int):
        output = (output or 0) + thoughts
    return Usage(
        prompt if isinstance(prompt, int) else None,
        output,
        cache_read_input_tokens=cached if isinstance(cached, int) else None,
        reasoning_tokens=thoughts if isinstance(thoughts, int) else None,
    )


def blocked_error(body: Mapping[str, Any]) -> ProviderError | None:
    feedback = body.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if reason is None:
        return None
    return ProviderError(f"{BLOCKED}{reason}", retryable=False, kind="content_filter")


class Parts:
    """Turns candidate parts into output blocks, numbering function calls across one response."""

    def __init__(self, *, json_tool: bool) -> None:
        self.json_tool = json_tool
        self.calls = 0  # function calls seen, answers to json_mode "tool" excluded
        self._next_id = 0
        # Gemini's calls come without ids (or with its own, kept): each gets `call_<random>_<n>`, unique across a
        # conversation's turns as every other vendor's are (Claude Code drops a call whose id it has seen before).
        self._prefix = secrets.token_hex(6)

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
        given = call.get("id")
        call_id = given if isinstance(given, str) and given else f"call_{self._prefix}_{self._next_id}"
        block = ToolCall(id=call_id, name=call["name"], arguments=arguments)
        self._next_id += 1
        self.calls += 1
        return block

    def finish_reason(self, raw: Any) -> FinishReason | None:
        reason = parse_finish_reason(raw)
        return "tool_call" if reason == "stop" and self.calls else reason


def first_candidate(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    candidates = body.get("candidates")
    if candidates is None or candidates == []:
        return None
    if not isinstance(candidates, list) or not isinstance(candidates[0], dict):
        raise malformed("candidates is not a list of objects")
    return candidates[0]


def parse_response(
    body: Any, *, json_tool: bool = False, provider_name: str | None = None
) -> tuple[tuple[OutputBlock, ...], Usage, FinishReason | None]:
    """Content blocks, usage and finish reason of a GenerateContentResponse. With `json_tool` (json_mode
    "tool") a call to `respond` becomes a Text block holding its arguments. A candidate's `groundingMetadata`
    (Google Search's sources) is kept as a last Unknown block {GROUNDING: ...} of `provider_name`'s, which no
    provider is sent back. Raises ProviderError without provider or raw fields (the caller adds them): kind
    "content_filter" for a blocked prompt, "malformed" when the shape is wrong."""
    if not isinstance(body, dict):
        raise malformed("the body is not a JSON object")
    candidate = first_candidate(body)
    if candidate is None:
        raise blocked_error(body) or malformed("no candidates")
    parts = Parts(json_tool=json_tool)
    blocks = parts.blocks(candidate)
    grounding = candidate.get("groundingMetadata")
    if isinstance(grounding, dict):
        blocks.append(Unknown({GROUNDING: grounding}, provider_name=provider_name))
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


def status_error(provider: str, response: HttpResponse, raw_request: str) -> ProviderError:
    """A non-2xx answer as a ProviderError; Google's 400 for a bad key (reason API_KEY_INVALID) is "auth"."""
    exc = error_from_status(provider, response.status, response.body, raw_request=raw_request)
    body = json_object(response.body)
    error = body.get("error") if body is not None else None
    details = error.get("details") if isinstance(error, dict) else None
    reasons = {d.get("reason") for d in details if isinstance(d, dict)} if isinstance(details, list) else set()
    if "API_KEY_INVALID" in reasons or (isinstance(error, dict) and error.get("status") == "UNAUTHENTICATED"):
        exc.kind = "auth"
    exc.retry_after_s = _retry_delay(details)  # Google says when to retry in a RetryInfo detail, not a header
    return exc


def _retry_delay(details: Any) -> float | None:
    """The seconds of a RetryInfo detail's `retryDelay` ("38s", "1.5s"), or None."""
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return max(float(delay[:-1]), 0.0)
                except ValueError:
                    return None
    return None
