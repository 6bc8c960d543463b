"""OpenAI's Responses API request (`POST /openai/v1/responses`), parsed into the engine's InferenceRequest; a
`previous_response_id`'s stored conversation put in front of it (its answers: lsd.api.responses_wire).

`model` is read as on the chat endpoint (lsd.api.openai_model.parse_model); `input` items become the engine's
messages (lsd.api.responses_items; `system`/`developer` messages join `instructions` as the system text); `tools`
are served as functions where they can be. Every error is a 400 naming the field (`input[2].content[0].type`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from uuid import UUID

import orjson

from lsd.api.openai_messages import extension
from lsd.api.openai_model import ModelRef, parse_model
from lsd.api.openai_request import alias_tag, common_extensions, parse_metadata, request_identifiers
from lsd.api.responses_items import add_blocks, parse_items
from lsd.api.responses_tools import DROPPED_TOOLS_TAG, TOOL_SEARCH, parse_tool_choice, parse_tools
from lsd.config.inbound import InboundTarget
from lsd.errors import InvalidRequest
from lsd.immutable import immutable
from lsd.inference.input_request import parse_input
from lsd.inference.request import (
    InferenceRequest,
    check_schema,
    parse_cache_options,
    parse_params,
    parse_uuid,
)
from lsd.types import ContentBlock, Input, Json, Text, Thought, ToolCall, ToolResult, Unknown

RESPONSE_ID_PREFIX = "resp_"
STORE_TAG = "lsd::store"  # "false" on an inference made with `store: false`: not usable as previous_response_id
_REFUSED = {
    "background": "background responses are not supported: leave `background` false",
    "conversation": "conversations are not supported: chain responses with `previous_response_id`",
    "prompt": "stored prompts are not supported: send `input` and `instructions`",
}


@immutable
class ResponsesRequest:
    """A parsed Responses API call: the engine's request (without the previous response's conversation), the
    `model` the client named, and what the response object echoes back."""

    request: InferenceRequest
    model: ModelRef
    previous_response_id: UUID | None = None
    store: bool = True
    instructions: str | None = None
    tools: tuple[Mapping[str, Json], ...] = ()
    tool_choice: Json = "auto"
    text_format: Mapping[str, Json] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    parallel_tool_calls: bool = True
    metadata: Mapping[str, str] | None = None
    # a namespaced function's name as the provider sees it: (its namespace, its own name)
    tool_namespaces: Mapping[str, tuple[str, str]] | None = None
    custom_tools: frozenset[str] | None = None  # the names of the `custom` (freeform) tools, served as functions
    tool_search: bool = False  # a client-run tool search is offered: calls of TOOL_SEARCH are tool_search_call items
    # `reasoning.summary` as asked (auto, concise, detailed): the thoughts' text is then answered as the reasoning
    # items' summary (what the Vercel AI SDK and OpenAI's own reasoning models answer), else as their content.
    reasoning_summary: str | None = None

    def call_kind(self, name: str) -> str:
        """How a call of the tool the provider knows as `name` is answered: `custom` (a custom_tool_call),
        `tool_search` (a tool_search_call) or `function` (a function_call)."""
        if self.custom_tools and name in self.custom_tools:
            return "custom"
        return "tool_search" if self.tool_search and name == TOOL_SEARCH else "function"

    def function_name(self, name: str) -> tuple[str | None, str]:
        """The namespace and own name of the function the provider knows as `name` (None: it has no namespace)."""
        found = (self.tool_namespaces or {}).get(name)
        return found if found is not None else (None, name)


def response_id(inference_id: UUID) -> str:
    """A response's `id`: `resp_` and the inference id's 32 hex digits."""
    return f"{RESPONSE_ID_PREFIX}{inference_id.hex}"


def parse_response_id(value: Any, path: str) -> UUID:
    """An inference id from a response id: `resp_<32 hex>` (as LSD answers) or a plain UUID."""
    if isinstance(value, str) and value.startswith(RESPONSE_ID_PREFIX):
        try:
            return UUID(hex=value[len(RESPONSE_ID_PREFIX) :])
        except ValueError:
            raise InvalidRequest.at(path, f"not a response id LSD made: {value!r}") from None
    return parse_uuid(value, path)


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest.at(key, "expected a number")
    return float(value)


def _flag(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest.at(key, "expected a boolean")
    return value


def parse_responses_request(body: Any, aliases: Mapping[str, InboundTarget] | None = None) -> ResponsesRequest:
    """The engine request for a Responses API call; InvalidRequest (400) naming the field otherwise. `aliases`:
    `[inbound.openai] models`."""
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    model = parse_model(body.get("model"), aliases=aliases)
    for key, why in _REFUSED.items():
        if body.get(key) not in (None, False):
            raise InvalidRequest.at(key, why)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest.at("instructions", "expected a string")
    messages, system, found = parse_items(body.get("input"))
    system = "\n".join(s for s in (instructions, system) if s) or None
    values: dict[str, Any] = {}
    temperature, top_p = _number(body, "temperature"), _number(body, "top_p")
    if temperature is not None:
        values["temperature"] = temperature
    if top_p is not None:
        values["top_p"] = top_p
    max_output = body.get("max_output_tokens")
    if max_output is not None:
        if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 1:
            raise InvalidRequest.at("max_output_tokens", "expected a positive integer")
        values["max_tokens"] = max_output
    text_format, output_schema = _text_format(body.get("text"), values)
    _controls(body, values)
    params = parse_params({"chat_completion": values}, "params")
    override = extension(body, "params")
    if override is not None:
        params = params.merged(parse_params(override, "lsd::params"))
    offered = parse_tools(body.get("tools"))
    if found.specs:  # what earlier tool searches found is offered too
        offered = offered.joined(found)
    choice, choice_echo = parse_tool_choice(body.get("tool_choice"), offered)
    parallel = _flag(body, "parallel_tool_calls", True)
    metadata = parse_metadata(body.get("metadata"))
    variant = extension(body, "variant_name")
    if variant is not None and not isinstance(variant, str):
        raise InvalidRequest.at("lsd::variant_name", "expected a string")
    credentials = extension(body, "credentials")
    credentials = {} if credentials is None else credentials
    if not isinstance(credentials, dict) or not all(isinstance(v, str) for v in credentials.values()):
        raise InvalidRequest.at("lsd::credentials", "expected an object of strings")
    extensions = common_extensions(body)
    store = _flag(body, "store", True)
    extensions["tags"] = {
        **(metadata or {}),
        **request_identifiers(body),
        **extensions["tags"],
        **alias_tag(model),
        **({} if store else {STORE_TAG: "false"}),
    }
    if offered.dropped:
        extensions["tags"][DROPPED_TOOLS_TAG] = ",".join(offered.dropped)
    previous = body.get("previous_response_id")
    dryrun = bool(extension(body, "dryrun"))
    request = InferenceRequest(
        input=Input(system=system, messages=tuple(messages)),
        function_name=model.name if model.kind == "function_name" else None,
        model_name=model.name if model.kind == "model_name" else None,
        variant_name=variant if model.kind == "function_name" else None,
        stream=_flag(body, "stream", False),
        dryrun=dryrun,
        params=params,
        credentials=credentials,
        output_schema=output_schema,
        output_schema_strict=text_format is None or text_format.get("strict") is True,
        additional_tools=offered.specs,
        tool_choice=choice,
        parallel_tool_calls=body.get("parallel_tool_calls"),
        cache=parse_cache_options(extension(body, "cache_options"), "lsd::cache_options", dryrun),
        **extensions,
    )
    return ResponsesRequest(
        request=request,
        model=model,
        previous_response_id=None if previous is None else parse_response_id(previous, "previous_response_id"),
        store=store,
        instructions=instructions,
        tools=offered.echo,
        tool_choice=choice_echo,
        text_format=text_format,
        temperature=temperature,
        top_p=top_p,
        max_output_tokens=max_output,
        parallel_tool_calls=parallel,
        metadata=metadata,
        tool_namespaces=offered.namespaces or None,
        custom_tools=offered.custom or None,
        tool_search=offered.tool_search,
        reasoning_summary=_reasoning_summary(body),
    )


def _reasoning_summary(body: Mapping[str, Any]) -> str | None:
    reasoning = body.get("reasoning")
    summary = reasoning.get("summary") if isinstance(reasoning, dict) else None
    if summary is not None and summary not in ("auto", "concise", "detailed"):
        raise InvalidRequest.at("reasoning.summary", f"must be auto, concise or detailed, got {summary!r}")
    return summary


def _controls(body: Mapping[str, Any], values: dict[str, Any]) -> None:
    """`reasoning.effort`, `service_tier` and `text.verbosity` as the engine's params of those names (sent to the
    providers that take them); `reasoning.summary` is not (the thoughts' text is answered as the summary:
    `ResponsesRequest.reasoning_summary`)."""
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise InvalidRequest.at("reasoning", "expected an object")
    text = body.get("text")
    for path, key, value in (
        ("reasoning.effort", "reasoning_effort", (reasoning or {}).get("effort")),
        ("service_tier", "service_tier", body.get("service_tier")),
        ("text.verbosity", "verbosity", text.get("verbosity") if isinstance(text, dict) else None),
        ("prompt_cache_key", "prompt_cache_key", body.get("prompt_cache_key") or None),
    ):
        if value is not None:
            if not isinstance(value, str):
                raise InvalidRequest.at(path, "expected a string")
            values[key] = value


def _text_format(text: Any, values: dict[str, Any]) -> tuple[Mapping[str, Json] | None, Mapping[str, Json] | None]:
    """`text.format`: (the format echoed, the output schema); sets `json_mode` in `values`."""
    if text is None:
        return None, None
    if not isinstance(text, dict):
        raise InvalidRequest.at("text", "expected an object")
    fmt = text.get("format")
    if fmt is None:
        return None, None
    if not isinstance(fmt, dict):
        raise InvalidRequest.at("text.format", "expected an object")
    kind = fmt.get("type")
    if kind == "text":
        values["json_mode"] = "off"
        return fmt, None
    if kind == "json_object":
        values["json_mode"] = "on"
        return fmt, None
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest.at("text.format.schema", "expected a JSON Schema object")
        check_schema(schema, "text.format.schema")
        values["json_mode"] = "strict"
        return fmt, schema
    raise InvalidRequest.at("text.format.type", f"must be text, json_object or json_schema, got {kind!r}")


# -- previous_response_id ---------------------------------------------------------------------------------------


def with_history(
    call: ResponsesRequest, stored_input: Any, stored_output: Any, kind: str, episode_id: UUID | None = None
) -> ResponsesRequest:
    """`call` continuing a stored inference: its messages, its answer as the assistant's, then the new input; in
    its episode unless the call names one. As at OpenAI, the previous response's instructions (its system) are not
    carried over."""
    try:
        previous = parse_input(stored_input, "previous_response_id")
    except InvalidRequest:
        raise InvalidRequest.at("previous_response_id", "the stored response cannot be continued") from None
    messages = list(previous.messages)
    answer = [b for b in stored_answer(stored_output, kind) if not isinstance(b, Unknown)]
    if answer:
        add_blocks(messages, "assistant", answer)
    names = {b.id: b.name for m in messages for b in m.content if isinstance(b, ToolCall)}
    for message in call.request.input.messages:  # a tool result names the call it answers (Gemini needs it)
        add_blocks(messages, message.role, [_named(b, names) for b in message.content])
    request = replace(
        call.request,
        input=Input(system=call.request.input.system, messages=tuple(messages)),
        episode_id=call.request.episode_id or episode_id,
    )
    return replace(call, request=request)


def _named(block: ContentBlock, names: Mapping[str, str]) -> ContentBlock:
    if isinstance(block, ToolResult) and not block.name and block.id in names:
        return ToolResult(block.id, names[block.id], block.result)
    return block


def stored_answer(stored_output: Any, kind: str) -> list[Text | ToolCall | Thought | Unknown]:
    """An inference's answer as stored (lsd.inference.recording.output_to_json) back into blocks: a json function's
    raw text, or a chat function's blocks (a provider's unknown block as an empty Unknown, where it stood)."""
    if kind == "json":
        raw = stored_output.get("raw") if isinstance(stored_output, dict) else None
        return [Text(raw)] if isinstance(raw, str) else []
    if not isinstance(stored_output, list):
        return []
    return [_stored_block(b) for b in stored_output if isinstance(b, dict)]


def _stored_block(block: Mapping[str, Any]) -> Text | ToolCall | Thought | Unknown:
    """An output block as stored (lsd.inference.recording.block_to_json) back into an input block."""
    kind = block.get("type")
    if kind == "tool_call":
        arguments = block.get("raw_arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(block.get("arguments") or {}).decode()
        return ToolCall(str(block.get("id", "")), str(block.get("raw_name") or block.get("name") or ""), arguments)
    if kind == "thought":
        return Thought(block.get("text"), block.get("signature"))
    if kind == "text":
        return Text(str(block.get("text", "")))
    return Unknown(None)
