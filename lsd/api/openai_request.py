"""OpenAI's Chat Completions request, parsed into the engine's InferenceRequest (its answers: lsd.api.openai_wire)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from lsd.api.openai_model import ModelRef, parse_model
from lsd.config.inbound import MODEL_ALIAS_TAG, PREFIXES, InboundTarget
from lsd.errors import InvalidOpenAIRequest, InvalidRequest
from lsd.immutable import immutable
from lsd.inference.request import (
    InferenceRequest,
    check_schema,
    check_tag_keys,
    parse_body_patch,
    parse_cache_options,
    parse_episode_id,
    parse_header_patch,
    parse_params,
    parse_tool,
    parsed_list,
)
from lsd.types import (
    CONTROL_PARAMS,
    ContentBlock,
    File,
    Input,
    Message,
    Template,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    Unknown,
)


def _extra(body: Mapping[str, Any], name: str) -> Any:
    """An LSD extension key, accepted with the `lsd::` or `tensorzero::` prefix."""
    for prefix in PREFIXES:
        if f"{prefix}{name}" in body:
            return body[f"{prefix}{name}"]
    return None


extension = _extra  # the same, for the other OpenAI-shaped endpoint (lsd.api.responses_request)


def _with_parameters(function: Any) -> Any:
    """A function tool as OpenAI reads it: without `parameters`, a function of no arguments."""
    if isinstance(function, dict) and function.get("parameters") is None:
        return {**function, "parameters": {"type": "object", "properties": {}}}
    return function


def parse_metadata(raw: Any) -> dict[str, str] | None:
    """OpenAI's `metadata` (strings by string keys), kept as the inference's tags."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest.at("metadata", "expected an object of strings")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise InvalidRequest.at(f"metadata.{key}", "expected a string")
        if key.startswith(("lsd::", "tensorzero::")):
            raise InvalidRequest.at(f"metadata.{key}", "keys starting with 'lsd::' or 'tensorzero::' are reserved")
    return dict(raw)


def _flag(body: Mapping[str, Any], name: str) -> bool:
    """A boolean extension (absent or null: false)."""
    value = _extra(body, name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest.at(extension_key(body, name), "expected a boolean")
    return value


def extension_key(body: Mapping[str, Any], name: str) -> str:
    """The key an extension was sent under (`lsd::` or `tensorzero::`), for error paths; TensorZero's when absent."""
    for prefix in PREFIXES:
        if f"{prefix}{name}" in body:
            return f"{prefix}{name}"
    return f"tensorzero::{name}"


# Chat Completions keys TensorZero's endpoint knows; `tensorzero::deny_unknown_fields` refuses any other.
CHAT_KEYS = frozenset(
    (
        *("messages", "model", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop"),
        *("presence_penalty", "frequency_penalty", *CONTROL_PARAMS),
        *("parallel_tool_calls", "tools", "tool_choice", "response_format", "stream", "stream_options", "n"),
        *("user", "metadata", "safety_identifier", "prompt_cache_key"),  # kept as tags (request_identifiers)
    )
)
PROMPT_CACHE_KEY_TAG = "lsd::prompt_cache_key"  # the request's prompt_cache_key (Codex: its session id)


def alias_tag(model: ModelRef) -> dict[str, str]:
    """The `lsd::model_alias` tag of a model named by an `[inbound.openai] models` alias."""
    return {MODEL_ALIAS_TAG: model.alias} if model.alias is not None else {}


def request_identifiers(body: Mapping[str, Any]) -> dict[str, str]:
    """OpenAI's identifiers of a request's end user and session, kept as the inference's tags: `user` (what per-user
    rate limits scope on), `safety_identifier` (OpenAI's successor to `user`) and `prompt_cache_key` (as
    `lsd::prompt_cache_key`: Codex and the AI SDK send a session id there, and the tag finds a session's
    inferences)."""
    tags: dict[str, str] = {}
    for key, tag in (
        ("user", "user"),
        ("safety_identifier", "safety_identifier"),
        ("prompt_cache_key", PROMPT_CACHE_KEY_TAG),
    ):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidRequest.at(key, "expected a string")
        if value:
            tags[tag] = value
    return tags


EXTENSIONS = frozenset(
    (
        *("episode_id", "variant_name", "tags", "dryrun", "namespace", "cache_options", "credentials", "params"),
        *("extra_body", "extra_headers", "provider_tools", "include_raw_response", "include_raw_usage"),
        *("include_original_response", "deny_unknown_fields", "internal_dynamic_variant_config"),
    )
)


def deny_unknown_fields(body: Mapping[str, Any], known: frozenset[str]) -> None:
    """400 naming the first key that is neither in `known` nor an extension, when the body asks for it."""
    if _extra(body, "deny_unknown_fields") is not True:
        return
    for key in sorted(body):
        name = next((key[len(p) :] for p in PREFIXES if key.startswith(p)), None)
        if key not in known and name not in EXTENSIONS:
            raise InvalidRequest.at(key, "unknown field (tensorzero::deny_unknown_fields is true)")


def common_extensions(body: Mapping[str, Any]) -> dict[str, Any]:
    """The InferenceRequest fields of the extensions both OpenAI-shaped routes take: the episode (a UUIDv7), tags
    (no reserved keys: `internal` is always false here) with the namespace, and the per-request provider patches."""
    tags_key = extension_key(body, "tags")
    tags = body[tags_key] if body.get(tags_key) is not None else {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise InvalidRequest.at(tags_key, "expected an object of strings")
    check_tag_keys(tags, tags_key)
    namespace_key = extension_key(body, "namespace")
    namespace = body.get(namespace_key)
    if namespace is not None:
        if not isinstance(namespace, str) or not namespace:
            raise InvalidRequest.at(namespace_key, "expected a non-empty string")
        tags = {**tags, "tensorzero::namespace": namespace}
    episode_key = extension_key(body, "episode_id")
    episode = body.get(episode_key)
    provider_tools_key = extension_key(body, "provider_tools")
    if body.get(provider_tools_key) is not None and not isinstance(body[provider_tools_key], list):
        raise InvalidRequest.at(provider_tools_key, "expected an array")
    extra_body_key, extra_headers_key = extension_key(body, "extra_body"), extension_key(body, "extra_headers")
    return {
        "episode_id": None if episode is None else parse_episode_id(episode, episode_key),
        "tags": tags,
        "extra_body": parsed_list(body, extra_body_key, parse_body_patch),
        "extra_headers": parsed_list(body, extra_headers_key, parse_header_patch),
    }


def _text_of(content: Any, path: str, *, system: bool = False) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(p, f"{path}[{i}]", system) for i, p in enumerate(content))
    raise InvalidRequest.at(path, "expected a string or an array of text parts")


def _part_text(part: Any, path: str, system: bool) -> str:
    if isinstance(part, dict) and part.get("type") == "text":
        _check_text_part(part, path)
        if isinstance(part.get("text"), str):
            return str(part["text"])
    if system:
        raise InvalidOpenAIRequest("System message must contain only text or template content blocks", field=path)
    raise InvalidRequest.at(path, "expected a text part")


def _check_text_part(part: Mapping[str, Any], path: str) -> None:
    """TensorZero's rules for a `text` part: `text` or `tensorzero::arguments`, exactly one of them."""
    has_text, has_arguments = part.get("text") is not None, _extra(part, "arguments") is not None
    if has_text and has_arguments:
        raise InvalidOpenAIRequest(
            "Invalid TensorZero content block: Only one of `text` or `tensorzero::arguments` can be set", field=path
        )
    if not has_text and not has_arguments:
        raise InvalidOpenAIRequest(
            'Invalid content block: Either `text` or `tensorzero::arguments` must be set when using `"type": "text"`',
            field=path,
        )


def _file_part(part: Mapping[str, Any], path: str) -> File:
    """OpenAI's `{"type": "file", "file": {"file_data", "filename"}}`: a data URL, or bare base64."""
    file = part.get("file")
    if not isinstance(file, dict):
        raise InvalidRequest.at(f"{path}.file", "expected an object")
    filename = file.get("filename") if isinstance(file.get("filename"), str) else None
    data = file.get("file_data")
    if isinstance(data, str):
        if data.startswith("data:") and ";base64," in data:
            mime, _, payload = data[5:].partition(";base64,")
            return File(mime_type=mime or None, data=payload, filename=filename)
        given = part.get("mime_type") or file.get("mime_type")
        return File(mime_type=given if isinstance(given, str) else None, data=data, filename=filename)
    url = file.get("url") or part.get("url")
    if isinstance(url, str):
        return File(mime_type=None, url=url, filename=filename)
    if file.get("file_id") is not None:
        raise InvalidOpenAIRequest("`file_id` is not supported: send the file's content in `file_data`", field=path)
    raise InvalidRequest.at(f"{path}.file", "expected file_data")


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
        if kind == "text":
            _check_text_part(part, ppath)
        if kind == "text" and isinstance(arguments, dict):
            blocks.append(Template(name=role, arguments=arguments))
        elif kind == "text":
            blocks.append(Text(_part_text(part, ppath, False)))
        elif kind == "file":
            blocks.append(_file_part(part, ppath))
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
            raise InvalidOpenAIRequest(
                f"Invalid content block: unknown variant `{kind}`, expected one of `text`, `image_url`, `file`",
                field=f"{ppath}.type",
            )
    return blocks


def _with_extra_content(blocks: list[ContentBlock], message: Mapping[str, Any], path: str) -> list[ContentBlock]:
    """An assistant message's `tensorzero_extra_content` (thought and unknown blocks), each at its insert_index
    (at the end without one)."""
    extra = message.get("tensorzero_extra_content")
    if extra is None:
        return blocks
    if not isinstance(extra, list):
        raise InvalidRequest.at(f"{path}.tensorzero_extra_content", "expected an array")
    out = list(blocks)
    for k, item in enumerate(extra):
        epath = f"{path}.tensorzero_extra_content[{k}]"
        if not isinstance(item, dict):
            raise InvalidRequest.at(epath, "expected an object")
        block: ContentBlock
        if item.get("type") == "thought":
            summary = item.get("summary")
            provider_type = item.get("provider_type")
            block = Thought(
                item.get("text"),
                item.get("signature"),
                tuple(summary) if summary else None,
                provider_type=provider_type if isinstance(provider_type, str) else None,
            )
        elif item.get("type") == "unknown":
            block = Unknown(item.get("data"), item.get("model_name"), item.get("provider_name"))
        else:
            raise InvalidRequest.at(f"{epath}.type", "must be thought or unknown")
        index = item.get("insert_index")
        out.insert(index if isinstance(index, int) and 0 <= index <= len(out) else len(out), block)
    return out


def parse_messages(messages: Any) -> Input:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest.at("messages", "expected a non-empty array")
    system: str | dict[str, Any] | None = None
    out: list[Message] = []
    tool_names: dict[str, str] = {}
    tool_turn = -1  # the index in `out` of the user message the latest tool messages made
    for i, m in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidRequest.at(path, "expected an object")
        role = m.get("role")
        content = m.get("content")
        if role in ("system", "developer"):
            single = content[0] if isinstance(content, list) and len(content) == 1 else None
            if isinstance(single, dict) and isinstance(_extra(single, "arguments"), dict):
                system = _extra(single, "arguments")
            elif isinstance(content, dict):
                system = content
            else:
                text = _text_of(content, f"{path}.content", system=True)
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
            blocks = _with_extra_content(blocks, m, path)
            reasoning = m.get("reasoning_content")
            if reasoning is not None and not isinstance(reasoning, str):
                raise InvalidRequest.at(f"{path}.reasoning_content", "expected a string")
            if reasoning and not any(isinstance(b, Thought) for b in blocks):  # not twice: LSD answers both fields
                blocks.insert(0, Thought(reasoning))  # DeepSeek's, vLLM's reasoning, as clients send it back
            out.append(Message("assistant", tuple(blocks)))
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                raise InvalidRequest.at(f"{path}.tool_call_id", "required for tool messages")
            result = _tool_result(call_id, tool_names.get(call_id, ""), content, f"{path}.content")
            if out and tool_turn == len(out) - 1:  # the tool messages of one turn: one user message
                out[-1] = Message("user", (*out[-1].content, *result))
            else:
                out.append(Message("user", result))
                tool_turn = len(out) - 1
        else:
            raise InvalidRequest.at(f"{path}.role", f"must be system, developer, user, assistant or tool, got {role!r}")
    return Input(system=system, messages=tuple(out))


def _tool_result(call_id: str, name: str, content: Any, path: str) -> tuple[ContentBlock, ...]:
    """A tool message: its text as the ToolResult; images and files among its parts follow it as their own blocks
    (Qwen Code's read_file answers an image so), as on the Anthropic route. An OpenAI-style provider gets them in a
    user message after the tool messages, Anthropic in the tool results' user turn."""
    if not isinstance(content, list) or all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return (ToolResult(call_id, name, _text_of(content, path)),)
    texts: list[str] = []
    files: list[ContentBlock] = []
    for i, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "text":
            texts.append(_part_text(part, f"{path}[{i}]", False))
        elif isinstance(part, dict) and part.get("type") in ("image_url", "file"):
            files.extend(_parts([part], "user", f"{path}[{i}]"))
        else:
            raise InvalidRequest.at(f"{path}[{i}]", "expected a text, image_url or file part")
    return (ToolResult(call_id, name, "".join(texts)), *files)


@immutable
class ChatCompletionRequest:
    """A parsed chat completion: the engine's request, the `model` the client named (its prefix is echoed) and
    whether usage goes on the last stream chunk."""

    request: InferenceRequest
    model: ModelRef
    include_usage: bool = False


def parse_chat_request(body: Any, aliases: Mapping[str, InboundTarget] | None = None) -> ChatCompletionRequest:
    """The engine request for an OpenAI chat completion (400 as TensorZero answers for a `model` it refuses);
    `aliases`: `[inbound.openai] models`."""
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    model = parse_model(body.get("model"), aliases=aliases)
    kind, name = model.kind, model.name
    if body.get("n") not in (None, 1):
        raise InvalidRequest.at("n", "only n = 1 is supported")
    values: dict[str, Any] = {}
    for key in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", *CONTROL_PARAMS):
        if body.get(key) is not None:
            values[key] = body[key]
    if isinstance(body.get("prompt_cache_key"), str) and body["prompt_cache_key"]:  # also a tag (request_identifiers)
        values["prompt_cache_key"] = body["prompt_cache_key"]
    limits = []
    for key in ("max_tokens", "max_completion_tokens"):
        limit = body.get(key)
        if limit is None:
            continue
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise InvalidRequest.at(key, "expected an integer")
        limits.append(limit)
    if limits:
        values["max_tokens"] = min(limits)
    stop = body.get("stop")
    if stop is not None:
        values["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    output_schema = None
    strict = True
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            values["json_mode"] = "strict"
            schema = fmt.get("json_schema") or {}
            if not isinstance(schema, dict):
                raise InvalidRequest.at("response_format.json_schema", "expected an object")
            strict = schema.get("strict") is True  # OpenAI's default is false: strict mode refuses many schemas
            output_schema = schema.get("schema")
            if output_schema is not None:
                if not isinstance(output_schema, dict):
                    raise InvalidRequest.at("response_format.json_schema.schema", "expected an object")
                check_schema(output_schema, "response_format.json_schema.schema")
        elif fmt.get("type") == "json_object":
            values["json_mode"] = "on"
        elif fmt.get("type") == "text":
            values["json_mode"] = "off"
    params = parse_params({"chat_completion": values}, "params")
    override = _extra(body, "params")
    if override is not None:
        params = params.merged(parse_params(override, "lsd::params"))
    raw_tools = body.get("tools") or []
    if not isinstance(raw_tools, list):
        raise InvalidRequest.at("tools", "expected an array")
    tools = tuple(
        parse_tool(_with_parameters(t.get("function") if isinstance(t, dict) else t), f"tools[{i}].function")
        for i, t in enumerate(raw_tools)
    )
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function") or {}
        if not isinstance(function, dict):
            raise InvalidRequest.at("tool_choice.function", "expected an object")
        choice = {"specific": str(function.get("name", ""))}
    elif choice is not None and choice not in ("none", "auto", "required"):
        raise InvalidRequest.at("tool_choice", "must be none, auto, required or {type: function, function: {name}}")
    deny_unknown_fields(body, CHAT_KEYS)
    dryrun = bool(_extra(body, "dryrun"))
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest.at("stream", "expected a boolean")
    stream = bool(stream)
    stream_options = body["stream_options"] if body.get("stream_options") is not None else {}
    if not isinstance(stream_options, dict):
        raise InvalidRequest.at("stream_options", "expected an object")
    include_usage = bool(stream_options.get("include_usage"))
    variant_name = _extra(body, "variant_name")
    if variant_name is not None and not isinstance(variant_name, str):
        raise InvalidRequest.at("lsd::variant_name", "expected a string")
    credentials = _extra(body, "credentials")
    credentials = {} if credentials is None else credentials
    if not isinstance(credentials, dict) or not all(isinstance(v, str) for v in credentials.values()):
        raise InvalidRequest.at("lsd::credentials", "expected an object of strings")
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidRequest.at("parallel_tool_calls", "expected a boolean")
    extensions = common_extensions(body)
    # OpenAI's `metadata` and identifiers are kept as tags; the extension's tags win over them.
    metadata = parse_metadata(body.get("metadata")) or {}
    extensions["tags"] = {**metadata, **request_identifiers(body), **extensions["tags"], **alias_tag(model)}
    request = InferenceRequest(
        input=parse_messages(body.get("messages")),
        function_name=name if kind == "function_name" else None,
        model_name=name if kind == "model_name" else None,
        variant_name=variant_name,
        stream=stream,
        dryrun=dryrun,
        params=params,
        credentials=credentials,
        output_schema=output_schema,
        output_schema_strict=strict,
        additional_tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        cache=parse_cache_options(_extra(body, "cache_options"), "lsd::cache_options", dryrun),
        include_original_response=bool(_extra(body, "include_original_response")),
        include_raw_usage=_flag(body, "include_raw_usage"),
        include_raw_response=_flag(body, "include_raw_response"),
        **extensions,
    )
    if request.function_name is None and request.variant_name is not None:
        request = replace(request, variant_name=None)
    return ChatCompletionRequest(request, model, include_usage)
