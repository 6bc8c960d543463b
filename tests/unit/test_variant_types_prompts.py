"""The variant types' requests and answers, without a provider: the evaluator's choice, chain-of-thought's
unwrapping, dicl's prompt, and the sketch the dicl lookup prefilters with."""

from __future__ import annotations

import math
import random

import orjson
import pytest

from lsd.config.model import DiclConfig
from lsd.inference.variant_types import best_of_n, chain_of_thought, dicl, mixture
from lsd.inference.variant_types.candidates import Candidate
from lsd.store.dicl import Neighbour, sketch, unit
from lsd.types import Input, Message, ProviderRequest, ProviderResponse, Text, Thought, ToolCall, Usage


def response(*blocks: Text | ToolCall | Thought) -> ProviderResponse:
    return ProviderResponse(content=blocks, usage=Usage(1, 1), finish_reason="stop", raw_request="", raw_response="")


CANDIDATES = [Candidate("a", response(Text("first"))), Candidate("b", response(ToolCall("c1", "lookup", '{"q": 1}')))]
REQUEST = ProviderRequest(system="Be brief.", messages=(Message("user", (Text("hello"),)),))


@pytest.mark.parametrize(
    ("answer", "index"),
    [
        ('{"thinking": "b is better", "answer_choice": 1}', 1),
        ('{"thinking": "", "answer_choice": 0}', 0),
        ('{"thinking": "", "answer_choice": 2}', None),  # out of range
        ('{"thinking": "", "answer_choice": true}', None),
        ('{"thinking": "", "answer_choice": "1"}', None),
        ("not json", None),
        ("[1]", None),
    ],
)
def test_the_evaluators_choice_is_an_index_among_the_candidates(answer: str, index: int | None) -> None:
    assert best_of_n.choice(response(Text(answer)), 2) == index


def test_an_evaluator_answer_naming_no_candidate_picks_one_of_them() -> None:
    random.seed(7)
    picks = {best_of_n.chosen(response(Text("?")), CANDIDATES).variant_name for _ in range(50)}
    assert picks == {"a", "b"}


def test_the_evaluator_request_lists_the_candidates_and_asks_for_json_without_tools() -> None:
    judged = best_of_n.evaluator_request(REQUEST, CANDIDATES)
    assert judged.system is not None and "Be brief." in judged.system
    assert judged.messages[0] == REQUEST.messages[0]
    [last] = judged.messages[1].content
    assert isinstance(last, Text)
    assert '<candidate index="0">\nfirst\n</candidate>' in last.text
    assert '{"tool_call":{"name":"lookup","arguments":"{\\"q\\": 1}"}}' in last.text
    assert judged.output_schema == best_of_n.JUDGE_SCHEMA
    assert judged.tools == () and judged.tool_choice is None


def test_the_fuser_request_keeps_the_functions_output_schema() -> None:
    fused = mixture.fuser_request(ProviderRequest(None, REQUEST.messages, output_schema={"type": "object"}), CANDIDATES)
    assert fused.output_schema == {"type": "object"}
    assert fused.system is not None and "single best response" in fused.system


def test_chain_of_thought_wraps_the_schema_and_unwraps_the_answer() -> None:
    wrapped = chain_of_thought.request_with_thinking(ProviderRequest(None, (), output_schema={"required": ["x"]}))
    assert wrapped.output_schema is not None
    assert wrapped.output_schema["required"] == ["thinking", "response"]
    assert wrapped.output_schema["properties"]["response"] == {"required": ["x"]}
    answer = chain_of_thought.unwrapped((Text('{"thinking": "so", "response": {"x": 1}}'),))
    assert answer == (Thought("so"), Text('{"x":1}'))
    kept = (Text('{"x": 1}'),)
    assert chain_of_thought.unwrapped(kept) == kept  # not the wrapper: kept as it came


def test_dicl_prompt_is_the_instructions_then_examples_nearest_last_then_the_input() -> None:
    config = DiclConfig(embedding_model="e", k=2)
    system, messages = dicl.prompt(config, Input(None, (Message("user", (Text("2+2?"),)),)))
    assert system == dicl.DEFAULT_INSTRUCTIONS
    base = ProviderRequest(system, messages)
    question = {"messages": [{"role": "user", "content": [{"type": "text", "text": "1+1?"}]}]}
    far = Neighbour(question, [{"type": "text", "text": "2"}], 0.4)
    near = Neighbour({"messages": []}, {"raw": '{"a":4}', "parsed": {"a": 4}}, 0.1)
    request = dicl.with_examples(base, [near, far])
    texts = [(m.role, m.content[0].text) for m in request.messages if isinstance(m.content[0], Text)]
    assert texts == [
        ("user", dicl.input_text(far.input)),
        ("assistant", "2"),
        ("user", '{"messages":[]}'),
        ("assistant", '{"a":4}'),
        ("user", '{"messages":[{"content":[{"text":"2+2?","type":"text"}],"role":"user"}]}'),
    ]
    assert orjson.loads(texts[-1][1])["messages"][0]["content"][0]["text"] == "2+2?"


def test_sketches_of_near_vectors_differ_in_fewer_bits_than_of_unrelated_ones() -> None:
    rng = random.Random(3)
    base = [rng.gauss(0, 1) for _ in range(1536)]
    near = [x + rng.gauss(0, 0.2) for x in base]
    other = [rng.gauss(0, 1) for _ in range(1536)]

    def bits_apart(a: list[float], b: list[float]) -> int:
        return sum(x != y for x, y in zip(sketch(a), sketch(b), strict=True))

    assert len(sketch(base)) == 256
    assert bits_apart(base, near) < 40 < 90 < bits_apart(base, other)
    assert sketch([0.5, -0.5]) == sketch([1.0, -1.0])  # scale does not matter
    assert math.isclose(sum(x * x for x in unit(base)), 1.0)
