"""The `cost` option: TensorZero's list of JSON pointers beside LSD's table, parsed and priced against fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink, Table
from lsd.providers.base import CallContext, Provider
from lsd.providers.cost import PointerPricing, Pricing, parse_cost, pointer_tokens
from lsd.providers.registry import PROVIDER_TYPES
from lsd.providers.transport import Transport
from lsd.types import Message, ProviderRequest, StreamChunk, Text, Usage
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-cost-test-0123456789abcdef"
PROMPT = {"pointer": "/usage/prompt_tokens", "cost_per_million": 1.25, "required": True}
COMPLETION = {"pointer": "/usage/completion_tokens", "cost_per_million": 10.0, "required": True}
CACHED = {"pointer": "/usage/prompt_tokens_details/cached_tokens", "cost_per_million": -1.125}


def build(type_name: str, options: Mapping[str, Any]) -> tuple[Provider, list[str]]:
    key_path = "models.m.providers.p"
    config = ProviderConfig(name="p", type=type_name, options=options, key_path=key_path, base_dir=Path("."))
    sink = ErrorSink()
    table = Table(options, key_path, sink, Path("."))
    provider = PROVIDER_TYPES[type_name].from_config(config, table)
    table.finish()
    return provider, sink.errors


def errors_of(cost: Any) -> list[str]:
    return build("openai", {"model_name": "m", "cost": cost})[1]


def ask(text: str) -> ProviderRequest:
    return ProviderRequest(system=None, messages=(Message("user", (Text(text),)),))


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    transport = Transport()
    await transport.open()
    yield transport
    await transport.close()


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def ctx(transport: Transport) -> CallContext:
    return CallContext(transport=transport, credentials={"key": KEY}, timeout_s=10.0)


def openai(fake: FakeOpenAI, cost: Any) -> Provider:
    options = {"model_name": "gpt-test", "api_base": fake.api_base, "api_key_location": "dynamic::key", "cost": cost}
    provider, errors = build("openai", options)
    assert errors == []
    return provider


async def last_chunk(provider: Provider, request: ProviderRequest, ctx: CallContext) -> StreamChunk:
    chunks = [chunk async for chunk in provider.stream(request, ctx)]
    assert chunks[-1].usage is not None
    return chunks[-1]


# ---- parsing ------------------------------------------------------------------------------------------------


def test_both_forms_are_accepted() -> None:
    table, table_errors = build(
        "openai", {"model_name": "m", "cost": {"input_per_million": 1, "output_per_million": 2}}
    )
    listed, list_errors = build("openai", {"model_name": "m", "cost": [PROMPT, COMPLETION, CACHED]})
    assert table_errors == list_errors == []
    assert isinstance(getattr(table, "pricing", None), Pricing)
    pricing = getattr(listed, "pricing", None)
    assert isinstance(pricing, PointerPricing) and len(pricing.entries) == 3
    assert pricing.entries[0].cost_per_unit == pytest.approx(1.25e-6)
    assert pricing.entries[2].cost_per_unit < 0  # negative rates subtract (cached tokens)


@pytest.mark.parametrize(
    ("cost", "error"),
    [
        (
            [PROMPT, {"pointer": "usage", "cost_per_unit": 1}],
            "models.m.providers.p.cost[1].pointer: expected a JSON pointer",
        ),
        ([{"cost_per_unit": 1}], "models.m.providers.p.cost[0].pointer: missing required key"),
        (
            [{"pointer": "/a", "cost_per_unit": 1, "cost_per_million": 1}],
            "cost[0].cost_per_million: set exactly one of",
        ),
        ([{"pointer": "/a"}], "cost[0].cost_per_million: set exactly one of"),
        ([{"pointer": "/a", "cost_per_unit": "1"}], "cost[0].cost_per_unit: expected a number, got str"),
        ([{"pointer": "/a", "cost_per_unit": 1, "required": "yes"}], "cost[0].required: expected a boolean"),
        ([{"pointer": "/a", "cost_per_unit": 1, "per_token": 1}], "cost[0].per_token: unknown key"),
        ([{"pointer_streaming": "/a", "cost_per_unit": 1}], "cost[0].pointer_nonstreaming: missing required key"),
        (
            [{"pointer": "/a", "pointer_streaming": "/b", "pointer_nonstreaming": "/c", "cost_per_unit": 1}],
            "cost[0].pointer: set either `pointer` or both",
        ),
        ([{"pointer": "/a~2", "cost_per_unit": 1}], "cost[0].pointer: expected a JSON pointer"),
        (["/usage/prompt_tokens"], "models.m.providers.p.cost[0]: expected a table"),
        ("cheap", "models.m.providers.p.cost: expected a table {input_per_million, output_per_million} or a list"),
        ({"input_per_million": 1}, "models.m.providers.p.cost.output_per_million: missing required key"),
    ],
)
def test_config_errors_name_the_key_path(cost: Any, error: str) -> None:
    errors = errors_of(cost)
    assert len(errors) == 1 and error in errors[0], errors


def test_json_pointer_escapes() -> None:
    assert pointer_tokens("/a~1b/c~0d/0") == ("a/b", "c~d", "0")
    assert pointer_tokens("") == ()
    assert pointer_tokens("a/b") is None


def test_pricing_rules_without_a_socket() -> None:
    pricing = parse_cost(
        Table(
            {"cost": [PROMPT, COMPLETION, CACHED, {"pointer": "/usage/cost", "cost_per_unit": 1.0}]},
            "p",
            ErrorSink(),
            Path("."),
        )
    )
    assert isinstance(pricing, PointerPricing)
    usage = {"prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 800}}
    expected = (1000 * 1.25 + 100 * 10.0 - 800 * 1.125) / 1e6
    assert pricing.price(Usage(), [{"usage": usage}]) == pytest.approx(expected)
    assert pricing.price(Usage(), [{"usage": {**usage, "cost": "0.5"}}]) == pytest.approx(expected + 0.5)  # quoted
    assert pricing.price(Usage(), [{"usage": {**usage, "prompt_tokens_details": None}}]) == pytest.approx(
        (1000 * 1.25 + 100 * 10.0) / 1e6  # a null field is an absent one
    )
    assert pricing.price(Usage(), [{"usage": {"completion_tokens": 100}}]) is None  # required, missing
    assert pricing.price(Usage(), [{"usage": {**usage, "completion_tokens": "many"}}]) is None  # not a number
    assert pricing.price(Usage(), [{"usage": {**usage, "prompt_tokens_details": {"cached_tokens": 10**6}}}]) is None
    # A stream: each entry takes the largest value among the events (cumulative counts only grow).
    events = [{"usage": {"prompt_tokens": 1000, "completion_tokens": 1}}, {"usage": {"completion_tokens": 100}}, {}]
    assert pricing.price(Usage(), events, streamed=True) == pytest.approx((1000 * 1.25 + 100 * 10.0) / 1e6)


def test_batch_cost_defaults_to_half_the_list_form() -> None:
    provider, errors = build("openai", {"model_name": "m", "cost": [PROMPT, COMPLETION]})
    assert errors == []
    answer = {"usage": {"prompt_tokens": 1000, "completion_tokens": 100}}
    assert provider.batch_cost(Usage(1000, 100), answer) == pytest.approx((1000 * 1.25 + 100 * 10.0) / 2e6)  # type: ignore[attr-defined]


# ---- against the fake servers ---------------------------------------------------------------------------------


async def test_non_streamed_cost_reads_the_response(fake_openai: FakeOpenAI, ctx: CallContext) -> None:
    provider = openai(fake_openai, [PROMPT, COMPLETION, CACHED])
    response = await provider.infer(ask("one two three four"), ctx)
    assert response.usage.input_tokens and response.usage.output_tokens
    expected = (response.usage.input_tokens * 1.25 + response.usage.output_tokens * 10.0) / 1e6  # no cached tokens
    assert response.cost == pytest.approx(expected)


async def test_streamed_cost_reads_the_usage_chunk(fake_openai: FakeOpenAI, ctx: CallContext) -> None:
    provider = openai(fake_openai, [PROMPT, COMPLETION, {"pointer": "/usage/total_tokens", "cost_per_unit": 0.001}])
    last = await last_chunk(provider, ask("one two three four"), ctx)
    assert last.usage is not None and last.usage.input_tokens and last.usage.output_tokens
    tokens = last.usage.input_tokens + last.usage.output_tokens
    expected = (last.usage.input_tokens * 1.25 + last.usage.output_tokens * 10.0) / 1e6 + tokens * 0.001
    assert last.cost == pytest.approx(expected)


async def test_split_pointers_pick_by_mode(fake_openai: FakeOpenAI, ctx: CallContext) -> None:
    split = {"pointer_nonstreaming": "/usage/prompt_tokens", "pointer_streaming": "/usage/completion_tokens"}
    provider = openai(fake_openai, [{**split, "cost_per_unit": 1.0}])
    response = await provider.infer(ask("one two three four"), ctx)
    last = await last_chunk(provider, ask("one two three four"), ctx)
    assert response.cost == response.usage.input_tokens
    assert last.usage is not None and last.cost == last.usage.output_tokens


async def test_a_missing_required_field_makes_the_cost_null(fake_openai: FakeOpenAI, ctx: CallContext) -> None:
    """TensorZero's rule: a `required` field the provider did not report makes the cost null (the answer stands);
    a field that is not required adds nothing."""
    reasoning = "/usage/completion_tokens_details/reasoning_tokens"
    required = openai(fake_openai, [PROMPT, {"pointer": reasoning, "cost_per_million": 5.0, "required": True}])
    optional = openai(fake_openai, [PROMPT, {"pointer": reasoning, "cost_per_million": 5.0}])
    response = await required.infer(ask("hello"), ctx)
    assert response.content and response.cost is None
    last = await last_chunk(required, ask("hello"), ctx)
    assert last.usage is not None and last.cost is None
    answered = await optional.infer(ask("hello"), ctx)
    assert answered.usage.input_tokens and answered.cost == pytest.approx(answered.usage.input_tokens * 1.25 / 1e6)


async def test_anthropic_stream_splits_usage_across_events(transport: Transport) -> None:
    """Anthropic reports input tokens in `message_start` and output tokens in `message_delta`: streamed pointers
    are looked up in every event."""
    cost = [
        {
            "pointer_nonstreaming": "/usage/input_tokens",
            "pointer_streaming": "/message/usage/input_tokens",
            "cost_per_million": 3.0,
            "required": True,
        },
        {"pointer": "/usage/output_tokens", "cost_per_million": 15.0, "required": True},
    ]
    async with FakeAnthropic(api_key=KEY) as fake:
        options = {
            "model_name": "claude-test",
            "api_base": f"{fake.url}/v1/",
            "api_key_location": "dynamic::key",
            "cost": cost,
        }
        provider, errors = build("anthropic", options)
        assert errors == []
        ctx = CallContext(transport=transport, credentials={"key": KEY}, timeout_s=10.0)
        response = await provider.infer(ask("one two three"), ctx)
        last = await last_chunk(provider, ask("one two three"), ctx)
    for usage, cost_value in ((response.usage, response.cost), (last.usage, last.cost)):
        assert usage is not None and usage.input_tokens and usage.output_tokens
        assert cost_value == pytest.approx((usage.input_tokens * 3.0 + usage.output_tokens * 15.0) / 1e6)


async def test_embedding_cost_reads_the_response(fake_openai: FakeOpenAI, ctx: CallContext) -> None:
    provider = openai(fake_openai, [{"pointer": "/usage/total_tokens", "cost_per_million": 0.02, "required": True}])
    response = await provider.embed(["one two", "three"], ctx)
    assert response.usage.input_tokens and response.cost == pytest.approx(response.usage.input_tokens * 0.02 / 1e6)


def test_the_table_form_prices_cache_tokens_at_their_own_rates() -> None:
    table = {"input_per_million": 3.0, "output_per_million": 15.0}
    cached = {**table, "cache_read_per_million": 0.3, "cache_write_per_million": 3.75}
    usage = Usage(1000, 100, cache_read_input_tokens=600, cache_write_input_tokens=300)
    plain = parse_cost(Table({"cost": table}, "p", ErrorSink(), Path(".")))
    priced = parse_cost(Table({"cost": cached}, "p", ErrorSink(), Path(".")))
    assert isinstance(plain, Pricing) and isinstance(priced, Pricing)
    assert plain.price(usage) == pytest.approx((1000 * 3.0 + 100 * 15.0) / 1e6)  # cache tokens are input tokens
    assert priced.price(usage) == pytest.approx((100 * 3.0 + 600 * 0.3 + 300 * 3.75 + 100 * 15.0) / 1e6)
    assert priced.price(Usage(1000, 100)) == plain.price(Usage(1000, 100))  # no cache counts reported
    assert priced.scaled(0.5).price(usage) == pytest.approx(priced.price(usage) / 2)  # type: ignore[operator]
    errors = errors_of({**table, "cache_read_per_million": -1})
    assert len(errors) == 1 and "models.m.providers.p.cost.cache_read_per_million: must be >= 0" in errors[0]


async def test_the_dummy_takes_cost_in_either_form_and_prices_plain_and_streamed_answers(ctx: CallContext) -> None:
    table, errors = build(
        "dummy", {"model_name": "echo", "cost": {"input_per_million": 1.0, "output_per_million": 2.0}}
    )
    assert errors == []
    plain = await table.infer(ask("one two three"), ctx)
    assert plain.usage == Usage(3, 4) and plain.cost == pytest.approx((3 * 1.0 + 4 * 2.0) / 1e6)
    pointers = [
        {"pointer": "/usage/input_tokens", "cost_per_million": 1.0, "required": True},
        {"pointer": "/usage/output_tokens", "cost_per_million": 2.0},
    ]
    listed, errors = build("dummy", {"model_name": "echo", "cost": pointers})
    assert errors == []
    chunks = [chunk async for chunk in listed.stream(ask("one two three"), ctx)]
    assert chunks[-1].cost == pytest.approx((3 * 1.0 + 4 * 2.0) / 1e6)
