"""A streamed answer is put back together in the provider's block order: several thinking blocks with their own
signatures, a redacted one between them, a signature before the part it belongs to (Gemini), text after a tool
call. And TensorZero's thought chunks carry each thinking block's own id."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from uuid import UUID

import orjson

from lsd.api.tensorzero_wire import ChunkEncoder
from lsd.inference.stream_answer import Aggregate, prompt_chars
from lsd.inference.streaming import StreamEvent
from lsd.types import Message, OutputBlock, ProviderRequest, StreamChunk, Text, Thought, ToolCall, ToolSpec


def aggregate(*blocks: OutputBlock) -> tuple[OutputBlock, ...]:
    whole = Aggregate()
    for block in blocks:
        whole.add(StreamChunk(content=(block,)))
    return whole.blocks()


def test_anthropic_thinking_blocks_keep_their_own_signatures_and_the_redacted_one() -> None:
    assert aggregate(
        Thought("Let me "),
        Thought("think."),
        Thought("", "sig-1"),  # signature_delta: ends the first block
        Thought(None, "REDACTED"),  # redacted_thinking: a block of its own
        Thought("More."),
        Thought("", "sig-2"),
        Text("Hi"),
        ToolCall("t1", "weather", ""),
        ToolCall("t1", "", '{"city": "Oslo"}'),
    ) == (
        Thought("Let me think.", "sig-1"),
        Thought(None, "REDACTED"),
        Thought("More.", "sig-2"),
        Text("Hi"),
        ToolCall("t1", "weather", '{"city": "Oslo"}'),
    )


def test_a_signed_thinking_block_without_text_stays_a_thinking_block_not_a_redacted_one() -> None:
    """Claude 4 with the thinking display omitted: a thinking block of "" and its signature_delta. Stored as a
    redacted thought, it would go back to Anthropic as redacted_thinking carrying the signature."""
    assert aggregate(Thought("", "SIG_EMPTY"), Text("Hi")) == (Thought("", "SIG_EMPTY"), Text("Hi"))


def test_a_gemini_signature_stays_before_the_call_it_signs_and_order_is_kept() -> None:
    assert aggregate(
        Thought("Planning."),
        Thought(None, "sig-call"),  # the functionCall part's thoughtSignature
        ToolCall("c1", "lookup", "{}"),
        Text("Done"),
        Text("."),
        Thought(None, "sig-last"),  # on the last, empty text part
        Thought(None),  # a part with neither: nothing
    ) == (
        Thought("Planning.", None),
        Thought(None, "sig-call"),
        ToolCall("c1", "lookup", "{}"),
        Text("Done."),
        Thought(None, "sig-last"),
    )


def test_tensorzero_thought_chunks_have_one_id_per_thinking_block() -> None:
    stream: Any = SimpleNamespace(
        inference_id=UUID(int=1), episode_id=UUID(int=2), variant_name="v", function_type="chat", raw_chunks=False
    )
    encode = ChunkEncoder(stream)
    ids = []
    for block in (Thought("a"), Thought("b"), Thought("", "s1"), Thought(None, "R"), Thought("c"), Thought("", "s2")):
        line, _ = encode(StreamEvent(content=(block,)))
        ids.append(orjson.loads(line[len(b"data: ") :])["content"][0]["id"])
    assert ids == ["0", "0", "0", "1", "2", "2"]


def test_a_stopped_streams_prompt_estimate_counts_tool_definitions_and_the_output_schema() -> None:
    """A chat UI sends dozens of tools each turn; a provider bills them as prompt (5 tokens were stored for 6,500)."""
    tools = tuple(ToolSpec(f"tool_{i}", "d" * 100, {"type": "object", "properties": {}}) for i in range(30))
    bare = ProviderRequest(system=None, messages=(Message("user", (Text("hi"),)),))
    with_tools = ProviderRequest(system=None, messages=bare.messages, tools=tools, output_schema={"type": "object"})
    assert prompt_chars(bare) == 2
    assert prompt_chars(with_tools) > 30 * 100 + prompt_chars(bare)
