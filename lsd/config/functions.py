"""Parsing of models, embedding models, tools and functions (with variants, schemas and templates)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from lsd.config.experimentation import experimentation_from
from lsd.config.model import (
    FunctionConfig,
    MetricConfig,
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
from lsd.config.variant_types import (
    JUDGE_TABLES,
    candidates_from,
    check_candidates,
    check_kind,
    dicl_from,
    variant_type,
)
from lsd.types import HEADER_NAME, HEADER_VALUE_FORBIDDEN, BodyPatch, HeaderPatch, InferenceParams

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
        provider_timeout_ms = p.int("timeout_ms", None, minimum=1) if retries else None  # an embedding provider's
        if provider_timeout_ms is not None and timeouts.non_streaming_total_ms is None:
            timeouts = replace(timeouts, non_streaming_total_ms=provider_timeout_ms)
        body, headers = patches_from(p)
        p.bool("discard_unknown_chunks", False)  # LSD's stream parsers always skip chunks they do not know
        providers[pname] = ProviderConfig(
            name=pname,
            type=ptype,
            options=p.rest(),
            key_path=p.path,
            base_dir=p.base_dir,
            timeouts=timeouts,
            extra_body=body,
            extra_headers=headers,
        )
    for entry in routing:
        if entry not in providers:
            t.error("routing", f"names provider {entry!r}, which is not in models.{name}.providers")
    if not routing and not t.sink.errors:
        t.error("routing", "must name at least one provider")
    timeouts = _timeouts(t.table("timeouts"))
    timeout_ms = t.int("timeout_ms", None, minimum=1) if retries else None  # TensorZero's embedding-model limit
    if timeout_ms is not None and timeouts.non_streaming_total_ms is None:
        timeouts = TimeoutsConfig(non_streaming_total_ms=timeout_ms)
    t.bool("skip_relay", False)  # TensorZero's relay: LSD has none, every model calls its providers
    model = ModelConfig(name=name, routing=routing, providers=providers, timeouts=timeouts, retries=retry)
    t.finish()
    return model


def patches_from(t: Table) -> tuple[tuple[BodyPatch, ...], tuple[HeaderPatch, ...]]:
    """A provider's or a variant's `extra_body = [{pointer, value} | {pointer, delete = true}]` and `extra_headers =
    [{name, value} | {name, delete = true}]`, each entry checked, errors naming it (`extra_body[0].pointer`)."""
    body: list[BodyPatch] = []
    headers: list[HeaderPatch] = []
    for key, names in (("extra_body", ("pointer", "value", "delete")), ("extra_headers", ("name", "value", "delete"))):
        entries = t.raw(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            t.error(key, "expected an array of tables")
            continue
        for i, entry in enumerate(entries):
            where = f"{key}[{i}]"
            if not isinstance(entry, dict):
                t.error(where, "expected a table")
                continue
            unknown = sorted(set(entry) - set(names))
            if unknown:
                t.error(f"{where}.{unknown[0]}", "unknown key")
                continue
            delete = entry.get("delete", False)
            if not isinstance(delete, bool):
                t.error(f"{where}.delete", "expected a boolean")
            elif delete == ("value" in entry):
                t.error(where, "give either a value or delete = true")
            elif key == "extra_body":
                pointer = entry.get("pointer")
                if not isinstance(pointer, str) or not pointer.startswith("/"):
                    t.error(f"{where}.pointer", "expected a JSON Pointer (a string starting with '/')")
                else:
                    body.append(BodyPatch(pointer, entry.get("value"), delete))
            else:
                name, value = entry.get("name"), entry.get("value")
                if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
                    t.error(f"{where}.name", "expected an HTTP header name")
                elif not delete and (not isinstance(value, str) or HEADER_VALUE_FORBIDDEN.search(value)):
                    t.error(f"{where}.value", "expected a string without CR, LF or NUL")
                else:
                    headers.append(HeaderPatch(name, None if delete else value, delete))
    return tuple(body), tuple(headers)


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
        reasoning_effort=t.str("reasoning_effort", env=False),
        service_tier=t.str("service_tier", env=False),
        thinking_budget_tokens=t.int("thinking_budget_tokens", minimum=1),
        verbosity=t.str("verbosity", env=False),
    )


def _variant(
    name: str, t: Table, ftype: str, models: dict[str, ModelConfig], schemas: dict[str, dict[str, Any]]
) -> VariantConfig | None:
    kind = variant_type(t)
    if kind is None:
        return None  # its other keys are that type's: not reported as unknown
    check_kind(t, kind, ftype)
    # A best_of_n_sampling / mixture_of_n variant's own call is its evaluator's / fuser's: those keys live there.
    judge = JUDGE_TABLES.get(kind)
    s = t.table(judge, required=True) if judge else t
    model = s.str("model", "", required=True)
    templates = _templates(s, schemas) if kind != "dicl" else {}  # dicl writes its own prompt
    if model and model not in models and "::" not in model:
        s.error("model", f"unknown model {model!r}: define [models.{model}] or use a shorthand like 'dummy::echo'")
    retries = _retries(s)
    params = params_from(s)
    if kind == "best_of_n_sampling":  # the evaluator answers a JSON choice, whatever the function's type
        params = replace(params, json_mode=params.json_mode or "strict")
    elif ftype == "json" and params.json_mode is None:
        s.error("json_mode", "required for variants of json functions")
    elif ftype == "chat" and params.json_mode is not None:
        s.error("json_mode", "only allowed for variants of json functions")
    candidates = candidates_from(t) if judge else None
    timeouts = _timeouts(s.table("timeouts"))
    if judge:
        outer = _timeouts(t.table("timeouts"))  # the whole variant's: bounds the wait for the candidates
        if candidates is not None and outer.non_streaming_total_ms is not None:
            candidates = replace(candidates, timeout_s=outer.non_streaming_total_ms / 1000)
    body, headers = patches_from(s)
    variant = VariantConfig(
        name=name,
        type=kind,
        model=model,
        weight=t.float("weight", None, minimum=0),
        params=params,
        retries=retries,
        timeouts=timeouts,
        templates=templates,
        extra_body=body,
        extra_headers=headers,
        candidates=candidates,
        dicl=dicl_from(t) if kind == "dicl" else None,
    )
    if judge:
        s.finish()
    t.finish()
    return variant


def function_from(
    name: str,
    t: Table,
    models: dict[str, ModelConfig],
    tools: dict[str, ToolConfig],
    metrics: Mapping[str, MetricConfig],
) -> FunctionConfig:
    ftype = t.choice("type", ("chat", "json"), "chat", required=True)
    output_schema: dict[str, Any] | None = None
    if t.has("output_schema"):
        if ftype != "json":
            t.error("output_schema", "only allowed for json functions")
        output_schema = _json_file(t, "output_schema")
    schemas = _schemas(t)
    parsed = {vname: _variant(vname, v, ftype, models, schemas) for vname, v in t.subtables("variants")}
    variants = {vname: v for vname, v in parsed.items() if v is not None}
    if not parsed:
        t.error("variants", "a function needs at least one variant")
    check_candidates(t, variants)
    for vname, variant in variants.items():
        if variant.dicl is not None:
            continue  # dicl puts the input in its prompt as JSON: no templates
        for schema_name in schemas:
            if schema_name not in variant.templates:
                needs = f"{schema_name}_template" if schema_name in ROLES else f"templates.{schema_name}.path"
                has = f"a {schema_name}_schema" if schema_name in ROLES else f"schemas.{schema_name}"
                t.error(f"variants.{vname}", f"the function has {has}, so the variant needs {needs}")
    experimentation = None
    if t.has("experimentation"):
        experimentation = experimentation_from(t.table("experimentation"), parsed, metrics)
    evaluators: dict[str, Mapping[str, Any]] = {}
    for ename, e in t.subtables("evaluators"):
        e.str("type", required=True)
        e.rest()
        evaluators[ename] = dict(e.data)  # TensorZero's online evaluators: kept as written, not run by LSD
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
        tool_choice=tool_choice_from(t, "tool_choice"),
        parallel_tool_calls=t.bool("parallel_tool_calls"),
        experimentation=experimentation,
        evaluators=evaluators,
    )
    t.finish()
    return function


def _schemas(t: Table) -> dict[str, dict[str, Any]]:
    """`system_schema` etc. (TensorZero's legacy keys) and `schemas.NAME.path`: the arguments of the templates of
    that name (the roles' templates for the legacy keys)."""
    schemas: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        if t.has(f"{role}_schema"):
            schema = _json_file(t, f"{role}_schema")
            if schema is not None:
                schemas[role] = schema
    for schema_name, table in t.subtables("schemas"):
        if schema_name in ROLES and t.has(f"{schema_name}_schema"):
            table.error("", f"give either {schema_name}_schema or schemas.{schema_name}.path, not both")
        if not table.has("path"):
            table.str("path", required=True)
        schema = _json_file(table, "path")
        table.finish()
        if schema is not None:
            schemas[schema_name] = schema
    return schemas


def tool_choice_from(t: Table, key: str) -> ToolChoice:
    """`tool_choice`. A `specific` tool need not be among the function's `tools` (as in TensorZero): a request may
    offer it (`additional_tools`, `allowed_tools`); a request that does not is a 400 naming `tool_choice`."""
    raw = t.raw(key, "auto")
    if isinstance(raw, str) and raw in ("none", "auto", "required"):
        return raw
    if isinstance(raw, dict) and set(raw) == {"specific"} and isinstance(raw["specific"], str):
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


def _templates(t: Table, schemas: Mapping[str, Any]) -> dict[str, TemplateConfig]:
    """`system_template` etc. and `input_wrappers.ROLE` (TensorZero's legacy keys) and `templates.NAME.path`, read
    from files. A legacy template of a role without a schema wraps that role's plain text (as `ROLE_text`)."""
    found: dict[str, TemplateConfig] = {}
    for role in ROLES:
        if t.has(f"{role}_template"):
            template = _template_file(t, f"{role}_template", legacy=role not in schemas)
            if template:
                found[role] = template
    wrappers = t.table("input_wrappers")
    for role in ROLES:
        if wrappers.has(role):
            if role in schemas:
                wrappers.error(role, f"cannot be used with the function's {role}_schema (a wrapper takes plain text)")
            if t.has(f"{role}_template"):
                wrappers.error(role, f"cannot be used with {role}_template")
            template = _template_file(wrappers, role, legacy=True)
            if template and role not in found:
                found[role] = template
    wrappers.finish()
    for name, table in t.subtables("templates"):
        if not table.has("path"):
            table.str("path", required=True)
        if name in found:
            table.error("", f"give either templates.{name}.path or {name}_template (or input_wrappers.{name})")
        template = _template_file(table, "path")
        table.finish()
        if template:
            found[name] = template
    return found


def _template_file(t: Table, key: str, *, legacy: bool = False) -> TemplateConfig | None:
    path = t.path_value(key)
    if path is None:
        return None
    try:
        return TemplateConfig(path.read_text(encoding="utf-8"), path, key_path=t.key_path(key), legacy=legacy)
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
