"""The Responses API's `item_reference` input items: an earlier response's output items sent back by id (as the
Vercel AI SDK sends a conversation's answers when `store` is left on) reach the provider as the items themselves:
a signed thought, text and a tool call, read from the stored inference."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.anthropic_server import SIGNATURE, FakeAnthropic
from tests.support.gateway import in_process_gateway

KEY = "sk-fake-references"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic(api_key=KEY)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(
    fake: FakeAnthropic, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("LSD_TEST_REFERENCES_KEY", KEY)
    async with in_process_gateway(claude(fake), database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http


def claude(fake: FakeAnthropic, gateway: str = "") -> str:
    """The model `claude` on the fake Anthropic, after `gateway` settings."""
    return f"""{gateway}
[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-test"
api_base = "{fake.base_url}"
api_key_location = "env::LSD_TEST_REFERENCES_KEY"
"""


def ask(*items: Any, **more: Any) -> dict[str, Any]:
    return {"model": "lsd::model_name::claude", "input": list(items), **more}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "input_text", "text": text}]}


def ref(item_id: str) -> dict[str, str]:
    return {"type": "item_reference", "id": item_id}


async def test_an_answer_sent_back_by_reference_reaches_the_provider_whole(
    client: httpx.AsyncClient, fake: FakeAnthropic
) -> None:
    first = await client.post("/openai/v1/responses", json=ask(user("thinking about it")))
    assert first.status_code == 200, first.text
    reasoning, message = first.json()["output"]
    assert (reasoning["type"], message["type"]) == ("reasoning", "message")
    # the follow-up right away: its rows may not be committed yet (async writes), and are waited for
    follow = await client.post(
        "/openai/v1/responses",
        json=ask(user("thinking about it"), ref(reasoning["id"]), ref(message["id"]), user("and now?")),
    )
    assert follow.status_code == 200, follow.text
    sent = fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    thought, text = sent[1]["content"]
    assert thought["type"] == "thinking" and thought["signature"] == SIGNATURE  # the fake checks it: a 400 otherwise
    assert text == {"type": "text", "text": message["content"][0]["text"]}


async def test_a_tool_call_sent_back_by_reference_is_answered_by_its_output(
    client: httpx.AsyncClient, fake: FakeAnthropic
) -> None:
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}
    first = await client.post("/openai/v1/responses", json=ask(user("tool please"), tools=[tool]))
    assert first.status_code == 200, first.text
    [call] = first.json()["output"]
    assert call["type"] == "function_call" and call["id"].startswith("fc_")
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "42"}
    follow = await client.post(
        "/openai/v1/responses", json=ask(user("tool please"), ref(call["id"]), output, tools=[tool])
    )
    assert follow.status_code == 200, follow.text
    assert follow.json()["output"][0]["content"][0]["text"] == "result: 42"
    [use] = fake.last.json["messages"][1]["content"]
    assert (use["type"], use["id"], use["name"]) == ("tool_use", call["call_id"], "lookup")


async def test_a_reference_to_what_cannot_be_read_back_names_the_item(client: httpx.AsyncClient) -> None:
    unstored = await client.post("/openai/v1/responses", json=ask(user("hello"), store=False))
    [message] = unstored.json()["output"]
    r = await client.post("/openai/v1/responses", json=ask(user("hello"), ref(message["id"])))
    assert r.status_code == 404 and r.json()["error"]["param"] == "input[1].id", r.text
    stored = await client.post("/openai/v1/responses", json=ask(user("hello")))
    beyond = stored.json()["output"][0]["id"].rsplit("_", 1)[0] + "_7"  # it has one item
    r = await client.post("/openai/v1/responses", json=ask(user("hello"), ref(beyond)))
    assert r.status_code == 404 and r.json()["error"]["param"] == "input[1].id", r.text
    r = await client.post("/openai/v1/responses", json=ask(user("hello"), ref("msg_abc")))
    assert r.status_code == 400 and r.json()["error"]["param"] == "input[1].id", r.text


async def test_a_summary_asked_for_carries_the_thoughts_text(client: httpx.AsyncClient, fake: FakeAnthropic) -> None:
    """With `reasoning.summary` the thought's text is the reasoning item's summary (the Vercel AI SDK reads only
    that, as OpenAI's reasoning models answer), streamed as reasoning_summary events; sent back, it is the same
    signed thought."""
    body = ask(user("thinking about it"), reasoning={"effort": "low", "summary": "auto"})
    answer = (await client.post("/openai/v1/responses", json=body)).json()
    reasoning = answer["output"][0]
    assert reasoning["summary"][0]["type"] == "summary_text" and reasoning["summary"][0]["text"]
    assert "content" not in reasoning and answer["reasoning"] == {"effort": "low", "summary": "auto"}
    async with client.stream("POST", "/openai/v1/responses", json={**body, "stream": True}) as r:
        lines = [line async for line in r.aiter_lines()]
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert "response.reasoning_summary_text.delta" in events and "response.reasoning_text.delta" not in events
    at = events.index("response.reasoning_summary_part.added")
    assert events.index("response.reasoning_summary_text.done") > at
    last = orjson.loads([line for line in lines if line.startswith("data: ")][-1][6:])
    assert last["response"]["output"][0]["summary"] == reasoning["summary"]
    follow = await client.post(
        "/openai/v1/responses", json=ask(user("thinking about it"), reasoning, answer["output"][1], user("and?"))
    )
    assert follow.status_code == 200, follow.text
    thought = fake.last.json["messages"][1]["content"][0]
    assert thought == {"type": "thinking", "thinking": reasoning["summary"][0]["text"], "signature": SIGNATURE}
    bad = await client.post("/openai/v1/responses", json=ask(user("hi"), reasoning={"summary": "long"}))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "reasoning.summary"


async def test_references_cannot_build_an_unbounded_request(client: httpx.AsyncClient) -> None:
    """Each reference copies a stored answer: the same item twice is a 400, items that would make the request
    larger than gateway.max_body_bytes a 413, an index no answer has a 400 naming the item's id (not a 500)."""
    first = (await client.post("/openai/v1/responses", json=ask(user("hello")))).json()
    item = first["output"][0]["id"]
    twice = await client.post("/openai/v1/responses", json=ask(user("hello"), ref(item), ref(item), user("again")))
    assert twice.status_code == 400 and twice.json()["error"]["param"] == "input[2].id", twice.text
    huge = item.rsplit("_", 1)[0] + "_" + "9" * 5000
    r = await client.post("/openai/v1/responses", json=ask(user("hello"), ref(huge)))
    assert r.status_code == 400 and r.json()["error"]["param"] == "input[1].id", r.text
    sealed = {"type": "reasoning", "summary": [], "encrypted_content": "lsd1.not-json"}
    r = await client.post("/openai/v1/responses", json=ask(user("hello"), sealed, user("and?")))
    assert r.status_code == 400 and r.json()["error"]["param"] == "input[1].encrypted_content", r.text


async def test_referenced_items_count_against_the_body_limit(
    fake: FakeAnthropic, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LSD_TEST_REFERENCES_KEY", KEY)
    config = claude(fake, "[gateway]\nmax_body_bytes = 4000\n[gateway.observability]\nasync_writes = false\n")
    async with in_process_gateway(config, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        long = (await http.post("/openai/v1/responses", json=ask(user("x " * 1200)))).json()
        [item] = long["output"]
        small = await http.post("/openai/v1/responses", json=ask(user("x"), ref(item["id"])))
        assert small.status_code == 200, small.text  # the answer alone fits
        big = await http.post("/openai/v1/responses", json=ask(user("x " * 1200), ref(item["id"])))
        assert big.status_code == 413 and big.json()["error"]["param"] == "input", big.text
