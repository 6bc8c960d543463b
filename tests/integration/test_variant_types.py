"""Variant types beyond chat_completion against a fake OpenAI server: best_of_n_sampling, mixture_of_n,
chain_of_thought and dicl, with what the provider received and what PostgreSQL recorded."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from lsd.store.dicl import sketch, unit
from tests.fakes.openai_server import FakeOpenAI
from tests.support.configs import write_answer_schema
from tests.support.gateway import in_process_gateway, run_lsd

KEY = "sk-test-secret-key-0123456789"
PRICE = "cost = { input_per_million = 1.0, output_per_million = 2.0 }"


def model(name: str, model_name: str, openai: FakeOpenAI) -> str:
    return f"""
[models.{name}]
routing = ["openai"]
[models.{name}.providers.openai]
type = "openai"
model_name = "{model_name}"
api_base = "{openai.api_base}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"
{PRICE}
"""


def config(openai: FakeOpenAI, tmp: Path) -> str:
    (tmp / "a.j2").write_text("from a: {{ user_text }}")
    (tmp / "b.j2").write_text("from b: {{ user_text }}")
    (tmp / "instructions.txt").write_text("Answer like the examples.")
    schema = write_answer_schema(tmp)
    return (
        model("gpt", "gpt-4o-mini", openai)
        + model("broken", "error-500", openai)
        + model("judge", "choose-1", openai)
        + model("thinker", "cot", openai)
        + model("slow", "slow-3000", openai)
        + f"""
[gateway.observability]
async_writes = false

[metrics.good]
type = "boolean"
optimize = "max"
level = "inference"

[embedding_models.embedder]
routing = ["openai"]
[embedding_models.embedder.providers.openai]
type = "openai"
model_name = "text-embedding-3-small"
api_base = "{openai.api_base}"
api_key_location = "env::LSD_TEST_OPENAI_KEY"

[functions.write]
type = "chat"
[functions.write.variants.a]
type = "chat_completion"
model = "gpt"
user_template = "{tmp}/a.j2"
[functions.write.variants.b]
type = "chat_completion"
model = "gpt"
user_template = "{tmp}/b.j2"
[functions.write.variants.failing]
type = "chat_completion"
model = "broken"
[functions.write.variants.best]
type = "experimental_best_of_n_sampling"
candidates = ["a", "failing", "b"]
[functions.write.variants.best.evaluator]
model = "judge"
[functions.write.variants.slowpoke]
type = "chat_completion"
model = "slow"
[functions.write.variants.hasty]
type = "experimental_best_of_n_sampling"
candidates = ["a", "slowpoke"]
timeout_s = 0.5
[functions.write.variants.hasty.evaluator]
model = "judge"
[functions.write.variants.mix]
type = "experimental_mixture_of_n"
candidates = ["a", "b"]
[functions.write.variants.mix.fuser]
model = "gpt"
[functions.write.variants.hopeless]
type = "experimental_best_of_n_sampling"
candidates = ["failing", "failing"]
[functions.write.variants.hopeless.evaluator]
model = "judge"
[functions.write.variants.similar]
type = "experimental_dynamic_in_context_learning"
embedding_model = "embedder"
model = "gpt"
k = 2
system_instructions = "{tmp}/instructions.txt"

[functions.extract]
type = "json"
output_schema = "{schema}"
[functions.extract.variants.thinking]
type = "experimental_chain_of_thought"
model = "thinker"
json_mode = "strict"
"""
    )


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenAI]:
    monkeypatch.setenv("LSD_TEST_OPENAI_KEY", KEY)
    openai = FakeOpenAI(api_key=KEY)
    await openai.start()
    try:
        yield openai
    finally:
        await openai.stop()


@pytest.fixture
async def client(fake: FakeOpenAI, database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        in_process_gateway(config(fake, tmp_path), database_url) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
    ):
        yield http


def rows(database_url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


async def infer(client: httpx.AsyncClient, function: str, variant: str, text: str = "hello") -> dict[str, Any]:
    body = {
        "function_name": function,
        "variant_name": variant,
        "input": {"messages": [{"role": "user", "content": text}]},
    }
    r = await client.post("/inference", json=body)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def chats(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.path.endswith("/chat/completions")]


def text_of(message: dict[str, Any]) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def attempts(database_url: str, inference_id: str) -> list[tuple[Any, ...]]:
    return rows(
        database_url,
        "SELECT variant_name, model_name, status, cost FROM model_inferences WHERE inference_id = %s"
        " ORDER BY variant_name, status",
        inference_id,
    )


async def test_best_of_n_answers_the_evaluators_choice_and_survives_a_failing_candidate(
    client: httpx.AsyncClient, fake: FakeOpenAI, database_url: str
) -> None:
    answer = await infer(client, "write", "best")
    # The candidates that answered are a ("from a") and b ("from b"); the judge (choose-1) picked index 1.
    assert answer["content"] == [{"type": "text", "text": "echo: from b: hello"}]
    assert answer["variant_name"] == "best"
    judged = chats(fake)[-1]
    listed = text_of(judged["messages"][-1])
    assert '<candidate index="0">\necho: from a: hello\n</candidate>' in listed
    assert '<candidate index="1">\necho: from b: hello\n</candidate>' in listed
    assert judged["response_format"]["json_schema"]["schema"]["required"] == ["thinking", "answer_choice"]
    assert "tools" not in judged

    # Every call is an attempt of the one inference, with its cost; the inference's cost is their sum.
    found = attempts(database_url, answer["inference_id"])
    assert [(v, m, s) for v, m, s, _ in found] == [
        ("a", "gpt", "ok"),
        ("b", "gpt", "ok"),
        ("best", "judge", "ok"),
        ("failing", "broken", "error"),
    ]
    ok_costs = [c for _, _, s, c in found if s == "ok"]
    assert all(c is not None and c > 0 for c in ok_costs)
    [(cost, variant)] = rows(
        database_url, "SELECT cost, variant_name FROM chat_inferences WHERE id = %s", answer["inference_id"]
    )
    assert variant == "best"
    assert cost == sum(ok_costs, Decimal(0))
    assert answer["usage"]["cost"] == pytest.approx(float(cost))


async def test_best_of_n_with_every_candidate_failing_is_a_provider_error_naming_them(
    client: httpx.AsyncClient, fake: FakeOpenAI
) -> None:
    r = await client.post(
        "/inference",
        json={
            "function_name": "write",
            "variant_name": "hopeless",
            "input": {"messages": [{"role": "user", "content": "x"}]},
        },
    )
    assert r.status_code >= 500, r.text
    assert not any(b["model"] == "choose-1" for b in chats(fake))  # no candidate: the evaluator is never called
    assert "hopeless: not called: none of its candidates answered" in r.json()["error"]  # the variant asked for


async def test_best_of_n_leaves_out_a_candidate_still_running_at_timeout_s(
    client: httpx.AsyncClient, database_url: str
) -> None:
    answer = await infer(client, "write", "hasty")
    assert answer["content"] == [{"type": "text", "text": "echo: from a: hello"}]
    found = rows(
        database_url,
        "SELECT variant_name, status, error_kind, error FROM model_inferences WHERE inference_id = %s"
        " ORDER BY variant_name",
        answer["inference_id"],
    )
    assert found == [
        ("a", "ok", None, None),
        ("hasty", "ok", None, None),
        ("slowpoke", "error", "timeout", "candidate cut by timeout_s (0.5 s)"),
    ]


async def test_mixture_of_n_answers_with_the_fusers_answer_built_from_every_candidate(
    client: httpx.AsyncClient, fake: FakeOpenAI, database_url: str
) -> None:
    answer = await infer(client, "write", "mix")
    [block] = answer["content"]
    # The fuser (an echo) answered its last user message: the candidates listed, then the request to fuse them.
    assert block["text"].startswith('echo: <candidate index="0">\necho: from a: hello\n</candidate>')
    assert '<candidate index="1">\necho: from b: hello\n</candidate>' in block["text"]
    assert "combines the best of the candidate responses" in block["text"]
    fused = chats(fake)[-1]
    assert "single best response" in text_of(fused["messages"][0])  # the fuser's system text
    found = attempts(database_url, answer["inference_id"])
    assert [(v, s) for v, _, s, _ in found] == [("a", "ok"), ("b", "ok"), ("mix", "ok")]
    total = sum((c for *_, c in found), Decimal(0))
    [(cost,)] = rows(database_url, "SELECT cost FROM chat_inferences WHERE id = %s", answer["inference_id"])
    assert cost == total


async def test_chain_of_thought_returns_the_response_and_asks_for_the_thinking_first(
    client: httpx.AsyncClient, fake: FakeOpenAI, database_url: str
) -> None:
    answer = await infer(client, "extract", "thinking", "hello")
    assert answer["output"] == {"raw": '{"answer":"hello"}', "parsed": {"answer": "hello"}}
    schema = chats(fake)[-1]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["thinking", "response"]
    assert schema["properties"]["response"]["required"] == ["answer"]  # the function's own schema, inside
    [(output,)] = rows(database_url, "SELECT output FROM json_inferences WHERE id = %s", answer["inference_id"])
    assert output == {"raw": '{"answer":"hello"}', "parsed": {"answer": "hello"}}


async def test_a_streamed_best_of_n_request_gets_the_chosen_answer_replayed(
    client: httpx.AsyncClient, fake: FakeOpenAI, database_url: str
) -> None:
    body = {
        "function_name": "write",
        "variant_name": "best",
        "stream": True,
        "input": {"messages": [{"role": "user", "content": "hello"}]},
    }
    async with client.stream("POST", "/inference", json=body) as r:
        assert r.status_code == 200
        lines = [line[6:] async for line in r.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    events = [json.loads(line) for line in lines[:-1]]
    text = "".join(b.get("text", "") for e in events for b in e.get("content", []))
    assert text == "echo: from b: hello"
    assert {e["variant_name"] for e in events} == {"best"}
    inference_id = events[0]["inference_id"]
    # The candidates ran whole, the evaluator's call was a plain one: each attempt with its own usage and cost.
    found = rows(
        database_url,
        "SELECT variant_name, status, streamed, output_tokens, cost FROM model_inferences WHERE inference_id = %s"
        " ORDER BY variant_name, status",
        inference_id,
    )
    assert [(v, s, streamed) for v, s, streamed, _, _ in found] == [
        ("a", "ok", False),
        ("b", "ok", False),
        ("best", "ok", False),
        ("failing", "error", False),
    ]
    ok = [(tokens, cost) for _, s, _, tokens, cost in found if s == "ok"]
    [(output_tokens, cost)] = rows(
        database_url, "SELECT output_tokens, cost FROM chat_inferences WHERE id = %s", inference_id
    )
    assert output_tokens == sum(t for t, _ in ok)
    assert cost == sum((c for _, c in ok), Decimal(0))
    assert events[-1]["usage"]["output_tokens"] == output_tokens


async def test_a_streamed_chain_of_thought_request_streams_the_response_without_the_thinking(
    client: httpx.AsyncClient, database_url: str
) -> None:
    body = {
        "function_name": "extract",
        "variant_name": "thinking",
        "stream": True,
        "input": {"messages": [{"role": "user", "content": "hello"}]},
    }
    async with client.stream("POST", "/inference", json=body) as r:
        assert r.status_code == 200
        events = [json.loads(line[6:]) async for line in r.aiter_lines() if line.startswith("data: {")]
    assert "".join(e.get("raw", "") for e in events) == '{"answer":"hello"}'
    [(output,)] = rows(database_url, "SELECT output FROM json_inferences WHERE id = %s", events[0]["inference_id"])
    assert output == {"raw": '{"answer":"hello"}', "parsed": {"answer": "hello"}}


def example(text: str, answer: str, vector: list[float]) -> tuple[Any, ...]:
    unit_vector = list(unit(vector))
    return (
        uuid.uuid4(),
        "write",
        "similar",
        Jsonb({"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}),
        Jsonb([{"type": "text", "text": answer}]),
        unit_vector,
        sketch(unit_vector),
        datetime.now(UTC),
    )


async def test_dicl_puts_the_k_nearest_stored_examples_in_the_request(
    client: httpx.AsyncClient, fake: FakeOpenAI, database_url: str
) -> None:
    # With no example stored, the model gets the instructions and the input as JSON.
    first = await infer(client, "write", "similar", "what is two plus two")
    sent = chats(fake)[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert text_of(sent[0]) == "Answer like the examples."
    assert json.loads(text_of(sent[1])) == {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what is two plus two"}]}]
    }
    assert first["content"][0]["text"].startswith("echo: {")
    # The input was embedded (an embedding inference of its own): its vector places the examples.
    [(vectors,)] = rows(database_url, "SELECT embeddings FROM embedding_inferences ORDER BY id DESC LIMIT 1")
    q = [float(x) for x in vectors[0]]
    nearest = q
    second = [x + (0.05 if i % 2 else -0.05) for i, x in enumerate(q)]
    far = [1.0 - x for x in q]
    farther = [-x for x in q]
    with psycopg.connect(database_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO dicl_examples (id, function_name, variant_name, input, output, embedding, sketch,"
            " created_at) VALUES (%s, %s, %s, %s, %s, %s::real[], %s::bit(256), %s)",
            [
                example("far question", "far answer", far),
                example("second question", "second answer", second),
                example("farther question", "farther answer", farther),
                example("nearest question", "nearest answer", nearest),
            ],
        )

    await infer(client, "write", "similar", "what is two plus two")
    sent = chats(fake)[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    # The k = 2 nearest, the nearest last (just before the input), each as its input's JSON then its output.
    assert json.loads(text_of(sent[1]))["messages"][0]["content"][0]["text"] == "second question"
    assert text_of(sent[2]) == "second answer"
    assert json.loads(text_of(sent[3]))["messages"][0]["content"][0]["text"] == "nearest question"
    assert text_of(sent[4]) == "nearest answer"
    assert "far" not in json.dumps(sent)
    # The inference's stored rendered input is what the model received.
    [(rendered,)] = rows(
        database_url,
        "SELECT d.rendered_input FROM chat_inference_data d JOIN chat_inferences i ON i.id = d.inference_id"
        " WHERE i.variant_name = 'similar' ORDER BY i.id DESC LIMIT 1",
    )
    assert len(rendered["messages"]) == 5

    # Streamed, the same examples go to the provider (a dicl variant's call streams).
    body = {
        "function_name": "write",
        "variant_name": "similar",
        "stream": True,
        "input": {"messages": [{"role": "user", "content": "what is two plus two"}]},
    }
    async with client.stream("POST", "/inference", json=body) as r:
        assert r.status_code == 200
        events = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    streamed = chats(fake)[-1]
    assert streamed["stream"] is True
    assert [m["role"] for m in streamed["messages"]] == ["system", "user", "assistant", "user", "assistant", "user"]


async def test_lsd_dicl_load_and_add_store_embedded_examples_once(
    client: httpx.AsyncClient, fake: FakeOpenAI, database_url: str, tmp_path: Path
) -> None:
    config_file = tmp_path / "lsd.toml"
    config_file.write_text(config(fake, tmp_path))
    answer = await infer(client, "write", "a", "capital of France")
    r = await client.post(
        "/feedback",
        json={"metric_name": "demonstration", "inference_id": answer["inference_id"], "value": "Paris"},
    )
    assert r.status_code == 200, r.text
    env = {"LSD_DATABASE_URL": database_url}
    common = ("--config", str(config_file), "--function", "write", "--variant", "similar")
    load = ("dicl", "load", *common, "--from-demonstrations")
    done = await asyncio.to_thread(run_lsd, *load, env=env)
    assert done.returncode == 0, done.stderr
    assert "1 examples stored for write.similar (0 of 1 were already there)" in done.stdout
    again = await asyncio.to_thread(run_lsd, *load, env=env)
    assert "0 examples stored for write.similar (1 of 1 were already there)" in again.stdout

    lines = tmp_path / "examples.jsonl"
    lines.write_text(json.dumps({"input": {"messages": [{"role": "user", "content": "2+2"}]}, "output": "4"}) + "\n")
    added = await asyncio.to_thread(run_lsd, "dicl", "add", *common, str(lines), env=env)
    assert added.returncode == 0, added.stderr
    stored = rows(
        database_url,
        "SELECT input, output, cardinality(embedding), source_inference_id IS NOT NULL FROM dicl_examples"
        " ORDER BY created_at, id",
    )
    assert [(out, dims, sourced) for _, out, dims, sourced in stored] == [
        ([{"type": "text", "text": "Paris"}], 8, True),
        ([{"type": "text", "text": "4"}], 8, False),
    ]
    assert stored[1][0] == {"messages": [{"role": "user", "content": [{"type": "text", "text": "2+2"}]}]}
    # The next dicl request finds them: its input is nearest to the first one's.
    await infer(client, "write", "similar", "capital of France")
    assert "Paris" in json.dumps(chats(fake)[-1]["messages"])

    # From a boolean metric: the inferences whose latest value is true, with their own output.
    liked = await infer(client, "write", "b", "largest planet")
    for inference_id, value in ((liked["inference_id"], True), (answer["inference_id"], False)):
        r = await client.post("/feedback", json={"metric_name": "good", "inference_id": inference_id, "value": value})
        assert r.status_code == 200, r.text
    rated = await asyncio.to_thread(run_lsd, "dicl", "load", *common, "--from-metric", "good", env=env)
    assert "1 examples stored for write.similar (0 of 1 were already there)" in rated.stdout, rated.stderr
    [(output,)] = rows(
        database_url, "SELECT output FROM dicl_examples WHERE source_inference_id = %s", liked["inference_id"]
    )
    assert output == [{"type": "text", "text": "echo: from b: largest planet"}]
