"""Parse a TensorZero-shaped `/inference` body into an InferenceRequest; every error names its field."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any, TypeVar
from uuid import UUID

from lsd.config.model import VariantConfig
from lsd.errors import InvalidRequest
from lsd.ids import validate_episode_id
from lsd.immutable import immutable
from lsd.inference.dynamic_variant import FIELD as DYNAMIC_VARIANT
from lsd.inference.dynamic_variant import parse_dynamic_variant
from lsd.inference.input_request import expect, model_provider, parse_input, required_str
from lsd.inference.schemas import schema_error
from lsd.types import (
    CONTROL_PARAMS,
    HEADER_NAME,
    HEADER_VALUE_FORBIDDEN,
    BodyPatch,
    HeaderPatch,
    InferenceParams,
    Input,
    Json,
    ToolSpec,
)

# Keys the tensorzero client sends that LSD accepts; null always means "absent".
_TOP_LEVEL = frozenset(
    {
        "function_name",
        "model_name",
        "episode_id",
        "input",
        "stream",
        "params",
        "variant_name",
        "dryrun",
        "tags",
        "internal",
        "namespace",
        "credentials",
        "cache_options",
        "output_schema",
        "allowed_tools",
        "additional_tools",
        "tool_choice",
        "parallel_tool_calls",
        "provider_tools",
        "include_raw_response",
        "include_raw_usage",
        "include_original_response",
        "include_aggregated_response",
        "extra_body",
        "extra_headers",
        "internal_dynamic_variant_config",
    }
)
T = TypeVar("T")

_PARAMS = (
    "temperature",
    "max_tokens",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "stop_sequences",
    "json_mode",
    "reasoning_effort",
    "service_tier",
    "thinking_budget_tokens",
    "verbosity",
    "prompt_cache_key",
)


@immutable
class InferenceRequest:
    input: Input
    function_name: str | None = None
    model_name: str | None = None
    episode_id: UUID | None = None
    variant_name: str | None = None
    stream: bool = False
    dryrun: bool = False
    params: InferenceParams = field(default_factory=InferenceParams)
    tags: Mapping[str, str] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict)
    output_schema: Mapping[str, Json] | None = None
    # Whether the schema must hold strictly (OpenAI's `strict`): false for an OpenAI client's `json_schema` that
    # did not ask for it (OpenAI's default), whose schema strict mode may refuse (optional properties, no
    # `additionalProperties: false`).
    output_schema_strict: bool = True
    extra_body: tuple[BodyPatch, ...] = ()
    extra_headers: tuple[HeaderPatch, ...] = ()
    include_original_response: bool = False
    include_raw_usage: bool = False  # each model inference's usage object, as its provider sent it (raw_entries)
    include_raw_response: bool = False  # each model inference's raw answer (a stream: each chunk's raw_chunk)
    allowed_tools: tuple[str, ...] | None = None
    additional_tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | Mapping[str, str] | None = None
    parallel_tool_calls: bool | None = None
    cache: CacheOptions = field(default_factory=lambda: CacheOptions())
    api_key_public_id: str | None = None  # set by the API layer from the verified key; never from the body
    # internal_dynamic_variant_config: the one variant to run (dry runs only); its name is tensorzero::dynamic_variant
    dynamic_variant: VariantConfig | None = None


@immutable
class CacheOptions:
    """`enabled`: on (read and write), off, read_only, write_only. `max_age_s`: oldest entry a read accepts."""

    enabled: str = "off"
    max_age_s: int | None = None

    @property
    def read(self) -> bool:
        return self.enabled in ("on", "read_only")

    @property
    def write(self) -> bool:
        return self.enabled in ("on", "write_only")


def _str(body: Mapping[str, Any], key: str, path: str) -> str | None:
    value = body.get(key)
    return None if value is None else expect(value, str, path, "a string")


def _bool(body: Mapping[str, Any], key: str, path: str) -> bool:
    value = body.get(key)
    return False if value is None else bool(expect(value, bool, path, "a boolean"))


def _string_map(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    expect(value, dict, path, "an object of strings")
    for k, v in value.items():
        expect(v, str, f"{path}.{k}", "a string")
    return dict(value)


def parse_uuid(value: Any, path: str) -> UUID:
    expect(value, str, path, "a UUID string")
    try:
        return UUID(value)
    except ValueError:
        raise InvalidRequest.at(path, f"invalid UUID {value!r}") from None


def check_schema(schema: Mapping[str, Any], path: str) -> None:
    """400 naming `path` for a request's JSON Schema that is not one (every answer would otherwise fail it)."""
    error = schema_error(schema)
    if error is not None:
        raise InvalidRequest.at(path, f"not a valid JSON Schema: {error}")


def parse_episode_id(value: Any, path: str) -> UUID:
    """A client-supplied episode id: a UUIDv7 that is not from the future (400 in TensorZero's words otherwise)."""
    episode_id = parse_uuid(value, path)
    try:
        validate_episode_id(episode_id)
    except ValueError as exc:
        raise InvalidRequest.at(path, f"Invalid Episode ID: {exc}") from None
    return episode_id


def check_tag_keys(tags: Mapping[str, str], path: str) -> None:
    """400 for a tag key in LSD's and TensorZero's reserved namespaces (allowed only for `internal` requests)."""
    for key in tags:
        if key.startswith("tensorzero::") or key.startswith("lsd::"):
            raise InvalidRequest.at(f"{path}.{key}", "tag keys starting with 'tensorzero::' or 'lsd::' are reserved")


def parse_inference_request(body: Any) -> InferenceRequest:
    expect(body, dict, "body", "a JSON object")
    unknown = sorted(set(body) - _TOP_LEVEL)
    if unknown:
        raise InvalidRequest.at(unknown[0], "unknown field")
    function_name = _str(body, "function_name", "function_name")
    model_name = _str(body, "model_name", "model_name")
    if (function_name is None) == (model_name is None):
        raise InvalidRequest.at("function_name", "exactly one of function_name and model_name is required")
    episode_id = None
    if body.get("episode_id") is not None:
        episode_id = parse_episode_id(body["episode_id"], "episode_id")
    if body.get("input") is None:
        raise InvalidRequest.at("input", "missing required field")
    tags = _string_map(body.get("tags"), "tags")
    if not _bool(body, "internal", "internal"):
        check_tag_keys(tags, "tags")
    namespace = _str(body, "namespace", "namespace")
    if namespace is not None:
        if not namespace:
            raise InvalidRequest.at("namespace", "must not be empty")
        tags = {**tags, "tensorzero::namespace": namespace}
    output_schema = body.get("output_schema")
    if output_schema is not None:
        expect(output_schema, dict, "output_schema", "a JSON Schema object")
        check_schema(output_schema, "output_schema")
    if body.get("provider_tools") is not None:
        expect(body["provider_tools"], list, "provider_tools", "an array")
    allowed = body.get("allowed_tools")
    if allowed is not None:
        expect(allowed, list, "allowed_tools", "an array of tool names")
        for i, name in enumerate(allowed):
            expect(name, str, f"allowed_tools[{i}]", "a string")
    dryrun = _bool(body, "dryrun", "dryrun")
    dynamic_variant = None
    if body.get(DYNAMIC_VARIANT) is not None:
        if not dryrun:  # TensorZero's words
            raise InvalidRequest.at(
                DYNAMIC_VARIANT, f"If `{DYNAMIC_VARIANT}` is used, `dryrun` must also be set to true"
            )
        if body.get("variant_name") is not None:
            raise InvalidRequest.at(DYNAMIC_VARIANT, f"`variant_name` and `{DYNAMIC_VARIANT}` cannot both be set.")
        dynamic_variant = parse_dynamic_variant(body[DYNAMIC_VARIANT])
    return InferenceRequest(
        input=parse_input(body["input"], "input"),
        function_name=function_name,
        model_name=model_name,
        episode_id=episode_id,
        variant_name=_str(body, "variant_name", "variant_name"),
        stream=_bool(body, "stream", "stream"),
        dryrun=dryrun,
        params=parse_params(body.get("params"), "params"),
        tags=tags,
        credentials=_string_map(body.get("credentials"), "credentials"),
        output_schema=output_schema,
        extra_body=parsed_list(body, "extra_body", parse_body_patch),
        extra_headers=parsed_list(body, "extra_headers", parse_header_patch),
        include_original_response=_bool(body, "include_original_response", "include_original_response"),
        include_raw_usage=_bool(body, "include_raw_usage", "include_raw_usage"),
        include_raw_response=_bool(body, "include_raw_response", "include_raw_response"),
        allowed_tools=tuple(allowed) if allowed is not None else None,
        additional_tools=parsed_list(body, "additional_tools", parse_tool),
        tool_choice=parse_tool_choice(body.get("tool_choice"), "tool_choice"),
        parallel_tool_calls=None
        if body.get("parallel_tool_calls") is None
        else _bool(body, "parallel_tool_calls", "parallel_tool_calls"),
        cache=parse_cache_options(body.get("cache_options"), "cache_options", dryrun),
        dynamic_variant=dynamic_variant,
    )


def parsed_list(body: Mapping[str, Any], key: str, parse: Callable[[Any, str], T]) -> tuple[T, ...]:
    """`body[key]`, an array, each item parsed with its path (`key[i]`); () when absent."""
    value = body.get(key)
    if value is None:
        return ()
    expect(value, list, key, "an array")
    return tuple(parse(item, f"{key}[{i}]") for i, item in enumerate(value))


_FILTERS = ("variant_name", "model_name", "provider_name", "model_provider_name")


def _filters(value: Mapping[str, Any], path: str) -> dict[str, str | None]:
    found = {k: _str(value, k, f"{path}.{k}") for k in _FILTERS}
    model, provider = found["model_name"], found["provider_name"]
    if found["model_provider_name"] is not None:
        qualified = model_provider(found["model_provider_name"])
        model, provider = (model, found["model_provider_name"]) if qualified is None else qualified
    return {"variant_name": found["variant_name"], "model_name": model, "provider_name": provider}


def parse_body_patch(value: Any, path: str) -> BodyPatch:
    expect(value, dict, path, "an object {pointer, value} or {pointer, delete: true}")
    unknown = sorted(set(value) - {"pointer", "value", "delete", *_FILTERS})
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
    pointer = required_str(value, "pointer", path)
    if not pointer.startswith("/"):
        raise InvalidRequest.at(f"{path}.pointer", "a JSON Pointer starts with '/'")
    delete = _bool(value, "delete", f"{path}.delete")
    if not delete and "value" not in value:
        raise InvalidRequest.at(f"{path}.value", "missing: give a value or delete: true")
    return BodyPatch(pointer, value.get("value"), delete, **_filters(value, path))


def parse_header_patch(value: Any, path: str) -> HeaderPatch:
    expect(value, dict, path, "an object {name, value} or {name, delete: true}")
    unknown = sorted(set(value) - {"name", "value", "delete", *_FILTERS})
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
    delete = _bool(value, "delete", f"{path}.delete")
    header_value = None if delete else required_str(value, "value", path)
    name = required_str(value, "name", path)
    if not HEADER_NAME.fullmatch(name):
        raise InvalidRequest.at(f"{path}.name", "not a valid HTTP header name")
    if name.lower() == "host":  # where the request goes is the config's (a vhost on a shared origin or proxy)
        raise InvalidRequest.at(f"{path}.name", "the Host header is the gateway's: set it in the config if needed")
    if header_value is not None and HEADER_VALUE_FORBIDDEN.search(header_value):
        raise InvalidRequest.at(f"{path}.value", "a header value must not contain CR, LF or NUL")
    return HeaderPatch(name, header_value, delete, **_filters(value, path))


def parse_tool(value: Any, path: str) -> ToolSpec:
    expect(value, dict, path, "an object")
    unknown = sorted(set(value) - {"name", "description", "parameters", "strict", "type"})
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
    parameters = value.get("parameters")
    expect(parameters, dict, f"{path}.parameters", "a JSON Schema object")
    return ToolSpec(
        name=required_str(value, "name", path),
        description=_str(value, "description", f"{path}.description") or "",
        parameters=parameters,
        strict=_bool(value, "strict", f"{path}.strict"),
    )


def parse_tool_choice(value: Any, path: str) -> str | dict[str, str] | None:
    if value is None or value in ("none", "auto", "required"):
        return value  # type: ignore[no-any-return]
    if isinstance(value, dict) and set(value) == {"specific"} and isinstance(value["specific"], str):
        return {"specific": value["specific"]}
    raise InvalidRequest.at(path, "must be 'none', 'auto', 'required' or {\"specific\": TOOL}")


def parse_cache_options(value: Any, path: str, dryrun: bool) -> CacheOptions:
    if value is None:
        return CacheOptions()
    expect(value, dict, path, "an object")
    unknown = sorted(set(value) - {"enabled", "max_age_s"})
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
    enabled = value.get("enabled") or "off"
    if enabled not in ("on", "off", "read_only", "write_only"):
        raise InvalidRequest.at(f"{path}.enabled", f"must be on, off, read_only or write_only, got {enabled!r}")
    max_age = value.get("max_age_s")
    if max_age is not None and (expect(max_age, int, f"{path}.max_age_s", "an integer") < 0):
        raise InvalidRequest.at(f"{path}.max_age_s", "must be >= 0")
    if dryrun:  # a dry run never writes: on reads only, write_only does nothing
        enabled = {"on": "read_only", "write_only": "off"}.get(enabled, enabled)
    return CacheOptions(enabled, max_age)


def parse_params(value: Any, path: str) -> InferenceParams:
    if value is None:
        return InferenceParams()
    expect(value, dict, path, "an object")
    unknown = sorted(set(value) - {"chat_completion"})
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
    chat = value.get("chat_completion")
    if chat is None:
        return InferenceParams()
    cpath = f"{path}.chat_completion"
    expect(chat, dict, cpath, "an object")
    unknown = sorted(set(chat) - set(_PARAMS))
    if unknown:
        raise InvalidRequest.at(f"{cpath}.{unknown[0]}", "unknown field")
    values: dict[str, Any] = {}
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        if chat.get(key) is not None:
            number = expect(chat[key], (int, float), f"{cpath}.{key}", "a number")
            if not math.isfinite(number):
                raise InvalidRequest.at(f"{cpath}.{key}", "must be finite")
            values[key] = float(number)
    for key in ("max_tokens", "seed", "thinking_budget_tokens"):
        if chat.get(key) is not None:
            values[key] = expect(chat[key], int, f"{cpath}.{key}", "an integer")
    for key in ("max_tokens", "thinking_budget_tokens"):
        if values.get(key) is not None and values[key] < 1:
            raise InvalidRequest.at(f"{cpath}.{key}", "must be >= 1")
    for key in (*CONTROL_PARAMS, "prompt_cache_key"):
        if chat.get(key) is not None:
            values[key] = expect(chat[key], str, f"{cpath}.{key}", "a string")
    if chat.get("stop_sequences") is not None:
        stops = expect(chat["stop_sequences"], list, f"{cpath}.stop_sequences", "an array of strings")
        for i, s in enumerate(stops):
            expect(s, str, f"{cpath}.stop_sequences[{i}]", "a string")
        values["stop_sequences"] = tuple(stops)
    if chat.get("json_mode") is not None:
        mode = expect(chat["json_mode"], str, f"{cpath}.json_mode", "a string")
        if mode not in ("off", "on", "strict", "tool"):
            raise InvalidRequest.at(f"{cpath}.json_mode", f"must be off, on, strict or tool, got {mode!r}")
        values["json_mode"] = mode
    return InferenceParams(**values)
