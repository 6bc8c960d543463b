"""Parse a TensorZero-shaped `POST /batch_inference` body into one InferenceRequest per input.

Per-input fields are lists aligned with `inputs` (an entry may be null); `params` is
`{"chat_completion": {param: [value | null, ...]}}`. Each input is parsed exactly as an `/inference` body would
be, and an error names the batch's own path, e.g. `inputs[3].messages[0].content` or `tags[1].team`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lsd.errors import InvalidRequest, LsdError
from lsd.immutable import immutable
from lsd.inference.request import InferenceRequest, parse_inference_request

_TOP_LEVEL = frozenset(
    {
        "function_name",
        "variant_name",
        "inputs",
        "episode_ids",
        "params",
        "tags",
        "output_schemas",
        "allowed_tools",
        "additional_tools",
        "tool_choice",
        "parallel_tool_calls",
        "credentials",
        "dryrun",
    }
)
# Batch list key -> the /inference key its entry becomes.
_ALIGNED = {
    "episode_ids": "episode_id",
    "tags": "tags",
    "output_schemas": "output_schema",
    "allowed_tools": "allowed_tools",
    "additional_tools": "additional_tools",
    "tool_choice": "tool_choice",
    "parallel_tool_calls": "parallel_tool_calls",
}


@immutable
class BatchRequest:
    function_name: str
    variant_name: str | None
    requests: tuple[InferenceRequest, ...]
    credentials: Mapping[str, str]
    dryrun: bool


def _aligned_list(body: Mapping[str, Any], key: str, count: int) -> list[Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequest.at(key, "expected an array with one entry (or null) per input")
    if len(value) != count:
        raise InvalidRequest.at(key, f"expected {count} entries (one per input), got {len(value)}")
    return value


def parse_batch_request(body: Any) -> BatchRequest:
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    unknown = sorted(set(body) - _TOP_LEVEL)
    if unknown:
        raise InvalidRequest.at(unknown[0], "unknown field")
    function_name = body.get("function_name")
    if not isinstance(function_name, str) or not function_name:
        raise InvalidRequest.at("function_name", "missing required field (a string)")
    variant_name = body.get("variant_name")
    if variant_name is not None and not isinstance(variant_name, str):
        raise InvalidRequest.at("variant_name", "expected a string")
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidRequest.at("inputs", "missing required field (an array of inputs)")
    if not inputs:
        raise InvalidRequest.at("inputs", "must not be empty")
    count = len(inputs)
    aligned = {key: _aligned_list(body, key, count) for key in _ALIGNED}
    params = _params(body.get("params"), count)
    requests = []
    for i, value in enumerate(inputs):
        single: dict[str, Any] = {"function_name": function_name, "input": value}
        for key, target in _ALIGNED.items():
            entries = aligned[key]
            if entries is not None and entries[i] is not None:
                single[target] = entries[i]
        chat = {name: values[i] for name, values in params.items() if values[i] is not None}
        if chat:
            single["params"] = {"chat_completion": chat}
        try:
            requests.append(parse_inference_request(single))
        except InvalidRequest as exc:
            raise reindexed(exc, i) from None
    credentials = body["credentials"] if body.get("credentials") is not None else {}
    if not isinstance(credentials, dict) or not all(isinstance(v, str) for v in credentials.values()):
        raise InvalidRequest.at("credentials", "expected an object of strings")
    dryrun = body.get("dryrun")
    if dryrun is not None and not isinstance(dryrun, bool):
        raise InvalidRequest.at("dryrun", "expected a boolean")
    return BatchRequest(function_name, variant_name, tuple(requests), credentials, bool(dryrun))


def _params(value: Any, count: int) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - {"chat_completion"}:
        raise InvalidRequest.at("params", 'expected {"chat_completion": {PARAM: [value per input]}}')
    chat = value.get("chat_completion") or {}
    if not isinstance(chat, dict):
        raise InvalidRequest.at("params.chat_completion", "expected an object of arrays")
    out = {}
    for name, values in chat.items():
        path = f"params.chat_completion.{name}"
        if not isinstance(values, list):
            raise InvalidRequest.at(path, "expected an array with one entry (or null) per input")
        if len(values) != count:
            raise InvalidRequest.at(path, f"expected {count} entries (one per input), got {len(values)}")
        out[name] = values
    return out


def reindexed(exc: LsdError, i: int) -> InvalidRequest:
    """An error about one input's `/inference` field, renamed to the batch's path for input `i`."""
    field = exc.field or ""
    message = exc.message
    renamed = batch_path(field, i)
    if field and message.startswith(field):
        message = renamed + message[len(field) :]
    elif renamed:
        message = f"{renamed}: {message}"
    else:
        message = f"inputs[{i}]: {message}"
    return InvalidRequest(message, field=renamed or f"inputs[{i}]")


def batch_path(field: str, i: int) -> str:
    """`input.messages[0]` -> `inputs[i].messages[0]`; `params.chat_completion.seed` -> `...seed[i]`; etc."""
    if not field:
        return ""
    if field == "input" or field.startswith(("input.", "input[")):
        return f"inputs[{i}]{field[len('input') :]}"
    if field.startswith("params.chat_completion."):
        tail = field[len("params.chat_completion.") :]
        cut = min((tail.index(c) for c in ".[" if c in tail), default=len(tail))
        return f"params.chat_completion.{tail[:cut]}[{i}]{tail[cut:]}"
    for key, target in _ALIGNED.items():
        if field == target or field.startswith((f"{target}.", f"{target}[")):
            return f"{key}[{i}]{field[len(target) :]}"
    return field
