"""Gemini's generateContent request (as Gemini CLI and the google-genai SDKs send it), parsed into the engine's
InferenceRequest (its answers: lsd.api.gemini_wire).

The model is the URL's (`/gemini/v1beta/models/{model}:generateContent`): an LSD function or model by
lsd.api.inbound's rules, with `[inbound.gemini] models`. Field names are taken in lowerCamelCase (what the SDKs
send) and in snake_case (the proto's names, which Google's API takes too). What only a Gemini-bodied provider can
carry (`topK`, `thinkingConfig` as given, `safetySettings`, `cachedContent`, Google's own tools such as
`googleSearch`) travels as extra_body entries narrowed to those providers; every error names its field
(`contents[2].parts[0].functionResponse.name`).
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from lsd.api.gemini_fields import camel, name_at, object_at
from lsd.api.gemini_signatures import GEMINI_TYPE, unwrapped
from lsd.api.gemini_tools import output_schema, parse_tool_choice, parse_tools
from lsd.api.inbound import (
    MAX_SHOWN_CHARS,
    aliased_target,
    boolean,
    extension,
    is_int,
    number,
    patches,
    raw_extension,
    resolve_target,
    string,
    string_map,
    strings,
    unknown_keys,
)
from lsd.config.inbound import EMBEDDING_PREFIXES, MODEL_ALIAS_TAG, PREFIXES, InboundTarget
from lsd.config.model import Config
from lsd.errors import InvalidRequest, NotFound
from lsd.immutable import immutable
from lsd.inference.request import (
    InferenceRequest,
    parse_body_patch,
    parse_cache_options,
    parse_header_patch,
    parse_uuid,
)
from lsd.types import ContentBlock, File, InferenceParams, Input, Json, Message, Text, Thought, ToolCall, ToolResult

_FIELDS = frozenset(
    {
        *("contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings"),
        *("cachedContent", "labels", "model"),
    }
)
# generationConfig fields LSD maps to every provider's parameters.
_MAPPED_CONFIG = frozenset(
    {
        *("temperature", "topP", "maxOutputTokens", "stopSequences", "seed", "presencePenalty", "frequencyPenalty"),
        *("candidateCount", "responseMimeType", "responseSchema", "responseJsonSchema", "thinkingConfig"),
    }
)
# generationConfig fields only Gemini's API knows: passed on to Gemini-bodied providers as given.
_GEMINI_CONFIG = frozenset(
    {
        *("topK", "responseModalities", "mediaResolution", "responseLogprobs", "logprobs", "speechConfig"),
        *("imageConfig", "enableEnhancedCivicAnswers", "routingConfig", "modelSelectionConfig", "audioTimestamp"),
    }
)
_URLSAFE = str.maketrans("-_", "+/")  # the google-genai SDKs send bytes in base64url; other vendors take base64
_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
_THINKING_LEVELS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}


@immutable
class GenerateRequest:
    """A parsed generateContent request: the engine's request (before the provider-narrowed extras are added), the
    model as the URL named it (echoed as `modelVersion`), what it names, and the Gemini-only fields."""

    request: InferenceRequest
    model: str
    target: InboundTarget
    gemini_fields: Mapping[str, Json]  # JSON pointer -> value, for Gemini-bodied providers (topK, safetySettings)
    # The field of a tool only Google serves (`tools[1].googleSearch`): the request needs a Gemini-bodied provider
    google_tool: str | None = None


def resolve_model(model: Any, config: Config) -> InboundTarget:
    """What the URL's model names on the Gemini route (`[inbound.gemini] models`). An embedding model's name is a
    404 here (it takes embedContent), as at Google, rather than a chat with the `*` entry's model."""
    if embedding_model(model, config) is not None:
        raise NotFound(f"{model!r} is an embedding model: it takes embedContent and batchEmbedContents", field="model")
    return resolve_target(model, config, config.inbound.gemini.models)


def embedding_model(model: Any, config: Config) -> str | None:
    """The `[embedding_models]` key `model` names on the Gemini route: an `[inbound.gemini] models` entry mapped to
    one, `lsd::embedding_model_name::E`, or the key itself; None for any other name."""
    if not isinstance(model, str):
        return None
    mapped_to = config.inbound.gemini.embedding_models.get(model)
    if mapped_to is not None:
        return mapped_to
    name = next((model[len(p) :] for p in EMBEDDING_PREFIXES if model.startswith(p)), None)
    if name is not None:
        if name not in config.embedding_models:
            raise NotFound(f"embedding model {name!r}: define [embedding_models.{name}]", field="model")
        return name
    if model in config.embedding_models and model not in config.models and model not in config.inbound.gemini.models:
        return model
    return None


def check_model_name(model: str) -> str:
    """The URL's model name, refused when no client would send it: control characters (a 400), or a `:` that is not
    part of LSD's `::` (a method name left in it: a 404, as Google answers `models/m:generateContent:x`)."""
    if not model or any(ord(c) < 0x20 or ord(c) == 0x7F for c in model):
        raise InvalidRequest.at("model", "expected a model name without control characters")
    if ":" in model.replace("::", ""):
        raise NotFound(f"model {model[:MAX_SHOWN_CHARS]!r}: a model name holds no single ':'", field="model")
    return model


def parse_generate_request(raw: Any, model: str, config: Config, stream: bool) -> GenerateRequest:
    """The engine request for a generateContent body; InvalidRequest (400) naming the field for a body Google
    would refuse or LSD cannot carry."""
    if not isinstance(raw, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    body = camel(raw)
    unknown_keys(body, _FIELDS)
    target = resolve_model(model, config)
    aliased = not model.startswith(PREFIXES) and aliased_target(model, config, config.inbound.gemini.models)
    fields: dict[str, Json] = {}
    generation = object_at(body.get("generationConfig"), "generationConfig")
    params, output_schema = _params(generation, fields)
    tools, google_tool = parse_tools(body.get("tools"), target, fields)
    tool_choice = parse_tool_choice(body.get("toolConfig"))
    tags = dict(extension(body, "tags", string_map) or {})
    if aliased:
        tags[MODEL_ALIAS_TAG] = model
    for name in ("safetySettings", "cachedContent", "labels"):
        if body.get(name) is not None:
            fields[f"/{name}"] = body[name]
    dryrun = bool(extension(body, "dryrun", boolean))
    variant = extension(body, "variant_name", string)
    request = InferenceRequest(
        input=Input(system=_system(body.get("systemInstruction")), messages=parse_contents(body.get("contents"))),
        function_name=target.name if target.kind == "function_name" else None,
        model_name=target.name if target.kind == "model_name" else None,
        episode_id=extension(body, "episode_id", parse_uuid),
        variant_name=variant if target.kind == "function_name" else None,
        stream=stream,
        dryrun=dryrun,
        params=params,
        tags=tags,
        credentials=extension(body, "credentials", string_map) or {},
        output_schema=output_schema,
        output_schema_strict=False,  # Gemini's schema guides the answer; OpenAI's strict rules are not its own
        extra_body=tuple(extension(body, "extra_body", patches(parse_body_patch)) or ()),
        extra_headers=tuple(extension(body, "extra_headers", patches(parse_header_patch)) or ()),
        additional_tools=tools,
        tool_choice=tool_choice,
        cache=parse_cache_options(raw_extension(body, "cache_options"), "lsd::cache_options", dryrun),
    )
    return GenerateRequest(request, model, target, fields, google_tool)


def parse_contents(value: Any, path: str = "contents") -> tuple[Message, ...]:
    """Gemini's contents as LSD's messages: `user` (and the old `function`) turns as user messages, `model` turns
    as assistant messages. A function call without an `id` gets `call_<content>_<n>`; a function response without
    one answers the earliest unanswered call of its name."""
    if not isinstance(value, list) or not value:
        raise InvalidRequest.at(path, "required: a non-empty array")
    out: list[Message] = []
    unanswered: list[tuple[str, str]] = []  # (id, name) of the calls made, in order, not yet answered
    for i, content in enumerate(value):
        cpath = f"{path}[{i}]"
        if not isinstance(content, dict):
            raise InvalidRequest.at(cpath, "expected an object {role, parts}")
        content = camel(content)
        role = content.get("role") or "user"
        if role not in ("user", "model", "function"):
            raise InvalidRequest.at(f"{cpath}.role", f"must be 'user' or 'model', got {role!r}")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise InvalidRequest.at(f"{cpath}.parts", "required: a non-empty array")
        blocks: list[ContentBlock] = []
        for j, part in enumerate(parts):
            blocks.extend(_part(part, f"{cpath}.parts[{j}]", i, role == "model", unanswered))
        if blocks:
            out.append(Message("assistant" if role == "model" else "user", tuple(blocks)))
    if not out:
        raise InvalidRequest.at(path, "holds no content LSD can send (only thoughts without signatures)")
    return tuple(out)


def _part(
    raw: Any, path: str, content_index: int, model_turn: bool, unanswered: list[tuple[str, str]]
) -> list[ContentBlock]:
    if not isinstance(raw, dict):
        raise InvalidRequest.at(path, "expected an object")
    part = camel(raw)
    kinds = [k for k in _PART_DATA if part.get(k) is not None]
    signature = part.get("thoughtSignature")
    if signature is not None and not isinstance(signature, str):
        raise InvalidRequest.at(f"{path}.thoughtSignature", "expected a string (base64)")
    if part.get("thought") is True:
        # A thought summary: kept only with a signature (Gemini's own, or another vendor's thought LSD wrapped)
        text = part.get("text")
        if text is not None and not isinstance(text, str):
            raise InvalidRequest.at(f"{path}.text", "expected a string")
        if not signature:
            return []
        return [*_signed(signature, text or "")]
    if len(kinds) != 1:
        if not kinds and signature:  # a part that only carries a signature
            return [*_signed(signature)]
        found = "none" if not kinds else " and ".join(kinds)
        raise InvalidRequest.at(
            path, f"a part holds exactly one of text, inlineData, fileData, functionCall, functionResponse ({found})"
        )
    blocks: list[ContentBlock] = [*_signed(signature)] if signature else []
    kind = kinds[0]
    data = part[kind]
    kpath = f"{path}.{kind}"
    if kind == "text":
        if not isinstance(data, str):
            raise InvalidRequest.at(kpath, "expected a string")
        blocks.append(Text(data))
    elif kind in ("inlineData", "fileData"):
        blocks.append(_file(data, kind, kpath))
    elif kind == "functionCall":
        if not model_turn:
            raise InvalidRequest.at(kpath, "a functionCall belongs to a `model` turn")
        blocks.append(_function_call(data, kpath, content_index, len(unanswered), unanswered))
    else:
        blocks.extend(_function_response(data, kpath, unanswered))
    return blocks


def _signed(signature: str, text: str | None = None) -> list[Thought]:
    """The thoughts a part's signature stands for: those LSD wrapped (another vendor's), or Gemini's own signature
    (of the thought part's `text`, or of the part it is on) — marked as Gemini's, so that it goes to Gemini's
    providers alone (Gemini CLI puts `skip_thought_signature_validator` on calls that came without one)."""
    return unwrapped(signature) or [Thought(text, signature, provider_type=GEMINI_TYPE)]


def _file(value: Any, kind: str, path: str) -> File:
    data = camel(object_at(value, path))
    mime = data.get("mimeType")
    if mime is not None and not isinstance(mime, str):
        raise InvalidRequest.at(f"{path}.mimeType", "expected a string")
    if kind == "inlineData":
        payload = data.get("data")
        if not isinstance(payload, str):
            raise InvalidRequest.at(f"{path}.data", "required: base64 data")
        if not mime:
            raise InvalidRequest.at(f"{path}.mimeType", "required: a string")
        return File(mime_type=mime, data=_base64(payload, f"{path}.data"))
    uri = data.get("fileUri")
    if not isinstance(uri, str) or not uri:
        raise InvalidRequest.at(f"{path}.fileUri", "required: a string")
    return File(mime_type=mime or None, url=uri)


def _base64(payload: str, path: str) -> str:
    """Inline data as standard, padded base64 (what every vendor takes), from base64 or base64url; 400 otherwise."""
    payload = payload.translate(_URLSAFE) + "=" * (-len(payload) % 4)
    try:
        binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):  # ValueError: a character outside ASCII
        raise InvalidRequest.at(path, "expected base64 data") from None
    return payload


def _function_call(value: Any, path: str, content_index: int, n: int, unanswered: list[tuple[str, str]]) -> ToolCall:
    call = object_at(value, path)
    name = name_at(call, path)
    args = call.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise InvalidRequest.at(f"{path}.args", "expected an object")
    call_id = call.get("id")
    if call_id is not None and not isinstance(call_id, str):
        raise InvalidRequest.at(f"{path}.id", "expected a string")
    call_id = call_id or f"call_{content_index}_{n}"
    unanswered.append((call_id, name))
    return ToolCall(call_id, name, orjson.dumps(args).decode())


def _function_response(value: Any, path: str, unanswered: list[tuple[str, str]]) -> list[ContentBlock]:
    """A function's answer as a ToolResult: its `response` object's `output` (or `result`, `content`) when that is
    its only string, else the object as JSON; a lone `error` string is a failed call. Files in its `parts` follow."""
    answer = object_at(value, path)
    name = name_at(answer, path)
    call_id = answer.get("id")
    if call_id is not None and not isinstance(call_id, str):
        raise InvalidRequest.at(f"{path}.id", "expected a string")
    if call_id:
        unanswered[:] = [c for c in unanswered if c[0] != call_id]
    else:
        match = next((c for c in unanswered if c[1] == name), None)
        if match is not None:
            unanswered.remove(match)
        call_id = match[0] if match is not None else f"call_{name}"
    response = answer.get("response", {})
    if not isinstance(response, dict):
        raise InvalidRequest.at(f"{path}.response", "expected an object")
    is_error = None
    only = next(iter(response.values())) if len(response) == 1 else None
    if isinstance(only, str) and next(iter(response)) in ("output", "result", "content", "error"):
        text = only
        is_error = True if "error" in response else None
    else:
        text = orjson.dumps(response).decode()
    blocks: list[ContentBlock] = [ToolResult(call_id, name, text, is_error=is_error)]
    parts = answer.get("parts")
    if parts is not None:
        if not isinstance(parts, list):
            raise InvalidRequest.at(f"{path}.parts", "expected an array")
        for k, item in enumerate(parts):
            ppath = f"{path}.parts[{k}]"
            part = camel(object_at(item, ppath))
            kind = next((k2 for k2 in ("inlineData", "fileData") if part.get(k2) is not None), None)
            if kind is None:
                raise InvalidRequest.at(ppath, "a function response's part holds inlineData or fileData")
            blocks.append(_file(part[kind], kind, f"{ppath}.{kind}"))
    return blocks


def _system(value: Any) -> str | None:
    """`systemInstruction`: a Content whose text parts are joined by blank lines (or, as the SDKs take it, a
    string)."""
    if value is None or isinstance(value, str):
        return value
    content = camel(object_at(value, "systemInstruction"))
    parts = content.get("parts")
    if not isinstance(parts, list):
        raise InvalidRequest.at("systemInstruction.parts", "required: an array of text parts")
    texts = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise InvalidRequest.at(f"systemInstruction.parts[{i}].text", "required: a string")
        texts.append(part["text"])
    return "\n\n".join(texts)


def _params(generation: Mapping[str, Any], fields: dict[str, Json]) -> tuple[InferenceParams, dict[str, Json] | None]:
    """generationConfig as the engine's parameters and output schema; the Gemini-only keys go to `fields`."""
    config = camel(generation)
    for key in config:
        if key not in _MAPPED_CONFIG and key not in _GEMINI_CONFIG:
            raise InvalidRequest.at(f"generationConfig.{key}", "unknown field")
        if key in _GEMINI_CONFIG and config[key] is not None:
            fields[f"/generationConfig/{key}"] = config[key]
    count = config.get("candidateCount")
    if count is not None and (not is_int(count) or count != 1):
        raise InvalidRequest.at("generationConfig.candidateCount", "LSD answers one candidate: 1 or unset")
    max_tokens = config.get("maxOutputTokens")
    if max_tokens is not None and (not is_int(max_tokens) or max_tokens < 1):
        raise InvalidRequest.at("generationConfig.maxOutputTokens", "expected a positive integer")
    seed = config.get("seed")
    if seed is not None and not is_int(seed):
        raise InvalidRequest.at("generationConfig.seed", "expected an integer")
    values: dict[str, Any] = {
        "temperature": number(config, "temperature", "generationConfig.temperature"),
        "top_p": number(config, "topP", "generationConfig.topP"),
        "presence_penalty": number(config, "presencePenalty", "generationConfig.presencePenalty"),
        "frequency_penalty": number(config, "frequencyPenalty", "generationConfig.frequencyPenalty"),
        "max_tokens": max_tokens,
        "seed": seed,
        "stop_sequences": strings(config.get("stopSequences"), "generationConfig.stopSequences") or None,
    }
    values.update(_thinking(config.get("thinkingConfig"), fields))
    schema = output_schema(config)
    mime = config.get("responseMimeType")
    if mime is not None and not isinstance(mime, str):
        raise InvalidRequest.at("generationConfig.responseMimeType", "expected a string")
    if mime == "application/json":
        values["json_mode"] = "strict" if schema is not None else "on"
    elif mime not in (None, "text/plain"):  # text/x.enum and the like: Gemini's own
        fields["/generationConfig/responseMimeType"] = mime
        if schema is not None:
            fields["/generationConfig/responseJsonSchema"] = schema
        schema = None
    elif schema is not None:
        raise InvalidRequest.at("generationConfig.responseMimeType", "a response schema needs application/json")
    return InferenceParams(**values), schema


def _thinking(value: Any, fields: dict[str, Json]) -> dict[str, Any]:
    """thinkingConfig: a positive `thinkingBudget` as the thinking budget, `thinkingLevel` as the reasoning effort
    (for every provider); the object as given for Gemini-bodied providers (`includeThoughts`, a budget of -1)."""
    if value is None:
        return {}
    config = camel(object_at(value, "generationConfig.thinkingConfig"))
    fields["/generationConfig/thinkingConfig"] = config
    out: dict[str, Any] = {}
    budget = config.get("thinkingBudget")
    if budget is not None:
        if not is_int(budget) or budget < -1:
            raise InvalidRequest.at("generationConfig.thinkingConfig.thinkingBudget", "expected an integer ≥ -1")
        if budget > 0:
            out["thinking_budget_tokens"] = budget
    level = config.get("thinkingLevel")
    if level is not None:
        if not isinstance(level, str) or level.upper() not in _THINKING_LEVELS:
            raise InvalidRequest.at(
                "generationConfig.thinkingConfig.thinkingLevel", "must be MINIMAL, LOW, MEDIUM or HIGH"
            )
        out["reasoning_effort"] = _THINKING_LEVELS[level.upper()]
    include = config.get("includeThoughts")
    if include is not None and not isinstance(include, bool):
        raise InvalidRequest.at("generationConfig.thinkingConfig.includeThoughts", "expected a boolean")
    return out
