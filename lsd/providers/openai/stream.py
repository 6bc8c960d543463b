"""Streamed Chat Completions: SSE data payloads in, StreamChunk deltas out (pure; no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from lsd.providers.base import malformed
from lsd.providers.openai.wire import JSON_TOOL_NAME, arguments_text, finish_reason, parse_usage, reported_cost
from lsd.providers.sse import SseEvent
from lsd.types import FinishReason, OutputBlock, StreamChunk, Text, Thought, ToolCall, Usage


class StreamState:
    """Turns the SSE data payloads of one streamed chat completion into StreamChunk deltas.

    `feed` returns a chunk for each payload with content (raw = that payload) and None for the others
    (role-only, finish-reason-only and usage-only events), whose payloads ride on the final chunk that
    `finish` builds with the usage, finish reason and any cost the server reports. OpenAI sends a tool
    call's id only on its first delta, keyed by `index`; every ToolCall delta here carries it.
    """

    def __init__(
        self,
        *,
        json_tool: bool = False,
        provider: str = "",
        raw_request: str | None = None,
        reasoning_apart: bool = False,
    ) -> None:
        self.json_tool = json_tool
        self.reasoning_apart = reasoning_apart  # parse_usage's: xAI counts reasoning outside completion_tokens
        self.provider = provider
        self.raw_request = raw_request
        self.done = False
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None
        self.reported_cost: float | None = None
        self.payloads: list[str] = []
        self._held: list[str] = []
        self._ids: dict[int, str] = {}
        self._names: dict[int, str] = {}
        self._slots: dict[int | None, int] = {}  # a delta's `index` (None: it had none): the call it continues
        self._answered_with_tool = False
        self._refused = False

    def raw_response(self) -> str:
        return "\n".join(self.payloads)

    def feed_event(self, event: SseEvent) -> StreamChunk | None:
        """`feed` until `data: [DONE]`; the events after it are read (so the connection can be reused) and
        ignored."""
        return None if self.done else self.feed(event.data)

    def missing_end(self) -> str | None:
        # A stream that gave its finish reason is whole even if the server closed it without `data: [DONE]` (some
        # self-hosted servers and proxies do): only one cut before its finish reason was interrupted.
        return None if self.done or self.finish_reason is not None else "[DONE]"

    def feed(self, data: str) -> StreamChunk | None:
        if data == "[DONE]":
            self.done = True
            return None
        self.payloads.append(data)
        try:  # json_object's work, inline: this runs for every token
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            event = None
        if type(event) is not dict:
            raise malformed(
                "a stream event is not a JSON object",
                provider=self.provider,
                raw_request=self.raw_request,
                raw_response=self.raw_response(),
            )
        choices = event.get("choices")
        if type(choices) is list and len(choices) == 1 and event.get("usage") is None and event.get("error") is None:
            text = _text_delta(choices[0])
            if text is not None:  # a token: the chunk the general walk below would make, with fewer lookups
                return StreamChunk((Text(text),), None, None, None, data)
        if event.get("error") is not None:
            # An error event does not end the stream: the client is told, and later events are read on.
            return StreamChunk(error=f"provider {self.provider!r} sent an error mid-stream: {data[:500]}", raw=data)
        usage = event.get("usage")
        if usage is None:  # Groq gives a stream's usage in its last chunk's `x_groq` (no stream_options needed)
            extension = event.get("x_groq")
            usage = extension.get("usage") if isinstance(extension, dict) else None
        if usage is not None and isinstance(usage, dict):
            self.usage = parse_usage(usage, reasoning_apart=self.reasoning_apart)
            self.reported_cost = reported_cost(usage)
        blocks: list[OutputBlock] = []
        if choices:
            for choice in choices:
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    self._feed_choice(choice, blocks)
        if not blocks:
            self._held.append(data)
            return None
        return StreamChunk(content=tuple(blocks), raw=data)

    def _feed_choice(self, choice: Mapping[str, Any], blocks: list[OutputBlock]) -> None:
        # A token's event: one choice whose delta holds `content`; each absent key costs one lookup.
        reason = choice.get("finish_reason")
        if reason is not None:
            self.finish_reason = finish_reason(reason)
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return
        # `reasoning_content` (DeepSeek, older vLLM), else `reasoning` (OpenRouter, Groq's parsed, newer vLLM)
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            blocks.append(Thought(reasoning))
        text = delta.get("content")
        if text and isinstance(text, str):
            blocks.append(Text(text))
        text = delta.get("refusal")
        if text and isinstance(text, str):
            self._refused = True
            blocks.append(Text(text))
        calls = delta.get("tool_calls")
        if calls:
            for call in calls:
                if isinstance(call, dict):
                    block = self._tool_delta(call)
                    if block is not None:
                        blocks.append(block)

    def _tool_delta(self, call: Mapping[str, Any]) -> OutputBlock | None:
        # A call's slot: by its `index` (OpenAI's), and a new one when a delta brings an id other than the one its
        # index (or, without `index`, the last call) has: servers that give no index, or index 0 to every call
        # with a new id each (Mistral), would otherwise have their calls merged into one.
        raw = call.get("index")
        raw = raw if isinstance(raw, int) else None
        call_id = call.get("id")
        index = self._slots.get(raw)
        if index is None or (call_id and self._ids[index] != call_id):
            index = self._slots[raw] = len(self._ids)
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = arguments_text(function)
        first = index not in self._ids
        if first:
            self._ids[index] = str(call_id or f"call_{index}")
            name = function.get("name")
            self._names[index] = name if isinstance(name, str) else ""
        if self.json_tool and self._names[index] == JSON_TOOL_NAME:
            return Text(arguments) if arguments else None
        if not first and not arguments:
            return None
        self._answered_with_tool = True
        return ToolCall(id=self._ids[index], name=self._names[index] if first else "", arguments=arguments)

    def finish(self) -> StreamChunk:
        """The last chunk: usage (empty when the server sent none), finish reason and reported cost."""
        reason = self.finish_reason
        if self.json_tool and reason == "tool_call" and not self._answered_with_tool:
            reason = "stop"
        if self._refused and reason == "stop":
            reason = "content_filter"  # as parse_response maps a refusal
        return StreamChunk(
            usage=self.usage or Usage(), finish_reason=reason, raw="\n".join(self._held), cost=self.reported_cost
        )


def _text_delta(choice: Any) -> str | None:
    """The text of a choice that is one plain text delta of the first choice (`{"index": 0, "delta": {"content":
    "..."}, "finish_reason": null}`, a `role` beside it allowed), else None."""
    if type(choice) is not dict or choice.get("finish_reason") is not None or choice.get("index", 0) != 0:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict or not (len(delta) == 1 or (len(delta) == 2 and "role" in delta)):
        return None
    text = delta.get("content")
    return text if type(text) is str and text else None
