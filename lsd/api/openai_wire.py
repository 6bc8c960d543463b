"""OpenAI's Chat Completions and Embeddings wire format, translated to and from the engine's requests."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from lsd.errors import InvalidRequest, LsdError, RateLimited
from lsd.inference.request import (
    InferenceRequest,
    parse_cache_options,
    parse_params,
    parse_tool,
    parse_uuid,
)
from lsd.inference.result import EmbeddingResult, InferenceResult, ToolCallOutput
from lsd.inference.streaming import InferenceStream, StreamEvent
from lsd.types import ContentBlock, File, Input, Message, Template, Text, ToolCall, ToolResult, Usage

PREFIXES = ("lsd::", "tensorzero::")
FINISH = {
    "stop": "stop",
    "stop_sequence": "stop",
    "unknown": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_call": "tool_calls",
}


def _extra(body: Mapping[str, Any], name: str) -> Any:
    """An LSD extension key, accepted with the `lsd::` or `tensorzero::` prefix."""
    for prefix in PREFIXES:
        if f"{prefix}{name}" in body:
            return body[f"{prefix}{name}"]
    return None


def parse_model(model: Any, kind: str = "function_name") -> tuple[str, str]:
    """`lsd::function_name::F` / `lsd::model_name::M` (or tensorzero::) -> (kind, name); a bare name is a model."""
    if not isinstance(model, str) or not model:
        raise InvalidRequest.at("model", "expected a non-empty string")
    for prefix in PREFIXES:
        for key in ("function_name", "model_name", "embedding_model_name"):
            marker = f"{prefix}{key}::"
            if model.startswith(marker):
                return key, model[len(marker) :]
        if model.startswith(prefix):
            raise InvalidRequest.at(
                "model", f"unknown model prefix in {model!r}: use {prefix}function_name::F or {prefix}model_name::M"
            )
    return ("embedding_model_name" if kind == "embedding_model_name" else "model_name"), model


def _text_of(content: Any, path: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(p, f"{path}[{i}]") for i, p in enumerate(content))
    raise InvalidRequest.at(path, "expected a string or an array of text parts")


def _part_text(part: Any, path: str) -> str:
    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
        return str(part["text"])
    raise InvalidRequest.at(path, "expected a text part")


def _parts(content: Any, role: str, path: str) -> list[ContentBlock]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)]
    if not isinstance(content, list):
        raise InvalidRequest.at(path, "expected a string or an array of content parts")
    blocks: list[ContentBlock] = []
    for i, part in enumerate(content):
        ppath = f"{path}[{i}]"
        if not isinstance(part, dict):
            raise InvalidRequest.at(ppath, "expected an object")
        kind = part.get("type")
        arguments = _extra(part, "arguments")
        if kind == "text" and isinstance(arguments, dict):
            blocks.append(Template(name=role, arguments=arguments))
        elif kind == "text":
            blocks.append(Text(_part_text(part, ppath)))
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url")
            if not isinstance(url, str):
                raise InvalidRequest.at(f"{ppath}.image_url.url", "expected a string")
            detail = (part.get("image_url") or {}).get("detail")
            if url.startswith("data:") and ";base64," in url:
                mime, _, data = url[5:].partition(";base64,")
                blocks.append(File(mime_type=mime, data=data, detail=detail))
            else:
                blocks.append(File(mime_type=None, url=url, detail=detail))
        elif kind in ("lsd::raw_text", "tensorzero::raw_text"):
            blocks.append(Text(str(part.get("value", ""))))
        elif kind in ("lsd::template", "tensorzero::template"):
            blocks.append(Template(name=str(part.get("name", role)), arguments=part.get("arguments") or {}))
        else:
            raise InvalidRequest.at(f"{ppath}.type", f"unsupported content part type {kind!r}")
    return blocks


def parse_messages(messages: Any) -> Input:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest.at("messages", "expected a non-empty array")
    system: str | dict[str, Any] | None = None
    out: list[Message] = []
    tool_names: dict[str, str] = {}
    for i, m in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidRequest.at(path, "expected an object")
        role = m.get("role")
        content = m.get("content")
        if role in ("system", "developer"):
            if isinstance(content, list) and len(content) == 1 and isinstance(_extra(content[0], "arguments"), dict):
                system = _extra(content[0], "arguments")
            elif isinstance(content, dict):
                system = content
            else:
                text = _text_of(content, f"{path}.content")
                system = text if system is None or not isinstance(system, str) else f"{system}\n{text}"
        elif role == "user":
            out.append(Message("user", tuple(_parts(content, "user", f"{path}.content"))))
        elif role == "assistant":
            blocks = _parts(content, "assistant", f"{path}.content")
            for j, call in enumerate(m.get("tool_calls") or []):
                cpath = f"{path}.tool_calls[{j}]"
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(call.get("id"), str):
                    raise InvalidRequest.at(cpath, "expected {id, type: function, function: {name, arguments}}")
                name, arguments = str(function.get("name", "")), function.get("arguments", "")
                tool_names[call["id"]] = name
                blocks.append(
                    ToolCall(
                        call["id"], name, arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
                    )
                )
            out.append(Message("assistant", tuple(blocks)))
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                raise InvalidRequest.at(f"{path}.tool_call_id", "required for tool messages")
            result = ToolResult(call_id, tool_names.get(call_id, ""), _text_of(content, f"{path}.content"))
            if out and out[-1].role == "user" and all(isinstance(b, ToolResult) for b in out[-1].content):
                out[-1] = Message("user", (*out[-1].content, result))
            else:
                out.append(Message("user", (result,)))
        else:
            raise InvalidRequest.at(f"{path}.role", f"must be system, developer, user, assistant or tool, got {role!r}")
    return Input(system=system, messages=tuple(out))


def parse_chat_request(body: Any) -> tuple[InferenceRequest, bool]:
    """The engine request for an OpenAI chat completion, and whether usage goes on the last stream chunk."""
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    kind, name = parse_model(body.get("model"))
    if body.get("n") not in (None, 1):
        raise InvalidRequest.at("n", "only n = 1 is supported")
    values: dict[str, Any] = {}
    for key in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        if body.get(key) is not None:
            values[key] = body[key]
    limits = [body[k] for k in ("max_tokens", "max_completion_tokens") if body.get(k) is not None]
    if limits:
        values["max_tokens"] = min(limits)
    stop = body.get("stop")
    if stop is not None:
        values["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    output_schema = None
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            values["json_mode"] = "strict"
            output_schema = (fmt.get("json_schema") or {}).get("schema")
        elif fmt.get("type") == "json_object":
            values["json_mode"] = "on"
        elif fmt.get("type") == "text":
            values["json_mode"] = "off"
    params = parse_params({"chat_completion": values}, "params")
    override = _extra(body, "params")
    if override is not None:
        params = params.merged(parse_params(override, "lsd::params"))
    tools = tuple(
        parse_tool(t.get("function") if isinstance(t, dict) else t, f"tools[{i}].function")
        for i, t in enumerate(body.get("tools") or [])
    )
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        choice = {"specific": str((choice.get("function") or {}).get("name", ""))}
    elif choice is not None and choice not in ("none", "auto", "required"):
        raise InvalidRequest.at("tool_choice", "must be none, auto, required or {type: function, function: {name}}")
    episode = _extra(body, "episode_id")
    tags = _extra(body, "tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise InvalidRequest.at("lsd::tags", "expected an object of strings")
    dryrun = bool(_extra(body, "dryrun"))
    stream = bool(body.get("stream"))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    request = InferenceRequest(
        input=parse_messages(body.get("messages")),
        function_name=name if kind == "function_name" else None,
        model_name=name if kind == "model_name" else None,
        episode_id=parse_uuid(episode, "lsd::episode_id") if episode is not None else None,
        variant_name=_extra(body, "variant_name"),
        stream=stream,
        dryrun=dryrun,
        params=params,
        tags=tags,
        credentials=_extra(body, "credentials") or {},
        output_schema=output_schema,
        additional_tools=tools,
        tool_choice=choice,
        parallel_tool_calls=body.get("parallel_tool_calls"),
        cache=parse_cache_options(_extra(body, "cache_options"), "lsd::cache_options", dryrun),
    )
    if request.function_name is None and request.variant_name is not None:
        request = replace(request, variant_name=None)
    return request, include_usage


def response_model(request: InferenceRequest, variant_name: str) -> str:
    if request.function_name is not None:
        return f"lsd::function_name::{request.function_name}::variant_name::{variant_name}"
    return f"lsd::model_name::{request.model_name}"


def usage_json(usage: Usage, cost: float | None) -> dict[str, Any]:
    prompt, completion = usage.input_tokens, usage.output_tokens
    out: dict[str, Any] = {}
    if prompt is not None:
        out["prompt_tokens"] = prompt
    if completion is not None:
        out["completion_tokens"] = completion
    if prompt is not None or completion is not None:
        out["total_tokens"] = (prompt or 0) + (completion or 0)
    out["tensorzero_cost"] = cost
    return out


def completion_json(request: InferenceRequest, result: InferenceResult) -> dict[str, Any]:
    if result.output is not None:
        content: str | None = result.output.raw
        tool_calls: list[dict[str, Any]] = []
    else:
        texts = [b.text for b in result.content if isinstance(b, Text)]
        content = "".join(texts) if texts else None
        tool_calls = [
            {"id": b.id, "type": "function", "function": {"name": b.raw_name, "arguments": b.raw_arguments}}
            for b in result.content
            if isinstance(b, ToolCallOutput)
        ]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": str(result.inference_id),
        "episode_id": str(result.episode_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": response_model(request, result.variant_name),
        "system_fingerprint": "",
        "service_tier": None,
        "choices": [
            {
                "index": 0,
                "finish_reason": FINISH.get(result.finish_reason or "stop", "stop"),
                "logprobs": None,
                "message": message,
            }
        ],
        "usage": usage_json(result.usage, result.cost),
    }


class ChunkWriter:
    """Turns one stream's events into `chat.completion.chunk` objects (tool call indexes, first-delta role)."""

    def __init__(self, request: InferenceRequest, stream: InferenceStream, include_usage: bool) -> None:
        self.request = request
        self.stream = stream
        self.include_usage = include_usage
        self.created = int(time.time())
        self.first = True
        self.tool_index: dict[str, int] = {}

    def chunk(self, event: StreamEvent) -> dict[str, Any] | None:
        if event.error is not None:
            return {"error": {"message": event.error}}
        delta: dict[str, Any] = {}
        if self.first:
            delta["role"] = "assistant"
            self.first = False
        texts = [b.text for b in event.content if isinstance(b, Text)]
        if texts:
            delta["content"] = "".join(texts)
        calls = []
        for block in event.content:
            if isinstance(block, ToolCall):
                new = block.id not in self.tool_index
                index = self.tool_index.setdefault(block.id, len(self.tool_index))
                call: dict[str, Any] = {
                    "index": index,
                    "type": "function",
                    "function": {"name": block.name, "arguments": block.arguments},
                }
                if new:
                    call["id"] = block.id
                calls.append(call)
        if calls:
            delta["tool_calls"] = calls
        finish = FINISH.get(event.finish_reason or "stop", "stop") if event.usage is not None else None
        if not delta and finish is None:
            return None
        return {
            "id": str(self.stream.inference_id),
            "episode_id": str(self.stream.episode_id),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": response_model(self.request, self.stream.variant_name),
            "system_fingerprint": "",
            "service_tier": None,
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None, "delta": delta}],
            "usage": usage_json(event.usage, None) if event.usage is not None and self.include_usage else None,
        }


def embeddings_json(result: EmbeddingResult, encoding: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": embedding_vector(v, encoding)}
            for i, v in enumerate(result.embeddings)
        ],
        "model": f"lsd::embedding_model_name::{result.model_name}",
        "usage": {
            "prompt_tokens": result.usage.input_tokens or 0,
            "total_tokens": result.usage.input_tokens or 0,
            "tensorzero_cost": result.cost,
        },
    }


def openai_error_body(exc: LsdError) -> bytes:
    """OpenAI's error shape, so the OpenAI SDK shows the message: {"error": {"message", "type", "code", "param"}}."""
    error: dict[str, object] = {
        "message": exc.message,
        "type": exc.error_code,
        "code": exc.error_code,
        "param": exc.field,
    }
    if isinstance(exc, RateLimited):
        error["rule"] = exc.rule
    return orjson.dumps({"error": error})


def embedding_vector(values: tuple[float, ...], encoding: str) -> list[float] | str:
    """`base64` is what the OpenAI SDK asks for by default: little-endian float32s."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return list(values)
