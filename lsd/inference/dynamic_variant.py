"""`internal_dynamic_variant_config`: a chat_completion variant sent in the request (TensorZero's shape), parsed
into a VariantConfig that replaces the function's variants for that one (dry-run) inference.

Templates come inline: `system_template` (and user/assistant) as TensorZero's `{"__tensorzero_remapped_path": ...,
"__data": "<template text>"}` or a plain string, and named ones as `templates.NAME.path` in the same forms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from lsd.config.model import FunctionConfig, RetryConfig, TemplateConfig, TimeoutsConfig, VariantConfig
from lsd.errors import InvalidRequest
from lsd.types import CONTROL_PARAMS, InferenceParams

FIELD = "internal_dynamic_variant_config"
DYNAMIC_VARIANT_NAME = "tensorzero::dynamic_variant"  # the response's variant_name, as TensorZero's

_ROLES = ("system", "user", "assistant")
_FLOATS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_INTS = ("max_tokens", "seed", "thinking_budget_tokens")
_STRINGS = CONTROL_PARAMS
_IGNORED = ("weight",)  # a dynamic variant is the only one: its weight means nothing
# TensorZero's keys that LSD cannot honour in a dynamic variant: refused unless null or empty.
_UNSUPPORTED = ("extra_body", "extra_headers", "input_wrappers")
_KNOWN = frozenset(
    {"type", "model", "templates", "json_mode", "stop_sequences", "retries", "timeouts"}
    | {f"{role}_template" for role in _ROLES}
    | set(_FLOATS)
    | set(_INTS)
    | set(_STRINGS)
    | set(_IGNORED)
    | set(_UNSUPPORTED)
)
_JSON_MODES = ("off", "on", "strict", "tool")


def parse_dynamic_variant(value: Any, path: str = FIELD) -> VariantConfig:
    """The variant in `value`, or InvalidRequest naming the offending path (`internal_dynamic_variant_config.x`)."""
    table = _object(value, path)
    unknown = sorted(set(table) - _KNOWN)
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
    if table.get("type") != "chat_completion":
        raise InvalidRequest.at(f"{path}.type", "only a chat_completion variant can be given in a request")
    model = table.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest.at(f"{path}.model", "expected the name of a model (a [models] key or provider::model)")
    for key in _UNSUPPORTED:
        if table.get(key):
            raise InvalidRequest.at(f"{path}.{key}", "not supported in a dynamic variant")
    return VariantConfig(
        name=DYNAMIC_VARIANT_NAME,
        type="chat_completion",
        model=model,
        weight=None,
        params=_params(table, path),
        retries=_retries(table.get("retries"), f"{path}.retries"),
        timeouts=_timeouts(table.get("timeouts"), f"{path}.timeouts"),
        templates=_templates(table, path),
    )


def with_dynamic_variant(function: FunctionConfig, variant: VariantConfig) -> FunctionConfig:
    """`function` with `variant` as its only variant and no experiment; json_mode must fit the function's type."""
    if function.type == "json" and variant.params.json_mode is None:
        raise InvalidRequest.at(f"{FIELD}.json_mode", f"required: function {function.name!r} is a json function")
    if function.type == "chat" and variant.params.json_mode is not None:
        raise InvalidRequest.at(f"{FIELD}.json_mode", f"only for json functions: {function.name!r} is a chat function")
    # Its experiment names variants the request replaced: the one dynamic variant runs, whatever the weights.
    return replace(function, variants={variant.name: variant}, experimentation=None)


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest.at(path, "expected an object")
    return value


def _params(table: Mapping[str, Any], path: str) -> InferenceParams:
    values: dict[str, Any] = {}
    for key in _FLOATS:
        number = table.get(key)
        if number is None:
            continue
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise InvalidRequest.at(f"{path}.{key}", "expected a finite number")
        values[key] = float(number)
    for key in _INTS:
        number = table.get(key)
        if number is None:
            continue
        if isinstance(number, bool) or not isinstance(number, int):
            raise InvalidRequest.at(f"{path}.{key}", "expected an integer")
        values[key] = number
    for key in ("max_tokens", "thinking_budget_tokens"):
        if values.get(key) is not None and values[key] < 1:
            raise InvalidRequest.at(f"{path}.{key}", "must be >= 1")
    for key in _STRINGS:
        text = table.get(key)
        if text is not None:
            if not isinstance(text, str):
                raise InvalidRequest.at(f"{path}.{key}", "expected a string")
            values[key] = text
    stops = table.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest.at(f"{path}.stop_sequences", "expected an array of strings")
        values["stop_sequences"] = tuple(stops)
    mode = table.get("json_mode")
    if mode is not None:
        if mode not in _JSON_MODES:
            raise InvalidRequest.at(f"{path}.json_mode", f"must be off, on, strict or tool, got {mode!r}")
        values["json_mode"] = mode
    return InferenceParams(**values)


def _retries(value: Any, path: str) -> RetryConfig:
    if value is None:
        return RetryConfig()
    table = _object(value, path)
    unknown = sorted(set(table) - {"num_retries", "max_delay_s"})
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
    num = table.get("num_retries", 0)
    if isinstance(num, bool) or not isinstance(num, int) or num < 0:
        raise InvalidRequest.at(f"{path}.num_retries", "expected an integer >= 0")
    delay = table.get("max_delay_s", 10.0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay < math.inf:
        raise InvalidRequest.at(f"{path}.max_delay_s", "expected a number >= 0")
    return RetryConfig(num_retries=num, max_delay_s=float(delay))


def _timeouts(value: Any, path: str) -> TimeoutsConfig:
    if value is None:
        return TimeoutsConfig()
    table = _object(value, path)
    unknown = sorted(set(table) - {"non_streaming", "streaming"})
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
    non_streaming = _ms_table(table.get("non_streaming"), f"{path}.non_streaming", ("total_ms",))
    streaming = _ms_table(table.get("streaming"), f"{path}.streaming", ("ttft_ms", "total_ms"))
    return TimeoutsConfig(
        non_streaming_total_ms=non_streaming.get("total_ms"),
        streaming_ttft_ms=streaming.get("ttft_ms"),
        streaming_total_ms=streaming.get("total_ms"),
    )


def _ms_table(value: Any, path: str, keys: tuple[str, ...]) -> dict[str, int]:
    if value is None:
        return {}
    table = _object(value, path)
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
    found: dict[str, int] = {}
    for key in keys:
        ms = table.get(key)
        if ms is None:
            continue
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 1:
            raise InvalidRequest.at(f"{path}.{key}", "expected an integer >= 1 (milliseconds)")
        found[key] = ms
    return found


def _templates(table: Mapping[str, Any], path: str) -> dict[str, TemplateConfig]:
    found: dict[str, TemplateConfig] = {}
    for role in _ROLES:
        key = f"{role}_template"
        if table.get(key) is not None:
            found[role] = _template(table[key], f"{path}.{key}")
    named = table.get("templates")
    if named is not None:
        for name, entry in _object(named, f"{path}.templates").items():
            entry_path = f"{path}.templates.{name}"
            entry_table = _object(entry, entry_path)
            unknown = sorted(set(entry_table) - {"path"})
            if unknown:
                raise InvalidRequest.at(f"{entry_path}.{unknown[0]}", "unknown field")
            if entry_table.get("path") is None:
                raise InvalidRequest.at(f"{entry_path}.path", "missing required field")
            found[name] = _template(entry_table["path"], f"{entry_path}.path")
    return found


def _template(value: Any, path: str) -> TemplateConfig:
    """A template's text: a string, or TensorZero's inline form `{"__tensorzero_remapped_path", "__data"}`."""
    if isinstance(value, str):
        return TemplateConfig(value, Path(path))
    if isinstance(value, dict) and isinstance(value.get("__data"), str):
        unknown = sorted(set(value) - {"__data", "__tensorzero_remapped_path"})
        if unknown:
            raise InvalidRequest.at(f"{path}.{unknown[0]}", "unknown field")
        return TemplateConfig(value["__data"], Path(path))
    raise InvalidRequest.at(path, 'expected the template text, or {"__tensorzero_remapped_path": ..., "__data": TEXT}')
