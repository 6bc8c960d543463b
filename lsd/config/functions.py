"""Parsing of models, embedding models, tools and functions (with variants, schemas and templates)."""

from __future__ import annotations

from typing import Any

import orjson

from lsd.config.model import (
    FunctionConfig,
    ModelConfig,
    ProviderConfig,
    RetryConfig,
    TemplateConfig,
    TimeoutsConfig,
    ToolChoice,
    ToolConfig,
    VariantConfig,
)
from lsd.config.reader import Table
from lsd.types import InferenceParams

JSON_MODES = ("off", "on", "strict", "tool")
ROLES = ("system", "user", "assistant")


def _timeouts(t: Table) -> TimeoutsConfig:
    non_streaming = t.table("non_streaming")
    streaming = t.table("streaming")
    result = TimeoutsConfig(
        non_streaming_total_ms=non_streaming.int("total_ms", None, minimum=1),
        streaming_ttft_ms=streaming.int("ttft_ms", None, minimum=1),
        streaming_total_ms=streaming.int("total_ms", None, minimum=1),
    )
    non_streaming.finish()
    streaming.finish()
    t.finish()
    return result


def model_from(name: str, t: Table, *, retries: bool = False) -> ModelConfig:
    """A `[models.*]` table, or with `retries` an `[embedding_models.*]` one (which may retry: chat models are
    retried by their variants)."""
    retry = _retries(t) if retries else RetryConfig()
    routing = t.str_list("routing", (), required=True)
    providers: dict[str, ProviderConfig] = {}
    for pname, p in t.subtables("providers"):
        ptype = p.str("type", "", required=True)
        timeouts = _timeouts(p.table("timeouts"))
        providers[pname] = ProviderConfig(
            name=pname, type=ptype, options=p.rest(), key_path=p.path, base_dir=p.base_dir, timeouts=timeouts
        )
    for entry in routing:
        if entry not in providers:
            t.error("routing", f"names provider {entry!r}, which is not in models.{name}.providers")
    if not routing and not t.sink.errors:
        t.error("routing", "must name at least one provider")
    model = ModelConfig(
        name=name, routing=routing, providers=providers, timeouts=_timeouts(t.table("timeouts")), retries=retry
    )
    t.finish()
    return model


def _retries(t: Table) -> RetryConfig:
    retries_t = t.table("retries")
    retries = RetryConfig(
        num_retries=retries_t.int("num_retries", 0, minimum=0),
        max_delay_s=retries_t.float("max_delay_s", 10.0, minimum=0),
    )
    retries_t.finish()
    return retries


def params_from(t: Table) -> InferenceParams:
    """Sampling parameters as they appear in a variant table (and in request overrides)."""
    return InferenceParams(
        temperature=t.float("temperature"),
        max_tokens=t.int("max_tokens", minimum=1),
        top_p=t.float("top_p"),
        seed=t.int("seed"),
        presence_penalty=t.float("presence_penalty"),
        frequency_penalty=t.float("frequency_penalty"),
        stop_sequences=t.str_list("stop_sequences"),
        json_mode=t.choice("json_mode", JSON_MODES),
    )


def _variant(name: str, t: Table, ftype: str, models: dict[str, ModelConfig]) -> VariantConfig:
    vtype = t.choice("type", ("chat_completion",), required=True)
    model = t.str("model", "", required=True)
    templates = _templates(t)
    if model and model not in models and "::" not in model:
        t.error("model", f"unknown model {model!r}: define [models.{model}] or use a shorthand like 'dummy::echo'")
    retries = _retries(t)
    params = params_from(t)
    if ftype == "json" and params.json_mode is None:
        t.error("json_mode", "required for variants of json functions")
    if ftype == "chat" and params.json_mode is not None:
        t.error("json_mode", "only allowed for variants of json functions")
    variant = VariantConfig(
        name=name,
        type=vtype,
        model=model,
        weight=t.float("weight", None, minimum=0),
        params=params,
        retries=retries,
        timeouts=_timeouts(t.table("timeouts")),
        templates=templates,
    )
    t.finish()
    return variant


def function_from(name: str, t: Table, models: dict[str, ModelConfig], tools: dict[str, ToolConfig]) -> FunctionConfig:
    ftype = t.choice("type", ("chat", "json"), "chat", required=True)
    variants = {vname: _variant(vname, v, ftype, models) for vname, v in t.subtables("variants")}
    if not variants:
        t.error("variants", "a function needs at least one variant")
    output_schema: dict[str, Any] | None = None
    if t.has("output_schema"):
        if ftype != "json":
            t.error("output_schema", "only allowed for json functions")
        output_schema = _json_file(t, "output_schema")
    schemas: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        if t.has(f"{role}_schema"):
            schema = _json_file(t, f"{role}_schema")
            if schema is not None:
                schemas[role] = schema
    for vname, variant in variants.items():
        for role in schemas:
            if role not in variant.templates:
                t.error(
                    f"variants.{vname}", f"the function has a {role}_schema, so the variant needs a {role}_template"
                )
    function_tools = t.str_list("tools", ())
    for tool in function_tools:
        if tool not in tools:
            t.error("tools", f"unknown tool {tool!r}: define [tools.{tool}]")
    if function_tools and ftype != "chat":
        t.error("tools", "only chat functions have tools")
    function = FunctionConfig(
        name=name,
        type=ftype,
        variants=variants,
        description=t.str("description"),
        output_schema=output_schema,
        schemas=schemas,
        tools=function_tools,
        tool_choice=tool_choice_from(t, "tool_choice", tuple(function_tools)),
        parallel_tool_calls=t.bool("parallel_tool_calls"),
    )
    t.finish()
    return function


def tool_choice_from(t: Table, key: str, tools: tuple[str, ...]) -> ToolChoice:
    raw = t.raw(key, "auto")
    if isinstance(raw, str) and raw in ("none", "auto", "required"):
        return raw
    if isinstance(raw, dict) and set(raw) == {"specific"} and isinstance(raw["specific"], str):
        if raw["specific"] not in tools:
            t.error(key, f"names tool {raw['specific']!r}, which is not in this function's tools")
        return {"specific": raw["specific"]}
    t.error(key, "must be 'none', 'auto', 'required' or { specific = \"TOOL\" }")
    return "auto"


def tool_from(key: str, t: Table) -> ToolConfig:
    parameters = _json_file(t, "parameters") if t.has("parameters") else None
    if not t.has("parameters"):
        t.str("parameters", required=True)
    tool = ToolConfig(
        name=t.str("name", key),
        key=key,
        description=t.str("description", "", required=True),
        parameters=parameters or {"type": "object"},
        strict=t.bool("strict", False),
    )
    t.finish()
    return tool


def _templates(t: Table) -> dict[str, TemplateConfig]:
    """`system_template` etc. (TensorZero's legacy keys) and `templates.NAME.path`, read from files."""
    found: dict[str, TemplateConfig] = {}
    for role in ROLES:
        if t.has(f"{role}_template"):
            template = _template_file(t, f"{role}_template")
            if template:
                found[role] = template
    for name, table in t.subtables("templates"):
        template = _template_file(table, "path")
        table.finish()
        if template:
            found[name] = template
    return found


def _template_file(t: Table, key: str) -> TemplateConfig | None:
    path = t.path_value(key)
    if path is None:
        return None
    try:
        return TemplateConfig(path.read_text(encoding="utf-8"), path)
    except OSError as exc:
        t.error(key, f"cannot read {path}: {exc.strerror}")
        return None


def _json_file(t: Table, key: str) -> dict[str, Any] | None:

    path = t.path_value(key)
    if path is None:
        return None
    try:
        value = orjson.loads(path.read_bytes())
    except OSError as exc:
        t.error(key, f"cannot read {path}: {exc.strerror}")
        return None
    except orjson.JSONDecodeError as exc:
        t.error(key, f"{path} is not valid JSON: {exc}")
        return None
    if not isinstance(value, dict):
        t.error(key, f"{path} must hold a JSON object")
        return None
    return value
