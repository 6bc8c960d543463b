"""OpenAI's Chat Completions request, parsed into the engine's InferenceRequest (its answers: lsd.api.openai_wire)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from lsd.api.openai_messages import extension, parse_messages
from lsd.api.openai_model import ModelRef, parse_model
from lsd.config.inbound import MODEL_ALIAS_TAG, PREFIXES, InboundTarget
from lsd.errors import InvalidRequest
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
from lsd.types import CONTROL_PARAMS

_extra = extension


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
