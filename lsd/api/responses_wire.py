"""OpenAI's Responses API answers, built from the engine's typed results: the `response` object, and the stream's
events (`response.created` ... `response.completed`, each with its `sequence_number`). The request side:
lsd.api.responses_request.

A response's `id` is `resp_` and the inference id's hex; its output items' ids are derived from it (`msg_`, `fc_`,
`rs_` with the item's index), and a function call's `call_id` is the provider's tool call id.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from lsd.api.openai_model import ModelRef
from lsd.api.openai_wire import openai_error_object
from lsd.api.responses_items import seal_thought
from lsd.api.responses_request import ResponsesRequest, response_id
from lsd.api.responses_tools import custom_input, search_arguments
from lsd.errors import LsdError
from lsd.inference.result import InferenceResult, ResultBlock, ToolCallOutput
from lsd.inference.streaming import InferenceStream, StreamEvent
from lsd.types import OutputBlock, Text, Thought, ToolCall, Usage

# finish reasons that end a response short of its answer: `status: "incomplete"` and its reason
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def model_label(ref: ModelRef, variant_name: str) -> str:
    """The response's `model`, as the chat endpoint names it (lsd.api.openai_wire.response_model)."""
    if ref.alias is not None:
        return ref.alias
    if ref.kind == "function_name":
        return f"{ref.prefix}function_name::{ref.name}::variant_name::{variant_name}"
    return f"{ref.prefix}{ref.kind}::{ref.name}"


def usage_json(usage: Usage, cost: float | None) -> dict[str, Any]:
    """The response's `usage` (unknown counts as 0, as OpenAI's fields are integers; the prompt cache's reads as
    `cached_tokens` and, when there were any, its writes as `cache_write_tokens`), and LSD's cost."""
    inputs, outputs = usage.input_tokens or 0, usage.output_tokens or 0
    cached = {"cached_tokens": usage.cache_read_input_tokens or 0}
    if usage.cache_write_input_tokens:
        cached["cache_write_tokens"] = usage.cache_write_input_tokens
    return {
        "input_tokens": inputs,
        "input_tokens_details": cached,
        "output_tokens": outputs,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": inputs + outputs,
        "tensorzero_cost": cost,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed", namespace: str | None = None
) -> dict[str, Any]:
    """A function call; `namespace` for a function the request offered in a `namespace` tool."""
    item = {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }
    if namespace is not None:
        item["namespace"] = namespace
    return item


def custom_tool_call_item(
    item_id: str, call_id: str, name: str, text: str, status: str = "completed"
) -> dict[str, Any]:
    """A call of a `custom` (freeform) tool: its free text as `input`."""
    return {
        "type": "custom_tool_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "input": text,
        "status": status,
    }


def tool_call_item(
    item_id: str, call_id: str, name: str, arguments: str, call: ResponsesRequest | None, status: str = "completed"
) -> dict[str, Any]:
    """A tool call as the request offered the tool: a function (in its namespace, if any), a custom tool or a tool
    search the client runs (Codex's deferred tools)."""
    kind = _call_kind(call, name)
    if kind == "custom":
        return custom_tool_call_item(item_id, call_id, name, custom_input(arguments), status)
    if kind == "tool_search":
        return {
            "type": "tool_search_call",
            "id": item_id,
            "call_id": call_id,
            "execution": "client",
            "arguments": search_arguments(arguments),
            "status": status,
        }
    namespace, own = call.function_name(name) if call is not None else (None, name)
    return function_call_item(item_id, call_id, own, arguments, status, namespace)


# A call's item id prefix by how it is answered (ResponsesRequest.call_kind), as OpenAI's ids begin.
_CALL_PREFIXES = {"custom": "ctc", "tool_search": "ts", "function": "fc"}


def _call_kind(call: ResponsesRequest | None, name: str) -> str:
    return call.call_kind(name) if call is not None else "function"


def _summarized(call: ResponsesRequest | None) -> bool:
    """Whether the request asked for reasoning summaries: its thoughts' text is then each item's summary."""
    return call is not None and call.reasoning_summary is not None


def reasoning_item(item_id: str, text: str | None, signature: str | None, summary: bool = False) -> dict[str, Any]:
    """A thought as a reasoning item: its text as the item's `content`, or, when the request asked for a summary
    (`summary`), as its `summary`."""
    item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": []}
    if text and summary:
        item["summary"] = [{"type": "summary_text", "text": text}]
    elif text:
        item["content"] = [{"type": "reasoning_text", "text": text}]
    if text:
        item["encrypted_content"] = seal_thought(text, signature or "")
    elif signature:
        item["encrypted_content"] = signature
    return item


def output_items(
    inference_id: UUID, content: Sequence[ResultBlock], json_raw: str | None, call: ResponsesRequest | None = None
) -> list[dict[str, Any]]:
    """The `output` items of an answer: a reasoning item per thought, a message per run of text, a function_call
    (or custom_tool_call, as `call` offered the tool) per tool call, in the answer's order (a json function's
    answer: one message with its raw text)."""
    base = inference_id.hex
    if json_raw is not None:
        return [message_item(f"msg_{base}_0", json_raw)]
    items: list[dict[str, Any]] = []
    text: list[str] = []

    def close_text() -> None:
        if text:
            items.append(message_item(f"msg_{base}_{len(items)}", "".join(text)))
            text.clear()

    for block in content:
        if isinstance(block, Text):
            text.append(block.text)
            continue
        close_text()
        if isinstance(block, ToolCallOutput):
            item_id = f"{_CALL_PREFIXES[_call_kind(call, block.raw_name)]}_{base}_{len(items)}"
            items.append(tool_call_item(item_id, block.id, block.raw_name, block.raw_arguments, call))
        elif isinstance(block, Thought):
            summary = _summarized(call)
            items.append(reasoning_item(f"rs_{base}_{len(items)}", block.text, block.signature, summary))
    close_text()
    return items


def response_json(
    call: ResponsesRequest,
    inference_id: UUID,
    variant_name: str,
    *,
    created_at: int,
    output: list[dict[str, Any]],
    status: str = "completed",
    usage: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `response` object (complete, or as it stands in a stream's events)."""
    reason = INCOMPLETE.get(finish_reason or "")
    if status == "completed" and reason is not None:
        status = "incomplete"
    if status in ("incomplete", "failed") and output and "status" in output[-1]:
        output = [*output[:-1], {**output[-1], "status": "incomplete"}]  # the item the answer was cut in
    previous = call.previous_response_id
    return {
        "id": response_id(inference_id),
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": reason} if status == "incomplete" else None,
        "instructions": call.instructions,
        "max_output_tokens": call.max_output_tokens,
        "model": model_label(call.model, variant_name),
        "output": output,
        "parallel_tool_calls": call.parallel_tool_calls,
        "previous_response_id": response_id(previous) if previous is not None else None,
        "reasoning": {"effort": call.request.params.reasoning_effort, "summary": call.reasoning_summary},
        "store": call.store,
        "temperature": call.temperature,
        "text": {"format": dict(call.text_format) if call.text_format else {"type": "text"}},
        "tool_choice": call.tool_choice,
        "tools": [dict(t) for t in call.tools],
        "top_p": call.top_p,
        "truncation": "disabled",
        "usage": usage,
        "metadata": dict(call.metadata or {}),
        "user": None,
    }


def completed_json(call: ResponsesRequest, result: InferenceResult) -> dict[str, Any]:
    """A non-streamed inference's response object."""
    json_raw = (result.output.raw or "") if result.output is not None else None
    return response_json(
        call,
        result.inference_id,
        result.variant_name,
        created_at=int(time.time()),
        output=output_items(result.inference_id, result.content, json_raw, call),
        usage=usage_json(result.usage, result.cost),
        finish_reason=result.finish_reason,
    )


@dataclass
class _Item:
    """An output item being streamed: its index, kind, ids and the text (or arguments) so far."""

    index: int
    kind: str  # message | function_call | reasoning
    item_id: str
    call_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    signature: str | None = None
    call: ResponsesRequest | None = None  # how the request offered the tool called (ResponsesRequest)

    def json(self, status: str) -> dict[str, Any]:
        text = "".join(self.parts)
        if self.kind == "message":
            return message_item(self.item_id, text, status)
        if self.kind == "function_call":
            return tool_call_item(self.item_id, self.call_id, self.name, text, self.call, status)
        return reasoning_item(self.item_id, text, self.signature, _summarized(self.call))


class ResponseEvents:
    """Turns one stream's events into the Responses API's events, each a (type, JSON object) pair numbered by
    `sequence_number`. `start()` gives the opening events; `events(event)` those of each engine event; the last
    engine event (usage) closes the open item and ends with `response.completed` (`response.incomplete`, the item
    done as `incomplete`, when a limit cut it), or `response.failed` when the stream broke (its last error came
    after all of its content): the item it broke in then gets no `.done` events, so no client acts on a cut tool
    call or reads cut text as finished; the failed response lists it as `incomplete`)."""

    def __init__(self, call: ResponsesRequest, stream: InferenceStream) -> None:
        self.call = call
        self.stream = stream
        self.created_at = int(time.time())
        self.sequence = 0
        self.items: list[_Item] = []
        self.open: _Item | None = None
        self.error: LsdError | None = None
        self._summary = _summarized(call)  # thoughts as summaries (reasoning_item)

    def _event(self, kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return kind, event

    def _response(self, status: str, **outcome: Any) -> dict[str, Any]:
        output = [item.json("completed") for item in self.items]
        s = self.stream
        return response_json(
            self.call, s.inference_id, s.variant_name, created_at=self.created_at, output=output, status=status,
            **outcome,
        )  # fmt: skip

    def start(self) -> list[tuple[str, dict[str, Any]]]:
        response = self._response("in_progress")
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def events(self, event: StreamEvent) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        if event.error is not None:
            self.error = event.error
            body = openai_error_object(event.error)["error"]
            out.append(self._event("error", code=body["code"], message=body["message"], param=body["param"]))
        for block in event.content:
            self.error = None  # content after an error: the stream went on
            out.extend(self._delta(block))
        if event.usage is not None:
            if self.error is not None:  # broken: the item it was cut in is never done (response.failed holds it)
                self.open = None
            else:  # cut by a limit, as OpenAI sends it: done, `incomplete`
                out.extend(self._close("incomplete" if event.finish_reason in INCOMPLETE else "completed"))
            usage = usage_json(event.usage, event.cost)
            if self.error is not None:
                error = {"code": self.error.error_code, "message": self.error.message}
                out.append(self._event("response.failed", response=self._response("failed", usage=usage, error=error)))
            else:
                response = self._response("completed", usage=usage, finish_reason=event.finish_reason)
                kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
                out.append(self._event(kind, response=response))
        return out

    def _item(self, kind: str, prefix: str, **fields: Any) -> list[tuple[str, dict[str, Any]]]:
        """Close the open item and open a new one of `kind`."""
        out = self._close()
        item = _Item(len(self.items), kind, f"{prefix}_{self.stream.inference_id.hex}_{len(self.items)}", **fields)
        self.items.append(item)
        self.open = item
        added = item.json("in_progress")
        if kind == "message":
            added["content"] = []
        out.append(self._event("response.output_item.added", output_index=item.index, item=added))
        if kind == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(self._ids("response.content_part.added", item, content_index=0, part=part))
        return out

    def _ids(self, kind: str, item: _Item, **fields: Any) -> tuple[str, dict[str, Any]]:
        return self._event(kind, item_id=item.item_id, output_index=item.index, **fields)

    def _delta(self, block: OutputBlock) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        item = self.open
        if isinstance(block, Text):
            if item is None or item.kind != "message":
                out.extend(self._item("message", "msg"))
                item = self.open
            assert item is not None
            item.parts.append(block.text)
            out.append(self._ids("response.output_text.delta", item, content_index=0, delta=block.text, logprobs=[]))
        elif isinstance(block, ToolCall):
            if item is None or item.kind != "function_call" or (block.id and block.id != item.call_id):
                prefix = _CALL_PREFIXES[self.call.call_kind(block.name)]
                out.extend(self._item("function_call", prefix, call_id=block.id, name=block.name, call=self.call))
                item = self.open
            assert item is not None
            if block.name and not item.name:
                item.name = block.name
            if block.arguments:
                item.parts.append(block.arguments)
                if not self._held(item):  # a custom tool's text is known once its arguments are whole
                    out.append(self._ids("response.function_call_arguments.delta", item, delta=block.arguments))
        elif isinstance(block, Thought):
            # A thought without text is a block of its own (lsd.inference.streaming): a redacted thought, or Gemini's
            # signature of the part after it, which must go back apart from the thought before it (Gemini 3 refuses
            # a function call that comes back without its signature)
            if item is None or item.kind != "reasoning" or (block.text is None and (item.parts or item.signature)):
                out.extend(self._item("reasoning", "rs", call=self.call))
                item = self.open
            assert item is not None
            if block.signature:
                item.signature = block.signature
            if block.text:
                if not self._summary:
                    out.append(self._ids("response.reasoning_text.delta", item, content_index=0, delta=block.text))
                else:
                    if not item.parts:
                        part = {"type": "summary_text", "text": ""}
                        out.append(self._ids("response.reasoning_summary_part.added", item, summary_index=0, part=part))
                    delta = block.text
                    out.append(self._ids("response.reasoning_summary_text.delta", item, summary_index=0, delta=delta))
                item.parts.append(block.text)
        return out

    def _custom(self, item: _Item) -> bool:
        """Whether the open function item is a call of a custom tool (answered as a custom_tool_call)."""
        return item.kind == "function_call" and self.call.call_kind(item.name) == "custom"

    def _held(self, item: _Item) -> bool:
        """Whether the open function item's arguments go out whole at its end, not as deltas: a custom tool's call
        (its text), or a tool search's (an object)."""
        return item.kind == "function_call" and self.call.call_kind(item.name) != "function"

    def _close(self, status: str = "completed") -> list[tuple[str, dict[str, Any]]]:
        """The `.done` events of the open item, which ends with `status`."""
        item, self.open = self.open, None
        if item is None:
            return []
        out: list[tuple[str, dict[str, Any]]] = []
        text = "".join(item.parts)
        if item.kind == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out.append(self._ids("response.output_text.done", item, content_index=0, text=text, logprobs=[]))
            out.append(self._ids("response.content_part.done", item, content_index=0, part=part))
        elif self._custom(item):
            text = custom_input(text)
            out.append(self._ids("response.custom_tool_call_input.delta", item, delta=text))
            out.append(self._ids("response.custom_tool_call_input.done", item, input=text))
        elif item.kind == "function_call":
            if not self._held(item):  # a tool search's call goes out whole, in its output_item.done
                own = self.call.function_name(item.name)[1]  # a namespaced one's own name
                out.append(self._ids("response.function_call_arguments.done", item, name=own, arguments=text))
        elif text and self._summary:
            part = {"type": "summary_text", "text": text}
            out.append(self._ids("response.reasoning_summary_text.done", item, summary_index=0, text=text))
            out.append(self._ids("response.reasoning_summary_part.done", item, summary_index=0, part=part))
        elif text:
            out.append(self._ids("response.reasoning_text.done", item, content_index=0, text=text))
        out.append(self._event("response.output_item.done", output_index=item.index, item=item.json(status)))
        return out
