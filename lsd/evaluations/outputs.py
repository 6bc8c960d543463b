"""Evaluated outputs: the canonical form evaluators compare, its hash (the key human judgements are reused by),
and its text."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

_DROPPED_BLOCKS = frozenset({"thought"})  # reasoning varies run to run; the answer is what is judged


def canonical(output: Any, function_type: str) -> Any:
    """A json function's parsed value (its raw text when invalid); a chat function's blocks without ids."""
    if function_type == "json":
        if isinstance(output, Mapping):
            return output["parsed"] if output.get("parsed") is not None else output.get("raw")
        return output
    return _blocks(output)


def canonical_reference(reference: Any, function_type: str) -> Any:
    """A reference output in the same form: a chat reference may be a plain string."""
    if function_type == "json":
        return reference
    return _blocks([{"type": "text", "text": reference}] if isinstance(reference, str) else reference)


def output_hash(canonical_output: Any) -> str:
    return hashlib.sha256(orjson.dumps(canonical_output, option=orjson.OPT_SORT_KEYS)).hexdigest()


def output_text(output: Any, function_type: str) -> str:
    """What a regex sees: a json function's raw text, a chat function's text blocks joined."""
    if function_type == "json":
        raw = output.get("raw") if isinstance(output, Mapping) else None
        return raw if isinstance(raw, str) else orjson.dumps(output).decode()
    if not isinstance(output, list):
        return ""
    return "".join(b["text"] for b in output if isinstance(b, Mapping) and isinstance(b.get("text"), str))


def _blocks(blocks: Any) -> Any:
    if not isinstance(blocks, list):
        return blocks
    out: list[Any] = []
    for block in blocks:
        if not isinstance(block, Mapping):
            out.append(block)
            continue
        kind = block.get("type")
        if kind in _DROPPED_BLOCKS:
            continue
        if kind == "text":
            out.append({"type": "text", "text": block.get("text")})
        elif kind == "tool_call":
            out.append(
                {"type": "tool_call", "name": block.get("raw_name") or block.get("name"), "arguments": _args(block)}
            )
        else:
            out.append({k: v for k, v in block.items() if k != "id"})
    return out


def _args(block: Mapping[str, Any]) -> Any:
    for key in ("raw_arguments", "arguments"):
        value = block.get(key)
        if isinstance(value, str):
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError:
                return value
        if value is not None:
            return value
    return None
